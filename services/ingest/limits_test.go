package ingest_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lodestar-cs/lodestar/pkg/auth"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
	ingestv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/ingest/v1"
	"github.com/lodestar-cs/lodestar/services/ingest"
)

// accountBatch is a batch of n track calls, each of its own account from
// acct-<from> on.
func accountBatch(from, n int) []byte {
	evs := make([]string, n)
	for i := range evs {
		evs[i] = fmt.Sprintf(`{"type":"track","userId":"u%d","event":"Clicked","messageId":"m%d","context":{"groupId":"acct-%d"}}`, from+i, from+i, from+i)
	}
	return batchOf(evs...)
}

// TestHTTPNewAccountsPerHour sends a tenant's events naming 10,000 new
// accounts, the default hourly limit, then one more: refused with 429
// account_limit and a Retry-After, while known accounts still pass (issue
// 13, item 7).
func TestHTTPNewAccountsPerHour(t *testing.T) {
	e := start(t, nil)
	const perHour = 10_000 // the documented default
	if d := ingest.DefaultConfig().Accounts.NewAccountsPerHour; d != perHour {
		t.Fatalf("default hourly limit %d, documented %d", d, perHour)
	}
	for from := 0; from < perHour; from += 1000 {
		if status, _, a := postAs(t, e, "/v1/batch", accountBatch(from, 1000)); status != http.StatusOK {
			t.Fatalf("accounts %d to %d: status %d %s %s", from, from+999, status, a.Code, a.Message)
		}
	}
	status, retry, a := postAs(t, e, "/v1/batch", accountBatch(perHour, 1))
	if status != http.StatusTooManyRequests || a.Code != "account_limit" || retry == "" || !strings.Contains(a.Message, "new accounts an hour") {
		t.Fatalf("account %d: status %d, code %q, Retry-After %q, message %q: want 429 account_limit with Retry-After", perHour, status, a.Code, retry, a.Message)
	}
	if status, _, a := postAs(t, e, "/v1/batch", accountBatch(5, 10)); status != http.StatusOK {
		t.Fatalf("known accounts: status %d %s", status, a.Code)
	}
}

// TestAccountLimitTotal checks the total limit on both APIs.
func TestAccountLimitTotal(t *testing.T) {
	cfg := ingest.DefaultConfig()
	cfg.Accounts.MaxAccounts = 3
	e := startWith(t, nil, cfg)
	if status, _, a := postAs(t, e, "/v1/batch", accountBatch(0, 3)); status != http.StatusOK {
		t.Fatalf("3 accounts: status %d %s", status, a.Code)
	}
	code, retry, a := postAs(t, e, "/v1/batch", accountBatch(2, 2))
	if code != http.StatusTooManyRequests || a.Code != "account_limit" || retry != "" || !strings.Contains(a.Message, "3 accounts in all") {
		t.Fatalf("a 4th account: status %d, code %q, Retry-After %q, message %q", code, a.Code, retry, a.Message)
	}
	client := ingestv1.NewIngestServiceClient(e.dial(t, acmeAPIKey))
	_, err := client.Track(context.Background(), &ingestv1.TrackRequest{Event: grpcEvent("g4", func(ev *eventv1.Event) { ev.AccountId = "acct-9" })})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "accounts in all") {
		t.Errorf("gRPC Track of a 4th account: %v, want ResourceExhausted", err)
	}
	if _, err := client.Track(context.Background(), &ingestv1.TrackRequest{Event: grpcEvent("g1", func(ev *eventv1.Event) { ev.AccountId = "acct-1" })}); err != nil {
		t.Errorf("gRPC Track of a known account: %v", err)
	}
}

// TestDefaultRateLimit checks that a tenant configuring no rate limit gets
// the default one: 429 rate_limited with Retry-After past its burst.
func TestDefaultRateLimit(t *testing.T) {
	cfg := ingest.DefaultConfig()
	cfg.DefaultRate = auth.RateLimit{EventsPerSecond: 1.0 / 60, Burst: 5}
	e := startWith(t, nil, cfg)
	if status, _, a := postAs(t, e, "/v1/batch", accountBatch(0, 5)); status != http.StatusOK {
		t.Fatalf("the burst: status %d %s", status, a.Code)
	}
	status, retry, a := postAs(t, e, "/v1/batch", accountBatch(0, 1))
	if status != http.StatusTooManyRequests || a.Code != "rate_limited" || retry == "" {
		t.Fatalf("past the burst: status %d, code %q, Retry-After %q", status, a.Code, retry)
	}
}
