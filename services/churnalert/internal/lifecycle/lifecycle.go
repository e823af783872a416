// Package lifecycle is the alert state machine of one account: it applies
// score changes, account changes, the passing of time and people's actions
// to an AccountAlertState, and writes the events and deliveries each
// transition implies into the state's outbox.
//
// Everything here is a pure function of the state and its inputs, so the
// caller can store the state and its outbox in one compare-and-set write:
// a transition is either stored with all its messages or not at all.
//
// One clock: rule conditions, cooldowns, escalations and snoozes run on the
// tenant's clock (Env.Now): its event-time watermark while it catches up
// with the wall clock, the wall clock once it is live. A replay of last
// year therefore alerts exactly as live running did, and a backtest means
// something. An alert is open exactly while its rule's condition holds.
package lifecycle

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/pkg/natsx"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/channel"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/rules"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/streams"
)

// Actor names the service in the audit trail of automatic transitions.
const Actor = "churn-alert"

// materialScoreChange is how far the score must move for an active alert to
// publish an update: smaller moves would fill the audit trail with noise.
const materialScoreChange = 5

// Errors of people's actions.
var (
	ErrNotFound = errors.New("no such alert")
	ErrResolved = errors.New("the alert is resolved")
)

// Env is what a transition needs besides the account's state.
type Env struct {
	// Rules are the tenant's rules; disabled ones resolve their alerts.
	Rules    []*alertv1.Rule
	Channels []*alertv1.Channel
	// OnCall returns who is on call on a schedule ("" for the tenant's
	// first) at a time, or nil.
	OnCall func(scheduleID string, t time.Time) *alertv1.Person
	// Now is the tenant's clock: its event-time watermark while it catches
	// up, the wall clock once it is live. An account's own latest score time
	// is never moved back by it.
	Now time.Time
	// Live is whether the tenant has caught up with the wall clock (and Now
	// is the wall clock). Until then a score change is judged at its own
	// event time: the watermark when scoring computed it, whatever the
	// tenant's clock has reached since, so a replay decides as it did live.
	Live bool
	// LiveSince is when the tenant caught up (zero: long ago). Within
	// Freshness of it, what the catch-up's last changes do is its result,
	// not news.
	LiveSince time.Time
	// Wall is the wall clock. A transition whose time lies more than
	// Freshness behind it is history, not news: it is recorded (marked
	// historical) and delivered to nobody.
	Wall      time.Time
	Freshness time.Duration
	// Page is false for a change published more than Freshness ago (a
	// catch-up after an outage): its transitions are historical too.
	Page bool
	// Budget decides whether a page of an alert goes out at once or to the
	// recipient's digest, and says why (Alert.rank_reason); nil pages at
	// once.
	Budget func(a *alertv1.Alert, now time.Time) (immediate bool, reason string)
	// Link is where to see the account in Lodestar.
	Link string
	// Headers go on every outbox message (trace context).
	Headers map[string]string
}

// tx is one change of a state; the first error sticks.
type tx struct {
	st  *alertv1.AccountAlertState
	env Env
	now time.Time // the tenant's clock, not before the account's own event time
	// of is the time of what the change reports: a score change's event
	// time, else now. A transition is news only when it is fresh.
	of  time.Time
	err error
}

func newTx(st *alertv1.AccountAlertState, env Env) *tx {
	t := &tx{st: st, env: env, now: env.Now}
	// An account's time never goes back: not before its last score, nor
	// before the last sweep that changed it.
	for _, ts := range []*timestamppb.Timestamp{st.GetEventTime(), st.GetTickTime()} {
		if at := ts.AsTime(); ts != nil && at.After(t.now) {
			t.now = at
		}
	}
	t.of = t.now
	return t
}

// historical reports whether the transition is too old to deliver.
func (t *tx) historical() bool {
	return !t.env.Page || t.env.Wall.Sub(t.of) > t.env.Freshness ||
		(t.env.Live && t.env.Wall.Sub(t.env.LiveSince) < t.env.Freshness)
}

