package churnalert_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// backgroundRate is the steady load of score changes that raise nothing.
const backgroundRate = 200 // per second

// BenchmarkScoreToWebhook measures event-to-alert latency: from a score
// change published on SCORES (as scoring publishes it) to the signed webhook
// delivery of the alert it raises arriving at a local HTTP receiver, while a
// steady stream of other score changes keeps the service busy. It reports
// the p50 and p99 in milliseconds.
//
//	go test -run '^$' -bench ScoreToWebhook -benchtime 400x ./services/churnalert/
func BenchmarkScoreToWebhook(b *testing.B) {
	tenant := testenv.Tenant(b)
	e := newEnv(b, testConfig(), tenant)
	rcv, _ := e.webhook(tenant, "hook", nil)

	// The steady load: healthy accounts moving a little, all the time.
	ctx, stop := context.WithCancel(context.Background())
	var load sync.WaitGroup
	load.Go(func() {
		tick := time.NewTicker(time.Second / backgroundRate)
		defer tick.Stop()
		for i := 0; ctx.Err() == nil; i++ {
			<-tick.C
			publish(b, e.js, tenant, scored(fmt.Sprintf("calm-%04d", i%2000), time.Now(), 80+float64(i%7)))
		}
	})
	b.Cleanup(func() { stop(); load.Wait() })
	time.Sleep(time.Second) // let the load settle in

	sent := make(map[string]time.Time, b.N)
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprintf("hot-%06d", i)
		sent[id] = time.Now()
		publish(b, e.js, tenant, scored(id, time.Now(), 30))
		time.Sleep(10 * time.Millisecond) // a steady pace, not a burst
	}
	reqs := rcv.Wait(b, b.N, 60*time.Second)
	b.StopTimer()

	lat := make([]float64, 0, b.N)
	for _, r := range reqs {
		var d alertv1.Delivery
		if err := protojson.Unmarshal(r.Body, &d); err != nil {
			b.Fatal(err)
		}
		if at, ok := sent[d.GetEvent().GetAlert().GetAccountId()]; ok {
			lat = append(lat, float64(r.At.Sub(at).Microseconds())/1000)
		}
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(backgroundRate, "background-changes/s")
	b.ReportMetric(0, "ns/op") // per-iteration time is the pacing, not a result
}

// BenchmarkApplyThroughput measures how fast churn-alert applies a burst of
// score changes: b.N changes spread over up to 2,000 accounts (with three
// measures each; one account in ten red, so alerts open and outboxes are published) are published to SCORES
// as fast as JetStream takes them, and the clock runs until the stored
// SCORES position reaches the last one. It reports changes applied per
// second.
//
//	go test -run '^$' -bench ApplyThroughput -benchtime 10000x -count 3 ./services/churnalert/
func BenchmarkApplyThroughput(b *testing.B) {
	const accounts = 2000
	tenant := testenv.Tenant(b)
	e := newEnv(b, testConfig(), tenant)
	at := time.Now()
	b.ResetTimer()
	var batch []step
	for i := range b.N {
		score := 80 + float64(i%7)
		if i%accounts%10 == 0 {
			score = 30 - float64(i/accounts%3)
		}
		batch = append(batch, scored(fmt.Sprintf("burst-%05d", i%accounts), at.Add(time.Duration(i)*time.Millisecond), score,
			measure(scoringv1.MeasureKind_MEASURE_KIND_ACTIVE_SEAT_RATIO, float64(i%40)),
			measure(scoringv1.MeasureKind_MEASURE_KIND_SUPPORT_LOAD, float64(i%5)),
			measure(scoringv1.MeasureKind_MEASURE_KIND_SURVEY, float64(i%11))))
		if len(batch) == 500 || i == b.N-1 {
			publish(b, e.js, tenant, batch...)
			batch = batch[:0]
		}
	}
	start := time.Now()
	ctx := context.Background()
	for behind(ctx, e.js, natsx.StreamScores) != "" {
		if time.Since(start) > 10*time.Minute {
			b.Fatalf("not applied after 10m: %s", behind(ctx, e.js, natsx.StreamScores))
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "changes/s")
}
