package churnalert_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/internal/testenv/receivers"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/channel"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/streams"
)

// The restart test runs the service in a child process so that it can be
// killed with SIGKILL: no drain, no acknowledgement of what is in hand.
const childEnv = "LODESTAR_TEST_CHURNALERT_CHILD"

func TestMain(m *testing.M) {
	if url := os.Getenv(childEnv); url != "" {
		os.Exit(runChild(url))
	}
	os.Exit(m.Run())
}

func runChild(url string) int {
	nc, err := nats.Connect(url)
	if err == nil {
		var js jetstream.JetStream
		if js, err = natsx.NewJetStream(nc); err == nil {
			var svc *churnalert.Service
			if svc, err = churnalert.New(testConfig(), churnalert.Deps{JS: js, Limits: testLimits()}); err == nil {
				err = svc.Run(context.Background())
			}
		}
	}
	fmt.Fprintln(os.Stderr, "child:", err)
	return 1
}

// restartHistory is a workload with every kind of account: declining ones
// (red band and score drop), flapping ones, and healthy ones, eight score
// changes each, a second apart and recent: a live tenant, paged.
func restartHistory(accounts int) [][]step {
	start := time.Now().Add(-8 * time.Second)
	profiles := [][]float64{
		{80, 75, 65, 55, 45, 35, 30, 28},
		{60, 38, 45, 37, 44, 36, 43, 35},
		{90, 88, 86, 85, 84, 83, 85, 86},
	}
	rounds := make([][]step, 8)
	for h := range rounds {
		for i := range accounts {
			rounds[h] = append(rounds[h], scored(fmt.Sprintf("acct-%03d", i), start.Add(time.Duration(h)*time.Second), profiles[i%3][h]))
		}
	}
	return rounds
}

// outcome is what a run delivered and recorded.
type outcome struct {
	deliveries []string // delivery ids as received, repeats included
	events     []string // alert id, version and type of every ALERTS event
}

func collect(t *testing.T, e *env, rcv *receivers.HTTP) outcome {
	t.Helper()
	var o outcome
	for _, r := range rcv.Requests() {
		o.deliveries = append(o.deliveries, r.Header.Get(channel.HeaderDeliveryID))
	}
	cons, err := e.js.OrderedConsumer(context.Background(), streams.Alerts, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if err != nil {
			break
		}
		var ev alertv1.AlertEvent
		if err := proto.Unmarshal(m.Data(), &ev); err != nil {
			t.Fatal(err)
		}
		o.events = append(o.events, fmt.Sprintf("%s/%d/%s", ev.GetAlert().GetAlertId(), ev.GetAlert().GetVersion(), ev.GetType()))
	}
	slices.Sort(o.events)
	return o
}

// setUp gives a fresh environment the tenant's webhook channel.
func setUp(t *testing.T, tenant string) (*env, *receivers.HTTP) {
	e := newEnv(t, testConfig(), tenant)
	rcv, _ := e.webhook(tenant, "hook", nil)
	return e, rcv
}

// TestRestart kills the service with SIGKILL in the middle of the stream,
// then stops its successor gracefully in the middle of more, and checks that
// the alerts and deliveries are exactly those of a run never interrupted:
// none lost, none repeated.
func TestRestart(t *testing.T) {
	const accounts = 60
	tenant := testenv.Tenant(t)
	rounds := restartHistory(accounts)

	// The uninterrupted run.
	ref, refRcv := setUp(t, tenant)
	for _, r := range rounds {
		publish(t, ref.js, tenant, r...)
	}
	settle(t, ref.js)
	ref.drained()
	want := collect(t, ref, refRcv)
	ref.stop()
	if len(want.deliveries) < accounts || len(want.events) < accounts {
		t.Fatalf("the workload raised too little to prove anything: %d deliveries, %d events", len(want.deliveries), len(want.events))
	}

	// The interrupted run: the API set it up, then a child process takes over.
	e, rcv := setUp(t, tenant)
	e.stop()
	publish(t, e.js, tenant, slices.Concat(rounds[:3]...)...)
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), childEnv+"="+e.url)
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	rcv.Wait(t, 10, 30*time.Second)
	publish(t, e.js, tenant, slices.Concat(rounds[3:5]...)...)
	time.Sleep(20 * time.Millisecond) // mid-way through them
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	killedAt := len(rcv.Requests())

	// Its successor is stopped gracefully while more arrive.
	e.start()
	publish(t, e.js, tenant, rounds[5]...)
	time.Sleep(20 * time.Millisecond)
	e.stop()
	publish(t, e.js, tenant, slices.Concat(rounds[6:]...)...)
	e.start()
	settle(t, e.js)
	e.drained()
	got := collect(t, e, rcv)
	t.Logf("%d deliveries, %d alert events; %d delivered before the kill", len(got.deliveries), len(got.events), killedAt)

	if !slices.Equal(got.events, want.events) {
		t.Errorf("ALERTS differs from the uninterrupted run:\n got %d events\nwant %d events\nmissing %v\nextra %v",
			len(got.events), len(want.events), diff(want.events, got.events), diff(got.events, want.events))
	}
	unique := slices.Clone(got.deliveries)
	slices.Sort(unique)
	unique = slices.Compact(unique)
	wantDeliveries := slices.Clone(want.deliveries)
	slices.Sort(wantDeliveries)
	if !slices.Equal(unique, wantDeliveries) {
		t.Errorf("deliveries differ from the uninterrupted run: missing %v, extra %v", diff(wantDeliveries, unique), diff(unique, wantDeliveries))
	}
	// A delivery can repeat only if the kill fell between an endpoint's
	// answer and the write of its outcome: at most one per delivery worker,
	// and with the same delivery id, which receivers deduplicate.
	if repeats := len(got.deliveries) - len(unique); repeats > 0 {
		t.Logf("%d deliveries repeated under the same delivery id (killed between send and record)", repeats)
		if repeats > testConfig().DeliveryWorkers {
			t.Errorf("%d repeats, more than the %d sends that can be in flight", repeats, testConfig().DeliveryWorkers)
		}
	}
}

// diff lists what a has and b lacks; both sorted.
func diff(a, b []string) []string {
	var out []string
	for _, x := range a {
		if _, found := slices.BinarySearch(b, x); !found {
			out = append(out, x)
		}
	}
	return out
}
