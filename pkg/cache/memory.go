package cache

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/google/btree"
	"google.golang.org/protobuf/proto"

	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// Memory is the cache in process memory, with the same rankings, indexes
// and bounded history as Redis, for a single process (the all-in-one without
// Redis). It is safe for concurrent use; returned scores are copies.
type Memory struct {
	historyLength int

	mu      sync.RWMutex
	tenants map[string]*memTenant
}

// memTenant is one tenant's data. Stored scores are never modified, only
// replaced, so a reader may keep using one after unlocking.
type memTenant struct {
	scores   map[string]*scoringv1.HealthScore
	rankings map[string]*btree.BTreeG[cursor] // by ranking name; empty ones are dropped
	history  map[string][]change              // oldest first
}

// NewMemory returns an empty in-process cache.
func NewMemory(cfg Config) *Memory {
	return &Memory{historyLength: cfg.withDefaults().HistoryLength, tenants: map[string]*memTenant{}}
}

// PutScores stores current scores, each the latest of its account, and
// records those marked so in history. Putting the same updates again
// changes nothing.
func (m *Memory) PutScores(_ context.Context, updates []Update) error {
	return m.putAll("put scores", updates, true)
}

// SetScores stores current scores; Record is ignored. Rankings move with
// them at once: in memory that is as cheap as the store itself.
func (m *Memory) SetScores(_ context.Context, updates []Update) error {
	return m.putAll("set scores", updates, false)
}

func (m *Memory) putAll(op string, updates []Update, record bool) error {
	if err := validate(updates); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	for _, u := range updates {
		m.put(proto.Clone(u.Score).(*scoringv1.HealthScore), record && u.Record)
	}
	return nil
}

// IndexScores records the updates marked so in history. Rankings already
// follow the current scores (SetScores moves them), and an update indexed
// after a newer score was set must not move its account back.
func (m *Memory) IndexScores(_ context.Context, updates []Update) error {
	if err := validate(updates); err != nil {
		return fmt.Errorf("index scores: %w", err)
	}
	for _, u := range updates {
		if u.Record {
			m.record(proto.Clone(u.Score).(*scoringv1.HealthScore))
		}
	}
	return nil
}

// put stores one score, which the cache owns from now on. Locking per
// score, not per batch, keeps readers from waiting for a whole batch.
func (m *Memory) put(s *scoringv1.HealthScore, record bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tenant(s.GetTenantId())
	if old := t.scores[s.GetAccountId()]; old != nil {
		t.rank(old, false)
	}
	t.rank(s, true)
	t.scores[s.GetAccountId()] = s
	if record {
		t.record(s, m.historyLength)
	}
}

// record adds one change, which the cache owns from now on, to history.
func (m *Memory) record(s *scoringv1.HealthScore) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tenant(s.GetTenantId()).record(s, m.historyLength)
}

// tenant returns a tenant's data, made when missing; m.mu is held.
func (m *Memory) tenant(id string) *memTenant {
	t := m.tenants[id]
	if t == nil {
		t = &memTenant{
			scores:   map[string]*scoringv1.HealthScore{},
			rankings: map[string]*btree.BTreeG[cursor]{},
			history:  map[string][]change{},
		}
		m.tenants[id] = t
	}
	return t
}

// rank adds a score to, or removes it from, every ranking it belongs in.
func (t *memTenant) rank(s *scoringv1.HealthScore, add bool) {
	suffixes := make([]string, 1, 1+numDims) // "": the global ranking
	for _, x := range indexesOf(s) {
		if x.suffix != "" {
			suffixes = append(suffixes, x.suffix)
		}
	}
	for _, order := range [...]string{byScore, byDrop} {
		at := cursor{sortKey(order, s), s.GetAccountId()}
		for _, suffix := range suffixes {
			name := ranking(order, suffix)
			r := t.rankings[name]
			switch {
			case add:
				if r == nil {
					r = btree.NewG(btreeDegree, cursor.less)
					t.rankings[name] = r
				}
				r.ReplaceOrInsert(at)
			case r != nil:
				r.Delete(at)
				if r.Len() == 0 {
					// Owners and segments come and go; their indexes must too.
					delete(t.rankings, name)
				}
			}
		}
	}
}

// btreeDegree is the rankings' B-tree degree: wide nodes of small items keep
// the trees shallow.
const btreeDegree = 32

