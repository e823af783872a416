package engine

import (
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// Activity returns an account's last days of activity (at most the engine's
// window) up to its tenant's watermark, from the aggregates scoring keeps
// anyway: the daily counts of the scorecard's core events and the tickets,
// billing signals, NPS days and milestones. False when the account is unknown.
func (e *Engine) Activity(tenantID, accountID string, days int) (*scoringv1.GetAccountActivityResponse, bool) {
	t, ok := e.tenants[tenantID]
	if !ok {
		return nil, false
	}
	a, ok := t.Accounts[accountID]
	if !ok {
		return nil, false
	}
	days = min(days, int(e.window))
	to := t.wmDay()
	from := to - int32(days) + 1
	resp := &scoringv1.GetAccountActivityResponse{Watermark: timestamppb.New(time.Unix(t.Watermark, 0))}
	if g := coreCounts(t); g >= 0 {
		for d := from; d <= to; d++ {
			resp.Days = append(resp.Days, &scoringv1.ActivityDay{
				Day: dayStart(d), CoreEvents: int64(a.Groups[g].sum(d, d)),
			})
		}
	}
	var keys []*scoringv1.KeyEvent
	add := func(sec int64, kind scoringv1.KeyEventKind, name, detail string, dayOnly bool) {
		if dayOf(sec) >= from {
			keys = append(keys, &scoringv1.KeyEvent{Time: timestamppb.New(time.Unix(sec, 0)), Kind: kind, Name: name, Detail: detail, DayOnly: dayOnly})
		}
	}
	for _, k := range a.Tickets {
		detail := "" // the engine keeps a hash of the ticket's id, not the id
		if k.Severe {
			detail = "severe"
		}
		if k.Opened > 0 {
			add(k.Opened, scoringv1.KeyEventKind_KEY_EVENT_KIND_TICKET_OPENED, "Ticket Opened", detail, false)
		}
		if k.Closed > 0 {
			add(k.Closed, scoringv1.KeyEventKind_KEY_EVENT_KIND_TICKET_CLOSED, "Ticket Closed", detail, false)
		}
	}
	for _, b := range a.Billing {
		name := "billing event"
		if b.Name != noName {
			name = t.Names[b.Name]
		}
		add(b.Time, scoringv1.KeyEventKind_KEY_EVENT_KIND_BILLING, name, "", false)
	}
	for _, s := range a.Surveys {
		add(int64(s.Day)*secondsPerDay, scoringv1.KeyEventKind_KEY_EVENT_KIND_NPS, "NPS Submitted",
			fmt.Sprintf("mean %.1f of %d answers", float64(s.Sum)/float64(s.Count), s.Count), true)
	}
	for _, m := range t.sc.Measures {
		for _, g := range m.Milestones {
			if last := a.Groups[g].Last; last > 0 {
				add(int64(last)*secondsPerDay, scoringv1.KeyEventKind_KEY_EVENT_KIND_MILESTONE, t.sc.Groups[g].Events[0], "last seen", true)
			}
		}
	}
	slices.SortStableFunc(keys, func(x, y *scoringv1.KeyEvent) int { return y.GetTime().AsTime().Compare(x.GetTime().AsTime()) })
	if a.FirstDay > 0 {
		keys = append(keys, &scoringv1.KeyEvent{Time: dayStart(a.FirstDay), Kind: scoringv1.KeyEventKind_KEY_EVENT_KIND_FIRST_EVENT, Name: "First event", DayOnly: true})
	}
	resp.KeyEvents = keys
	return resp, true
}

// coreCounts is the group holding daily counts of the core events, -1 when
// no measure of the scorecard keeps them.
func coreCounts(t *tenant) int {
	for _, m := range t.sc.Measures {
		if m.CoreEvents && m.Group >= 0 && t.sc.Groups[m.Group].Counts {
			return m.Group
		}
	}
	return -1
}

func dayStart(d int32) *timestamppb.Timestamp {
	return timestamppb.New(time.Unix(int64(d)*secondsPerDay, 0))
}
