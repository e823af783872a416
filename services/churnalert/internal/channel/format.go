package channel

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// What an event means to the person reading it.
var eventTitles = map[alertv1.AlertEventType]string{
	alertv1.AlertEventType_ALERT_EVENT_TYPE_OPENED:       "New alert",
	alertv1.AlertEventType_ALERT_EVENT_TYPE_UPDATED:      "Severity raised",
	alertv1.AlertEventType_ALERT_EVENT_TYPE_ESCALATED:    "Escalated: not acknowledged in time",
	alertv1.AlertEventType_ALERT_EVENT_TYPE_ACKNOWLEDGED: "Acknowledged",
	alertv1.AlertEventType_ALERT_EVENT_TYPE_SNOOZED:      "Snoozed",
	alertv1.AlertEventType_ALERT_EVENT_TYPE_UNSNOOZED:    "Back from snooze",
	alertv1.AlertEventType_ALERT_EVENT_TYPE_RESOLVED:     "Resolved",
	alertv1.AlertEventType_ALERT_EVENT_TYPE_REOPENED:     "Reopened",
}

var ruleTitles = map[alertv1.RuleKind]string{
	alertv1.RuleKind_RULE_KIND_RED_BAND:                "Red band",
	alertv1.RuleKind_RULE_KIND_SCORE_DROP:              "Score drop",
	alertv1.RuleKind_RULE_KIND_USAGE_DROP:              "Usage drop",
	alertv1.RuleKind_RULE_KIND_SILENT_ACCOUNT:          "Silent account",
	alertv1.RuleKind_RULE_KIND_RENEWAL_AT_RISK:         "Renewal at risk",
	alertv1.RuleKind_RULE_KIND_STAKEHOLDERS_DISENGAGED: "Stakeholders disengaged",
	alertv1.RuleKind_RULE_KIND_ONBOARDING_STALLED:      "Onboarding stalled",
	alertv1.RuleKind_RULE_KIND_EXPANSION_OPPORTUNITY:   "Expansion opportunity",
	alertv1.RuleKind_RULE_KIND_WIN_BACK:                "Win-back opportunity",
}

func eventTitle(ev *alertv1.AlertEvent) string { return eventTitles[ev.GetType()] }

func ruleTitle(a *alertv1.Alert) string {
	if t, ok := ruleTitles[a.GetRuleKind()]; ok {
		return t
	}
	return a.GetRuleId()
}

// SeverityName is a severity as people read it: "HIGH".
func SeverityName(s alertv1.Severity) string {
	return strings.TrimPrefix(s.String(), "SEVERITY_")
}

func accountName(a *alertv1.Alert) string {
	if a.GetAccountName() != "" {
		return a.GetAccountName()
	}
	return a.GetAccountId()
}

// headline is the one line every channel leads with.
func headline(ev *alertv1.AlertEvent) string {
	a := ev.GetAlert()
	return fmt.Sprintf("%s · %s · %s (%s)", eventTitle(ev), accountName(a), ruleTitle(a), SeverityName(a.GetSeverity()))
}

// fact is one labelled value of an alert.
type fact struct{ label, value string }

// facts are the numbers a CSM wants at a glance: score and move, renewal,
// ARR, owner.
func facts(a *alertv1.Alert, now time.Time) []fact {
	out := []fact{{"Score", scoreText(a)}}
	if r := a.GetRenewalTime(); r != nil {
		out = append(out, fact{"Renewal", renewalText(r, now)})
	}
	if a.GetArr() != nil {
		out = append(out, fact{"ARR", Money(a.GetArr())})
	}
	if o := a.GetOwner(); o != nil {
		out = append(out, fact{"Owner", personText(o)})
	}
	if as := a.GetAssignee(); as != nil && as.GetPersonId() != a.GetOwner().GetPersonId() {
		out = append(out, fact{"On call", personText(as)})
	}
	if r := a.GetRankReason(); r != "" {
		out = append(out, fact{"Priority", r})
	}
	if ps := a.GetPreviousAlerts(); len(ps) > 0 {
		out = append(out, fact{"Before", previousText(ps)})
	}
	return out
}

