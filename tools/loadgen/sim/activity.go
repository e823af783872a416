package sim

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Incidents (NPS rounds, tickets, failed payments) are drawn per account and
// UTC day. A ticket is closed, and a failed payment put right, at most
// incidentDays after it began, so an hour looks back that many days.
const incidentDays = 5

// Anonymous ids of the tools that send events about an account, not a user.
const (
	billingSystem = "billing-system"
	supportSystem = "support-system"
)

// hourGen collects the events of one account and hour.
type hourGen struct {
	a          *Account
	seed       uint64
	h          int64
	start, end time.Time
	seq        uint64
	dst        []Event
}

// appendHour appends the account's events of hour h (hours since the Unix
// epoch), unsorted.
func (a *Account) appendHour(dst []Event, seed uint64, h int64) []Event {
	start := time.Unix(h*3600, 0).UTC()
	g := &hourGen{a: a, seed: seed, h: h, start: start, end: start.Add(time.Hour), dst: dst}
	for _, s := range a.scheduled {
		if g.in(s.at) {
			g.scheduled(s)
		}
	}
	d := start.Unix() / 86400
	for k := d - incidentDays; k <= d; k++ {
		g.incidents(k)
	}

	local := start.Add(time.Duration(a.tz) * time.Hour)
	w := workdayWeights[local.Hour()]
	if wd := local.Weekday(); wd == time.Saturday || wd == time.Sunday {
		w *= weekendFactor
	}
	w *= a.intensity(start)
	r := newRand(seed, tagHour, a.index, uint64(h))
	for i := range a.Users {
		u := &a.Users[i]
		if u.ActiveAt(start) && r.Float64() < u.Daily*w {
			g.session(r, u)
		}
	}
	return g.dst
}

// intensity scales the activity of the account's users at t: a declining
// account's remaining users work less and less, a churning one's faster.
func (a *Account) intensity(t time.Time) float64 {
	progress := 0.0
	if !a.Turn.IsZero() && a.span > 0 && t.After(a.Turn) {
		progress = min(1, float64(t.Sub(a.Turn))/float64(a.span))
	}
	switch a.Fate {
	case Declining:
		return 1 - 0.6*progress
	case Churning:
		return 1 - 0.7*progress
	}
	return a.pace
}

// turned reports whether the account's fate has shown by t.
func (a *Account) turned(t time.Time) bool { return !a.Turn.IsZero() && !t.Before(a.Turn) }

func (g *hourGen) in(t time.Time) bool { return !t.Before(g.start) && t.Before(g.end) }

// add appends an event, giving it its message id.
func (g *hourGen) add(ev Event) {
	g.seq++
	ev.MessageID = messageID(g.seed, g.a.index, uint64(g.h), g.seq)
	ev.AccountID = g.a.ID
	g.dst = append(g.dst, ev)
}

func (g *hourGen) track(u *User, at time.Time, event string, props map[string]any) {
	ev := Event{Type: Track, Event: event, Time: at, Properties: props}
	if u != nil {
		ev.UserID = u.ID
	} else if strings.HasPrefix(event, "Ticket") {
		ev.AnonymousID = supportSystem
	} else {
		ev.AnonymousID = billingSystem
	}
	g.add(ev)
}

func (g *hourGen) scheduled(s scheduled) {
	var u *User
	if s.user >= 0 {
		u = &g.a.Users[s.user]
	}
	g.track(u, s.at, s.event, s.props)
}

// session is one visit of a user: maybe an identify (as on login), a page,
// a few core actions, maybe a feature, rarely a group call. It starts in the
// first 50 minutes of the hour and ends within it.
func (g *hourGen) session(r *rand.Rand, u *User) {
	a := g.a
	at := g.start.Add(time.Duration(r.IntN(3000)) * time.Second)
	next := func() time.Time {
		at = at.Add(time.Duration(5+r.IntN(85)) * time.Second)
		return at
	}
	if r.Float64() < 0.2 {
		traits := map[string]any{"name": u.Name, "email": u.Email}
		if u.UseTitle {
			traits["title"] = u.Role
		} else {
			traits["role"] = u.Role
		}
		if u.LevelTrait {
			traits["stakeholder_level"] = u.Level
		}
		g.add(Event{Type: Identify, UserID: u.ID, Time: at, Traits: traits})
	}
	page := pick(r, pages)
	g.add(Event{Type: Page, UserID: u.ID, Name: page, Time: next(), Properties: map[string]any{"path": "/" + strings.ToLower(page)}})
	// 0, 1, 2 or 3 core actions, mostly of the one the account bought the
	// product for.
	n := 0
	switch c := r.Float64(); {
	case c < 0.25:
	case c < 0.7:
		n = 1
	case c < 0.9:
		n = 2
	default:
		n = 3
	}
	for range n {
		event := a.primary
		if r.Float64() < 0.4 {
			event = pick(r, coreEvents)
		}
		g.track(u, next(), event, coreProps(r, event))
	}
	if r.Float64() < 0.45 {
		g.track(u, next(), pick(r, a.features), nil)
	}
	if r.Float64() < 0.03 {
		g.add(Event{Type: Group, UserID: u.ID, Time: next(), Traits: map[string]any{
			"name": a.Name, "industry": a.Industry, "plan": a.Segment, "seats": float64(a.Seats),
		}})
	}
}

