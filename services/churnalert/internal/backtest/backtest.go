// Package backtest replays a tenant's history (score changes and account
// changes, in event time) through the alert state machine and measures the
// alerts against recorded renewal outcomes: what EvaluateRules answers, and
// what tools/alertcheck prints for the simulated product.
//
// The replay is the live code path (internal/lifecycle) on the tenant's
// event-time clock, with a tick at the end of every day of event time as
// the live rescan gives, so the alerts are those a live run would have
// raised. It does no I/O.
package backtest

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/lifecycle"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/rules"
)

const day = 24 * time.Hour

// earlyDays: an alert on an account's first days of scores (its first day
// counting as day 1) is early; the shipped scorecard's minimum history
// before it judges an account.
const earlyDays = 14

func dayNumber(t time.Time) int64 { return t.Unix() / 86400 }

// Fact is an account's CRM facts from At on, in event time.
type Fact struct {
	At      time.Time
	Account *accountv1.Account
}

// Renewal is a recorded renewal outcome.
type Renewal struct {
	AccountID string
	At        time.Time
	Outcome   accountv1.OutcomeType
}

func (r Renewal) churned() bool { return r.Outcome == accountv1.OutcomeType_OUTCOME_TYPE_CHURNED }

func (r Renewal) lost() bool {
	return r.churned() || r.Outcome == accountv1.OutcomeType_OUTCOME_TYPE_CONTRACTED
}

// History is what is replayed.
type History struct {
	Tenant string
	// Scores as scoring published them: each account's in event time. The
	// SCORES stream interleaves the partitions as each published, at its
	// own pace; Replay takes them in event time.
	Scores   []*scoringv1.HealthScore
	Facts    []Fact
	Renewals []Renewal
}

// Opened is an alert a replay opened.
type Opened struct {
	AccountID string
	RuleID    string
	Kind      alertv1.RuleKind
	At        time.Time
	// A red spell (the baseline) counts from a renewal's lead window on
	// when it began before it and lasted into it (Until zero: to the end);
	// an alert counts only when it opened within the window.
	spell bool
	Until time.Time
}

// Result is what a replay left: the alerts opened, and the accounts' states
// at the end.
type Result struct {
	Opened []Opened
	States map[string]*alertv1.AccountAlertState
	Start  time.Time
	End    time.Time
	first  map[string]time.Time // account → first score time
}

