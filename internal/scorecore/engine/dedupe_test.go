package engine

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
)

// sameChanges fails the test when two engines' flushes differ.
func sameChanges(t *testing.T, day int, a, b *Engine) {
	t.Helper()
	if want, got := changes(a.Flush()), changes(b.Flush()); !bytes.Equal(wire(t, want...), wire(t, got...)) {
		t.Fatalf("day %d: %d changes vs %d: the scores differ", day, len(want), len(got))
	}
}

// carriesOn restores s, a snapshot of the scenario's first 45 days, and
// checks that the restored engine scores the other days as one that never
// stopped.
func carriesOn(t *testing.T, s snapshot) {
	t.Helper()
	whole := scenarioEngine(t)
	run(whole, 0, 45)
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&s); err != nil {
		t.Fatal(err)
	}
	restored := newEngine(t, Config{})
	if err := restored.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	for d := 45; d < scenarioDays; d++ {
		for _, ev := range scenarioEvents(d) {
			whole.Apply(ev, replayWall)
			restored.Apply(ev, replayWall)
		}
		sameChanges(t, d, whole, restored)
	}
}

// TestDuplicatesCountOnce sends every event of the scenario three times: in
// its batch, again in the same order (a retry) and again in reverse (the
// same events re-batched differently), and checks that the scores equal
// those of the events sent once (issue 13, item 4).
func TestDuplicatesCountOnce(t *testing.T) {
	once, thrice := scenarioEngine(t), scenarioEngine(t)
	sent := 0
	for d := range scenarioDays {
		evs := scenarioEvents(d)
		sent += len(evs)
		for _, ev := range evs {
			once.Apply(ev, replayWall)
			thrice.Apply(ev, replayWall)
		}
		for _, ev := range evs {
			thrice.Apply(proto.CloneOf(ev), replayWall)
		}
		for _, ev := range slices.Backward(evs) {
			thrice.Apply(ev, replayWall)
		}
		sameChanges(t, d, once, thrice)
	}
	if got := thrice.Stats().Duplicates; got != uint64(2*sent) {
		t.Errorf("%d duplicates counted, want %d", got, 2*sent)
	}
}

// TestDuplicatesAcrossRestart retries the events of the day before a
// snapshot after the engine restored it: they still count once.
func TestDuplicatesAcrossRestart(t *testing.T) {
	whole := scenarioEngine(t)
	run(whole, 0, 45)
	var buf bytes.Buffer
	if err := whole.Snapshot(&buf); err != nil {
		t.Fatal(err)
	}
	restored := newEngine(t, Config{})
	if err := restored.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	for _, ev := range scenarioEvents(44) { // a client's retry after the restart
		restored.Apply(ev, replayWall)
	}
	for d := 45; d < scenarioDays; d++ {
		for _, ev := range scenarioEvents(d) {
			whole.Apply(ev, replayWall)
			restored.Apply(ev, replayWall)
		}
		sameChanges(t, d, whole, restored)
	}
}

// TestDedupeWindow checks the window in receive time: a retry within 24
// hours counts once, one more than 25 hours later counts again.
func TestDedupeWindow(t *testing.T) {
	e := newEngine(t, Config{})
	first := time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)
	ev := func(id string, received time.Time) *eventv1.Event {
		return &eventv1.Event{TenantId: "t", MessageId: id, ReceivedTime: timestamppb.New(received)}
	}
	for _, tc := range []struct {
		id    string
		after time.Duration
		dup   bool
	}{
		{"a", 0, false},
		{"a", 0, true},
		{"b", 0, false},
		{"a", 130 * time.Second, true}, // past JetStream's duplicate window
		{"a", 23*time.Hour + 59*time.Minute, true},
		{"b", 25*time.Hour + time.Minute, false}, // a's and b's hour left the window
		{"a", 25*time.Hour + time.Minute, false},
		{"a", 26 * time.Hour, true},
	} {
		if got := e.dedupe.duplicate(ev(tc.id, first.Add(tc.after))); got != tc.dup {
			t.Errorf("%s at +%v: duplicate %v, want %v", tc.id, tc.after, got, tc.dup)
		}
	}
	// Tenants have their own ids, and events without an id are never duplicates.
	if e.dedupe.duplicate(&eventv1.Event{TenantId: "u", MessageId: "a", ReceivedTime: timestamppb.New(first)}) {
		t.Error("another tenant's id counted as a duplicate")
	}
	for range 2 {
		if e.dedupe.duplicate(&eventv1.Event{TenantId: "t", ReceivedTime: timestamppb.New(first)}) {
			t.Error("an event without a message id counted as a duplicate")
		}
	}
}

// TestDedupeBound checks that a tenant's ids stay within DedupeMaxIDs,
// dropping the oldest hour first.
func TestDedupeBound(t *testing.T) {
	e := newEngine(t, Config{DedupeMaxIDs: 1000})
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	ev := func(i int) *eventv1.Event {
		return &eventv1.Event{TenantId: "t", MessageId: fmt.Sprint("m", i),
			ReceivedTime: timestamppb.New(start.Add(time.Duration(i) * 3 * time.Second))} // 1200 an hour
	}
	for i := range 5000 {
		if e.dedupe.duplicate(ev(i)) {
			t.Fatalf("id %d counted as a duplicate", i)
		}
		if n := len(e.dedupe.seen["t"].ids); n > 1000 {
			t.Fatalf("%d ids kept, over the bound of 1000", n)
		}
	}
	if !e.dedupe.duplicate(ev(4999)) || !e.dedupe.duplicate(ev(4900)) {
		t.Error("the latest ids were dropped")
	}
	if e.dedupe.duplicate(ev(0)) {
		t.Error("the oldest id is still kept")
	}
}

// TestRestoreFormat2 restores a snapshot of format 2, without message ids:
// scoring carries on, deduplicating from then on.
func TestRestoreFormat2(t *testing.T) {
	old := scenarioEngine(t)
	run(old, 0, 45)
	s := snapshot{Format: 2, WindowDays: old.window, Stats: old.stats}
	for _, id := range old.order {
		s.Tenants = append(s.Tenants, old.tenants[id])
	}
	carriesOn(t, s)
}

// BenchmarkDedupeMemory measures the heap a tenant's million message ids
// take.
func BenchmarkDedupeMemory(b *testing.B) {
	const n = 1 << 20
	at := timestamppb.New(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	evs := make([]*eventv1.Event, n)
	for i := range evs {
		evs[i] = &eventv1.Event{TenantId: "t", MessageId: fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i), ReceivedTime: at}
	}
	b.ResetTimer()
	var perID float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		d, _ := newDedupe(0, n+1)
		for _, ev := range evs {
			d.duplicate(ev)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perID = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(d)
	}
	b.ReportMetric(perID, "bytes/id")
}

// BenchmarkDedupe measures checking and remembering a new id with a
// million ids kept, as in a busy tenant's steady state.
func BenchmarkDedupe(b *testing.B) {
	const n = 1 << 20
	d, _ := newDedupe(0, n)
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	ev := &eventv1.Event{TenantId: "t"}
	i := 0
	for b.Loop() {
		ev.MessageId = fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
		ev.ReceivedTime = timestamppb.New(at.Add(time.Duration(i) * 100 * time.Millisecond)) // 36,000 an hour
		d.duplicate(ev)
		i++
	}
}