// previousText lists earlier alerts: "Red band 2026-01-05 to 2026-01-09;
// Silent account since 2026-02-01".
func previousText(ps []*alertv1.PreviousAlert) string {
	parts := make([]string, 0, len(ps))
	for _, p := range ps {
		title := ruleTitles[p.GetRuleKind()]
		if title == "" {
			title = p.GetRuleId()
		}
		if p.GetResolveTime() == nil {
			parts = append(parts, fmt.Sprintf("%s since %s", title, p.GetCreateTime().AsTime().Format(time.DateOnly)))
		} else {
			parts = append(parts, fmt.Sprintf("%s %s to %s", title, p.GetCreateTime().AsTime().Format(time.DateOnly), p.GetResolveTime().AsTime().Format(time.DateOnly)))
		}
	}
	return strings.Join(parts, "; ")
}

func scoreText(a *alertv1.Alert) string {
	if a.GetBand() == scoringv1.Band_BAND_UNSPECIFIED {
		return "not scored yet"
	}
	return fmt.Sprintf("%.0f (%s), %s", a.GetScore(), signed(a.GetDelta()), strings.ToLower(strings.TrimPrefix(a.GetBand().String(), "BAND_")))
}

// signed writes a change with a real minus sign: "−24", "+3".
func signed(d float64) string {
	d = math.Round(d)
	if d < 0 {
		return "−" + strconv.FormatFloat(-d, 'f', 0, 64)
	}
	return "+" + strconv.FormatFloat(d, 'f', 0, 64)
}

func renewalText(ts *timestamppb.Timestamp, now time.Time) string {
	t := ts.AsTime()
	days := int(math.Ceil(t.Sub(now).Hours() / 24))
	switch {
	case days > 0:
		return fmt.Sprintf("%s (in %d days)", t.Format(time.DateOnly), days)
	case days == 0:
		return t.Format(time.DateOnly) + " (today)"
	}
	return fmt.Sprintf("%s (%d days ago)", t.Format(time.DateOnly), -days)
}

// Money writes an amount as "USD 120,000" (cents only when there are any).
func Money(m *accountv1.Money) string {
	units := m.GetUnits()
	neg := units < 0 || m.GetNanos() < 0
	if units < 0 {
		units = -units
	}
	s := strconv.FormatInt(units, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if n := int64(math.Abs(float64(m.GetNanos()))); n != 0 {
		fmt.Fprintf(&b, ".%02d", n/10_000_000)
	}
	sign := ""
	if neg {
		sign = "-"
	}
	return strings.TrimSpace(m.GetCurrencyCode() + " " + sign + b.String())
}

func personText(p *alertv1.Person) string {
	switch {
	case p.GetName() != "" && p.GetEmail() != "":
		return fmt.Sprintf("%s <%s>", p.GetName(), p.GetEmail())
	case p.GetName() != "":
		return p.GetName()
	case p.GetEmail() != "":
		return p.GetEmail()
	}
	return p.GetPersonId()
}

// TestDelivery is the made-up delivery TestChannel sends.
func TestDelivery(tenant, channelID string, recipient *alertv1.Person, now time.Time) *alertv1.Delivery {
	ts := timestamppb.New(now)
	return &alertv1.Delivery{
		DeliveryId: "test-" + strconv.FormatInt(now.UnixNano(), 36),
		TenantId:   tenant,
		ChannelId:  channelID,
		Recipient:  recipient,
		Event: &alertv1.AlertEvent{
			Type:      alertv1.AlertEventType_ALERT_EVENT_TYPE_OPENED,
			EventTime: ts,
			Alert: &alertv1.Alert{
				AlertId: "test-" + channelID, TenantId: tenant, AccountId: "test-account", AccountName: "Test account",
				RuleId: "test", State: alertv1.AlertState_ALERT_STATE_OPEN, Severity: alertv1.Severity_SEVERITY_INFO,
				Reason: "This is a test message from Lodestar: the channel works.", Score: 50, Band: scoringv1.Band_BAND_YELLOW,
				Assignee: recipient, CreateTime: ts, UpdateTime: ts, Version: 1,
			},
		},
	}
}

func (s *Sender) postJSON(ctx context.Context, url string, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return &PermanentError{fmt.Errorf("encode message: %w", err)}
	}
	return s.post(ctx, url, "application/json", body, nil)
}
