package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/tools/loadgen/sim"
	"github.com/lodestar-cs/lodestar/tools/predict/internal/retail"
)

func score(v float64, band scoringv1.Band, subs ...float64) *scoringv1.HealthScore {
	s := &scoringv1.HealthScore{Score: v, Band: band}
	for i, sub := range subs {
		s.Measures = append(s.Measures, &scoringv1.MeasureResult{
			Name: fmt.Sprintf("m%d", i), HasData: !math.IsNaN(sub), SubScore: sub, RawValue: sub / 10,
		})
	}
	return s
}

func aucOf(t *testing.T, rows []Row, signal, population string) float64 {
	t.Helper()
	for _, r := range rows {
		if r.Signal == signal && r.Population == population {
			if r.AUC == nil {
				return math.NaN()
			}
			return *r.AUC
		}
	}
	t.Fatalf("no row %s / %s in %+v", signal, population, rows)
	return 0
}

func TestEvaluate(t *testing.T) {
	red, green := scoringv1.Band_BAND_RED, scoringv1.Band_BAND_GREEN
	accts := []account{
		{ID: "a", Positive: true, DaysSinceLast: 30, Events: 1, Score: score(10, red)},
		{ID: "b", Positive: true, DaysSinceLast: 5, Events: 2}, // unscored
		{ID: "c", Positive: false, DaysSinceLast: 1, Events: 9, Score: score(90, green)},
		{ID: "d", Positive: false, DaysSinceLast: 5, Events: 2, Score: score(20, red)},
	}
	names := baselineNames{days: "days", events: "events"}
	rows := evaluate(accts, names, defaultScore)
	for _, tt := range []struct {
		signal, population string
		want               float64
	}{
		// a beats c and d; b ties d and beats c: 3.5 of 4.
		{"days", popAll, 0.875},
		// fewer events: a beats both; b ties d, beats c.
		{"events", popAll, 0.875},
		{"days", popScored, 1},
		{"default scorecard", popScored, 1},
		{"default scorecard", popUnscoredFirst, 1},
		// b ranked safest loses to c and d: 2 of 4.
		{"default scorecard", popUnscoredLast, 0.5},
	} {
		if got := aucOf(t, rows, tt.signal, tt.population); got != tt.want {
			t.Errorf("%s / %s: AUC %v, want %v", tt.signal, tt.population, got, tt.want)
		}
	}
	if r := rows[len(rows)-1]; r.N != 4 || r.Positives != 2 {
		t.Errorf("last row n %d, positives %d: want 4, 2", r.N, r.Positives)
	}
	// Everyone scored: no scored-only or unscored rows.
	accts[1].Score = score(15, red)
	if rows := evaluate(accts, names, defaultScore); len(rows) != 3 {
		t.Errorf("rows with everyone scored: %+v, want the two baselines and the score over all", rows)
	}
}

func TestDistribution(t *testing.T) {
	accts := []account{
		{Score: score(10, scoringv1.Band_BAND_RED)},
		{Score: score(10, scoringv1.Band_BAND_RED)},
		{Score: score(50, scoringv1.Band_BAND_YELLOW)},
		{Score: score(90, scoringv1.Band_BAND_GREEN)},
		{},
	}
	d := distribution(accts)
	want := Distribution{Scored: 4, Distinct: 3, Red: 0.5, Yellow: 0.25, Green: 0.25, Quantiles: [5]float64{10, 10, 50, 90, 90}}
	if d != want {
		t.Errorf("distribution %+v, want %+v", d, want)
	}
}

// TestLearn fits the learned scorecard to accounts whose churn follows the
// first measure: it must rank them by it and leave the missing values at the
// mean.
func TestLearn(t *testing.T) {
	var accts []account
	for i := range 200 {
		sub := float64(i % 100)
		other := math.NaN()
		if i%3 == 0 {
			other = float64(i % 7)
		}
		accts = append(accts, account{Positive: sub < 50 != (i%10 == 0), Score: score(0, 0, sub, other)})
	}
	accts = append(accts, account{Positive: true}) // unscored: left out
	l, err := learn(accts, 0.01)
	if err != nil {
		t.Fatal(err)
	}
	coef := l.coefficients()
	if len(coef) != 2 || coef[0].Measure != "m0" || !(coef[0].PerSD < -1) || math.Abs(coef[1].PerSD) > -coef[0].PerSD/2 {
		t.Errorf("coefficients %+v: want m0 strongly protective, m1 much weaker", coef)
	}
	rows := evaluate(accts, baselineNames{"d", "e"}, l.signal())
	if got := aucOf(t, rows, "learned scorecard", popScored); got < 0.8 {
		t.Errorf("learned AUC %v, want at least 0.8", got)
	}
	summary := measureSummaries(accts)
	if summary[1].WithData != 67 || summary[0].Distinct != 100 || summary[0].MaxRaw != 9.9 {
		t.Errorf("measure summaries %+v", summary)
	}
}

