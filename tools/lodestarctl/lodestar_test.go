package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/app"
	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/pkg/auth"
	"github.com/lodestar-cs/lodestar/pkg/config"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	forecastv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/forecast/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// lodestar is an all-in-one Lodestar run in the test for one fresh tenant.
type lodestar struct {
	grpcAddr, httpURL string
	writeKey, apiKey  string
	conn              *grpc.ClientConn
}

// startLodestar runs the all-in-one (embedded NATS, in-process cache) with
// the simulated product's scorecard, as make run does, and waits until
// every service is ready.
func startLodestar(t *testing.T) *lodestar {
	t.Helper()
	tenant := testenv.Tenant(t)
	l := &lodestar{writeKey: "wk_test_" + tenant + "_0123456789", apiKey: "ak_test_" + tenant + "_0123456789"}
	tenants := filepath.Join(t.TempDir(), "tenants.yaml")
	yaml := fmt.Sprintf("tenants:\n  - id: %s\n    write_keys: [%q]\n    api_keys: [%q]\n", tenant, l.writeKey, auth.HashKey(l.apiKey))
	if err := os.WriteFile(tenants, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := app.DefaultConfig()
	cfg.HTTPListenAddr, cfg.GRPCListenAddr, cfg.HTTP.AdminListenAddr = freeAddr(t), freeAddr(t), freeAddr(t)
	cfg.DataDir, cfg.TenantsFile = t.TempDir(), tenants
	cfg.Targets = config.StringList{app.TargetAll}
	cfg.Scoring.ScorecardFile = "../loadgen/sim/scorecard.yaml"
	l.grpcAddr, l.httpURL = cfg.GRPCListenAddr, "http://"+cfg.HTTPListenAddr

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg, slog.New(slog.DiscardHandler), io.Discard) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("lodestar stopped with: %v", err)
		}
	})
	testenv.WaitReady(t, l.httpURL, time.Minute)
	conn, err := grpc.NewClient(l.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(auth.BearerCredentials{Key: l.apiKey, Insecure: true}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	l.conn = conn
	return l
}

func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}

// ctl runs lodestarctl against l and returns its exit code and output.
func (l *lodestar) ctl(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), append([]string{"-addr", l.grpcAddr, "-api-key", l.apiKey, "-tz", "UTC"}, args...), &out, &errOut, time.Now)
	return code, out.String(), errOut.String()
}

