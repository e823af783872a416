// Package engine is Lodestar's scoring core: in-memory, event-time health scoring of
// customer accounts, with no I/O of its own.
//
// The engine keeps per account day-bucketed aggregates over a rolling window (90 days
// by default) in event time, and weekly counts for a year beyond it: per user the
// last active day and stakeholder level, the last day, daily and weekly counts of the
// event sets the tenant's scorecard reads, the distinct features used, NPS answers,
// support tickets and billing signals. An account is never dropped: a silent one
// keeps its last days and weekly counts, and is scored every day its silence
// lengthens. Scores are computed at each tenant's watermark, the latest event time
// seen and never past the wall clock, so replaying last year's events gives last
// year's scores.
//
// Scales that come from the tenant's own accounts (scorecard.SCALE_TENANT_RANK) are
// taken when a tenant's watermark enters a new day, from every account as the day
// before ended: in event order, so a replay takes the same ones.
//
// Day-granular windows mean a score depends on the watermark's day only: when the
// watermark enters a new day every account of the tenant is due for scoring, and
// Flush computes the due accounts and returns the scores that changed. What is
// recorded as a change depends on the events alone: a live tenant's changes as
// they come, a replay's (a tenant further behind the wall clock than LiveLag) as
// each day ends, timed at its last second, however the events were batched and
// whenever Flush was called.
//
// # Memory
//
// An account's state is bounded by the configuration and the scorecard, at most
//
//	1000 + 57·U + 4·W·C + 212·K + 56·G + 16·F + 48·M bytes (plus its id and CRM strings)
//
// for U stored users (≤ MaxUsersPerAccount), W window days, C event groups with daily
// counts, K with weekly counts (53 weeks) and G groups in all (the default scorecard has one group for its core
// events, counted, plus one per onboarding milestone), F features
// (≤ MaxFeaturesPerAccount) and M measures; tickets (64), billing signals (16), survey
// days (32) and score history (8 days) have fixed caps. 57 bytes was a user's share
// of a Go map at its lowest load factor; the user table that replaced it takes at
// most 55. Measured with the default scorecard (BenchmarkMemoryPerAccount,
// TestMemoryBound): about 2.1 KB per account with 10 users, 4.8 KB with 100 and
// 52 KB with 1000.
//
// An event set silent for the whole daily window gives its daily counts back
// (4·W bytes each) when a day ends: BenchmarkHorizon measured 1,761 bytes per
// account at 1M accounts with a year of weekly use and 1,185 with the last 120
// days silent.
//
// An Engine is not safe for concurrent use: one goroutine owns it (a scoring instance
// owns a set of partitions, hence of accounts).
package engine

