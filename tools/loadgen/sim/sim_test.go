package sim

import (
	"math"
	"reflect"
	"regexp"
	"slices"
	"testing"
	"time"
)

// now is a Tuesday noon: the last day of the stories below is a working day.
var now = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

func newProduct(t *testing.T, seed uint64, accounts int) *Product {
	t.Helper()
	p, err := New(Config{Seed: seed, Accounts: accounts, Now: now, Mix: DefaultMix()})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// history returns the events of the days before now, in order.
func history(p *Product, days int) []Event {
	var out []Event
	for h := now.AddDate(0, 0, -days); h.Before(now); h = h.Add(time.Hour) {
		out = p.AppendHour(out, h)
	}
	return out
}

func TestDeterministic(t *testing.T) {
	a, b := newProduct(t, 7, 100), newProduct(t, 7, 100)
	if !reflect.DeepEqual(a.Accounts(), b.Accounts()) {
		t.Fatal("same seed, different accounts")
	}
	evA := history(a, 3)
	if len(evA) == 0 {
		t.Fatal("no events")
	}
	if evB := history(b, 3); !reflect.DeepEqual(evA, evB) {
		t.Fatal("same seed, different events")
	}
	// An hour does not depend on the hours generated before it.
	h := now.Add(-5 * time.Hour)
	var alone []Event
	alone = newProduct(t, 7, 100).AppendHour(alone, h)
	var inRun []Event
	for _, ev := range evA {
		if !ev.Time.Before(h.Truncate(time.Hour)) && ev.Time.Before(h.Truncate(time.Hour).Add(time.Hour)) {
			inRun = append(inRun, ev)
		}
	}
	if !reflect.DeepEqual(alone, inRun) {
		t.Errorf("hour alone: %d events, in the run: %d", len(alone), len(inRun))
	}
	if evC := history(newProduct(t, 8, 100), 3); reflect.DeepEqual(evA[:10], evC[:min(10, len(evC))]) {
		t.Error("another seed gives the same events")
	}
}

func TestEventsAreValid(t *testing.T) {
	p := newProduct(t, 1, 300)
	evs := history(p, 10)
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for i, ev := range evs {
		if !uuid.MatchString(ev.MessageID) || seen[ev.MessageID] {
			t.Fatalf("event %d: message id %q malformed or repeated", i, ev.MessageID)
		}
		seen[ev.MessageID] = true
		if (ev.UserID == "") == (ev.AnonymousID == "") || ev.AccountID == "" {
			t.Fatalf("event %d: want a user or an anonymous id, and an account: %+v", i, ev)
		}
		if i > 0 && ev.Time.Before(evs[i-1].Time) {
			t.Fatalf("event %d at %s before its predecessor at %s", i, ev.Time, evs[i-1].Time)
		}
		if ev.Type == Track && ev.Event == "" || ev.Type == Page && ev.Name == "" {
			t.Fatalf("event %d: %s without a name", i, ev.Type)
		}
	}
}

// shape is what one account did in the 35 days before now.
type shape struct {
	last7, before28 int // core events in the last 7 days and the 28 before
	activeUsers     map[string]bool
	events          map[string]int // track events by name
	first, last     time.Time      // of the users' own events
}

func shapes(p *Product) map[string]*shape {
	out := map[string]*shape{}
	for _, a := range p.Accounts() {
		out[a.ID] = &shape{activeUsers: map[string]bool{}, events: map[string]int{}}
	}
	for _, ev := range history(p, 45) {
		s := out[ev.AccountID]
		s.events[ev.Event]++
		if ev.UserID == "" {
			continue
		}
		if s.first.IsZero() {
			s.first = ev.Time
		}
		s.last = ev.Time
		age := now.Sub(ev.Time)
		if age < 14*day {
			s.activeUsers[ev.UserID] = true
		}
		if ev.Type == Track && slices.Contains(coreEvents, ev.Event) {
			switch {
			case age < 7*day:
				s.last7++
			case age < 35*day:
				s.before28++
			}
		}
	}
	return out
}

func TestFates(t *testing.T) {
	p := newProduct(t, 1, 300)
	byID := shapes(p)
	// trend is the fate's core events of the last 7 days against the weekly
	// mean of the 28 days before.
	trend := func(f Fate) float64 {
		var last7, before28 int
		for _, a := range p.Accounts() {
			if a.Fate == f {
				last7 += byID[a.ID].last7
				before28 += byID[a.ID].before28
			}
		}
		return float64(last7) / (float64(before28) / 4)
	}
	tests := []struct {
		fate  Fate
		check func(t *testing.T, a *Account, s *shape)
		trend [2]float64 // bounds of the fate's trend; zero for no check
	}{
		{Healthy, func(t *testing.T, a *Account, s *shape) {
			if now.Sub(s.last) > 7*day {
				t.Errorf("%s: healthy but last seen %s", a.ID, s.last)
			}
		}, [2]float64{0.8, 1.25}},
		{Expanding, func(t *testing.T, a *Account, s *shape) {
			// The few seats of a small account leave no room for a margin.
			if a.Seats >= 10 && len(s.activeUsers) <= a.Seats {
				t.Errorf("%s: expanding but %d users active on %d seats", a.ID, len(s.activeUsers), a.Seats)
			}
		}, [2]float64{0.9, 2}},
		{Onboarding, func(t *testing.T, a *Account, s *shape) {
			if s.first.Before(a.ContractStart) {
				t.Errorf("%s: active at %s, before its contract started at %s", a.ID, s.first, a.ContractStart)
			}
			for k, at := range a.Milestones {
				if reached := s.events[milestones[k]] > 0; reached != (!at.IsZero() && at.Before(now)) {
					t.Errorf("%s: milestone %q sent %v, due at %s", a.ID, milestones[k], reached, at)
				}
			}
		}, [2]float64{}},
		{Declining, func(t *testing.T, a *Account, s *shape) {
			// No more than the noise of a small account above its baseline.
			if mean := float64(s.before28) / 4; float64(s.last7) > mean+2*math.Sqrt(mean)+1 {
				t.Errorf("%s: declining but %d core events in the last week against %.1f a week before", a.ID, s.last7, mean)
			}
		}, [2]float64{0, 0.75}},
		{Silent, func(t *testing.T, a *Account, s *shape) {
			// A session begun before the silence may end after it.
			if s.last.After(a.Turn.Add(time.Hour)) || s.last.IsZero() || now.Sub(a.Turn) < 10*day {
				t.Errorf("%s: silent since %s but last seen %s", a.ID, a.Turn, s.last)
			}
		}, [2]float64{0, 0}},
		{Churning, func(t *testing.T, a *Account, s *shape) {
			if s.last.After(a.Turn.Add(a.span + time.Hour)) {
				t.Errorf("%s: churned by %s but last seen %s", a.ID, a.Turn.Add(a.span), s.last)
			}
			for _, ev := range []string{"Payment Failed", "Subscription Downgraded", "Ticket Opened", "NPS Submitted"} {
				if s.events[ev] == 0 {
					t.Errorf("%s: churning without %q", a.ID, ev)
				}
			}
		}, [2]float64{0, 0.3}},
	}
	for _, tt := range tests {
		t.Run(tt.fate.String(), func(t *testing.T) {
			n := 0
			for _, a := range p.Accounts() {
				if a.Fate == tt.fate {
					n++
					tt.check(t, a, byID[a.ID])
				}
			}
			if n == 0 {
				t.Fatal("no account of this fate")
			}
			if tt.trend != [2]float64{} {
				if got := trend(tt.fate); got < tt.trend[0] || got > tt.trend[1] {
					t.Errorf("trend %.2f, want %.2f to %.2f", got, tt.trend[0], tt.trend[1])
				}
			}
		})
	}
}

func TestHeavyTail(t *testing.T) {
	p := newProduct(t, 3, 2000)
	sizes := make([]int, 0, 2000)
	total := 0
	for _, a := range p.Accounts() {
		sizes = append(sizes, a.Seats)
		total += a.Seats
	}
	slices.Sort(sizes)
	median, largest := sizes[len(sizes)/2], sizes[len(sizes)-1]
	top := 0
	for _, s := range sizes[len(sizes)*9/10:] {
		top += s
	}
	if median < 6 || median > 14 {
		t.Errorf("median account has %d seats, want 6 to 14", median)
	}
	if largest < 15*median {
		t.Errorf("largest account has %d seats, median %d: no heavy tail", largest, median)
	}
	if share := float64(top) / float64(total); share < 0.3 {
		t.Errorf("the largest 10%% of accounts hold %.0f%% of seats, want at least 30%%", 100*share)
	}
}

func TestDiurnal(t *testing.T) {
	var sum float64
	for _, w := range workdayWeights {
		sum += w
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Errorf("workday weights sum to %v, want 1", sum)
	}
	p := newProduct(t, 1, 300)
	tz := map[string]int{}
	for _, a := range p.Accounts() {
		tz[a.ID] = a.tz
	}
	var working, weekday, weekend int
	for _, ev := range history(p, 14) {
		local := ev.Time.Add(time.Duration(tz[ev.AccountID]) * time.Hour)
		if wd := local.Weekday(); wd == time.Saturday || wd == time.Sunday {
			weekend++
			continue
		}
		weekday++
		if h := local.Hour(); h >= 8 && h < 18 {
			working++
		}
	}
	if share := float64(working) / float64(weekday); share < 0.8 {
		t.Errorf("%.0f%% of weekday events in working hours, want at least 80%%", 100*share)
	}
	if perDay := float64(weekend) / 4 / (float64(weekday) / 10); perDay > 0.2 {
		t.Errorf("a weekend day has %.0f%% of a weekday's events, want under 20%%", 100*perDay)
	}
}

func TestMix(t *testing.T) {
	p := newProduct(t, 1, 300)
	got := map[Fate]int{}
	for _, a := range p.Accounts() {
		got[a.Fate]++
	}
	want := map[Fate]int{Healthy: 120, Expanding: 36, Onboarding: 39, Declining: 51, Silent: 30, Churning: 24}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("fates %v, want %v", got, want)
	}

	tests := []struct {
		in   string
		want Mix
		ok   bool
	}{
		{"healthy=1,silent=3", Mix{Healthy: 1, Silent: 3}, true},
		{DefaultMix().String(), DefaultMix(), true},
		{"happy=1", Mix{}, false},
		{"healthy", Mix{}, false},
		{"healthy=-1", Mix{}, false},
	}
	for _, tt := range tests {
		var m Mix
		err := m.Set(tt.in)
		if (err == nil) != tt.ok || (tt.ok && m != tt.want) {
			t.Errorf("Set(%q) = %v, %v; want %v, ok %v", tt.in, m, err, tt.want, tt.ok)
		}
	}
	if _, err := New(Config{Accounts: 10, Now: now}); err == nil {
		t.Error("an empty mix was accepted")
	}
}

// BenchmarkAppendHour measures the cost of simulating events: the load
// generator shares the machine with what it loads.
func BenchmarkAppendHour(b *testing.B) {
	p, err := New(Config{Seed: 1, Accounts: 1000, Now: now, Mix: DefaultMix()})
	if err != nil {
		b.Fatal(err)
	}
	var buf []Event
	events := 0
	h := now.AddDate(0, 0, -7)
	for b.Loop() {
		buf = p.AppendHour(buf[:0], h)
		events += len(buf)
		if h = h.Add(time.Hour); !h.Before(now) {
			h = now.AddDate(0, 0, -7)
		}
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}
