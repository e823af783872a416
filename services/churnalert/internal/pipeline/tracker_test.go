package pipeline

import (
	"slices"
	"testing"
	"time"
)

// TestTracker: the position passes only changes applied with all before
// them, and the lag counts what is not read plus what is read and not
// passed.
func TestTracker(t *testing.T) {
	tr := &tracker{done: map[uint64]bool{}}
	steps := []struct {
		op           string
		seq, pending uint64
		wantPos      uint64
		wantLag      int64
	}{
		{"dispatch", 10, 5, 0, 6},
		{"dispatch", 11, 4, 0, 6},
		{"dispatch", 12, 3, 0, 6},
		{"finish", 11, 0, 0, 6}, // 10 still open: the position stays
		{"finish", 10, 0, 11, 4},
		{"finish", 12, 0, 12, 3},
		{"dispatch", 13, 0, 12, 1},
		{"finish", 13, 0, 13, 0},
	}
	for i, s := range steps {
		if s.op == "dispatch" {
			tr.dispatched(s.seq, s.pending)
		} else {
			tr.finished(s.seq)
		}
		if pos, lag := tr.position(), tr.lag(); pos != s.wantPos || lag != s.wantLag {
			t.Fatalf("step %d (%s %d): position %d, lag %d; want %d, %d", i, s.op, s.seq, pos, lag, s.wantPos, s.wantLag)
		}
	}
}

// TestClockMovesInPositionOrder: a score change's time reaches the clock
// only once every change before it is applied, whatever order the workers
// applied them in.
func TestClockMovesInPositionOrder(t *testing.T) {
	var passed []int
	tr := &tracker{done: map[uint64]bool{}, passed: func(_ string, at time.Time) { passed = append(passed, at.Day()) }}
	day := func(d int) time.Time { return time.Date(2026, 11, d, 0, 0, 0, 0, time.UTC) }
	for seq := uint64(1); seq <= 3; seq++ {
		tr.dispatched(seq, 3-seq)
		tr.stamped(seq, "t", day(int(seq)))
	}
	tr.finished(3) // a fast worker's later change
	tr.finished(2)
	if len(passed) != 0 {
		t.Fatalf("clock moved to days %v while change 1 was still to apply", passed)
	}
	tr.finished(1)
	if !slices.Equal(passed, []int{1, 2, 3}) {
		t.Fatalf("clock moved to days %v, want [1 2 3]", passed)
	}
}
