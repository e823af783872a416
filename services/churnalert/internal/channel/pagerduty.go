package channel

import (
	"time"

	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
)

// DefaultPagerDutyURL is the Events API v2 endpoint.
const DefaultPagerDutyURL = "https://events.pagerduty.com/v2/enqueue"

// PagerDutyEvent is an Events API v2 event. Acknowledge and resolve carry
// only the routing key, the action and the dedup key.
type PagerDutyEvent struct {
	RoutingKey  string            `json:"routing_key"`
	EventAction string            `json:"event_action"`
	DedupKey    string            `json:"dedup_key"`
	Payload     *PagerDutyPayload `json:"payload,omitempty"`
	Client      string            `json:"client,omitempty"`
	ClientURL   string            `json:"client_url,omitempty"`
	Links       []PagerDutyLink   `json:"links,omitempty"`
}

// PagerDutyPayload describes a triggered incident.
type PagerDutyPayload struct {
	Summary       string         `json:"summary"`
	Source        string         `json:"source"`
	Severity      string         `json:"severity"`
	Timestamp     string         `json:"timestamp,omitempty"`
	Component     string         `json:"component,omitempty"`
	Group         string         `json:"group,omitempty"`
	Class         string         `json:"class,omitempty"`
	CustomDetails map[string]any `json:"custom_details,omitempty"`
}

// PagerDutyLink is a link shown on the incident.
type PagerDutyLink struct {
	Href string `json:"href"`
	Text string `json:"text"`
}

// DedupKey is an alert's PagerDuty dedup key: stable over the alert's life,
// so trigger, acknowledge and resolve address one incident.
func DedupKey(a *alertv1.Alert) string {
	return "lodestar/" + a.GetTenantId() + "/" + a.GetAlertId()
}

// pagerDutySeverity maps severities onto PagerDuty's four.
func pagerDutySeverity(s alertv1.Severity) string {
	switch s {
	case alertv1.Severity_SEVERITY_CRITICAL:
		return "critical"
	case alertv1.Severity_SEVERITY_HIGH:
		return "error"
	case alertv1.Severity_SEVERITY_MEDIUM, alertv1.Severity_SEVERITY_LOW:
		return "warning"
	}
	return "info"
}

func pagerDutyEvent(routingKey string, d *alertv1.Delivery) PagerDutyEvent {
	ev, a := d.GetEvent(), d.GetEvent().GetAlert()
	e := PagerDutyEvent{RoutingKey: routingKey, DedupKey: DedupKey(a)}
	switch ev.GetType() {
	case alertv1.AlertEventType_ALERT_EVENT_TYPE_ACKNOWLEDGED:
		e.EventAction = "acknowledge"
		return e
	case alertv1.AlertEventType_ALERT_EVENT_TYPE_RESOLVED:
		e.EventAction = "resolve"
		return e
	}
	e.EventAction = "trigger"
	details := map[string]any{
		"event":       eventTitle(ev),
		"alert_id":    a.GetAlertId(),
		"account_id":  a.GetAccountId(),
		"account":     accountName(a),
		"rule":        a.GetRuleId(),
		"reason":      a.GetReason(),
		"score":       a.GetScore(),
		"delta":       a.GetDelta(),
		"band":        a.GetBand().String(),
		"summary":     a.GetScoreSummary(),
		"escalations": a.GetEscalationLevel(),
	}
	if r := a.GetRenewalTime(); r != nil {
		details["renewal_date"] = r.AsTime().Format(time.DateOnly)
	}
	if a.GetArr() != nil {
		details["arr"] = Money(a.GetArr())
	}
	if o := a.GetOwner(); o != nil {
		details["owner"] = personText(o)
	}
	if as := a.GetAssignee(); as != nil {
		details["assignee"] = personText(as)
	}
	e.Payload = &PagerDutyPayload{
		Summary:       truncate(SeverityName(a.GetSeverity())+" churn alert: "+accountName(a)+": "+a.GetReason(), 1024),
		Source:        "lodestar/" + a.GetTenantId(),
		Severity:      pagerDutySeverity(a.GetSeverity()),
		Timestamp:     ev.GetEventTime().AsTime().Format(time.RFC3339),
		Component:     accountName(a),
		Group:         a.GetOwner().GetPersonId(),
		Class:         a.GetRuleId(),
		CustomDetails: details,
	}
	e.Client = "Lodestar"
	if a.GetLink() != "" {
		e.ClientURL = a.GetLink()
		e.Links = []PagerDutyLink{{Href: a.GetLink(), Text: "Account in Lodestar"}}
	}
	return e
}