// ApplyScore applies a score change that was message seq of the SCORES
// stream, published by the partition owner of the given epoch (0 when
// unknown). It reports false for a message already applied or superseded.
func ApplyScore(st *alertv1.AccountAlertState, hs *scoringv1.HealthScore, seq, epoch uint64, env Env) (bool, error) {
	if seq <= st.GetScoresSeq() || Superseded(st, hs, epoch) {
		return false, nil
	}
	if st.Score != nil {
		if err := catchUp(st, hs.GetScoreTime().AsTime(), env); err != nil {
			return false, err
		}
	}
	st.ScoresSeq, st.Score, st.ScoreEpoch = seq, hs, epoch
	at := advance(st, hs.GetScoreTime().AsTime())
	if hs.GetScorecardChanged() {
		// Scores of different scorecard versions do not compare.
		st.History = nil
	}
	record(st, at, hs.GetScore(), rules.MaxDropWindow(env.Rules))
	t := newTx(st, env)
	if !env.Live {
		t.now = at
	}
	// Live, the score is judged now; but a score of an hour ago (a
	// backfill's last hour, a catch-up) is history, not news.
	t.of = at
	t.evaluate()
	return true, t.err
}

// maxCatchUpSteps bounds the steps of one catch-up (more than a year of
// days); past it, time jumps to the change.
const maxCatchUpSteps = 400

// catchUp lets time pass up to a score change at `at`, before it is applied:
// what fell due since the account's last change (an escalation, a snooze's
// end, a renewal coming near) is decided on the score the account had
// meanwhile, at the time it fell due, whether or not a sweep came by in
// between. In event time (not live) it steps through each escalation and
// snooze end due and each day's start, the resolution of the date-driven
// conditions, as daily sweeps would: a replay's sweeps come at the replay's
// pace, not the history's, and must not decide what it alerts. Live, the
// sweeps run in real time and one step at now suffices.
func catchUp(st *alertv1.AccountAlertState, at time.Time, env Env) error {
	if env.Live {
		_, err := Tick(st, env)
		return err
	}
	from := st.GetEventTime().AsTime()
	if tt := st.GetTickTime().AsTime(); st.TickTime != nil && tt.After(from) {
		from = tt
	}
	for range maxCatchUpSteps {
		next := from.Truncate(24 * time.Hour).Add(24 * time.Hour)
		for _, rs := range st.GetRules() {
			a := rs.GetAlert()
			for _, due := range []*timestamppb.Timestamp{a.GetEscalateTime(), a.GetSnoozeEndTime()} {
				if due != nil && due.AsTime().After(from) && due.AsTime().Before(next) {
					next = due.AsTime()
				}
			}
		}
		if !next.Before(at) {
			break
		}
		step := env
		step.Now = next
		if _, err := Tick(st, step); err != nil {
			return err
		}
		from = next
	}
	step := env
	step.Now = at
	_, err := Tick(st, step)
	return err
}

// Superseded reports whether a score change published by the partition
// owner of the given epoch must not be applied to the account: it comes from
// an owner older than the one of the last change applied (a replica that
// lost the partition, writing late), or it is older than the account's last
// score or a copy of it (a new owner recomputing what its predecessor had
// published). Either way its news is applied already or superseded; judged
// per account, from what the account's state records, so it holds across
// restarts and whatever else the partition's stream holds.
func Superseded(st *alertv1.AccountAlertState, hs *scoringv1.HealthScore, epoch uint64) bool {
	if epoch < st.GetScoreEpoch() {
		return true
	}
	last := st.GetScore()
	if last == nil {
		return false
	}
	at, lastAt := hs.GetScoreTime().AsTime(), last.GetScoreTime().AsTime()
	return at.Before(lastAt) || (at.Equal(lastAt) && hs.GetScore() == last.GetScore() && hs.GetBand() == last.GetBand())
}

// ApplyAccount applies an account change that was message seq of the
// ACCOUNT_CHANGES stream. It reports false for a message already applied.
func ApplyAccount(st *alertv1.AccountAlertState, ch *accountv1.AccountChange, seq uint64, env Env) (bool, error) {
	if seq <= st.GetAccountChangesSeq() {
		return false, nil
	}
	// The change time is the CRM's wall clock, not event time: it does not
	// move the account's clock.
	st.AccountChangesSeq, st.Account = seq, ch.GetAccount()
	t := newTx(st, env)
	t.evaluate()
	return true, t.err
}