// record adds a change to its account's history, keeping the newest
// historyLength. A change already recorded, as a replay puts it again, is
// not added twice.
func (t *memTenant) record(s *scoringv1.HealthScore, historyLength int) {
	at, h := changeTime(s), t.history[s.GetAccountId()]
	i := sort.Search(len(h), func(i int) bool { return h[i].micros > at })
	for j := i - 1; j >= 0 && h[j].micros == at; j-- {
		if proto.Equal(h[j].score, s) {
			return
		}
	}
	h = slices.Insert(h, i, change{at, s})
	if len(h) > historyLength {
		h = slices.Delete(h, 0, len(h)-historyLength)
	}
	t.history[s.GetAccountId()] = h
}

// GetScore returns an account's score, or an error wrapping ErrNotFound.
func (m *Memory) GetScore(_ context.Context, tenant, accountID string) (*scoringv1.HealthScore, error) {
	m.mu.RLock()
	var s *scoringv1.HealthScore
	if t := m.tenants[tenant]; t != nil {
		s = t.scores[accountID]
	}
	m.mu.RUnlock()
	if s == nil {
		return nil, fmt.Errorf("get score of %q: %w", accountID, ErrNotFound)
	}
	return proto.Clone(s).(*scoringv1.HealthScore), nil
}

// GetScores returns the scores of accounts in their order, nil for those
// without one.
func (m *Memory) GetScores(_ context.Context, tenant string, accountIDs []string) ([]*scoringv1.HealthScore, error) {
	scores := make([]*scoringv1.HealthScore, len(accountIDs))
	m.mu.RLock()
	if t := m.tenants[tenant]; t != nil {
		for i, id := range accountIDs {
			scores[i] = t.scores[id]
		}
	}
	m.mu.RUnlock()
	return cloneAll(scores), nil
}

// ListScores returns a page of a tenant's scores; the package doc describes
// orders and page tokens. With no filter or one it walks one B-tree from the
// cursor: O(log N + page). With several it walks the smallest of their
// indexes and checks the rest on each score: up to that index's size.
func (m *Memory) ListScores(ctx context.Context, tenant string, q ListQuery) ([]*scoringv1.HealthScore, string, error) {
	scores, next, err := listScores(ctx, m, tenant, q)
	return cloneAll(scores), next, err
}

// BandCounts counts a tenant's accounts per band.
func (m *Memory) BandCounts(ctx context.Context, tenant string) (*scoringv1.BandCounts, error) {
	return bandCounts(ctx, m, tenant)
}

// History returns a page of an account's last Config.HistoryLength score
// changes, newest first; an account without history has an empty one.
func (m *Memory) History(ctx context.Context, tenant, accountID string, q HistoryQuery) ([]*scoringv1.HealthScore, string, error) {
	scores, next, err := scoreHistory(ctx, m, tenant, accountID, q)
	return cloneAll(scores), next, err
}

// Ping always succeeds: the cache is in process.
func (m *Memory) Ping(context.Context) error { return nil }

func (m *Memory) cards(_ context.Context, tenant string, rankings []string) ([]int64, error) {
	n := make([]int64, len(rankings))
	m.mu.RLock()
	defer m.mu.RUnlock()
	if t := m.tenants[tenant]; t != nil {
		for i, name := range rankings {
			if r := t.rankings[name]; r != nil {
				n[i] = int64(r.Len())
			}
		}
	}
	return n, nil
}

func (m *Memory) scan(_ context.Context, tenant, ranking string, after *cursor, rev bool, n int) ([]entry, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t := m.tenants[tenant]
	if t == nil || t.rankings[ranking] == nil {
		return nil, nil
	}
	var es []entry
	visit := func(at cursor) bool {
		if after != nil && at == *after {
			return true // the cursor's account itself was on the previous page
		}
		es = append(es, entry{at, t.scores[at.account]})
		return len(es) < n
	}
	switch r := t.rankings[ranking]; {
	case after == nil && !rev:
		r.Ascend(visit)
	case after == nil:
		r.Descend(visit)
	case !rev:
		r.AscendGreaterOrEqual(*after, visit)
	default:
		r.DescendLessOrEqual(*after, visit)
	}
	return es, nil
}

func (m *Memory) changes(_ context.Context, tenant, account string, hi, lo int64, offset, n int) ([]change, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t := m.tenants[tenant]
	if t == nil {
		return nil, nil
	}
	h := t.history[account]
	var cs []change
	for i := sort.Search(len(h), func(i int) bool { return h[i].micros > hi }) - 1; i >= 0 && h[i].micros >= lo && len(cs) < n; i-- {
		if offset > 0 {
			offset--
			continue
		}
		cs = append(cs, h[i])
	}
	return cs, nil
}
