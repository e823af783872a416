package pipeline

import "testing"

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