// Tick lets time pass: escalations and snoozes fall due, and conditions that
// depend on the date (renewal near, onboarding overdue, recovery sustained)
// are read again. It reports whether the state changed.
func Tick(st *alertv1.AccountAlertState, env Env) (bool, error) {
	before := proto.Clone(st)
	t := newTx(st, env)
	now := t.now
	for _, id := range ruleIDs(st) {
		a := st.Rules[id].GetAlert()
		r := t.rule(id)
		switch {
		case a.GetState() == alertv1.AlertState_ALERT_STATE_SNOOZED && !now.Before(a.GetSnoozeEndTime().AsTime()):
			// Due when the snooze ended: a snooze that ended long ago in a
			// replay is history.
			t.of = a.GetSnoozeEndTime().AsTime()
			a.State, a.SnoozeEndTime, a.SnoozeReason = alertv1.AlertState_ALERT_STATE_OPEN, nil, ""
			if a.GetEscalationLevel() == 0 {
				a.EscalateTime = escalateTime(r, now)
			}
			t.emit(alertv1.AlertEventType_ALERT_EVENT_TYPE_UNSNOOZED, a, 0)
		case a.GetState() == alertv1.AlertState_ALERT_STATE_OPEN && a.EscalateTime != nil && !now.Before(a.GetEscalateTime().AsTime()):
			// Due at its escalation time: an alert of a backfill, due days
			// ago, escalates in the history but pages nobody.
			t.of = a.GetEscalateTime().AsTime()
			a.EscalationLevel++
			a.EscalateTime = nil
			if p := env.OnCall(r.GetEscalationScheduleId(), now); p != nil {
				a.Assignee = p
			}
			t.emit(alertv1.AlertEventType_ALERT_EVENT_TYPE_ESCALATED, a, 0)
		}
		t.of = now
	}
	t.evaluate()
	if proto.Equal(before, st) {
		return false, t.err
	}
	if st.TickTime == nil || now.After(st.GetTickTime().AsTime()) {
		st.TickTime = timestamppb.New(now)
	}
	return true, t.err
}

// Acknowledge stops an alert's escalation; acknowledging twice changes
// nothing.
func Acknowledge(st *alertv1.AccountAlertState, alertID, actor, note string, env Env) (*alertv1.Alert, error) {
	t := newTx(st, env)
	a, err := t.find(alertID)
	switch {
	case err != nil:
		return nil, err
	case a.GetState() == alertv1.AlertState_ALERT_STATE_ACKNOWLEDGED:
		return a, nil
	}
	a.State, a.AcknowledgeTime = alertv1.AlertState_ALERT_STATE_ACKNOWLEDGED, timestamppb.New(t.now)
	a.EscalateTime, a.SnoozeEndTime, a.SnoozeReason = nil, nil, ""
	a.Actor, a.Note = clean(actor), clean(note)
	t.emit(alertv1.AlertEventType_ALERT_EVENT_TYPE_ACKNOWLEDGED, a, 0)
	return a, t.err
}

// Snooze silences an alert until a time.
func Snooze(st *alertv1.AccountAlertState, alertID string, until time.Time, reason, actor string, env Env) (*alertv1.Alert, error) {
	t := newTx(st, env)
	a, err := t.find(alertID)
	if err != nil {
		return nil, err
	}
	a.State, a.SnoozeEndTime, a.SnoozeReason = alertv1.AlertState_ALERT_STATE_SNOOZED, timestamppb.New(until), clean(reason)
	a.EscalateTime = nil
	a.Actor, a.Note = clean(actor), ""
	t.emit(alertv1.AlertEventType_ALERT_EVENT_TYPE_SNOOZED, a, 0)
	return a, t.err
}

// Resolve closes an alert; resolving twice changes nothing.
func Resolve(st *alertv1.AccountAlertState, alertID, actor, note string, env Env) (*alertv1.Alert, error) {
	t := newTx(st, env)
	a, err := t.find(alertID)
	switch {
	case errors.Is(err, ErrResolved):
		return a, nil
	case err != nil:
		return nil, err
	}
	t.resolve(st.Rules[a.GetRuleId()], clean(actor), clean(note))
	return a, t.err
}

// find returns an alert of the state; ErrResolved comes with the alert.
func (t *tx) find(alertID string) (*alertv1.Alert, error) {
	for _, rs := range t.st.GetRules() {
		if a := rs.GetAlert(); a.GetAlertId() == alertID {
			if a.GetState() == alertv1.AlertState_ALERT_STATE_RESOLVED {
				return a, ErrResolved
			}
			return a, nil
		}
	}
	return nil, ErrNotFound
}

