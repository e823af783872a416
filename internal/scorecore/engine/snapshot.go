package engine

import (
	"bufio"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// snapshotFormat versions the snapshot encoding. Format 1 kept users in a map
// (account.Users); format 2 had no message ids (Seen), weekly counts, event
// uses or tenant scales (they start empty). Restore reads both.
const snapshotFormat = 3

// snapshot is the encoded form of an engine: the exported fields of its state.
type snapshot struct {
	Format     int
	WindowDays int32
	Stats      Stats
	// Tenants are sorted by id, their scorecards in wire form.
	Tenants []*tenant
	// Seen are the recent message ids of each tenant, for deduplication.
	Seen []seenSnapshot
}

// Snapshot writes the engine's whole state (aggregates, watermarks, last published
// scores, scorecards, CRM facts, pending work) so that Restore followed by the same
// further calls gives the same scores as an uninterrupted run. Take it right
// after Flush: the scores of days that ended since are not part of a snapshot.
func (e *Engine) Snapshot(w io.Writer) error {
	if len(e.closed) > 0 {
		return errors.New("snapshot engine: flush first: scores of ended days are pending")
	}
	s := snapshot{Format: snapshotFormat, WindowDays: e.window, Stats: e.stats, Seen: e.dedupe.snapshot()}
	for _, id := range e.order {
		s.Tenants = append(s.Tenants, e.tenants[id])
	}
	bw := bufio.NewWriter(w)
	if err := gob.NewEncoder(bw).Encode(&s); err != nil {
		return fmt.Errorf("snapshot engine: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("snapshot engine: %w", err)
	}
	return nil
}

// Restore replaces the engine's state with a snapshot. The engine must have the
// window the snapshot was taken with; its other limits apply from now on.
func (e *Engine) Restore(r io.Reader) error {
	var s snapshot
	if err := gob.NewDecoder(bufio.NewReader(r)).Decode(&s); err != nil {
		return fmt.Errorf("restore engine: %w", err)
	}
	if s.Format < 1 || s.Format > snapshotFormat {
		return fmt.Errorf("restore engine: snapshot format %d, want %d", s.Format, snapshotFormat)
	}
	if s.WindowDays != e.window {
		return fmt.Errorf("restore engine: snapshot window of %d days, engine window of %d", s.WindowDays, e.window)
	}
	tenants := map[string]*tenant{}
	var order []string
	for _, t := range s.Tenants {
		if err := e.rebuild(t); err != nil {
			return fmt.Errorf("restore engine: tenant %q: %w", t.ID, err)
		}
		tenants[t.ID] = t
		order = append(order, t.ID)
	}
	slices.Sort(order)
	if err := e.dedupe.restore(s.Seen); err != nil {
		return fmt.Errorf("restore engine: message ids: %w", err)
	}
	e.tenants, e.order, e.stats, e.last = tenants, order, s.Stats, nil
	return nil
}

// rebuild derives a decoded tenant's unexported state.
func (e *Engine) rebuild(t *tenant) error {
	sc := new(scoringv1.Scorecard)
	if err := proto.Unmarshal(t.Scorecard, sc); err != nil {
		return fmt.Errorf("decode scorecard: %w", err)
	}
	c, wire, err := compile(sc)
	if err != nil {
		return err
	}
	// Re-interning the names in order gives them their ids back.
	names, uses := t.Names, t.Uses
	t.Scorecard, t.sc = wire, c
	t.Names, t.Uses, t.nameIDs, t.info = nil, nil, map[string]uint32{}, nil
	for _, n := range names {
		t.intern(n)
	}
	if len(t.Names) != len(names) {
		return fmt.Errorf("duplicate event names in the snapshot")
	}
	if len(uses) == len(names) { // format 2 has none: counting starts now
		t.Uses = uses
	}
	if t.Accounts == nil {
		t.Accounts = map[string]*account{}
	}
	for id, a := range t.Accounts {
		if len(a.Users) > 0 {
			if a.UserTable.N > 0 {
				return fmt.Errorf("account %q has users in both snapshot formats", id)
			}
			for key, u := range a.Users {
				*a.UserTable.add(max(key, 1)) = u
			}
		}
		a.Users = nil
		if !a.UserTable.valid() {
			return fmt.Errorf("account %q has a malformed user table", id)
		}
		if len(a.Groups) != len(c.Groups) {
			return fmt.Errorf("account %q has %d event groups, its scorecard %d", id, len(a.Groups), len(c.Groups))
		}
		if a.Dirty {
			t.dirty = append(t.dirty, a)
			a.fresh = true
			t.fresh = append(t.fresh, a)
		}
	}
	slices.SortFunc(t.dirty, func(a, b *account) int { return strings.Compare(a.ID, b.ID) })
	return nil
}