import (
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/lodestar-cs/lodestar/internal/scorecore/scorecard"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// Config tunes an Engine; zero fields take their defaults.
type Config struct {
	// WindowDays is the history kept day by day, in days: 35 (the usage trend's
	// span) to scorecard.DailyDays, the default. Longer measure windows read
	// weekly counts, kept for scorecard.LongWeeks weeks.
	WindowDays int
	// MaxUsersPerAccount bounds the users stored per account (default 2000); the
	// events of further users are counted as overflow.
	MaxUsersPerAccount int
	// MaxFeaturesPerAccount bounds the distinct event names kept per account for
	// breadth (default 64).
	MaxFeaturesPerAccount int
	// PublishThreshold is the least score change Flush reports (default 0.5); band,
	// stage and scorecard changes and first scores are always reported.
	PublishThreshold float64
	// LiveLag decides when Tick moves a tenant's watermark to the wall clock: only
	// when the watermark is within LiveLag of it (default 1h). A live tenant's silent
	// accounts thus decay in real time, while a replay of old events, further
	// behind, keeps its event time.
	LiveLag time.Duration
	// Scorecard is the scorecard of tenants that have none of their own;
	// scorecard.Default() when nil.
	Scorecard *scoringv1.Scorecard
	// DedupeWindow is how long, in receive time, a message id counts once
	// (default 24h; negative: no deduplication), DedupeMaxIDs the ids kept
	// per tenant for it (default 1Mi); see dedupe.go.
	DedupeWindow time.Duration
	DedupeMaxIDs int
}

// Stats counts what the engine did with the events it was given.
type Stats struct {
	// Events is every event given to Apply.
	Events uint64
	// Late counts events older than the long horizon (scorecard.LongWeeks) at
	// their tenant's watermark: ignored.
	Late uint64
	// Old counts events older than the daily window but within the long
	// horizon: counted in weekly counts and last days only.
	Old uint64
	// Compacted counts the daily count rings given back by accounts whose
	// event set fell silent for the daily window.
	Compacted uint64
	// Future counts events later than the wall clock: taken as happening now.
	Future uint64
	// Invalid counts events with no time, or a time before 1970-01-02: ignored.
	Invalid uint64
	// Unattributed counts events with no account: ignored.
	Unattributed uint64
	// UserOverflow counts events of users beyond MaxUsersPerAccount: they count as
	// account events but not per user.
	UserOverflow uint64
	// Duplicates counts events whose message id was seen within the dedupe
	// window: ignored.
	Duplicates uint64
}

// Engine scores accounts from their events; see the package comment.
type Engine struct {
	window      int32
	maxUsers    int
	maxFeatures int
	threshold   float64
	liveLag     int64 // seconds
	defaultSC   *scorecard.Compiled
	defaultWire []byte

	tenants map[string]*tenant
	// order lists the tenant ids sorted, so that output never depends on map order.
	order []string
	stats Stats
	// closed holds the scores of days that ended since the last Flush.
	closed []Scored
	// buf is scratch space for the text of explanations.
	buf []byte
	// last is the tenant of the last event; Restore clears it.
	last *tenant
	// dedupe holds the recent message ids of each tenant.
	dedupe dedupe
}

// New returns an engine with no state.
func New(cfg Config) (*Engine, error) {
	if cfg.WindowDays == 0 {
		cfg.WindowDays = scorecard.DailyDays
	}
	if cfg.WindowDays < scorecard.TrendRecentDays*5 || cfg.WindowDays > scorecard.DailyDays {
		return nil, fmt.Errorf("engine: window of %d days is outside %d-%d",
			cfg.WindowDays, scorecard.TrendRecentDays*5, scorecard.DailyDays)
	}
	if cfg.MaxUsersPerAccount == 0 {
		cfg.MaxUsersPerAccount = 2000
	}
	if cfg.MaxFeaturesPerAccount == 0 {
		cfg.MaxFeaturesPerAccount = 64
	}
	if cfg.PublishThreshold == 0 {
		cfg.PublishThreshold = 0.5
	}
	if cfg.LiveLag == 0 {
		cfg.LiveLag = time.Hour
	}
	if cfg.MaxUsersPerAccount < 0 || cfg.MaxFeaturesPerAccount < 0 || cfg.PublishThreshold < 0 || cfg.LiveLag < 0 {
		return nil, errors.New("engine: negative limits in config")
	}
	sc := cfg.Scorecard
	if sc == nil {
		var err error
		if sc, err = scorecard.Default(); err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
	}
	compiled, wire, err := compile(sc)
	if err != nil {
		return nil, fmt.Errorf("engine: default scorecard: %w", err)
	}
	dd, err := newDedupe(cfg.DedupeWindow, cfg.DedupeMaxIDs)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	return &Engine{
		dedupe:      dd,
		window:      int32(cfg.WindowDays),
		maxUsers:    cfg.MaxUsersPerAccount,
		maxFeatures: cfg.MaxFeaturesPerAccount,
		threshold:   cfg.PublishThreshold,
		liveLag:     int64(cfg.LiveLag / time.Second),
		defaultSC:   compiled,
		defaultWire: wire,
		tenants:     map[string]*tenant{},
	}, nil
}

func compile(sc *scoringv1.Scorecard) (*scorecard.Compiled, []byte, error) {
	c, err := scorecard.Compile(sc)
	if err != nil {
		return nil, nil, err
	}
	wire, err := proto.MarshalOptions{Deterministic: true}.Marshal(c.Scorecard)
	if err != nil {
		return nil, nil, fmt.Errorf("encode scorecard: %w", err)
	}
	return c, wire, nil
}

// SetScorecard gives a tenant a new scorecard. Unless it equals the current one,
// every account of the tenant is re-scored on the next Flush, and that score is
// reported and marked scorecard_changed: a version marker, not a change of behaviour.
// Aggregates carry over wherever the new scorecard tracks the same event sets; event
// sets it adds are counted from now on.
func (e *Engine) SetScorecard(tenantID string, sc *scoringv1.Scorecard) error {
	c, wire, err := compile(sc)
	if err != nil {
		return fmt.Errorf("set scorecard of tenant %q: %w", tenantID, err)
	}
	t := e.tenant(tenantID)
	if proto.Equal(t.sc.Scorecard, c.Scorecard) {
		return nil
	}
	t.setScorecard(c, wire)
	// The scales are by measure: the new scorecard's are taken now, not left
	// aligned with the old one's measures until the day ends.
	e.fitScales(t)
	t.Generation++
	for _, a := range t.Accounts {
		t.markDirty(a)
	}
	return nil
}

// SetAccount records an account's CRM facts: seats, lifecycle stage, contract start,
// renewal and the facts every score carries (name, tier, owner, segment, ARR).
func (e *Engine) SetAccount(acc *accountv1.Account) {
	t := e.tenant(acc.GetTenantId())
	a := t.account(acc.GetAccountId())
	f := facts{
		Name:       acc.GetName(),
		Tier:       acc.GetTier(),
		OwnerCSMID: acc.GetOwner().GetCsmId(),
		Segment:    acc.GetSegment(),
		Seats:      acc.GetSeatsPurchased(),
		Stage:      acc.GetLifecycleStage(),
	}
	if arr := acc.GetArr(); arr != nil {
		f.HasARR, f.ARRCurrency, f.ARRUnits, f.ARRNanos = true, arr.GetCurrencyCode(), arr.GetUnits(), arr.GetNanos()
	}
	if ts := acc.GetContractStartTime(); ts != nil {
		f.ContractStart = ts.GetSeconds()
	}
	if ts := acc.GetRenewalTime(); ts != nil {
		f.Renewal = ts.GetSeconds()
	}
	a.Facts = f
	t.markDirty(a)
}

// Apply adds one event to its account's aggregates and marks the account due for
// scoring. The event time (else the receive time) advances the tenant's watermark;
// a time past wall is taken as wall, and an event older than the window at the
// watermark is ignored, as is an event whose message id was seen within the dedupe
// window. Apply does not allocate for known accounts, users and names.
func (e *Engine) Apply(ev *eventv1.Event, wall time.Time) {
	e.stats.Events++
	if e.dedupe.duplicate(ev) {
		e.stats.Duplicates++
		return
	}
	if ev.GetAccountId() == "" {
		e.stats.Unattributed++
		return
	}
	sec := ev.GetEventTime().GetSeconds()
	if ev.GetEventTime() == nil {
		sec = ev.GetReceivedTime().GetSeconds()
	}
	if sec < secondsPerDay {
		e.stats.Invalid++
		return
	}
	if now := wall.Unix(); sec > now {
		sec = now
		e.stats.Future++
	}
	t := e.tenant(ev.GetTenantId())
	e.advance(t, sec)
	t.live = wall.Unix()-t.Watermark <= e.liveLag
	day, windowStart := dayOf(sec), t.wmDay()-e.window+1
	if day < t.wmDay()-scorecard.LongWeeks*7+1 {
		e.stats.Late++
		return
	}
	a := t.account(ev.GetAccountId())
	if a.FirstDay == 0 || day < a.FirstDay {
		a.FirstDay = day
	}

	typ := ev.GetType()
	name := eventName(typ, ev.GetEvent(), ev.GetName())
	id, info := noName, nameInfo{}
	if name != "" {
		id, info = t.lookup(name)
	}
	groups := info.groups
	if typ == eventv1.EventType_EVENT_TYPE_TRACK {
		if id != noName {
			t.Uses[id]++
		}
		if info.special == specialNone {
			// Without named core events, every product event is core use.
			groups |= t.sc.AnyGroups
		}
	}
	if day < windowStart {
		// Older than the daily window: only what is kept longer counts it.
		e.stats.Old++
		e.addToGroups(t, a, groups, day)
		t.markDirty(a)
		return
	}
	usage := typ == eventv1.EventType_EVENT_TYPE_TRACK || typ == eventv1.EventType_EVENT_TYPE_PAGE ||
		typ == eventv1.EventType_EVENT_TYPE_SCREEN
	active := usage && (t.sc.ActiveEvents == nil || info.active)

	if uid := ev.GetUserId(); uid != "" {
		key := userKey(uid)
		u := a.UserTable.get(key)
		if u == nil && a.admitUser(e.maxUsers, windowStart) {
			u = a.UserTable.add(key)
		}
		if u != nil {
			u.Touch = max(u.Touch, day)
			if active {
				u.Active = max(u.Active, day)
			}
			if typ == eventv1.EventType_EVENT_TYPE_IDENTIFY {
				if level := t.sc.UserLevel(ev.GetTraits()); level != 0 {
					u.Level = level
				}
			}
		} else {
			a.UserOverflow++
			e.stats.UserOverflow++
		}
	}

	if typ == eventv1.EventType_EVENT_TYPE_TRACK {
		a.useFeature(id, day, e.maxFeatures, windowStart)
	}
	e.addToGroups(t, a, groups, day)
	if info.special != specialNone {
		applySpecial(a, ev, info.special, id, sec, day)
	}
	t.markDirty(a)
}

// addToGroups counts an event of the account's groups in mask.
func (e *Engine) addToGroups(t *tenant, a *account, mask uint64, day int32) {
	for ; mask != 0; mask &= mask - 1 {
		g := bits.TrailingZeros64(mask)
		ring := int32(0)
		if t.sc.Groups[g].Counts {
			ring = e.window
		}
		a.Groups[g].add(day, ring, t.sc.Groups[g].Weeks)
	}
}

// eventName is the name Apply files an event under: a track call's event, a page or
// screen call's name, none for the other calls.
func eventName(typ eventv1.EventType, event, name string) string {
	switch typ {
	case eventv1.EventType_EVENT_TYPE_TRACK:
		return event
	case eventv1.EventType_EVENT_TYPE_PAGE, eventv1.EventType_EVENT_TYPE_SCREEN:
		return name
	}
	return ""
}

// Reads reports which of an event's free-form Struct fields Apply reads, given the
// event's type, event and name fields: the properties of the few events the
// conventions give a meaning (NPS answers and tickets, see applySpecial) and the
// traits of identify calls; never the context. Decoding those Structs is most of the
// cost of decoding a stored event, so a caller may leave out the others: Apply gives
// the same result.
func Reads(typ eventv1.EventType, event, name string) (properties, traits bool) {
	switch eventName(typ, event, name) {
	case scorecard.EventNPSSubmitted, scorecard.EventTicketOpened, scorecard.EventTicketClosed:
		properties = true
	}
	return properties, typ == eventv1.EventType_EVENT_TYPE_IDENTIFY
}

// applySpecial reads the few properties the conventions define (see package
// scorecard); only these events have their properties walked. Reads must name every
// event whose properties it reads.
func applySpecial(a *account, ev *eventv1.Event, s special, name uint32, sec int64, day int32) {
	props := ev.GetProperties().GetFields()
	switch s {
	case specialNPS:
		if v, ok := numberValue(props[scorecard.PropertyScore]); ok && v >= 0 && v <= 10 {
			a.surveyAnswer(day, uint32(v+0.5))
		}
	case specialTicketOpened, specialTicketClosed:
		id, ok := ticketID(props[scorecard.PropertyTicketID])
		if !ok {
			return
		}
		a.ticketEvent(id, sec, s == specialTicketOpened, severe(props[scorecard.PropertySeverity].GetStringValue()))
	case specialBilling:
		a.billingSignal(name, sec)
	}
}

// Tick lets time pass for live tenants: a tenant whose watermark is within LiveLag
// of wall has it moved to wall, so that silent accounts decay. Tenants further
// behind (a replay) keep their event time.
func (e *Engine) Tick(wall time.Time) {
	now := wall.Unix()
	for _, t := range e.tenants {
		if t.Watermark > 0 && now > t.Watermark && now-t.Watermark <= e.liveLag {
			e.advance(t, now)
		}
		t.live = t.Watermark > 0 && now-t.Watermark <= e.liveLag
	}
}

// Advance moves a tenant's watermark to at, as an event of that time would:
// how an engine holding one partition of a tenant's accounts learns that
// the tenant's time moved on while its own accounts were silent (from the
// watermark markers ingest sends to every partition). A time past wall is
// taken as wall; a tenant the engine holds nothing of is left alone.
func (e *Engine) Advance(tenantID string, at, wall time.Time) {
	t, ok := e.tenants[tenantID]
	if !ok {
		return
	}
	e.advance(t, min(at.Unix(), wall.Unix()))
	t.live = wall.Unix()-t.Watermark <= e.liveLag
}

// Scored is one account's score from Flush.
type Scored struct {
	Score *scoringv1.HealthScore
	// Change is set for a change worth recording in history: a first score, a
	// move of at least PublishThreshold, a band, stage or scorecard change.
	// Other scores are still the account's current one, for the hot cache.
	Change bool
}

// dayEnd is the time of the scores of a day that ended: its last second.
// Not the last event's time, which depends on where the events were cut
// into messages and on the watermark markers.
func dayEnd(day int32) int64 { return int64(day+1)*secondsPerDay - 1 }

// advance moves a tenant's watermark to sec. When that ends a day, the
// accounts due for scoring are scored at the day's end first, so history
// has a score for every day an account was due, however rarely Flush is
// called: a replay of a year yields day-by-day history as live scoring does.
func (e *Engine) advance(t *tenant, sec int64) {
	if t.Watermark > 0 && dayOf(sec) > t.wmDay() {
		e.closed = e.scoreDue(t, e.closed, dayEnd(t.wmDay()))
		// The new day's scales, from every account as the day ended: taken in
		// event order, so a replay takes the same ones.
		e.fitScales(t)
		e.compact(t, dayOf(sec))
	}
	t.advance(sec)
}

// Flush scores every account due for scoring, sorted by tenant and account,
// after the scores of the days that ended since the last Flush. Each carries
// its explanation and its change against the account's last recorded score.
// Accounts of a tenant with no event yet wait for its first event.
//
// Every due account is returned, changed or not, so that the current score
// is exactly the score at the watermark: it depends on the events and the
// watermark's day alone, never on when flushes happened.
//
// What is recorded (Change, and the baseline of later changes) must not
// depend on when flushes happen either. A live tenant's scores are recorded
// as they come: its day is happening now, and an alert on it cannot wait
// for the day to end. A replaying tenant's day, further behind the wall
// clock than LiveLag, passes in the time the engine takes to read it, and
// a Flush cuts it wherever it happens to: its scores are reported as
// current but recorded only as the day ends, from the whole day's events.
// A replay of last year's events thus records the same history however it
// was batched, flushed or paced.
func (e *Engine) Flush() []Scored {
	out := e.closed
	e.closed = nil
	for _, id := range e.order {
		t := e.tenants[id]
		if t.live {
			out = e.scoreDue(t, out, t.Watermark)
		} else {
			out = e.scoreFresh(t, out)
		}
	}
	return out
}

// scoreDue scores a tenant's accounts due for scoring at time at, records
// them, and appends them to out.
func (e *Engine) scoreDue(t *tenant, out []Scored, at int64) []Scored {
	if t.Watermark == 0 || len(t.dirty) == 0 {
		return out
	}
	slices.SortFunc(t.dirty, func(a, b *account) int { return strings.Compare(a.ID, b.ID) })
	for _, a := range t.dirty {
		a.Dirty = false
		if hs, change := e.evaluate(t, a, true, at); hs != nil {
			out = append(out, Scored{Score: hs, Change: change})
		}
	}
	clear(t.dirty)
	t.dirty = t.dirty[:0]
	t.clearFresh()
	return out
}

// scoreFresh scores a tenant's accounts whose current score is not yet
// reported and appends them to out, recording nothing: they stay due for
// the day's end.
func (e *Engine) scoreFresh(t *tenant, out []Scored) []Scored {
	if t.Watermark == 0 || len(t.fresh) == 0 {
		return out
	}
	slices.SortFunc(t.fresh, func(a, b *account) int { return strings.Compare(a.ID, b.ID) })
	for _, a := range t.fresh {
		if hs, _ := e.evaluate(t, a, false, t.Watermark); hs != nil {
			out = append(out, Scored{Score: hs})
		}
	}
	t.clearFresh()
	return out
}

// Score computes an account's score at its tenant's watermark now, against its last
// published score; false when the account is unknown, its tenant has no event yet,
// or no measure has data.
func (e *Engine) Score(tenantID, accountID string) (*scoringv1.HealthScore, bool) {
	t, ok := e.tenants[tenantID]
	if !ok || t.Watermark == 0 {
		return nil, false
	}
	a, ok := t.Accounts[accountID]
	if !ok {
		return nil, false
	}
	hs, _ := e.evaluate(t, a, false, t.Watermark)
	return hs, hs != nil
}

// Stats returns the engine's event counters.
func (e *Engine) Stats() Stats { return e.stats }

// Tenants returns the ids of the tenants the engine holds, sorted.
func (e *Engine) Tenants() []string { return slices.Clone(e.order) }

func (e *Engine) tenant(id string) *tenant {
	// Events come mostly in runs of one tenant: comparing with the last
	// one's id is cheaper than hashing the id for the map.
	if e.last != nil && e.last.ID == id {
		return e.last
	}
	if t, ok := e.tenants[id]; ok {
		e.last = t
		return t
	}
	t := &tenant{
		ID:       id,
		Accounts: map[string]*account{},
		nameIDs:  map[string]uint32{},
	}
	t.setScorecard(e.defaultSC, e.defaultWire)
	e.addTenant(t)
	return t
}

func (e *Engine) addTenant(t *tenant) {
	e.tenants[t.ID] = t
	i, _ := slices.BinarySearch(e.order, t.ID)
	e.order = slices.Insert(e.order, i, t.ID)
}

// ticketID hashes a ticket id given as a string or a number; 42 and "42" are one
// ticket, as support tools are not consistent about it.
func ticketID(v *structpb.Value) (uint64, bool) {
	if s := v.GetStringValue(); s != "" {
		return hashString(s), true
	}
	if _, isNumber := v.GetKind().(*structpb.Value_NumberValue); isNumber {
		return hashString(strconv.FormatFloat(v.GetNumberValue(), 'f', -1, 64)), true
	}
	return 0, false
}

// numberValue reads a number, or a string holding one.
func numberValue(v *structpb.Value) (float64, bool) {
	switch k := v.GetKind().(type) {
	case *structpb.Value_NumberValue:
		return k.NumberValue, true
	case *structpb.Value_StringValue:
		n, err := strconv.ParseFloat(strings.TrimSpace(k.StringValue), 64)
		return n, err == nil
	}
	return 0, false
}

// severe reads a ticket severity; the support tools' names for their top levels.
func severe(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "high", "urgent", "critical", "p1", "sev1":
		return true
	}
	return false
}

// hashString is 64-bit FNV-1a: deterministic across processes, so that snapshots
// keyed by it restore anywhere, and free of allocation.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
