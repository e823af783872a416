// Package history keeps what the renewal forecast knows of each tenant: the
// latest record of every account (with its recorded renewal outcomes) and
// every account's health score history in event time, at the resolution of
// one point per day.
//
// A score history is appended to while requests read it. Readers take a View
// under the store's read lock and then work without it: a Timeline's finished
// days are append-only and its current day is copied into the view, so no
// reader ever sees a point change.
//
// # Memory
//
// A point is 32 bytes; a year of daily scores is ~12 KB per account, ~120 MB
// for 10,000 accounts. Account records are the protos as published, shared by
// pointer and never modified.
package history

import (
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

const secondsPerDay = 86400

// Point is an account's health at one event time.
type Point struct {
	// Time is the score time, unix seconds of event time.
	Time  int64
	Score float32
	// Stakeholders is the STAKEHOLDER_ENGAGEMENT raw value (0-1), Seats the
	// ACTIVE_SEAT_RATIO one; NaN when the score had no such measure with data.
	Stakeholders float32
	Seats        float32
	Band         scoringv1.Band
	Stage        accountv1.LifecycleStage
}

// Day is the point's UTC day number.
func (p Point) Day() int64 { return p.Time / secondsPerDay }

// PointOf condenses a health score.
func PointOf(hs *scoringv1.HealthScore) Point {
	p := Point{
		Time:         hs.GetScoreTime().GetSeconds(),
		Score:        float32(hs.GetScore()),
		Band:         hs.GetBand(),
		Stage:        hs.GetLifecycleStage(),
		Stakeholders: float32(math.NaN()),
		Seats:        float32(math.NaN()),
	}
	for _, m := range hs.GetMeasures() {
		if !m.GetHasData() {
			continue
		}
		switch m.GetKind() {
		case scoringv1.MeasureKind_MEASURE_KIND_STAKEHOLDER_ENGAGEMENT:
			p.Stakeholders = float32(m.GetRawValue())
		case scoringv1.MeasureKind_MEASURE_KIND_ACTIVE_SEAT_RATIO:
			p.Seats = float32(m.GetRawValue())
		}
	}
	return p
}

// Timeline is one account's score history, one point per day: the last
// score of the day.
type Timeline struct {
	// days are finished days, oldest first: never modified in place.
	days []Point
	// cur is the latest day's point; has says whether there is one.
	cur Point
	has bool
}

// Add records a score. Scores normally arrive in time order; an older one
// (a republished change) replaces its day's point when it is that day's
// latest, at the cost of a copy.
func (t *Timeline) Add(p Point) {
	switch {
	case !t.has:
		t.cur, t.has = p, true
	case p.Day() == t.cur.Day():
		if p.Time >= t.cur.Time {
			t.cur = p
		}
	case p.Day() > t.cur.Day():
		t.days = append(t.days, t.cur)
		t.cur = p
	default:
		i, found := slices.BinarySearchFunc(t.days, p.Day(), func(q Point, d int64) int { return int(q.Day() - d) })
		if found && t.days[i].Time > p.Time {
			return
		}
		days := slices.Clone(t.days)
		if found {
			days[i] = p
		} else {
			days = slices.Insert(days, i, p)
		}
		t.days = days
	}
}

// View returns a read-only copy of the timeline, cheap to take.
func (t *Timeline) View() Scores {
	if !t.has {
		return Scores{}
	}
	return Scores{days: t.days[:len(t.days):len(t.days)], cur: t.cur, has: true}
}

// Scores is a read-only score history.
type Scores struct {
	days []Point
	cur  Point
	has  bool
}

// Len is the number of days with a score.
func (s Scores) Len() int {
	if !s.has {
		return 0
	}
	return len(s.days) + 1
}

// point returns the i-th point, oldest first.
func (s Scores) point(i int) Point {
	if i == len(s.days) {
		return s.cur
	}
	return s.days[i]
}

// Latest returns the newest point.
func (s Scores) Latest() (Point, bool) { return s.cur, s.has }

// At returns the score in force at t: the last one with a score time at or
// before t. Scores are published on change, so it stands until the next.
func (s Scores) At(t time.Time) (Point, bool) {
	sec := t.Unix()
	lo := sort.Search(s.Len(), func(i int) bool { return s.point(i).Time > sec })
	if lo == 0 {
		return Point{}, false
	}
	return s.point(lo - 1), true
}

// FirstRed returns the time of the first red score in (from, to]: the start
// of the account's warning before an outcome at to.
func (s Scores) FirstRed(from, to time.Time) (time.Time, bool) {
	for i := range s.Len() {
		p := s.point(i)
		if p.Time <= from.Unix() {
			continue
		}
		if p.Time > to.Unix() {
			break
		}
		if p.Band == scoringv1.Band_BAND_RED {
			return time.Unix(p.Time, 0).UTC(), true
		}
	}
	return time.Time{}, false
}

// Source is a set of score histories by account id.
type Source interface {
	Scores(accountID string) Scores
}

// Timelines is a mutable Source: a replay's score histories.
type Timelines map[string]*Timeline

// Add records a health score.
func (ts Timelines) Add(hs *scoringv1.HealthScore) {
	t, ok := ts[hs.GetAccountId()]
	if !ok {
		t = &Timeline{}
		ts[strings.Clone(hs.GetAccountId())] = t
	}
	t.Add(PointOf(hs))
}

// Scores implements Source.
func (ts Timelines) Scores(accountID string) Scores {
	if t, ok := ts[accountID]; ok {
		return t.View()
	}
	return Scores{}
}

// tenant is one tenant's state.
type tenant struct {
	accounts map[string]*accountv1.Account
	scores   Timelines
	// outcomes counts changes of recorded outcomes: one makes a fitted model stale.
	outcomes uint64
}

// Store is every tenant's state, safe for concurrent use.
type Store struct {
	mu      sync.RWMutex
	tenants map[string]*tenant
}

// NewStore returns an empty store.
func NewStore() *Store { return &Store{tenants: map[string]*tenant{}} }

func (s *Store) tenant(id string) *tenant {
	t, ok := s.tenants[id]
	if !ok {
		t = &tenant{accounts: map[string]*accountv1.Account{}, scores: Timelines{}}
		s.tenants[id] = t
	}
	return t
}

// PutAccount records an account's latest state. The store keeps acc: the
// caller must not modify it afterwards.
func (s *Store) PutAccount(tenantID string, acc *accountv1.Account) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenant(tenantID)
	old := t.accounts[acc.GetAccountId()]
	if !slices.EqualFunc(old.GetOutcomes(), acc.GetOutcomes(), func(a, b *accountv1.RenewalOutcome) bool { return proto.Equal(a, b) }) {
		t.outcomes++
	}
	t.accounts[acc.GetAccountId()] = acc
}