func (t *tx) rule(id string) *alertv1.Rule {
	for _, r := range t.env.Rules {
		if r.GetRuleId() == id {
			return r
		}
	}
	return nil
}

// advance moves the state's event time forward and returns it: messages
// out of order never move it back.
func advance(st *alertv1.AccountAlertState, at time.Time) time.Time {
	if st.EventTime != nil && st.GetEventTime().AsTime().After(at) {
		return st.GetEventTime().AsTime()
	}
	st.EventTime = timestamppb.New(at)
	return at
}

// record keeps the highest score per hour for the longest drop window.
func record(st *alertv1.AccountAlertState, at time.Time, score float64, keep time.Duration) {
	if keep <= 0 {
		st.History = nil
		return
	}
	bucket := at.Truncate(time.Hour)
	if n := len(st.History); n > 0 && st.History[n-1].GetTime().AsTime().Equal(bucket) {
		st.History[n-1].Score = max(st.History[n-1].GetScore(), score)
	} else {
		st.History = append(st.History, &alertv1.ScorePoint{Time: timestamppb.New(bucket), Score: score})
	}
	cut := 0
	for cut < len(st.History) && st.History[cut].GetTime().AsTime().Before(at.Add(-keep)) {
		cut++
	}
	st.History = st.History[cut:]
}