// coreProps are the properties of a core action.
func coreProps(r *rand.Rand, event string) map[string]any {
	switch event {
	case "Report Created":
		return map[string]any{"report_type": pick(r, []string{"pipeline", "revenue", "activity", "forecast"})}
	case "Opportunity Created", "Invoice Sent":
		return map[string]any{"amount": math.Round(logNormal(r, 4000, 1)), "currency": "USD"}
	case "Workflow Run":
		// Scheduled runs: the product embedded in the customer's process.
		trigger := "manual"
		if r.Float64() < 0.6 {
			trigger = "scheduled"
		}
		return map[string]any{"workflow_id": "wf-" + strconv.Itoa(1+r.IntN(20)), "trigger": trigger}
	}
	return nil
}

// incidents adds the incidents of UTC day d that fall in the hour: an NPS
// round, a support ticket opened or closed, a failed payment or its retry.
// The day's draws are made in full whatever the hour, so that each hour
// sees the same incidents.
func (g *hourGen) incidents(d int64) {
	a := g.a
	dayStart := time.Unix(d*86400, 0).UTC()
	r := newRand(g.seed, tagDay, a.index, uint64(d))
	// A silent account is gone; a churning one sends only its own trouble.
	if (a.Fate == Silent || a.Fate == Churning) && a.turned(dayStart) {
		return
	}
	users := a.Users
	// A user to act, when one is active that day.
	someone := func(at time.Time) *User {
		if u := &users[r.IntN(len(users))]; u.ActiveAt(at) {
			return u
		}
		return nil
	}
	if r.Float64() < 1.0/35 {
		at := dayStart.Add(time.Duration(uniform(r, 8, 20) * float64(time.Hour)))
		for k := range 1 + r.IntN(3) {
			t := at.Add(time.Duration(k) * 7 * time.Minute)
			score := a.npsScore(r, t)
			if u := someone(t); u != nil && g.in(t) {
				g.track(u, t, "NPS Submitted", map[string]any{"score": score})
			}
		}
	}
	// Larger accounts open more tickets.
	if r.Float64() < min(0.3, 0.015*math.Sqrt(float64(len(users)))) {
		opened := dayStart.Add(time.Duration(r.Int64N(int64(day))))
		closed := opened.Add(time.Duration(uniform(r, 4, 24*incidentDays) * float64(time.Hour)))
		severity := pick(r, []string{"low", "low", "normal", "normal", "high"})
		if a.Fate == Declining && a.turned(opened) && r.Float64() < 0.4 {
			severity = "high"
		}
		id := a.ID + "-T" + strconv.FormatInt(d, 10)
		if g.in(opened) {
			g.track(nil, opened, "Ticket Opened", map[string]any{"ticket_id": id, "severity": severity})
		}
		if g.in(closed) {
			g.track(nil, closed, "Ticket Closed", map[string]any{"ticket_id": id})
		}
	}
	// A card expires now and then; the retry a day later goes through.
	if r.Float64() < 1.0/250 {
		failed := dayStart.Add(time.Duration(r.Int64N(int64(day))))
		retried := failed.Add(time.Duration(uniform(r, 4, 30) * float64(time.Hour)))
		amount := map[string]any{"amount": float64(a.ARR / 12), "currency": "USD"}
		if g.in(failed) {
			g.track(nil, failed, "Payment Failed", amount)
		}
		if g.in(retried) {
			g.track(nil, retried, "Payment Succeeded", amount)
		}
	}
}

// npsScore is an answer of the account's users at t: kind while things go
// well, souring as a decline sets in.
func (a *Account) npsScore(r *rand.Rand, t time.Time) float64 {
	lo, n := 7, 4 // 7-10
	switch {
	case a.Fate == Onboarding:
		lo, n = 6, 5
	case a.Fate == Declining && a.turned(t):
		lo, n = 3, 4
	case r.Float64() < 0.1:
		lo, n = 5, 2
	}
	return float64(lo + r.IntN(n))
}
