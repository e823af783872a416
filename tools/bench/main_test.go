package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/pkg/config"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert"
	"github.com/lodestar-cs/lodestar/tools/bench/internal/stats"
	"github.com/lodestar-cs/lodestar/tools/loadgen/sim"
)

func TestSumCounters(t *testing.T) {
	exposition := []byte(`# HELP lodestar_scoring_events_total Events applied.
# TYPE lodestar_scoring_events_total counter
lodestar_scoring_events_total{otel_scope_name="scoring"} 1200
lodestar_scoring_events_total_extra 7
lodestar_ingest_events_accepted_total{api="http",tenant="a{b}"} 1000
lodestar_ingest_events_accepted_total{api="grpc",tenant="b"} 2.5e2
lodestar_scoring_scores_total 3
`)
	got := sumCounters(exposition, metricApplied, metricAccepted, metricScores, "absent_total")
	if want := []float64{1200, 1250, 3, 0}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestTemplateStamp(t *testing.T) {
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	evs := []sim.Event{
		{Type: sim.Track, MessageID: "a", UserID: "u1", AccountID: "acct-1", Event: "Report Created", Time: now, Properties: map[string]any{"x": 1.5}},
		{Type: sim.Group, MessageID: "b", UserID: "u1", AccountID: "acct-1", Time: now, Traits: map[string]any{"name": "@#"}},
	}
	tpl, err := encodeBatch(evs, true, "run-")
	if err != nil {
		t.Fatal(err)
	}
	if len(tpl.seqs) != 2 || len(tpl.times) != 3 {
		t.Fatalf("holes: %d ids and %d times, want 2 and 3 (two events and sentAt)", len(tpl.seqs), len(tpl.times))
	}
	at := time.Date(2026, 11, 22, 23, 1, 2, 345e6, time.UTC)
	var ids []string
	var buf []byte
	for _, seq := range []uint64{1, 1 << 40} {
		buf = tpl.stamp(buf, seq, at)
		var body struct {
			Batch []struct {
				MessageID string `json:"messageId"`
				Timestamp string `json:"timestamp"`
				GroupID   string `json:"groupId"`
				Context   struct {
					GroupID string `json:"groupId"`
				} `json:"context"`
				Traits map[string]any `json:"traits"`
			} `json:"batch"`
			SentAt string `json:"sentAt"`
		}
		if err := json.Unmarshal(buf, &body); err != nil {
			t.Fatalf("stamped body is not JSON: %v\n%s", err, buf)
		}
		if body.SentAt != "2026-11-22T23:01:02.345Z" || body.Batch[0].Timestamp != body.SentAt {
			t.Errorf("times: sentAt %q, event %q", body.SentAt, body.Batch[0].Timestamp)
		}
		if body.Batch[1].GroupID != "acct-1" || body.Batch[0].Context.GroupID != "acct-1" || body.Batch[1].Traits["name"] != "@#" {
			t.Errorf("accounts or traits lost: %+v", body.Batch)
		}
		for _, e := range body.Batch {
			ids = append(ids, e.MessageID)
		}
	}
	slices.Sort(ids)
	if len(slices.Compact(ids)) != 4 || !strings.HasPrefix(ids[0], "run-") {
		t.Errorf("message ids %q: want four distinct, prefixed", ids)
	}
	// A history batch keeps the simulator's ids and times.
	plain, err := encodeBatch(evs, false, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(plain.seqs)+len(plain.times) != 0 || !strings.Contains(string(plain.stamp(nil, 9, at)), `"messageId":"a"`) {
		t.Errorf("history batch changed: %s", plain.body)
	}
}

func TestWorkdayHours(t *testing.T) {
	sunday := time.Date(2026, 11, 22, 23, 7, 0, 0, time.UTC)
	hours := workdayHours(sunday, 2)
	if len(hours) != 48 {
		t.Fatalf("%d hours, want 48", len(hours))
	}
	if hours[0] != time.Date(2026, 11, 19, 0, 0, 0, 0, time.UTC) || hours[47] != time.Date(2026, 11, 20, 23, 0, 0, 0, time.UTC) {
		t.Errorf("hours %v to %v, want Thursday and Friday, oldest first", hours[0], hours[47])
	}
	monday := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	if h := workdayHours(monday, 1); h[0].Weekday() != time.Friday {
		t.Errorf("the workday before a Monday is %v, want Friday", h[0].Weekday())
	}
}

func TestBestAndFail(t *testing.T) {
	steps := []stepResult{{Rate: 100, Passed: true}, {Rate: 150, Passed: false}, {Rate: 125, Passed: true}, {Rate: 140, Passed: false}, {Rate: 90, Passed: false}}
	best, fail := bestAndFail(steps, 125)
	if best == nil || best.Rate != 125 || fail == nil || fail.Rate != 140 {
		t.Errorf("best %+v fail %+v, want 125 and the lowest failure above it, 140", best, fail)
	}
}

func TestDropFlags(t *testing.T) {
	args := []string{"-out", "docs/b.md", "--json=docs/b.json", "-duration", "3s", "-phases=e2e", "-scoring.flush-interval", "50ms", "-e2e.rate", "100"}
	got := dropFlags(args, "out", "json", "phases", "e2e.rate")
	if want := []string{"-duration", "3s", "-scoring.flush-interval", "50ms"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestIntList(t *testing.T) {
	var l intList
	if err := l.Set("10000, 100000"); err != nil || !slices.Equal(l, intList{10000, 100000}) || l.String() != "10000,100000" {
		t.Errorf("Set: %v %v", l, err)
	}
	for _, bad := range []string{"", "1,x", "0", "-5"} {
		if err := l.Set(bad); err == nil {
			t.Errorf("Set(%q): want an error", bad)
		}
	}
}

func TestFormatValue(t *testing.T) {
	for _, c := range []struct {
		v    float64
		unit string
		want string
	}{
		{1234567, "events/s", "1,234,567 events/s"},
		{-2567, "", "-2,567"},
		{0.4567, "ms", "0.46 ms"},
		{3.2 * (1 << 20), "bytes", "3.2 MiB"},
		{42, "cores", "42.00 cores"},
	} {
		if got := formatValue(c.v, c.unit); got != c.want {
			t.Errorf("formatValue(%g, %q) = %q, want %q", c.v, c.unit, got, c.want)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	o := defaultOptions()
	o.out = "x.md"
	if err := o.validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	o.phases = append(o.phases, "nope")
	o.conns = 0
	if err := o.validate(); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("want an error naming the unknown phase, got %v", err)
	}
}

func TestRenderRoundTrip(t *testing.T) {
	r := &Report{Generated: time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC), Command: "go run ./tools/bench -out x", Duration: "1s",
		Machine: Machine{CPUs: 2}, Settings: []Setting{{"a", "b"}},
		Targets: []Target{{Name: "t", Goal: "g", Measured: "m", Verdict: "met", Met: true, Bound: "b"}},
		Profile: &ProfileSummary{Window: "w", Events: 10, CPUSeconds: 1, CPUComponents: []Share{{Name: "x", Percent: 50, PerEvent: 1}}}}
	sec := r.section(phaseE2E, "E2E")
	sec.add(Figure{Name: "f", Value: ptr(2), Unit: "events/s", Baseline: "raw", BaselineValue: ptr(4)})
	sec.add(Figure{Name: "later", Unit: "ms", Note: "not measured"})
	sec.note("a note")
	var want, js strings.Builder
	if err := r.writeMarkdown(&want); err != nil {
		t.Fatal(err)
	}
	if err := r.writeJSON(&js); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(js.String(), `"ratio": 0.5`) {
		t.Errorf("JSON lacks the ratio: %s", js.String())
	}
	dir := t.TempDir()
	in, out := dir+"/r.json", dir+"/r.md"
	if err := os.WriteFile(in, []byte(js.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := render(in, out); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if string(got) != want.String() {
		t.Errorf("rendered from JSON:\n%s\nwant\n%s", got, want.String())
	}
	if !strings.Contains(want.String(), "**not measured yet**") {
		t.Error("a figure without a value must say it is not measured yet")
	}
}

func TestOpenLoopCallsEachProbeOnce(t *testing.T) {
	var mu sync.Mutex
	seen := map[int]int{}
	n, err := openLoop(context.Background(), 2000, 20*time.Millisecond, func(k int) {
		mu.Lock()
		seen[k]++
		mu.Unlock()
	})
	if err != nil || n == 0 {
		t.Fatalf("openLoop: %d probes, %v", n, err)
	}
	for k := range n {
		if seen[k] != 1 {
			t.Errorf("probe %d called %d times, want once (of %d)", k, seen[k], n)
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct probes called, %d started", len(seen), n)
	}
}

func TestWithTarget(t *testing.T) {
	got, added := withTarget(config.StringList{"ingest", "scoring"}, churnalert.Target)
	if !added || got.String() != "ingest,scoring,churn-alert" {
		t.Errorf("got %v %v", got, added)
	}
	for _, has := range []config.StringList{{"all"}, {"ingest", "churn-alert"}} {
		if got, added := withTarget(has, churnalert.Target); added || got.String() != has.String() {
			t.Errorf("%v: got %v %v, want it unchanged", has, got, added)
		}
	}
	if !alertAlone([]string{phaseAlert, phaseMemory, phaseRestart}) || alertAlone([]string{phaseLatency, phaseAlert}) || alertAlone([]string{phaseE2E}) {
		t.Error("alertAlone: want true only when no phase before alert uses the main all-in-one")
	}
}

func TestAlertProbeBody(t *testing.T) {
	at := time.Date(2026, 11, 23, 1, 2, 3, 4e6, time.UTC)
	var body struct {
		Batch []struct {
			Type, MessageID, UserID, Event, Timestamp string
			Properties                                map[string]any
			Context                                   struct{ GroupID string }
		}
		SentAt string
	}
	if err := json.Unmarshal(alertProbeBody("a-000001", at), &body); err != nil {
		t.Fatal(err)
	}
	var names, ids []string
	for i, e := range body.Batch {
		want := "2026-11-23T01:02:03.004Z"
		if i == 0 {
			want = "2026-11-02T01:02:03.004Z" // the history the scorecard wants
		}
		if e.Type != "track" || e.Context.GroupID != "a-000001" || e.UserID == "" || e.Timestamp != want {
			t.Errorf("event %+v: want a track of the account's user at %s", e, want)
		}
		names, ids = append(names, e.Event), append(ids, e.MessageID)
	}
	if want := []string{"Report Created", "Payment Failed", "Ticket Opened", "NPS Submitted"}; !slices.Equal(names, want) {
		t.Errorf("events %q, want %q", names, want)
	}
	if slices.Sort(ids); len(slices.Compact(ids)) != 4 {
		t.Errorf("message ids %q: want four distinct", ids)
	}
	if p := body.Batch[2].Properties; p["severity"] != "urgent" || p["ticket_id"] != "t1" || body.Batch[3].Properties["score"] != 0.0 {
		t.Errorf("properties %v, %v: want an urgent ticket and an NPS of 0", p, body.Batch[3].Properties)
	}
}

func TestReceiver(t *testing.T) {
	const secret = "whsec-test-0123456789"
	rcv, err := startReceiver(secret)
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.close()
	created := time.Date(2026, 11, 23, 1, 0, 0, 0, time.UTC)
	post := func(tenant, account, rule, key string) {
		t.Helper()
		body, err := protojson.Marshal(&alertv1.Delivery{DeliveryId: "d", TenantId: tenant, Event: &alertv1.AlertEvent{
			Alert: &alertv1.Alert{TenantId: tenant, AccountId: account, RuleId: rule, CreateTime: timestamppb.New(created)}}})
		if err != nil {
			t.Fatal(err)
		}
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		mac := hmac.New(sha256.New, []byte(key))
		mac.Write([]byte(ts + "." + string(body)))
		req, _ := http.NewRequest(http.MethodPost, rcv.url, bytes.NewReader(body))
		req.Header.Set("Lodestar-Signature", "t="+ts+",v1="+hex.EncodeToString(mac.Sum(nil)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	post(alertTenant, "a-1", "silent-account", secret)
	post(alertTenant, "a-1", "red-band", secret)    // not the first: ignored
	post("bench", "a-2", "red-band", secret)        // another tenant: ignored
	post(alertTenant, "a-3", "red-band", "forged!") // bad signature: counted
	if a, ok := rcv.arrived("a-1"); !ok || a.Rule != "silent-account" || !a.Created.Equal(created) {
		t.Errorf("a-1: %+v %v, want its first webhook", a, ok)
	}
	for _, id := range []string{"a-2", "a-3"} {
		if _, ok := rcv.arrived(id); ok {
			t.Errorf("%s: want no arrival", id)
		}
	}
	if bad, why := rcv.problems(); bad != 1 || why == nil {
		t.Errorf("problems: %d %v, want the forged one", bad, why)
	}
}

func TestCaughtUpAndRuleCounts(t *testing.T) {
	if !caughtUp(99, 100) || caughtUp(100, 100) || !caughtUp(0, 0) || caughtUp(1, 0) {
		t.Error("caughtUp: want fewer pending than a second of published changes")
	}
	if got := ruleCounts(map[string]int{"red-band": 3, "silent-account": 5, "a": 3}); got != "silent-account 5, a 3, red-band 3" {
		t.Errorf("ruleCounts: %q", got)
	}
	if got := ruleCounts(nil); got != "none" {
		t.Errorf("ruleCounts(nil): %q", got)
	}
}

func TestAlertTarget(t *testing.T) {
	if tg := alertTarget(nil); tg.Verdict != "not measured" || tg.Name != "Event-to-alert latency" {
		t.Errorf("nil: %+v", tg)
	}
	sum := func(p50, p99 time.Duration) stats.Summary {
		return stats.Summary{N: 400, P50: p50, P99: p99, P999: p99}
	}
	good := alertResult{Rate: 22500, Total: sum(80*time.Millisecond, 150*time.Millisecond), ToOpen: sum(70*time.Millisecond, 120*time.Millisecond),
		ToWebhook: sum(5*time.Millisecond, 30*time.Millisecond), Flush: 50 * time.Millisecond, ScoresIn: 300, Applied: 310, CatchUp: catchUp{OK: true}}
	tg := alertTarget(&good)
	if tg.Verdict != "measured" || !tg.Met || !strings.Contains(tg.Measured, "p99 150.00 ms") || !strings.Contains(tg.Measured, "22,500 events/s") ||
		!strings.Contains(tg.Bound, "(50ms)") || !strings.Contains(tg.Bound, "p99 120.00 ms") || !strings.Contains(tg.Bound, "p99 30.00 ms") {
		t.Errorf("kept up: %+v", tg)
	}
	behind := good
	behind.Applied, behind.Lost = 100, 3
	if tg := alertTarget(&behind); !strings.HasPrefix(tg.Verdict, "not bounded") || tg.Met || !strings.Contains(tg.Bound, "applied 100 changes/s") || !strings.Contains(tg.Measured, "3 of 403 probes") {
		t.Errorf("fell behind: %+v", tg)
	}
	none := alertResult{Rate: 22500, Lost: 400, ScoresIn: 2000, Applied: 60}
	if tg := alertTarget(&none); !strings.HasPrefix(tg.Verdict, "not bounded") || !strings.Contains(tg.Measured, "any of 400 probes") {
		t.Errorf("no webhook: %+v", tg)
	}
}