func ruleIDs(st *alertv1.AccountAlertState) []string {
	ids := make([]string, 0, len(st.GetRules()))
	for id := range st.GetRules() {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func active(a *alertv1.Alert) bool {
	return a != nil && a.GetState() != alertv1.AlertState_ALERT_STATE_RESOLVED
}

// evaluate reads every rule at the tenant's clock and moves the alerts.
func (t *tx) evaluate() {
	st, at := t.st, t.now
	if st.Rules == nil {
		st.Rules = map[string]*alertv1.RuleState{}
	}
	facts := rules.Facts{At: at, Account: st.GetAccount(), Score: st.GetScore(), History: st.GetHistory()}
	enabled := map[string]bool{}
	for _, r := range t.env.Rules {
		if r.GetDisabled() {
			continue
		}
		enabled[r.GetRuleId()] = true
		rs := st.Rules[r.GetRuleId()]
		if rs == nil {
			rs = &alertv1.RuleState{}
		}
		t.step(r, rs, rules.Evaluate(r, facts, rs))
		if !proto.Equal(rs, &alertv1.RuleState{}) {
			st.Rules[r.GetRuleId()] = rs
		}
	}
	for _, id := range ruleIDs(st) {
		if rs := st.Rules[id]; !enabled[id] && active(rs.GetAlert()) {
			t.resolve(rs, Actor, "the rule was disabled or deleted")
		}
	}
}

// step moves one rule's alert on a verdict: open while the condition holds,
// resolved as soon as it does not. A condition that holds again within the
// rule's cooldown reopens the resolved alert quietly (an account hovering at
// a threshold pages once); after the cooldown, a new alert opens.
func (t *tx) step(r *alertv1.Rule, rs *alertv1.RuleState, v rules.Verdict) {
	a := rs.GetAlert()
	switch {
	case v.Firing && (a == nil || (!active(a) && !t.now.Before(rs.GetResolveEventTime().AsTime().Add(r.GetCooldown().AsDuration())))):
		t.open(r, rs, v.Reason)
	case v.Firing && !active(a):
		t.reopen(r, a, v.Reason)
	case v.Firing:
		t.refresh(r, a, v.Reason)
	case active(a):
		t.resolve(rs, Actor, "the condition no longer holds")
	}
}

// alertID numbers a (tenant, account, rule)'s alerts, stably: the same
// history gives the same ids.
func alertID(st *alertv1.AccountAlertState, rule string, n int32) string {
	h := sha256.New()
	for _, s := range []string{st.GetTenantId(), st.GetAccountId(), rule, strconv.Itoa(int(n))} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return "al-" + hex.EncodeToString(h.Sum(nil)[:8])
}

func escalateTime(r *alertv1.Rule, now time.Time) *timestamppb.Timestamp {
	if d := r.GetEscalateAfter().AsDuration(); d > 0 {
		return timestamppb.New(now.Add(d))
	}
	return nil
}

func (t *tx) open(r *alertv1.Rule, rs *alertv1.RuleState, reason string) {
	rs.Opened++
	now := t.now
	a := &alertv1.Alert{
		AlertId:    alertID(t.st, r.GetRuleId(), rs.GetOpened()),
		TenantId:   t.st.GetTenantId(),
		AccountId:  t.st.GetAccountId(),
		RuleId:     r.GetRuleId(),
		RuleKind:   r.GetKind(),
		State:      alertv1.AlertState_ALERT_STATE_OPEN,
		Reason:     clean(reason),
		CreateTime: timestamppb.New(now),
		Actor:      Actor,
	}
	t.fill(r, a)
	a.PreviousAlerts = previous(t.st)
	a.Assignee = a.GetOwner()
	if a.Assignee == nil {
		a.Assignee = t.env.OnCall(r.GetEscalationScheduleId(), now)
	}
	a.EscalateTime = escalateTime(r, now)
	rs.Alert = a
	t.emit(alertv1.AlertEventType_ALERT_EVENT_TYPE_OPENED, a, 0)
}

// maxPrevious bounds the earlier alerts an alert lists.
const maxPrevious = 5

// previous lists the account's alerts so far (the current or last one of
// each rule), newest first.
func previous(st *alertv1.AccountAlertState) []*alertv1.PreviousAlert {
	var out []*alertv1.PreviousAlert
	for _, id := range ruleIDs(st) {
		if a := st.Rules[id].GetAlert(); a != nil {
			out = append(out, &alertv1.PreviousAlert{AlertId: a.GetAlertId(), RuleId: a.GetRuleId(), RuleKind: a.GetRuleKind(),
				Reason: a.GetReason(), CreateTime: a.GetCreateTime(), ResolveTime: a.GetResolveTime()})
		}
	}
	slices.SortStableFunc(out, func(x, y *alertv1.PreviousAlert) int {
		return y.GetCreateTime().AsTime().Compare(x.GetCreateTime().AsTime())
	})
	return out[:min(len(out), maxPrevious)]
}

// reopen brings back an alert resolved within the cooldown, without paging.
func (t *tx) reopen(r *alertv1.Rule, a *alertv1.Alert, reason string) {
	a.State, a.ReopenCount = alertv1.AlertState_ALERT_STATE_OPEN, a.GetReopenCount()+1
	a.ResolveTime, a.AcknowledgeTime, a.ResolvingScore = nil, nil, nil
	a.Reason, a.Actor, a.Note = clean(reason), Actor, "fired again within the cooldown"
	t.fill(r, a)
	t.emit(alertv1.AlertEventType_ALERT_EVENT_TYPE_REOPENED, a, 0)
}

// resolve closes an alert, recording the score that resolved it.
func (t *tx) resolve(rs *alertv1.RuleState, actor, note string) {
	a := rs.GetAlert()
	a.State, a.ResolveTime = alertv1.AlertState_ALERT_STATE_RESOLVED, timestamppb.New(t.now)
	a.EscalateTime, a.SnoozeEndTime, a.SnoozeReason = nil, nil, ""
	a.Actor, a.Note = actor, note
	if hs := t.st.GetScore(); hs != nil {
		a.ResolvingScore = &alertv1.ScoreSnapshot{Score: hs.GetScore(), Delta: hs.GetDelta(), Band: hs.GetBand(),
			ScoreTime: hs.GetScoreTime(), Summary: clean(hs.GetSummary())}
	}
	rs.ResolveEventTime = timestamppb.New(t.now)
	t.emit(alertv1.AlertEventType_ALERT_EVENT_TYPE_RESOLVED, a, 0)
}

// refresh brings an active alert's facts up to date, publishing an update
// only when something material changed.
func (t *tx) refresh(r *alertv1.Rule, a *alertv1.Alert, reason string) {
	next := proto.CloneOf(a)
	t.fill(r, next)
	if reason != "" {
		next.Reason = clean(reason)
	}
	if next.GetEscalationLevel() == 0 && next.GetOwner() != nil {
		next.Assignee = next.GetOwner()
	}
	if next.GetSeverity() == a.GetSeverity() && next.GetBand() == a.GetBand() &&
		math.Abs(next.GetScore()-a.GetScore()) < materialScoreChange &&
		next.GetLifecycleStage() == a.GetLifecycleStage() &&
		proto.Equal(next.GetOwner(), a.GetOwner()) && proto.Equal(next.GetRenewalTime(), a.GetRenewalTime()) {
		return
	}
	prev := alertv1.Severity_SEVERITY_UNSPECIFIED
	if next.GetSeverity() != a.GetSeverity() {
		prev = a.GetSeverity()
	}
	proto.Reset(a)
	proto.Merge(a, next)
	t.emit(alertv1.AlertEventType_ALERT_EVENT_TYPE_UPDATED, a, prev)
}

// fill copies the account's current facts and severity into an alert.
func (t *tx) fill(r *alertv1.Rule, a *alertv1.Alert) {
	st := t.st
	acc, hs := st.GetAccount(), st.GetScore()
	a.AccountName = clean(acc.GetName())
	if a.AccountName == "" {
		a.AccountName = clean(hs.GetAccountName())
	}
	a.Score, a.Delta, a.Band = hs.GetScore(), hs.GetDelta(), hs.GetBand()
	a.ScoreSummary, a.ScoreTime = clean(hs.GetSummary()), hs.GetScoreTime()
	a.Tier, a.Arr, a.RenewalTime = hs.GetTier(), hs.GetArr(), hs.GetRenewalTime()
	if acc != nil {
		a.Tier, a.Arr, a.RenewalTime = acc.GetTier(), acc.GetArr(), acc.GetRenewalTime()
	}
	a.LifecycleStage = rules.Facts{Account: acc, Score: hs}.Stage()
	a.Owner = nil
	if o := acc.GetOwner(); o.GetCsmId() != "" {
		a.Owner = &alertv1.Person{PersonId: clean(o.GetCsmId()), Name: clean(o.GetName()), Email: clean(o.GetEmail()), ChatHandle: clean(o.GetChatHandle())}
	} else if id := hs.GetOwnerCsmId(); id != "" {
		a.Owner = &alertv1.Person{PersonId: clean(id)}
	}
	a.Severity = rules.Severity(r, a.GetTier(), a.GetArr())
	a.Link = t.env.Link
}

// clean makes text safe to marshal: proto3 strings must be UTF-8.
func clean(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

// emit records a transition: the alert's new version on ALERTS, and a
// delivery for each channel that carries it, all in the outbox.
func (t *tx) emit(typ alertv1.AlertEventType, a *alertv1.Alert, prev alertv1.Severity) {
	now := timestamppb.New(t.now)
	a.Version++
	a.UpdateTime = now
	ev := &alertv1.AlertEvent{Type: typ, Alert: proto.CloneOf(a), EventTime: now, PreviousSeverity: prev, Historical: t.historical()}
	over := false
	if t.env.Budget != nil && !ev.GetHistorical() && channel.IsPage(ev) {
		immediate, why := t.env.Budget(a, t.now)
		a.RankReason, ev.Alert.RankReason, over = why, why, !immediate
	}
	tenant := t.st.GetTenantId()
	t.push(streams.AlertSubject(tenant, t.st.GetAccountId()), natsx.MsgID(tenant, a.GetAlertId(), strconv.FormatInt(a.GetVersion(), 10)), ev)
	if ev.GetHistorical() || (a.GetState() == alertv1.AlertState_ALERT_STATE_SNOOZED && channel.IsPage(ev)) {
		return
	}
	for _, c := range t.env.Channels {
		if !channel.Wants(c, ev, a.GetAssignee()) {
			continue
		}
		id := fmt.Sprintf("%s-%d-%s", a.GetAlertId(), a.GetVersion(), c.GetChannelId())
		t.push(streams.DeliverySubject(channel.Kind(c)), natsx.MsgID(tenant, id), &alertv1.Delivery{
			DeliveryId: id, TenantId: tenant, ChannelId: c.GetChannelId(), Recipient: a.GetAssignee(), Event: ev,
			OverBudget: over && channel.Digestible(channel.Kind(c)),
		})
	}
}

func (t *tx) push(subject, msgID string, m proto.Message) {
	data, err := proto.Marshal(m)
	if err != nil {
		t.err = errors.Join(t.err, fmt.Errorf("encode %s: %w", subject, err))
		return
	}
	t.st.Outbox = append(t.st.Outbox, &alertv1.OutboxMessage{Subject: subject, MsgId: msgID, Data: data, Headers: t.env.Headers})
}