// Replay runs the rules over the history.
func Replay(h History, rs []*alertv1.Rule) Result {
	facts := slices.Clone(h.Facts)
	slices.SortStableFunc(facts, func(a, b Fact) int { return a.At.Compare(b.At) })
	res := Result{States: map[string]*alertv1.AccountAlertState{}, first: map[string]time.Time{}}
	if len(h.Scores) == 0 {
		return res
	}
	scores := inEventTime(h.Scores)
	res.Start = scores[0].GetScoreTime().AsTime()
	res.End = scores[len(scores)-1].GetScoreTime().AsTime()
	for _, r := range h.Renewals {
		if r.At.After(res.End) {
			res.End = r.At
		}
	}
	seqs := map[string]uint64{}
	state := func(account string) *alertv1.AccountAlertState {
		st := res.States[account]
		if st == nil {
			st = &alertv1.AccountAlertState{TenantId: h.Tenant, AccountId: account}
			res.States[account] = st
		}
		return st
	}
	env := func(now time.Time) lifecycle.Env {
		// Historical by construction: Page false, so nothing is delivered.
		return lifecycle.Env{Rules: rs, OnCall: func(string, time.Time) *alertv1.Person { return nil }, Now: now, Wall: now}
	}
	collect := func(st *alertv1.AccountAlertState, before map[string]int32, at time.Time) {
		st.Outbox = nil
		for id, rst := range st.GetRules() {
			if rst.GetOpened() > before[id] {
				res.Opened = append(res.Opened, Opened{AccountID: st.GetAccountId(), RuleID: id, Kind: rst.GetAlert().GetRuleKind(), At: at})
			}
		}
	}
	opened := func(st *alertv1.AccountAlertState) map[string]int32 {
		m := make(map[string]int32, len(st.GetRules()))
		for id, rst := range st.GetRules() {
			m[id] = rst.GetOpened()
		}
		return m
	}
	apply := func(fn func(st *alertv1.AccountAlertState), account string, at time.Time) {
		st := state(account)
		before := opened(st)
		fn(st)
		collect(st, before, at)
	}
	nextFact := 0
	applyFacts := func(upTo time.Time) {
		for ; nextFact < len(facts) && !facts[nextFact].At.After(upTo); nextFact++ {
			f := facts[nextFact]
			id := f.Account.GetAccountId()
			seqs["a"+id]++
			apply(func(st *alertv1.AccountAlertState) {
				_, _ = lifecycle.ApplyAccount(st, &accountv1.AccountChange{Account: f.Account}, seqs["a"+id], env(upTo))
			}, id, upTo)
		}
	}
	tick := func(at time.Time) {
		for _, id := range sortedKeys(res.States) {
			apply(func(st *alertv1.AccountAlertState) { _, _ = lifecycle.Tick(st, env(at)) }, id, at)
		}
	}
	dayEnd := res.Start.Truncate(day).Add(day)
	for _, hs := range scores {
		at := hs.GetScoreTime().AsTime()
		for !at.Before(dayEnd) {
			applyFacts(dayEnd)
			tick(dayEnd)
			dayEnd = dayEnd.Add(day)
		}
		applyFacts(at)
		id := hs.GetAccountId()
		if _, ok := res.first[id]; !ok {
			res.first[id] = at
		}
		seqs["s"+id]++
		apply(func(st *alertv1.AccountAlertState) { _, _ = lifecycle.ApplyScore(st, hs, seqs["s"+id], 0, env(at)) }, id, at)
	}
	for ; dayEnd.Before(res.End); dayEnd = dayEnd.Add(day) {
		applyFacts(dayEnd)
		tick(dayEnd)
	}
	applyFacts(res.End)
	tick(res.End)
	return res
}

