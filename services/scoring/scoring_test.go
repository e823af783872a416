package scoring_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/pkg/cache"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	"github.com/lodestar-cs/lodestar/pkg/service"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/scoring"
)

// testPartitions is the tests' partition count: several, so that every
// test runs several partition pipelines, but fewer than the default 16,
// whose goroutines made the package's tests take 5x longer under -race.
const testPartitions = 4

// The crash test runs scoring in a child process so that it can be killed
// with SIGKILL: no final flush, no last snapshot.
const childEnv = "LODESTAR_TEST_SCORING_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	os.Exit(m.Run())
}

func runChild() int {
	nc, err := nats.Connect(os.Getenv("CHILD_NATS_URL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	js, _ := natsx.NewJetStream(nc)
	rc := testenv.RedisClient()
	svc, err := newService(js, cache.NewRedis(rc, cache.Config{KeyPrefix: os.Getenv("CHILD_PREFIX")}))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := svc.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func newService(js jetstream.JetStream, c scoring.Cache) (*scoring.Service, error) {
	cfg := scoring.DefaultConfig()
	cfg.FlushInterval = 20 * time.Millisecond
	cfg.IndexInterval = 50 * time.Millisecond
	cfg.SnapshotInterval = 100 * time.Millisecond
	// One member name for the child and the run after it: the restarted
	// replica takes the killed one's leases back without waiting them out.
	l := natsx.DefaultLimits()
	l.Member, l.Partitions = "scoring-test", testPartitions
	return scoring.New(cfg, scoring.Deps{
		JS:     js,
		Cache:  c,
		Limits: l,
		Deps:   service.Deps{Logger: slog.New(slog.DiscardHandler), MeterProvider: noop.NewMeterProvider()},
	})
}

// history is a deterministic product history: accounts of different fates
// over 60 days, ending two days ago (old enough that the live tick never
// moves the watermark, so both runs score at the same event time).
type history struct {
	accounts []*accountv1.Account
	batches  []*eventv1.EventBatch
}

func makeHistory(tenant string, accounts, batchSize int) history {
	r := rand.New(rand.NewPCG(42, 7))
	end := time.Now().Add(-48 * time.Hour).Truncate(time.Hour)
	start := end.Add(-60 * 24 * time.Hour)
	var h history
	var events []*eventv1.Event
	core := []string{"Report Created", "Opportunity Created", "Invoice Sent", "Workflow Run"}
	for i := range accounts {
		id := fmt.Sprintf("acct-%03d", i)
		seats := 5 + r.IntN(40)
		h.accounts = append(h.accounts, &accountv1.Account{
			TenantId: tenant, AccountId: id, Name: "Account " + strconv.Itoa(i),
			SeatsPurchased: int32(seats), Tier: accountv1.Tier_TIER_STANDARD,
			ContractStartTime: timestamppb.New(start.Add(-365 * 24 * time.Hour)),
			RenewalTime:       timestamppb.New(end.Add(200 * 24 * time.Hour)),
		})
		fate := i % 3 // 0 healthy, 1 declining, 2 silent after day 30
		for u := range seats {
			user := fmt.Sprintf("%s-u%d", id, u)
			events = append(events, &eventv1.Event{
				Type: eventv1.EventType_EVENT_TYPE_IDENTIFY, UserId: user, AccountId: id,
				EventTime: timestamppb.New(start),
			})
		}
		for day := range 60 {
			rate := 1.0
			switch {
			case fate == 1:
				rate = 1 - float64(day)/70
			case fate == 2 && day >= 30:
				rate = 0
			}
			for u := range seats {
				if r.Float64() > 0.6*rate {
					continue
				}
				events = append(events, &eventv1.Event{
					Type: eventv1.EventType_EVENT_TYPE_TRACK, UserId: fmt.Sprintf("%s-u%d", id, u), AccountId: id,
					Event:     core[r.IntN(len(core))],
					EventTime: timestamppb.New(start.Add(time.Duration(day)*24*time.Hour + time.Duration(r.IntN(86400))*time.Second)),
				})
			}
		}
	}
	sort.SliceStable(events, func(i, j int) bool {
		return events[i].GetEventTime().AsTime().Before(events[j].GetEventTime().AsTime())
	})
	for i, ev := range events {
		ev.TenantId, ev.MessageId = tenant, "m"+strconv.Itoa(i)
		if i%batchSize == 0 {
			h.batches = append(h.batches, &eventv1.EventBatch{})
		}
		b := h.batches[len(h.batches)-1]
		b.Events = append(b.Events, ev)
	}
	return h
}

func publishAccounts(t *testing.T, js jetstream.JetStream, accounts []*accountv1.Account) {
	t.Helper()
	var msgs []*nats.Msg
	for _, a := range accounts {
		b, _ := proto.Marshal(&accountv1.AccountChange{TenantId: a.GetTenantId(), Account: a})
		m := nats.NewMsg(natsx.AccountChangeSubject(a.GetTenantId(), a.GetAccountId(), testPartitions))
		m.Data = b
		msgs = append(msgs, m)
	}
	if err := natsx.PublishAll(context.Background(), js, msgs); err != nil {
		t.Fatal(err)
	}
}

// publishBatches publishes batches as ingest would: a message per
// partition of a batch, and watermark markers to every partition when a
// batch's latest event enters a new day.
func publishBatches(t *testing.T, js jetstream.JetStream, tenant string, batches []*eventv1.EventBatch) {
	t.Helper()
	var msgs []*nats.Msg
	var marked int64
	for _, b := range batches {
		// As ingest does: a message per partition, each account's events in
		// its own partition.
		parts := map[uint32]*eventv1.EventBatch{}
		for _, ev := range b.GetEvents() {
			p := natsx.Partition(tenant, ev.GetAccountId(), testPartitions)
			if parts[p] == nil {
				parts[p] = &eventv1.EventBatch{}
			}
			parts[p].Events = append(parts[p].Events, ev)
		}
		var latest time.Time
		for p, pb := range parts {
			data, _ := proto.Marshal(pb)
			m := nats.NewMsg(natsx.EventSubject(tenant, p))
			m.Data = data
			m.Header.Set(nats.MsgIdHdr, natsx.MsgID(tenant, pb.GetEvents()[0].GetMessageId()))
			msgs = append(msgs, m)
			for _, ev := range pb.GetEvents() {
				if at := ev.GetEventTime().AsTime(); at.After(latest) {
					latest = at
				}
			}
		}
		// Markers repeated within the duplicate window are dropped by their
		// message ids, as those of several ingest replicas are.
		if day := latest.Unix() / 86400; day > marked {
			marked = day
			msgs = append(msgs, natsx.WatermarkMsgs(tenant, latest, testPartitions)...)
		}
	}
	if err := natsx.PublishAll(context.Background(), js, msgs); err != nil {
		t.Fatal(err)
	}
}

func ensureStreams(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	l := natsx.DefaultLimits()
	if err := natsx.EnsureStreams(context.Background(), js, l.EventsStream(), l.AccountChangesStream(), l.ScoresStream()); err != nil {
		t.Fatal(err)
	}
}

// finalScores waits until the service is ready and every account's score
// is of the history's last day (each new day re-scores every account, so
// then every score reflects all events), and returns them.
func finalScores(t *testing.T, c *cache.Redis, tenant string, h history, ready func() bool) map[string]*scoringv1.HealthScore {
	t.Helper()
	ids := make([]string, len(h.accounts))
	for i, a := range h.accounts {
		ids[i] = a.GetAccountId()
	}
	last := h.batches[len(h.batches)-1].GetEvents()
	lastDay := last[len(last)-1].GetEventTime().AsTime().Truncate(24 * time.Hour)
	var have int
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		// Readiness first: once ready, the cache holds the scores of every
		// event, so what is read after it is final.
		isReady := ready()
		scores, err := c.GetScores(context.Background(), tenant, ids)
		if err != nil {
			t.Fatal(err)
		}
		cur := map[string]*scoringv1.HealthScore{}
		for _, s := range scores {
			if s != nil && s.GetScoreTime().AsTime().Truncate(24*time.Hour).Equal(lastDay) {
				cur[s.GetAccountId()] = s
			}
		}
		if have = len(cur); have == len(ids) && isReady {
			return cur
		}
	}
	t.Fatalf("within 60s only %d of %d accounts were scored on the last day, %v", have, len(ids), lastDay)
	return nil
}

// sameScores compares what the scores say about the accounts: value, band,
// day and each measure's raw value and sub-score. It returns the first
// difference.
func sameScores(a, b map[string]*scoringv1.HealthScore) string {
	if len(a) != len(b) {
		return fmt.Sprintf("%d scores vs %d", len(a), len(b))
	}
	for id, x := range a {
		y, ok := b[id]
		if !ok {
			return id + " missing"
		}
		// A score depends on its events and its watermark's day; within the day,
		// score_time says when a flush happened to compute it.
		day := func(s *scoringv1.HealthScore) time.Time { return s.GetScoreTime().AsTime().Truncate(24 * time.Hour) }
		if x.GetScore() != y.GetScore() || x.GetBand() != y.GetBand() || !day(x).Equal(day(y)) {
			return fmt.Sprintf("%s: %.4f %v @%v vs %.4f %v @%v", id, x.GetScore(), x.GetBand(), x.GetScoreTime().AsTime(), y.GetScore(), y.GetBand(), y.GetScoreTime().AsTime())
		}
		for i, m := range x.GetMeasures() {
			n := y.GetMeasures()[i]
			if m.GetRawValue() != n.GetRawValue() || m.GetSubScore() != n.GetSubScore() {
				return fmt.Sprintf("%s measure %s: %v/%v vs %v/%v", id, m.GetName(), m.GetRawValue(), m.GetSubScore(), n.GetRawValue(), n.GetSubScore())
			}
		}
	}
	return ""
}

// TestCrashAndReplay kills scoring with SIGKILL in the middle of the stream,
// restarts it, and checks that the final scores equal those of a run that
// was never interrupted: no event counted twice, none lost.
func TestCrashAndReplay(t *testing.T) {
	const accounts = 60
	tenant := testenv.Tenant(t)
	h := makeHistory(tenant, accounts, 50)
	rc := testenv.Redis(t)

	// The uninterrupted run, on its own NATS server and key prefix.
	_, ncA := testenv.NATS(t)
	jsA, _ := natsx.NewJetStream(ncA)
	ensureStreams(t, jsA)
	publishAccounts(t, jsA, h.accounts)
	publishBatches(t, jsA, tenant, h.batches)
	cacheA := cache.NewRedis(rc, cache.Config{KeyPrefix: "crashtest-a"})
	svcA, err := newService(jsA, cacheA)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	doneA := make(chan error, 1)
	go func() { doneA <- svcA.Run(ctx) }()
	want := finalScores(t, cacheA, tenant, h, svcA.Ready)
	cancel()
	if err := <-doneA; err != nil {
		t.Fatal(err)
	}

	// The interrupted run: a child process killed while events stream in.
	srvB, ncB := testenv.NATS(t)
	jsB, _ := natsx.NewJetStream(ncB)
	ensureStreams(t, jsB)
	publishAccounts(t, jsB, h.accounts)
	half := len(h.batches) / 2
	publishBatches(t, jsB, tenant, h.batches[:half])
	prefixB := "crashtest-b-" + tenant
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), childEnv+"=1", "CHILD_NATS_URL="+srvB.ClientURL(), "CHILD_PREFIX="+prefixB)
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once it has snapshotted part of the stream and is mid-way
	// through more.
	waitForSnapshot(t, jsB)
	publishBatches(t, jsB, tenant, h.batches[half:half+half/2])
	time.Sleep(30 * time.Millisecond)
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()

	publishBatches(t, jsB, tenant, h.batches[half+half/2:])

	cacheB := cache.NewRedis(rc, cache.Config{KeyPrefix: prefixB})
	svcB, err := newService(jsB, cacheB)
	if err != nil {
		t.Fatal(err)
	}
	ctxB, cancelB := context.WithCancel(context.Background())
	doneB := make(chan error, 1)
	go func() { doneB <- svcB.Run(ctxB) }()
	got := finalScores(t, cacheB, tenant, h, svcB.Ready)
	cancelB()
	if err := <-doneB; err != nil {
		t.Fatal(err)
	}
	if diff := sameScores(want, got); diff != "" {
		t.Fatalf("scores after crash and replay differ from the uninterrupted run: %s", diff)
	}
	// The fates must show, or the comparison proves little.
	if want["acct-000"].GetScore() <= want["acct-002"].GetScore() {
		t.Fatalf("healthy account scored %.1f, silent one %.1f", want["acct-000"].GetScore(), want["acct-002"].GetScore())
	}
}

func waitForSnapshot(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if obj, err := js.ObjectStore(ctx, "SCORING_SNAPSHOTS"); err == nil {
			if infos, err := obj.List(ctx); err == nil && len(infos) > 0 && infos[0].Size > 0 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the child saved no snapshot within 30s")
}