func TestInvoiceEvent(t *testing.T) {
	inv := retail.Invoice{No: "536365", Customer: "17850", Country: "United Kingdom", Time: time.Date(2010, 12, 1, 8, 26, 0, 0, time.UTC), Lines: 2, Items: 52, Amount: 163.64000001}
	b, err := json.Marshal(invoiceEvent(inv))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"track","messageId":"536365","userId":"c-17850","event":"Order Completed","timestamp":"2010-12-01T08:26:00Z",` +
		`"properties":{"country":"United Kingdom","currency":"GBP","items":52,"lines":2,"order_id":"536365","total":163.64},"context":{"groupId":"17850"}}`
	if string(b) != want {
		t.Errorf("event\n%s\nwant\n%s", b, want)
	}
}

// segmentServer is a Segment batch endpoint that answers 503 to the first
// request and records the batches it accepts.
type segmentServer struct {
	mu      sync.Mutex
	batches [][]sim.SegmentEvent
	calls   int
	reject  string // a message id to reject
}

func (s *segmentServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if user, _, ok := r.BasicAuth(); !ok || user != "wk" || r.URL.Path != "/v1/batch" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if s.calls == 1 {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var body struct {
		Batch []sim.SegmentEvent `json:"batch"`
	}
	b, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(b, &body); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	for i, ev := range body.Batch {
		if ev.MessageID == s.reject {
			fmt.Fprintf(w, `{"success":true,"errors":[{"index":%d,"messageId":%q,"field":"event","code":"invalid","reason":"bad"}]}`, i, ev.MessageID)
			return
		}
	}
	s.batches = append(s.batches, body.Batch)
	fmt.Fprint(w, `{"success":true}`)
}

func TestSegmentClient(t *testing.T) {
	srv := &segmentServer{}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	c := &segmentClient{url: ts.URL, writeKey: "wk", client: ts.Client(), concurrency: 1}
	events := make([]sim.SegmentEvent, 2*batchEvents+1)
	for i := range events {
		events[i] = sim.SegmentEvent{Type: "track", MessageID: fmt.Sprint(i), Event: "x"}
	}
	if err := c.send(context.Background(), events); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, b := range srv.batches {
		sizes = append(sizes, len(b))
	}
	if fmt.Sprint(sizes) != fmt.Sprint([]int{batchEvents, batchEvents, 1}) || srv.batches[2][0].MessageID != fmt.Sprint(2*batchEvents) {
		t.Errorf("batches of %v, want 500, 500, 1 in order", sizes)
	}
	if srv.calls != 4 || c.sent != len(events) {
		t.Errorf("%d calls, %d sent: want 4 (one retried), %d", srv.calls, c.sent, len(events))
	}

	srv.reject = "7"
	err := c.send(context.Background(), events[:10])
	if err == nil || !strings.Contains(err.Error(), "1 events rejected, first 7: event: bad") {
		t.Errorf("err = %v, want the rejection", err)
	}
	c.writeKey = "other"
	if err := c.send(context.Background(), events[:1]); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Errorf("err = %v, want HTTP 401", err)
	}
}

func TestSumCounters(t *testing.T) {
	const exposition = `# HELP lodestar_scoring_events_total Events applied.
# TYPE lodestar_scoring_events_total counter
lodestar_scoring_events_total{partition="0"} 5
lodestar_scoring_events_total{partition="1"} 7
# TYPE lodestar_ingest_events_accepted_total counter
lodestar_ingest_events_accepted_total 12
`
	got, err := sumCounters(strings.NewReader(exposition), metricApplied, metricAccepted, "absent_total")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[12 12 0]" {
		t.Errorf("counters %v, want [12 12 0]", got)
	}
}

// TestCSMOf: an account's CSM is stable, one of n, and every CSM gets some.
func TestCSMOf(t *testing.T) {
	seen := map[string]int{}
	for i := range 600 {
		id := fmt.Sprint(12346 + i)
		c := csmOf(id, 6)
		if c != csmOf(id, 6) {
			t.Fatalf("%s: CSM not stable", id)
		}
		seen[c]++
	}
	if len(seen) != 6 {
		t.Fatalf("CSMs %v, want csm-01..csm-06", seen)
	}
	for c, n := range seen {
		if c < "csm-01" || c > "csm-06" || n < 50 {
			t.Errorf("%s owns %d of 600 accounts", c, n)
		}
	}
}

// TestAlertsMarkdown: a data set's alert quality appears in the report.
func TestAlertsMarkdown(t *testing.T) {
	r := &report{DataSets: []*DataSet{{Name: "d", Alerts: &AlertQuality{
		Description: "how",
		Rows:        []AlertSet{{Set: "shipped", Rule: "all risk rules", Alerts: 12, AlertsPerCSMWeek: 1.5, Precision: 0.5, Recall: 0.25, Lift: 1.25, MedianLeadDays: 40}},
		After:       []string{"shipped: 3 open alerts"},
	}}}}
	out := string(r.markdown())
	for _, want := range []string{"### Alert rules on the outcomes\n\nhow\n", "| shipped | all risk rules | 12 | 1.50 | 0.50 | 0.25 | 1.25 | 40 |", "- shipped: 3 open alerts.\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