// AddScore records a health score change.
func (s *Store) AddScore(hs *scoringv1.HealthScore) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tenant(hs.GetTenantId()).scores.Add(hs)
}

// View is a consistent read-only picture of one tenant.
type View struct {
	// Accounts sorted by id.
	Accounts []*accountv1.Account
	scores   map[string]Scores
	// Outcomes changes whenever a recorded outcome does.
	Outcomes uint64
}

// Scores implements Source.
func (v *View) Scores(accountID string) Scores { return v.scores[accountID] }

// View returns tenantID's state now.
func (s *Store) View(tenantID string) *View {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v := &View{scores: map[string]Scores{}}
	t, ok := s.tenants[tenantID]
	if !ok {
		return v
	}
	v.Outcomes = t.outcomes
	v.Accounts = make([]*accountv1.Account, 0, len(t.accounts))
	for _, a := range t.accounts {
		v.Accounts = append(v.Accounts, a)
	}
	for id, tl := range t.scores {
		v.scores[id] = tl.View()
	}
	slices.SortFunc(v.Accounts, func(a, b *accountv1.Account) int { return strings.Compare(a.GetAccountId(), b.GetAccountId()) })
	return v
}

// Account returns an account of the view by id.
func (v *View) Account(id string) (*accountv1.Account, bool) {
	i, ok := slices.BinarySearchFunc(v.Accounts, id, func(a *accountv1.Account, id string) int { return strings.Compare(a.GetAccountId(), id) })
	if !ok {
		return nil, false
	}
	return v.Accounts[i], true
}
