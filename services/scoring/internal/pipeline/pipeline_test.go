package pipeline

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/internal/scorecore/engine"
	"github.com/lodestar-cs/lodestar/internal/scorecore/scorecard"
	"github.com/lodestar-cs/lodestar/pkg/cache"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

func TestBatchKeepsRecordedAndLatest(t *testing.T) {
	u := func(tenant, account string, score float64, record bool) cache.Update {
		return cache.Update{Score: &scoringv1.HealthScore{TenantId: tenant, AccountId: account, Score: score}, Record: record}
	}
	var b batch
	b.add(u("t", "a", 1, false), u("t", "b", 1, true), u("u", "a", 1, false))
	b.add(u("t", "a", 2, false), u("t", "b", 2, false), u("t", "b", 3, false))
	b.add(u("t", "a", 4, true), u("t", "a", 5, false))
	type got struct {
		tenant, account string
		score           float64
		record          bool
	}
	want := []got{
		{"t", "a", 4, true}, // replaced the unrecorded 1 and 2 in their place
		{"t", "b", 1, true},
		{"u", "a", 1, false},
		{"t", "b", 3, false}, // after b's recorded 1, replacing 2
		{"t", "a", 5, false}, // after a's recorded 4
	}
	if len(b.updates) != len(want) {
		t.Fatalf("batch holds %d updates, want %d: %v", len(b.updates), len(want), b.updates)
	}
	for i, w := range want {
		s := b.updates[i]
		if g := (got{s.Score.GetTenantId(), s.Score.GetAccountId(), s.Score.GetScore(), s.Record}); g != w {
			t.Errorf("update %d = %+v, want %+v", i, g, w)
		}
	}
	b.reset()
	if b.add(u("t", "a", 6, false)); len(b.updates) != 1 || b.updates[0].Score.GetScore() != 6 {
		t.Fatalf("after reset: %v", b.updates)
	}
}

// TestChangesInScoreTimeOrder: a flush covering several days publishes its
// changes in score time order, although an account's last-day change takes
// the place of its unrecorded first-day update in the batch.
func TestChangesInScoreTimeOrder(t *testing.T) {
	day := func(d int) *timestamppb.Timestamp {
		return timestamppb.New(time.Date(2026, 11, d, 23, 59, 0, 0, time.UTC))
	}
	u := func(account string, d int, record bool) cache.Update {
		return cache.Update{Score: &scoringv1.HealthScore{TenantId: "t", AccountId: account, Score: float64(d), ScoreTime: day(d)}, Record: record}
	}
	var b batch
	b.add(u("a", 1, false), u("b", 1, true)) // day 1 closes
	b.add(u("a", 2, true), u("b", 2, true))  // day 2 closes: a's change takes a's first place
	b.add(u("c", 3, true), u("a", 3, true))  // day 3, current
	msgs, err := changeMessages(b.updates, 7, 16)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range msgs {
		got = append(got, m.Subject[len(m.Subject)-1:]+m.Header.Get(natsx.EpochHeader))
	}
	if want := []string{"b7", "a7", "b7", "c7", "a7"}; !slices.Equal(got, want) {
		t.Fatalf("changes published as %v, want %v (accounts, epoch)", got, want)
	}
	var prev time.Time
	for _, m := range msgs {
		var ev scoringv1.ScoreChangeEvent
		if err := proto.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		if at := ev.GetScore().GetScoreTime().AsTime(); at.Before(prev) {
			t.Fatalf("%s at %s after a change at %s", m.Subject, at, prev)
		} else {
			prev = at
		}
	}
}

// flakyStore is the in-process cache with an index step that fails on
// demand, as Redis does when it is away.
type flakyStore struct {
	*cache.Memory
	fail bool
}

func (s *flakyStore) IndexScores(ctx context.Context, updates []cache.Update) error {
	if s.fail {
		return errors.New("index: connection refused")
	}
	return s.Memory.IndexScores(ctx, updates)
}

// TestIndexRetriesWhatFailed checks that updates whose index step failed are
// indexed on the next one, before and together with those that came
// meanwhile, and that readiness follows.
func TestIndexRetriesWhatFailed(t *testing.T) {
	store := &flakyStore{Memory: cache.NewMemory(cache.Config{}), fail: true}
	p := New(Config{}, Deps{Store: store, Meter: noop.NewMeterProvider().Meter("test")})
	change := func(minute int, score float64) cache.Update {
		return cache.Update{Record: true, Score: &scoringv1.HealthScore{
			TenantId: "t", AccountId: "a", Score: score,
			ScoreTime: timestamppb.New(time.Date(2026, 3, 1, 12, minute, 0, 0, time.UTC)),
		}}
	}
	ctx := t.Context()
	p.ix.add(change(1, 10))
	if err := p.index(ctx); err == nil {
		t.Fatal("index with the store down succeeded")
	}
	if p.indexHealthy.Load() {
		t.Error("index step healthy after a failure")
	}
	p.ix.add(change(2, 20)) // handed over while the store was down
	store.fail = false
	if err := p.index(ctx); err != nil {
		t.Fatal(err)
	}
	if !p.indexHealthy.Load() {
		t.Error("index step unhealthy after a success")
	}
	h, _, err := store.History(ctx, "t", "a", cache.HistoryQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var got []float64
	for _, s := range h {
		got = append(got, s.GetScore())
	}
	if !slices.Equal(got, []float64{20, 10}) {
		t.Fatalf("history = %v, want [20 10]", got)
	}
	if len(p.ix.updates) != 0 {
		t.Fatalf("%d updates left after a successful index step", len(p.ix.updates))
	}
}

// TestReadyOnlyOnceCaughtUpScoresAreSet is the cause of TestCrashAndReplay's
// intermittent failure: readiness turned true as soon as the last replayed
// event was applied to the engine, before the flush that set its scores, so
// a reader trusting readiness could read a score that missed the last events.
func TestReadyOnlyOnceCaughtUpScoresAreSet(t *testing.T) {
	sc, err := scorecard.Default()
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(engine.Config{Scorecard: sc})
	if err != nil {
		t.Fatal(err)
	}
	store := cache.NewMemory(cache.Config{})
	p := New(Config{}, Deps{Engine: eng, Store: store, Meter: noop.NewMeterProvider().Meter("test")})
	day := time.Now().Add(-48 * time.Hour)
	eng.Apply(&eventv1.Event{TenantId: "t", AccountId: "a", UserId: "u", MessageId: "m1",
		Type: eventv1.EventType_EVENT_TYPE_TRACK, Event: "Report Created", EventTime: timestamppb.New(day)}, time.Now())
	// The backlog is applied: what the consumers report on the last message.
	p.scorecardsLoaded.Store(true)
	p.accountsCaughtUp.Store(true)
	p.eventsCaughtUp.Store(true)
	if p.Ready() {
		t.Fatal("ready before the caught-up scores were set in the cache")
	}
	if err := p.flush(t.Context(), false); err != nil {
		t.Fatal(err)
	}
	if !p.Ready() {
		t.Fatal("not ready after the caught-up scores were set")
	}
	if s, err := store.GetScores(t.Context(), "t", []string{"a"}); err != nil || s[0] == nil {
		t.Fatalf("ready, but the score is not in the cache: %v %v", s, err)
	}
}