// mustCtl runs lodestarctl and fails the test unless it exits 0.
func (l *lodestar) mustCtl(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := l.ctl(t, args...)
	if code != 0 {
		t.Fatalf("lodestarctl %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// jsonOf runs lodestarctl -json and decodes its output into m.
func (l *lodestar) jsonOf(t *testing.T, m proto.Message, args ...string) {
	t.Helper()
	out := l.mustCtl(t, append(args, "-json")...)
	if err := protojson.Unmarshal([]byte(out), m); err != nil {
		t.Fatalf("lodestarctl %s -json: %v:\n%s", strings.Join(args, " "), err, out)
	}
}

// feed gives the tenant three accounts with 60 days of history: a healthy
// one, one that went silent 30 days ago (red, alerts) and one declining,
// renewing in 40 days so that the renewals list shows it.
func (l *lodestar) feed(t *testing.T) {
	t.Helper()
	now := time.Now()
	accounts := []*accountv1.Account{
		{AccountId: "healthy", Name: "Healthy Co", RenewalTime: timestamppb.New(now.AddDate(0, 0, 200))},
		{AccountId: "dead", Name: "Dead Co", RenewalTime: timestamppb.New(now.AddDate(0, 0, 120))},
		{AccountId: "declining", Name: "Declining Co", RenewalTime: timestamppb.New(now.AddDate(0, 0, 40))},
	}
	for _, a := range accounts {
		a.SeatsPurchased, a.Tier, a.Segment = 20, accountv1.Tier_TIER_GROWTH, "mid-market"
		a.Arr = &accountv1.Money{CurrencyCode: "USD", Units: 48000}
		a.Owner = &accountv1.Owner{CsmId: "csm-01", Name: "Alex Morgan"}
		a.ContractStartTime = timestamppb.New(now.AddDate(-1, 0, -165))
	}
	if _, err := accountv1.NewAccountServiceClient(l.conn).UpsertAccounts(context.Background(), &accountv1.UpsertAccountsRequest{Accounts: accounts}); err != nil {
		t.Fatal(err)
	}
	active := map[string]func(day int) int{
		"healthy":   func(int) int { return 16 },
		"declining": func(day int) int { return max(1, 16-day/4) },
		"dead": func(day int) int {
			if day < 30 {
				return 16
			}
			return 0
		},
	}
	var batch []map[string]any
	send := func() {
		testenv.PostBatch(t, l.httpURL, l.writeKey, batch, now)
		batch = batch[:0]
	}
	for day := range 60 {
		ts := now.Add(time.Duration(day-60) * 24 * time.Hour)
		for _, a := range accounts {
			for u := range active[a.AccountId](day) {
				batch = append(batch, map[string]any{
					"type": "track", "event": "Report Created", "userId": fmt.Sprintf("%s-u%d", a.AccountId, u),
					"timestamp": ts.Add(time.Duration(u) * time.Minute).Format(time.RFC3339Nano),
					"context":   map[string]any{"groupId": a.AccountId},
				})
				if len(batch) == 100 {
					send()
				}
			}
		}
	}
	send()
}

// waitAlerts waits until the dead account has its red-band and silent
// alerts open, and returns them. Those two stay open to the end of the
// history (the account stays red and silent); others, such as a score
// drop, may open and resolve while churn-alert is still replaying it.
func (l *lodestar) waitAlerts(t *testing.T) []*alertv1.Alert {
	t.Helper()
	client := alertv1.NewAlertServiceClient(l.conn)
	// Bounds a hang only: a loaded machine must not fail the test.
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := client.ListAlerts(context.Background(), &alertv1.ListAlertsRequest{AccountId: "dead", States: []alertv1.AlertState{alertv1.AlertState_ALERT_STATE_OPEN}})
		if err != nil {
			t.Fatal(err)
		}
		var open []*alertv1.Alert
		for _, a := range resp.Alerts {
			if a.RuleId == "red-band" || a.RuleId == "silent-account" {
				open = append(open, a)
			}
		}
		if len(open) == 2 {
			return open
		}
	}
	t.Fatal("the silent account did not raise its red-band and silent alerts within 2 minutes")
	return nil
}

// TestAgainstLodestar runs every command against a real all-in-one.
func TestAgainstLodestar(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Lodestar")
	}
	l := startLodestar(t)
	alerts := alertv1.NewAlertServiceClient(l.conn)

	// Output that depends on nothing but the shipped configuration is golden.
	t.Run("golden", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			code int
		}{
			{"rules_list", []string{"rules", "list"}, 0},
			{"rules_get", []string{"rules", "get", "score-drop"}, 0},
			{"rules_get_unknown", []string{"rules", "get", "nope"}, 1},
			{"rules_no_subcommand", []string{"rules"}, 2},
			{"scorecard_get", []string{"scorecard", "get"}, 0},
			{"scorecard_validate", []string{"scorecard", "validate", "../loadgen/sim/scorecard.yaml"}, 0},
			{"scorecard_validate_bad", []string{"scorecard", "validate", "testdata/bad_scorecard.yaml"}, 1},
			{"scorecard_apply_bad", []string{"scorecard", "apply", "testdata/bad_scorecard.yaml"}, 1},
			{"scorecard_validate_missing", []string{"scorecard", "validate", "testdata/no_such_file.yaml"}, 1},
			{"alerts_get_unknown", []string{"alerts", "get", "no-such-alert"}, 1},
			{"alerts_snooze_no_reason", []string{"alerts", "snooze", "x", "-until", "48h"}, 2},
			{"alerts_list_bad_state", []string{"alerts", "list", "-state", "sleeping"}, 2},
			{"alerts_list_none", []string{"alerts", "list"}, 0},
			{"renewals_none", []string{"renewals"}, 0},
			{"backtest_none", []string{"scorecard", "backtest"}, 0},
		} {
			t.Run(tc.name, func(t *testing.T) {
				code, out, errOut := l.ctl(t, tc.args...)
				if code != tc.code {
					t.Errorf("exit code %d, want %d; stderr: %s", code, tc.code, errOut)
				}
				golden(t, tc.name, []byte(out+errOut))
			})
		}
	})

	// -json prints exactly what the API answers.
	t.Run("json", func(t *testing.T) {
		var rules alertv1.ListRulesResponse
		l.jsonOf(t, &rules, "rules", "list")
		want, err := alerts.ListRules(context.Background(), &alertv1.ListRulesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&rules, want) {
			t.Errorf("rules list -json differs from ListRules")
		}
		var sc scoringv1.GetScorecardResponse
		l.jsonOf(t, &sc, "scorecard", "get")
		if len(sc.Scorecard.GetMeasures()) == 0 {
			t.Errorf("scorecard get -json: no measures")
		}
	})

	// Applying a scorecard makes a new version, which get then prints.
	t.Run("scorecard apply", func(t *testing.T) {
		out := l.mustCtl(t, "scorecard", "apply", "../loadgen/sim/scorecard.yaml")
		if !strings.Contains(out, "is active as version 1") {
			t.Errorf("apply: %s", out)
		}
		var sc scoringv1.GetScorecardResponse
		l.jsonOf(t, &sc, "scorecard", "get")
		if sc.Scorecard.GetVersion() != 1 {
			t.Errorf("active version %d after apply, want 1", sc.Scorecard.GetVersion())
		}
	})

	l.feed(t)
	open := l.waitAlerts(t)

	t.Run("alerts list", func(t *testing.T) {
		out := l.mustCtl(t, "alerts", "list", "-account", "dead")
		t.Logf("lodestarctl alerts list -account dead:\n%s", out)
		for _, a := range open {
			if !strings.Contains(out, a.AlertId) {
				t.Errorf("alerts list does not show %s:\n%s", a.AlertId, out)
			}
		}
		if !strings.Contains(out, "$48,000") || !strings.Contains(out, "Alex Morgan") {
			t.Errorf("alerts list: no ARR or assignee formatted for people:\n%s", out)
		}
		var list alertv1.ListAlertsResponse
		l.jsonOf(t, &list, "alerts", "list", "-account", "dead", "-state", "open")
		if len(list.Alerts) < len(open) {
			t.Errorf("alerts list -json: %d alerts, want at least %d", len(list.Alerts), len(open))
		}
		get := l.mustCtl(t, "alerts", "get", open[0].AlertId)
		t.Logf("lodestarctl alerts get:\n%s", get)
		if !strings.Contains(get, "Dead Co") || !strings.Contains(get, "State:") {
			t.Errorf("alerts get:\n%s", get)
		}
	})

	t.Run("alerts ack snooze resolve watch", func(t *testing.T) {
		// The watch runs until cancelled; it must see the three actions.
		ctx, cancel := context.WithCancel(context.Background())
		pr, pw := io.Pipe()
		var watch sync.WaitGroup
		watchCode := -1
		watch.Go(func() {
			var stderr bytes.Buffer
			watchCode = run(ctx, []string{"-addr", l.grpcAddr, "-api-key", l.apiKey, "alerts", "watch", "-json"}, pw, &stderr, time.Now)
			pw.CloseWithError(fmt.Errorf("watch ended: %s", stderr.String()))
		})
		events := make(chan *alertv1.WatchAlertsResponse)
		go func() {
			defer close(events)
			for lines := bufio.NewScanner(pr); lines.Scan(); {
				resp := new(alertv1.WatchAlertsResponse)
				if err := protojson.Unmarshal(lines.Bytes(), resp); err != nil {
					t.Errorf("watch -json line %q: %v", lines.Text(), err)
				}
				events <- resp
			}
		}()
		// next waits for the event of alert id of type want; wait bounds a hang.
		next := func(id string, want alertv1.AlertEventType, wait time.Duration) bool {
			t.Helper()
			timeout := time.After(wait)
			for {
				select {
				case resp, ok := <-events:
					if !ok {
						t.Fatalf("watch ended before a %v event", want)
					}
					if resp.Cursor == "" {
						t.Errorf("watch event without a cursor")
					}
					if resp.Event.GetAlert().GetAlertId() == id && resp.Event.GetType() == want {
						return true
					}
				case <-timeout:
					return false
				}
			}
		}
		// WatchAlerts sends only the events after it subscribed, which
		// nothing here can observe: snooze the second alert again and again
		// until the watch shows one.
		for i := 1; !next(open[1].AlertId, alertv1.AlertEventType_ALERT_EVENT_TYPE_SNOOZED, time.Second); i++ {
			if i == 60 {
				t.Fatal("the watch showed no event within a minute")
			}
			l.mustCtl(t, "alerts", "snooze", open[1].AlertId, "-until", fmt.Sprintf("%dh", i), "-reason", "waking the watch")
		}
		const hang = time.Minute
		id := open[0].AlertId
		out := l.mustCtl(t, "alerts", "ack", id, "-note", "calling them", "-actor", "alex")
		if !strings.Contains(out, "acknowledged") || !strings.Contains(out, "by alex: calling them") {
			t.Errorf("ack:\n%s", out)
		}
		if !next(id, alertv1.AlertEventType_ALERT_EVENT_TYPE_ACKNOWLEDGED, hang) {
			t.Fatal("watch: no acknowledged event")
		}

		out = l.mustCtl(t, "alerts", "snooze", id, "-until", "48h", "-reason", "customer on holiday")
		if !strings.Contains(out, "snoozed until") || !strings.Contains(out, "customer on holiday") {
			t.Errorf("snooze:\n%s", out)
		}
		if !next(id, alertv1.AlertEventType_ALERT_EVENT_TYPE_SNOOZED, hang) {
			t.Fatal("watch: no snoozed event")
		}

		code, _, errOut := l.ctl(t, "alerts", "snooze", id, "-until", "2400h", "-reason", "too long")
		if code != 1 || !strings.Contains(errOut, "InvalidArgument") {
			t.Errorf("snooze past 90 days: exit %d, %s", code, errOut)
		}

		out = l.mustCtl(t, "alerts", "resolve", id, "-note", "renewal signed")
		if !strings.Contains(out, "resolved") {
			t.Errorf("resolve:\n%s", out)
		}
		if !next(id, alertv1.AlertEventType_ALERT_EVENT_TYPE_RESOLVED, hang) {
			t.Fatal("watch: no resolved event")
		}
		got, err := alerts.GetAlert(context.Background(), &alertv1.GetAlertRequest{AlertId: id})
		if err != nil {
			t.Fatal(err)
		}
		if got.Alert.State != alertv1.AlertState_ALERT_STATE_RESOLVED || got.Alert.Note != "renewal signed" {
			t.Errorf("after resolve: state %v, note %q", got.Alert.State, got.Alert.Note)
		}

		cancel()
		go func() {
			for range events { // drain until the watch ends
			}
		}()
		watch.Wait()
		if watchCode != 0 {
			t.Errorf("watch ended with exit code %d on interrupt, want 0", watchCode)
		}
	})

	t.Run("renewals", func(t *testing.T) {
		out := l.mustCtl(t, "renewals", "-days", "60")
		t.Logf("lodestarctl renewals -days 60:\n%s", out)
		if !strings.Contains(out, "declining") || strings.Contains(out, "healthy") || !strings.Contains(out, "in 40 days") {
			t.Errorf("renewals within 60 days: want the declining account, in 40 days:\n%s", out)
		}
		var list forecastv1.ListRenewalsResponse
		l.jsonOf(t, &list, "renewals", "-days", "365")
		if list.TotalSize != 3 || len(list.Renewals) != 3 {
			t.Errorf("renewals -days 365 -json: %d of %d, want 3", len(list.Renewals), list.TotalSize)
		}
		one := l.mustCtl(t, "forecast", "-account", "dead")
		t.Logf("lodestarctl forecast -account dead:\n%s", one)
		if !strings.Contains(one, "Renews:") || !strings.Contains(one, "FACTOR") {
			t.Errorf("forecast -account:\n%s", one)
		}
	})

	t.Run("forecast", func(t *testing.T) {
		out := l.mustCtl(t, "forecast", "-unit", "year", "-by", "tier")
		t.Logf("lodestarctl forecast -unit year -by tier:\n%s", out)
		for _, want := range []string{"GRR", "NRR", "Logo retention", "$144,000", "growth"} {
			if !strings.Contains(out, want) {
				t.Errorf("forecast: no %q:\n%s", want, out)
			}
		}
		var f forecastv1.GetPortfolioForecastResponse
		l.jsonOf(t, &f, "forecast", "-unit", "year")
		if f.Total.GetExpected().GetStartingArr() != 144000 {
			t.Errorf("forecast -json: starting ARR %v, want 144000", f.Total.GetExpected().GetStartingArr())
		}
	})

	// Last, as recording outcomes changes the accounts: a churn of the
	// silent account and a renewal of the healthy one, today, scored 30
	// days before.
	t.Run("backtest", func(t *testing.T) {
		accounts := accountv1.NewAccountServiceClient(l.conn)
		now := time.Now().Add(-time.Hour)
		usd := func(units int64) *accountv1.Money { return &accountv1.Money{CurrencyCode: "USD", Units: units} }
		for _, o := range []*accountv1.RenewalOutcome{
			{AccountId: "dead", Type: accountv1.OutcomeType_OUTCOME_TYPE_CHURNED, ArrBefore: usd(48000), ArrAfter: usd(0), OutcomeTime: timestamppb.New(now)},
			{AccountId: "healthy", Type: accountv1.OutcomeType_OUTCOME_TYPE_RENEWED, ArrBefore: usd(48000), ArrAfter: usd(48000), OutcomeTime: timestamppb.New(now)},
		} {
			if _, err := accounts.RecordOutcome(context.Background(), &accountv1.RecordOutcomeRequest{Outcome: o}); err != nil {
				t.Fatal(err)
			}
		}
		var resp forecastv1.EvaluateScorecardResponse
		for deadline := time.Now().Add(time.Minute); resp.Active.GetRenewals() < 2 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			l.jsonOf(t, &resp, "scorecard", "backtest", "-horizon", "30", "../loadgen/sim/scorecard.yaml")
		}
		if resp.Active.GetRenewals() != 2 || resp.Active.GetChurned() != 1 || resp.Candidate.GetRenewals() != 2 {
			t.Fatalf("backtest -json: %v", &resp)
		}
		out := l.mustCtl(t, "scorecard", "backtest", "-horizon", "30", "../loadgen/sim/scorecard.yaml")
		for _, want := range []string{"scores read 30 days before each", "ACTIVE", "CANDIDATE", "ROC AUC"} {
			if !strings.Contains(out, want) {
				t.Errorf("backtest: no %q:\n%s", want, out)
			}
		}
		for line := range strings.Lines(out) {
			if f := strings.Fields(line); strings.HasPrefix(line, "Renewals scored") && (f[2] != "2" || f[3] != "2") {
				t.Errorf("backtest: %q, want 2 renewals for both scorecards", line)
			}
		}
		t.Logf("lodestarctl scorecard backtest -horizon 30 FILE:\n%s", out)

		// The alert rules on the same history: the current set, and a
		// candidate in the form rules list -json prints.
		var ev alertv1.EvaluateRulesResponse
		l.jsonOf(t, &ev, "rules", "evaluate")
		if ev.Renewals != 2 || ev.Churned != 1 || len(ev.Rules) != 9 || ev.RedBand == nil {
			t.Errorf("rules evaluate -json: %v", &ev)
		}
		candidate := filepath.Join(t.TempDir(), "rules.json")
		if err := os.WriteFile(candidate, []byte(l.mustCtl(t, "rules", "list", "-json")), 0o600); err != nil {
			t.Fatal(err)
		}
		table := l.mustCtl(t, "rules", "evaluate", candidate, "-lead-days", "60")
		for _, want := range []string{"9 rules replayed", "2 renewals recorded: 1 churned", "silent-account", "red band (baseline)", "risk rules together"} {
			if !strings.Contains(table, want) {
				t.Errorf("rules evaluate FILE: no %q:\n%s", want, table)
			}
		}
		t.Logf("lodestarctl rules evaluate FILE -lead-days 60:\n%s", table)
		bad := filepath.Join(t.TempDir(), "bad.yaml")
		if err := os.WriteFile(bad, []byte("rules:\n  - rule_id: Not An Id\n    kind: RULE_KIND_SCORE_DROP\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if code, _, errOut := l.ctl(t, "rules", "evaluate", bad); code != 1 || !strings.Contains(errOut, "InvalidArgument") {
			t.Errorf("rules evaluate with a bad rule: exit %d, %s", code, errOut)
		}
	})
}