// inEventTime sorts scores by time, then account, as a live run met them
// whatever the order the partitions published in; stably, so that an
// account's own order stays.
func inEventTime(scores []*scoringv1.HealthScore) []*scoringv1.HealthScore {
	out := slices.Clone(scores)
	slices.SortStableFunc(out, func(a, b *scoringv1.HealthScore) int {
		return cmp.Or(a.GetScoreTime().AsTime().Compare(b.GetScoreTime().AsTime()), strings.Compare(a.GetAccountId(), b.GetAccountId()))
	})
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Evaluate replays the history through the rules and measures the alerts
// against the renewals: an alert warns of a renewal when it opened within
// lead before it.
func Evaluate(h History, rs []*alertv1.Rule, lead time.Duration) *alertv1.EvaluateRulesResponse {
	res := Replay(h, rs)
	resp := &alertv1.EvaluateRulesResponse{StartTime: timestamppb.New(res.Start), EndTime: timestamppb.New(res.End)}
	renewals := slices.Clone(h.Renewals)
	for _, r := range renewals {
		resp.Renewals++
		switch {
		case r.churned():
			resp.Churned++
		case r.lost():
			resp.Contracted++
		}
	}
	owners := map[string]bool{}
	for _, f := range h.Facts {
		if o := f.Account.GetOwner().GetCsmId(); o != "" {
			owners[o] = true
		}
	}
	resp.Csms = int32(max(1, len(owners)))
	resp.Weeks = res.End.Sub(res.Start).Hours() / (7 * 24)
	m := metrics{renewals: renewals, lead: lead, csms: float64(resp.Csms), weeks: resp.Weeks}

	byRule := map[string][]Opened{}
	var risk []Opened
	for _, o := range res.Opened {
		byRule[o.RuleID] = append(byRule[o.RuleID], o)
		if rules.Risk(o.Kind) {
			risk = append(risk, o)
		}
		if first, ok := res.first[o.AccountID]; ok && dayNumber(o.At)-dayNumber(first)+1 < earlyDays {
			resp.EarlyAlerts++
		}
	}
	for _, r := range rs {
		if r.GetDisabled() {
			continue
		}
		resp.Rules = append(resp.Rules, &alertv1.RuleQuality{RuleId: r.GetRuleId(), Kind: r.GetKind(), Quality: m.quality(byRule[r.GetRuleId()])})
	}
	resp.Overall = m.quality(risk)
	resp.RedBand = m.quality(redSpells(inEventTime(h.Scores)))

	for _, st := range res.States {
		for _, id := range sortedKeys(st.GetRules()) {
			rst := st.GetRules()[id]
			a := rst.GetAlert()
			if a == nil || a.GetState() == alertv1.AlertState_ALERT_STATE_RESOLVED {
				continue
			}
			resp.OpenAlerts++
			r := ruleByID(rs, id)
			f := rules.Facts{At: res.End, Account: st.GetAccount(), Score: st.GetScore(), History: st.GetHistory()}
			if r == nil || !rules.Evaluate(r, f, &alertv1.RuleState{ConditionTime: rst.GetConditionTime()}).Firing {
				resp.StaleOpenAlerts++
			}
			if rules.Risk(a.GetRuleKind()) && st.GetScore().GetBand() == scoringv1.Band_BAND_GREEN {
				resp.OpenOnGreen++
			}
		}
	}
	return resp
}

func ruleByID(rs []*alertv1.Rule, id string) *alertv1.Rule {
	for _, r := range rs {
		if r.GetRuleId() == id && !r.GetDisabled() {
			return r
		}
	}
	return nil
}

// redSpells are the red band's spells, the baseline: a renewal is flagged
// when its account scored red at any time within the lead window (a spell
// that began before the window counts from the window's start).
func redSpells(scores []*scoringv1.HealthScore) []Opened {
	var out []Opened
	open := map[string]int{} // account → index of its open spell
	for _, hs := range scores {
		id, at := hs.GetAccountId(), hs.GetScoreTime().AsTime()
		i, isRed := open[id]
		switch red := hs.GetBand() == scoringv1.Band_BAND_RED; {
		case red && !isRed:
			open[id] = len(out)
			out = append(out, Opened{AccountID: id, Kind: alertv1.RuleKind_RULE_KIND_RED_BAND, At: at, spell: true})
		case !red && isRed:
			out[i].Until = at
			delete(open, id)
		}
	}
	return out
}

type metrics struct {
	renewals []Renewal
	lead     time.Duration
	csms     float64
	weeks    float64
}

// quality measures a set of opened alerts against the renewals.
func (m metrics) quality(opened []Opened) *alertv1.AlertQuality {
	byAccount := map[string][]Opened{}
	for _, o := range opened {
		byAccount[o.AccountID] = append(byAccount[o.AccountID], o)
	}
	q := &alertv1.AlertQuality{Alerts: int32(len(opened))}
	if m.weeks > 0 {
		q.AlertsPerCsmPerWeek = float64(len(opened)) / m.csms / m.weeks
	}
	var churned int
	var leads []time.Duration
	for _, r := range m.renewals {
		if r.churned() {
			churned++
		}
		var first time.Time
		from := r.At.Add(-m.lead)
		for _, o := range byAccount[r.AccountID] {
			at := o.At
			if at.Before(from) && o.spell && (o.Until.IsZero() || o.Until.After(from)) {
				at = from // a red spell under way when the window opens
			}
			if !at.Before(from) && at.Before(r.At) && (first.IsZero() || at.Before(first)) {
				first = at
			}
		}
		if first.IsZero() {
			continue
		}
		q.FlaggedRenewals++
		if r.lost() {
			q.FlaggedLost++
		}
		if r.churned() {
			q.FlaggedChurned++
			leads = append(leads, r.At.Sub(first))
		}
	}
	if q.FlaggedRenewals > 0 {
		q.Precision = float64(q.FlaggedLost) / float64(q.FlaggedRenewals)
		if churned > 0 {
			q.Lift = (float64(q.FlaggedChurned) / float64(q.FlaggedRenewals)) / (float64(churned) / float64(len(m.renewals)))
		}
	}
	if churned > 0 {
		q.Recall = float64(q.FlaggedChurned) / float64(churned)
	}
	if len(leads) > 0 {
		slices.SortFunc(leads, cmp.Compare)
		q.MedianLeadTime = durationpb.New((leads[(len(leads)-1)/2] + leads[len(leads)/2]) / 2)
	}
	return q
}
