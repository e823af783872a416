package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"

	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert"
)

// demoReport runs the demo as `make run` does (the all-in-one with the simulated
// product's scorecard, loadgen's demo scenario) with one webhook channel to
// a receiver here, stops loadgen when its backfill is done, waits until the
// alerts settle, and reports: the deliveries the backfill caused (0
// wanted), the open alerts, the stale ones (their condition false at the
// account's current score; 0 wanted), and the open alerts per CSM.
func (o options) demoReport(ctx context.Context, w io.Writer) error {
	dir, err := os.MkdirTemp("", "alertcheck-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for _, b := range []struct{ name, pkg string }{{"lodestar", "./cmd/lodestar"}, {"loadgen", "./tools/loadgen"}} {
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, b.name), b.pkg).CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", b.pkg, err, out)
		}
	}
	var mu sync.Mutex
	var deliveries []*alertv1.Delivery
	rcv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		d := &alertv1.Delivery{}
		if protojson.Unmarshal(body, d) == nil {
			mu.Lock()
			deliveries = append(deliveries, d)
			mu.Unlock()
		}
		rw.WriteHeader(http.StatusNoContent)
	}))
	defer rcv.Close()

	httpAddr, grpcAddr := freeAddr(), freeAddr()
	seedBytes := make([]byte, 8)
	_, _ = rand.Read(seedBytes)
	seed := hex.EncodeToString(seedBytes)
	logf, err := os.Create(filepath.Join(dir, "lodestar.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	ls := exec.Command(filepath.Join(dir, "lodestar"), "-target=all", "-data-dir="+filepath.Join(dir, "data"),
		"-http.listen-addr="+httpAddr, "-grpc.listen-addr="+grpcAddr, "-http.admin-listen-addr="+freeAddr(),
		"-auth.demo-key-seed="+seed, "-scoring.scorecard-file=tools/loadgen/sim/scorecard.yaml",
		"-churn-alert.allow-http-endpoints", "-churn-alert.endpoint-allow-list=127.0.0.1", "-log.level=warn")
	ls.Stdout, ls.Stderr = logf, logf
	if err := ls.Start(); err != nil {
		return err
	}
	defer func() { _ = ls.Process.Signal(syscall.SIGTERM); _ = ls.Wait() }()
	if err := waitHealthy(ctx, "http://"+httpAddr+"/healthz", 2*time.Minute); err != nil {
		return err
	}
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer ak_demo_"+seed)
	alerts, scores := alertv1.NewAlertServiceClient(conn), scoringv1.NewScoringServiceClient(conn)
	if _, err := alerts.CreateChannel(actx, &alertv1.CreateChannelRequest{Channel: &alertv1.Channel{ChannelId: "check",
		Config: &alertv1.Channel_Webhook{Webhook: &alertv1.WebhookChannel{Url: rcv.URL, Secret: "whsec-alertcheck-0123456789"}}}}); err != nil {
		return fmt.Errorf("create channel: %w", err)
	}

	start := time.Now()
	lg := exec.Command(filepath.Join(dir, "loadgen"), "-scenario", "demo", "-http.url", "http://"+httpAddr, "-grpc.addr", grpcAddr,
		"-write-key", "wk_demo_"+seed, "-api-key", "ak_demo_"+seed)
	out, err := lg.StdoutPipe()
	if err != nil {
		return err
	}
	lg.Stderr = lg.Stdout
	if err := lg.Start(); err != nil {
		return err
	}
	backfilled := ""
	for sc := bufio.NewScanner(out); sc.Scan(); {
		if strings.HasPrefix(sc.Text(), "loadgen: backfill done") {
			backfilled = sc.Text()
			break
		}
	}
	_ = lg.Process.Signal(syscall.SIGTERM) // the live phase is not the backfill
	_ = lg.Wait()
	if backfilled == "" {
		return errors.New("loadgen ended before its backfill was done")
	}
	took := time.Since(start)

	// Settled: the open alerts stay the same for 15 s.
	var open []*alertv1.Alert
	for last, since := -1, time.Now(); time.Since(since) < 15*time.Second; time.Sleep(time.Second) {
		if open, err = listOpen(actx, alerts); err != nil {
			return err
		}
		if len(open) != last {
			last, since = len(open), time.Now()
		}
	}
	mu.Lock()
	delivered := len(deliveries)
	mu.Unlock()
	rs, err := alerts.ListRules(actx, &alertv1.ListRulesRequest{})
	if err != nil {
		return err
	}
	byRule := map[string]*alertv1.Rule{}
	for _, r := range rs.GetRules() {
		byRule[r.GetRuleId()] = r
	}
	stale, perCSM, accounts := 0, map[string]int{}, map[string]bool{}
	for _, a := range open {
		resp, err := scores.GetHealthScore(actx, &scoringv1.GetHealthScoreRequest{AccountId: a.GetAccountId()})
		if err != nil {
			return fmt.Errorf("score of %s: %w", a.GetAccountId(), err)
		}
		if r := byRule[a.GetRuleId()]; r == nil || !churnalert.ConditionHolds(r, a, resp.GetScore(), time.Now()) {
			stale++
			fmt.Fprintf(w, "stale: %s %s (%s) at score %.0f %s\n", a.GetAccountId(), a.GetRuleId(), a.GetReason(), resp.GetScore().GetScore(), resp.GetScore().GetBand())
		}
		perCSM[a.GetOwner().GetPersonId()]++
		accounts[a.GetAccountId()] = true
	}
	fmt.Fprintf(w, "# The demo after its backfill\n\n`go run ./tools/alertcheck -demo` (the all-in-one and loadgen -scenario demo, as make run)\n\n")
	fmt.Fprintf(w, "- %s (%s after the start)\n", strings.TrimPrefix(backfilled, "loadgen: "), took.Round(time.Second))
	fmt.Fprintf(w, "- deliveries during the backfill: %d\n", delivered)
	mu.Lock()
	for i, d := range deliveries[:delivered] {
		if i == 10 {
			fmt.Fprintf(w, "  - and %d more\n", delivered-i)
			break
		}
		ev := d.GetEvent()
		fmt.Fprintf(w, "  - %s %s %s at %s, score of %s\n", ev.GetType(), ev.GetAlert().GetAccountId(), ev.GetAlert().GetRuleId(),
			ev.GetEventTime().AsTime().Format(time.RFC3339), ev.GetAlert().GetScoreTime().AsTime().Format(time.RFC3339))
	}
	mu.Unlock()
	fmt.Fprintf(w, "- open alerts: %d on %d accounts; stale (condition false at the current score): %d\n", len(open), len(accounts), stale)
	fmt.Fprintf(w, "- open alerts per CSM:")
	for _, csm := range sortedKeys(perCSM) {
		name := csm
		if name == "" {
			name = "(no owner)"
		}
		fmt.Fprintf(w, " %s %d;", name, perCSM[csm])
	}
	fmt.Fprintln(w)
	return nil
}

func listOpen(ctx context.Context, c alertv1.AlertServiceClient) ([]*alertv1.Alert, error) {
	var out []*alertv1.Alert
	req := &alertv1.ListAlertsRequest{PageSize: 1000, States: []alertv1.AlertState{alertv1.AlertState_ALERT_STATE_OPEN,
		alertv1.AlertState_ALERT_STATE_ACKNOWLEDGED, alertv1.AlertState_ALERT_STATE_SNOOZED}}
	for {
		resp, err := c.ListAlerts(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("list alerts: %w", err)
		}
		out = append(out, resp.GetAlerts()...)
		if resp.GetNextPageToken() == "" {
			return out, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:0"
	}
	defer l.Close()
	return l.Addr().String()
}

func waitHealthy(ctx context.Context, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not healthy after %s", url, timeout)
}
