package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/pkg/auth"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
)

// seedDays is the history each seeded account gets: past the scorecard's
// watch period of a new account, so that accounts are judged.
const seedDays = 21

// seed fills a tenant with n accounts for measuring the console at scale:
// CRM records (50 owners, three tiers, four segments, renewals spread over
// a year) and one event a day for seedDays days; a quarter of the accounts
// fall silent 12 days ago and a quarter thin out, so the bands spread.
func seed(ctx context.Context, base, grpcAddr, writeKey, apiKey string, n int, crm bool) error {
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(auth.BearerCredentials{Key: apiKey, Insecure: true}))
	if err != nil {
		return err
	}
	defer conn.Close()
	accounts := accountv1.NewAccountServiceClient(conn)
	now := time.Now()
	tiers := []accountv1.Tier{accountv1.Tier_TIER_STANDARD, accountv1.Tier_TIER_STANDARD, accountv1.Tier_TIER_GROWTH, accountv1.Tier_TIER_BENCHMARK}
	segments := []string{"smb", "mid-market", "enterprise", "public"}
	id := func(i int) string { return fmt.Sprintf("acct-%06d", i) }
	for lo := 0; crm && lo < n; lo += 500 {
		var accs []*accountv1.Account
		for i := lo; i < min(lo+500, n); i++ {
			accs = append(accs, &accountv1.Account{
				AccountId: id(i), Name: fmt.Sprintf("Account %d", i), SeatsPurchased: 5,
				Arr:               &accountv1.Money{CurrencyCode: "USD", Units: int64(2000 + (i%97)*500)},
				Owner:             &accountv1.Owner{CsmId: fmt.Sprintf("csm-%02d", i%50)},
				Tier:              tiers[i%len(tiers)],
				Segment:           segments[i%len(segments)],
				ContractStartTime: timestamppb.New(now.AddDate(-1, 0, 0)),
				RenewalTime:       timestamppb.New(now.Add(time.Duration(i%365+1) * 24 * time.Hour)),
			})
		}
		if _, err := accounts.UpsertAccounts(ctx, &accountv1.UpsertAccountsRequest{Accounts: accs}); err != nil {
			return fmt.Errorf("upsert accounts: %w", err)
		}
	}
	if crm {
		fmt.Printf("seed: %d accounts upserted\n", n)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	sent := 0
	for day := seedDays; day > 0; day-- {
		at := now.Add(-time.Duration(day) * 24 * time.Hour)
		for lo := 0; lo < n; lo += 500 {
			var batch []map[string]any
			for i := lo; i < min(lo+500, n); i++ {
				switch {
				case i%4 == 0 && day <= 12: // silent
					continue
				case i%4 == 1 && day <= 10 && day%3 != 0: // thinning out
					continue
				}
				batch = append(batch, map[string]any{"type": "track", "event": "Report Created",
					"userId": fmt.Sprintf("%s-u%d", id(i), day%3), "timestamp": at.Add(time.Duration(i%600) * time.Second).Format(time.RFC3339),
					"context": map[string]any{"groupId": id(i)}})
			}
			sent += len(batch)
			body, _ := json.Marshal(map[string]any{"batch": batch})
			g.Go(func() error { return post(gctx, base, writeKey, body) })
		}
	}
	if err := g.Wait(); err != nil {
		return err
	}
	fmt.Printf("seed: %d events sent\n", sent)
	return nil
}

// post sends one batch, waiting out the tenant's rate limit (429 with
// Retry-After) as any Segment client does.
func post(ctx context.Context, base, writeKey string, body []byte) error {
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/batch", bytes.NewReader(body))
		req.SetBasicAuth(writeKey, "")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			return nil
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			fmt.Fprintf(os.Stderr, "seed: HTTP %d, retrying: %s\n", resp.StatusCode, bytes.TrimSpace(msg))
			wait, err := strconv.Atoi(resp.Header.Get("Retry-After"))
			if err != nil || wait < 1 {
				wait = 1
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(wait) * time.Second):
			}
		default:
			return fmt.Errorf("batch: HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
		}
	}
}
