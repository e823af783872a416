package engine

import (
	"cmp"
	"maps"
	"slices"
	"strings"

	"github.com/lodestar-cs/lodestar/internal/scorecore/scorecard"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// The state types below follow one rule: exported fields are the snapshot (gob encodes
// them), unexported fields are derived and rebuilt by Restore.

const secondsPerDay = 86400

// dayOf numbers UTC days from 1970-01-01; day 0 stands for never, and Apply ignores
// events on it.
func dayOf(sec int64) int32 { return int32(sec / secondsPerDay) }

// Bounds of the small per-account and per-tenant tables.
const (
	maxTickets    = 64   // open and recently closed tickets
	maxBilling    = 16   // billing signals
	maxSurveyDays = 32   // days with NPS answers
	historyDays   = 8    // daily score maxima, for drop_7d
	maxNames      = 4096 // interned event names per tenant
)

const (
	// noName is the name id of events beyond maxNames.
	noName = ^uint32(0)
	// preRenewalDays before the renewal date an account is pre-renewal.
	preRenewalDays = 120
	// dropWindowDays is the span of drop_7d.
	dropWindowDays = 7
)

// tenant is the state of one tenant.
type tenant struct {
	ID string
	// Scorecard is the wire form of the tenant's scorecard.
	Scorecard []byte
	// Generation counts scorecard changes: a score under another generation than
	// the account's last published one is marked scorecard_changed.
	Generation uint32
	// Names are the interned event names, by id.
	Names []string
	// Watermark is the latest event time seen (unix seconds), never past the wall
	// clock; 0 before the first event.
	Watermark int64
	Accounts  map[string]*account
	// Uses counts each interned name's track events, by name id: which
	// events a tenant's customers use most, for scores that say what core use
	// was read as when the scorecard names no core events.
	Uses []uint64
	// Scales are the tenant's scales of the scorecard's measures (by index in
	// Compiled.Measures) for the watermark's day, taken from every account at
	// the end of the day before.
	Scales []scorecard.Scale
	// CoreNote says what counts as core use when the scorecard names no core
	// events, with the most used events; set with the scales.
	CoreNote string

	sc      *scorecard.Compiled
	nameIDs map[string]uint32
	info    []nameInfo // by name id
	// dirty are the accounts due for a recorded score: changed since their
	// last one, or every account once a day ends.
	dirty []*account
	// fresh are the dirty accounts whose current score is not yet
	// reported: a replaying tenant's Flush reports them without recording.
	fresh []*account
	// live says the watermark was within LiveLag of the wall clock when
	// the engine was last given the time: the tenant's events happen now.
	live bool
}

// nameInfo is what the compiled scorecard says about one event name.
type nameInfo struct {
	groups  uint64
	active  bool
	special special
}

// special marks the event names of the conventions that carry a signal.
type special uint8

const (
	specialNone special = iota
	specialNPS
	specialTicketOpened
	specialTicketClosed
	specialBilling
)

func (t *tenant) wmDay() int32 { return dayOf(t.Watermark) }

// lookup interns an event name; names beyond maxNames get noName and the info the
// scorecard gives them (the scorecard's own names are interned first, so they never
// overflow).
func (t *tenant) lookup(name string) (uint32, nameInfo) {
	if id, ok := t.nameIDs[name]; ok {
		return id, t.info[id]
	}
	if len(t.Names) >= maxNames {
		return noName, t.describe(name)
	}
	return t.intern(name), t.info[len(t.info)-1]
}

func (t *tenant) intern(name string) uint32 {
	if id, ok := t.nameIDs[name]; ok {
		return id
	}
	name = strings.Clone(name) // the event's strings may share its buffer
	id := uint32(len(t.Names))
	t.Names = append(t.Names, name)
	t.Uses = append(t.Uses, 0)
	t.nameIDs[name] = id
	t.info = append(t.info, t.describe(name))
	return id
}

func (t *tenant) describe(name string) nameInfo {
	info := nameInfo{groups: t.sc.EventGroups[name], active: t.sc.ActiveEvents[name]}
	switch {
	case name == scorecard.EventNPSSubmitted:
		info.special = specialNPS
	case name == scorecard.EventTicketOpened:
		info.special = specialTicketOpened
	case name == scorecard.EventTicketClosed:
		info.special = specialTicketClosed
	case name == scorecard.EventPaymentSucceeded, name == scorecard.EventPaymentFailed, t.sc.BillingEvents[name]:
		info.special = specialBilling
	}
	return info
}

// setScorecard installs a compiled scorecard: names are described anew and every
// account's groups are carried over by event set, so history survives a change
// wherever the new scorecard tracks the same events.
func (t *tenant) setScorecard(sc *scorecard.Compiled, wire []byte) {
	old := t.sc
	t.sc, t.Scorecard = sc, wire
	for i, name := range t.Names {
		t.info[i] = t.describe(name)
	}
	for _, g := range sc.Groups {
		for _, e := range g.Events {
			t.intern(e)
		}
	}
	conventions := []string{
		scorecard.EventNPSSubmitted, scorecard.EventTicketOpened, scorecard.EventTicketClosed,
		scorecard.EventPaymentFailed, scorecard.EventPaymentSucceeded,
	}
	for _, name := range conventions {
		t.intern(name)
	}
	for _, name := range slices.Sorted(maps.Keys(sc.BillingEvents)) {
		t.intern(name)
	}
	if old == nil {
		return
	}
	for _, a := range t.Accounts {
		groups := make([]groupState, len(sc.Groups))
		for i, g := range sc.Groups {
			if j := slices.IndexFunc(old.Groups, func(o scorecard.Group) bool { return o.Key == g.Key }); j >= 0 {
				groups[i] = a.Groups[j]
			}
			if !g.Counts {
				groups[i].Counts = nil
			}
			if !g.Weeks {
				groups[i].Weeks = nil
			}
		}
		a.Groups = groups
	}
}

func (t *tenant) account(id string) *account {
	if a, ok := t.Accounts[id]; ok {
		return a
	}
	a := &account{
		ID:     strings.Clone(id),
		Groups: make([]groupState, len(t.sc.Groups)),
	}
	t.Accounts[a.ID] = a
	return a
}

func (t *tenant) markDirty(a *account) {
	if !a.Dirty {
		a.Dirty = true
		t.dirty = append(t.dirty, a)
	}
	if !a.fresh {
		a.fresh = true
		t.fresh = append(t.fresh, a)
	}
}

// clearFresh forgets which accounts' current scores are unreported.
func (t *tenant) clearFresh() {
	for _, a := range t.fresh {
		a.fresh = false
	}
	clear(t.fresh)
	t.fresh = t.fresh[:0]
}

// advance moves the watermark on; a new day shifts every window, so every account
// of the tenant is due for scoring.
func (t *tenant) advance(sec int64) {
	if sec <= t.Watermark {
		return
	}
	newDay := dayOf(sec) != t.wmDay()
	t.Watermark = sec
	if newDay {
		for _, a := range t.Accounts {
			t.markDirty(a)
		}
	}
}

// account is the state of one customer account. The fields Apply reads come first,
// so that they share as few cache lines as can be.
type account struct {
	ID string
	// FirstDay is the day of the account's earliest event.
	FirstDay int32
	// UserOverflow counts the events of users beyond MaxUsersPerAccount.
	UserOverflow uint32
	// SweepDay is the last day a full user table was swept of stale users.
	SweepDay        int32
	FeatureOverflow uint32
	Dirty           bool
	// fresh: a change since the last score reported (see tenant.fresh).
	fresh bool
	// UserTable holds the users by a hash of the user id. A 64-bit hash keeps the
	// table small; a collision (odds ~n²/2⁶⁵) would merge two users.
	UserTable userTable
	// Groups is aligned with the compiled scorecard's groups.
	Groups   []groupState
	Features []feature
	Tickets  []ticket
	Billing  []billingEvent
	Surveys  []surveyDay
	// Last is the last published score, the baseline of deltas; nil before one.
	Last *published
	// History holds the highest score of each of the last historyDays days.
	History []dayScore
	Facts   facts
	// Users are the users in snapshots of format 1, moved to UserTable by Restore;
	// nil otherwise.
	Users map[uint64]user
}

// facts are the CRM facts about an account.
type facts struct {
	Name          string
	Tier          accountv1.Tier
	OwnerCSMID    string
	Segment       string
	ARRCurrency   string
	ARRUnits      int64
	ARRNanos      int32
	HasARR        bool
	Seats         int32
	ContractStart int64 // unix seconds, 0 unknown
	Renewal       int64 // unix seconds, 0 unknown
	Stage         accountv1.LifecycleStage
}

// user is one known user of an account.
type user struct {
	// Active is the user's last active day, Touch the last day of any event.
	Active, Touch int32
	Level         scorecard.Level
}

// groupState tracks one event set for one account: its last day and, for groups
// that need them, daily counts in a ring indexed by day modulo the daily window and
// weekly counts in a ring indexed by week modulo scorecard.LongWeeks.
type groupState struct {
	Last   int32
	Counts []uint32
	Weeks  []uint32
}

// add counts an event of the group. ring is the daily window when the group keeps
// daily counts, else 0; weeks says it keeps weekly counts. An event older than
// either ring's reach from the group's last day is left out of that ring.
func (g *groupState) add(day int32, ring int32, weeks bool) {
	if ring > 0 {
		if g.Counts == nil {
			// Counting starts now: days before read as zero, which they are to
			// this scorecard.
			g.Counts = make([]uint32, ring)
		}
		if day > g.Last {
			// Recycle the slots of the days between the last event and this one.
			for d := max(g.Last+1, day-ring+1); d <= day; d++ {
				g.Counts[d%ring] = 0
			}
		}
		if day > g.Last-ring {
			g.Counts[day%ring]++
		}
	}
	if weeks {
		const n = scorecard.LongWeeks
		if g.Weeks == nil {
			g.Weeks = make([]uint32, n)
		}
		w, last := weekOf(day), weekOf(g.Last)
		if w > last {
			for x := max(last+1, w-n+1); x <= w; x++ {
				g.Weeks[x%n] = 0
			}
		}
		if w > last-n {
			if c := &g.Weeks[w%n]; *c < ^uint32(0) {
				*c++
			}
		}
	}
	g.Last = max(g.Last, day)
}

// weekOf numbers weeks from the epoch, as dayOf numbers days.
func weekOf(day int32) int32 { return day / 7 }

// sum counts the group's events on days [from, to].
func (g *groupState) sum(from, to int32) uint64 {
	ring := int32(len(g.Counts))
	var n uint64
	for d := max(from, g.Last-ring+1); d <= min(to, g.Last); d++ {
		n += uint64(g.Counts[d%ring])
	}
	return n
}

// weekly counts the group's events and the weeks with any in weeks [from, to].
func (g *groupState) weekly(from, to int32) (events uint64, active int) {
	n := int32(len(g.Weeks))
	last := weekOf(g.Last)
	for w := max(from, last-n+1); w <= min(to, last); w++ {
		if c := g.Weeks[w%n]; c > 0 {
			events += uint64(c)
			active++
		}
	}
	return events, active
}

// feature is one distinct track event name used by an account.
type feature struct {
	Name uint32
	Last int32
}

// ticket is a support ticket. Both times are kept, so that a close arriving before
// its open (events out of order) still leaves the ticket closed.
type ticket struct {
	ID             uint64
	Opened, Closed int64 // unix seconds, 0 unknown
	Severe         bool
}

func (k *ticket) open() bool { return k.Opened > 0 && k.Closed < k.Opened }

type billingEvent struct {
	Time int64
	Name uint32
}

type surveyDay struct {
	Day        int32
	Sum, Count uint32
}

// published is what the engine keeps of an account's last published score.
type published struct {
	Generation uint32
	Version    int32
	Score      float64
	Band       scoringv1.Band
	Stage      accountv1.LifecycleStage
	Measures   []publishedMeasure
}

type publishedMeasure struct {
	Name    string
	Kind    scoringv1.MeasureKind
	HasData bool
	Raw     float64
	// Weight is the effective weight, 0 in snapshots before format 3.
	Weight       float64
	Contribution float64
}

type dayScore struct {
	Day int32
	Max float64
}

// admitUser finds room for a new user: when the table is full it is swept, at most
// once a day, of users with no event in the window.
func (a *account) admitUser(limit int, windowStart int32) bool {
	if a.UserTable.N < limit {
		return true
	}
	if a.SweepDay == windowStart {
		return false
	}
	a.SweepDay = windowStart
	a.UserTable.removeIf(func(u user) bool { return u.Touch < windowStart })
	return a.UserTable.N < limit
}

// useFeature records a track event name; a full table reuses the slot of a name
// unused over the window, else the name is counted as overflow.
func (a *account) useFeature(name uint32, day int32, limit int, windowStart int32) {
	if name == noName {
		a.FeatureOverflow++
		return
	}
	for i := range a.Features {
		if f := &a.Features[i]; f.Name == name {
			f.Last = max(f.Last, day)
			return
		}
	}
	if len(a.Features) < limit {
		a.Features = append(a.Features, feature{Name: name, Last: day})
		return
	}
	for i := range a.Features {
		if f := &a.Features[i]; f.Last < windowStart {
			*f = feature{Name: name, Last: day}
			return
		}
	}
	a.FeatureOverflow++
}

// ticketEvent records a ticket opening or closing. A full table drops the ticket
// closed longest ago, else the one opened longest ago.
func (a *account) ticketEvent(id uint64, sec int64, opened, severe bool) {
	i := slices.IndexFunc(a.Tickets, func(k ticket) bool { return k.ID == id })
	if i < 0 {
		if len(a.Tickets) >= maxTickets {
			j := a.evictableTicket()
			a.Tickets = slices.Delete(a.Tickets, j, j+1)
		}
		a.Tickets = append(a.Tickets, ticket{ID: id})
		i = len(a.Tickets) - 1
	}
	k := &a.Tickets[i]
	if opened {
		k.Opened = max(k.Opened, sec)
		k.Severe = k.Severe || severe
	} else {
		k.Closed = max(k.Closed, sec)
	}
}

func (a *account) evictableTicket() int {
	best := 0
	for i, k := range a.Tickets {
		b := a.Tickets[best]
		switch {
		case !k.open() && b.open():
			best = i
		case k.open() == b.open() && min(k.Opened, k.Closed) < min(b.Opened, b.Closed):
			best = i
		}
	}
	return best
}

// billingSignal keeps the newest maxBilling billing events, in time order.
func (a *account) billingSignal(name uint32, sec int64) {
	i, _ := slices.BinarySearchFunc(a.Billing, sec, func(b billingEvent, t int64) int {
		return cmp.Compare(b.Time, t+1) // insert after events of the same second
	})
	a.Billing = slices.Insert(a.Billing, i, billingEvent{Time: sec, Name: name})
	if len(a.Billing) > maxBilling {
		a.Billing = slices.Delete(a.Billing, 0, 1)
	}
}

// surveyAnswer adds an NPS answer to its day, keeping the newest maxSurveyDays days.
func (a *account) surveyAnswer(day int32, score uint32) {
	i, found := slices.BinarySearchFunc(a.Surveys, day, func(s surveyDay, d int32) int { return cmp.Compare(s.Day, d) })
	if !found {
		a.Surveys = slices.Insert(a.Surveys, i, surveyDay{Day: day})
	}
	a.Surveys[i].Sum += score
	a.Surveys[i].Count++
	if len(a.Surveys) > maxSurveyDays {
		a.Surveys = slices.Delete(a.Surveys, 0, 1)
	}
}

// recordScore keeps the day's highest score for drop_7d.
func (a *account) recordScore(day int32, score float64) {
	if n := len(a.History); n > 0 && a.History[n-1].Day == day {
		a.History[n-1].Max = max(a.History[n-1].Max, score)
		return
	}
	a.History = append(a.History, dayScore{Day: day, Max: score})
	if len(a.History) > historyDays {
		a.History = slices.Delete(a.History, 0, 1)
	}
}
