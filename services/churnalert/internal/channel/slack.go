package channel

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
)

// Slack Block Kit, as much of it as an alert needs.
type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type slackButton struct {
	Type string    `json:"type"`
	Text slackText `json:"text"`
	URL  string    `json:"url"`
}

type slackBlock struct {
	Type     string      `json:"type"`
	Text     *slackText  `json:"text,omitempty"`
	Fields   []slackText `json:"fields,omitempty"`
	Elements []any       `json:"elements,omitempty"`
}

// SlackMessage is the body posted to an incoming webhook: text is the
// notification's fallback, blocks the message people read.
type SlackMessage struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

func mrkdwn(s string) slackText { return slackText{Type: "mrkdwn", Text: s} }

// slackEscape escapes the three characters Slack's mrkdwn reserves.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

var slackMemberID = regexp.MustCompile(`^[UW][A-Z0-9]{2,}$`)

// slackMention mentions a person: a member id becomes a real mention, other
// handles are written out.
func slackMention(p *alertv1.Person) string {
	h := p.GetChatHandle()
	switch {
	case slackMemberID.MatchString(h):
		return "<@" + h + ">"
	case h != "":
		return slackEscape("@" + strings.TrimPrefix(h, "@"))
	case p.GetName() != "":
		return slackEscape(p.GetName())
	}
	return ""
}

func slackIcon(ev *alertv1.AlertEvent) string {
	switch {
	case ev.GetType() == alertv1.AlertEventType_ALERT_EVENT_TYPE_RESOLVED:
		return ":white_check_mark:"
	case ev.GetAlert().GetSeverity() >= alertv1.Severity_SEVERITY_HIGH:
		return ":red_circle:"
	case ev.GetAlert().GetSeverity() == alertv1.Severity_SEVERITY_INFO:
		return ":bulb:"
	}
	return ":large_orange_circle:"
}

func slackMessage(d *alertv1.Delivery, now time.Time) SlackMessage {
	ev, a := d.GetEvent(), d.GetEvent().GetAlert()
	lead := "*" + slackEscape(a.GetReason()) + "*"
	if m := slackMention(d.GetRecipient()); m != "" {
		lead = m + " " + lead
	}
	var fields []slackText
	for _, f := range facts(a, now) {
		fields = append(fields, mrkdwn("*"+f.label+"*\n"+slackEscape(f.value)))
	}
	blocks := []slackBlock{
		{Type: "header", Text: &slackText{Type: "plain_text", Text: truncate(headline(ev), 150)}},
		{Type: "section", Text: &slackText{Type: "mrkdwn", Text: lead}},
		{Type: "section", Fields: fields},
	}
	if s := a.GetScoreSummary(); s != "" {
		blocks = append(blocks, slackBlock{Type: "context", Elements: []any{mrkdwn(slackEscape(s))}})
	}
	if a.GetLink() != "" {
		blocks = append(blocks, slackBlock{Type: "actions", Elements: []any{
			slackButton{Type: "button", Text: slackText{Type: "plain_text", Text: "Open in Lodestar"}, URL: a.GetLink()},
		}})
	}
	return SlackMessage{
		Text:   slackIcon(ev) + " " + slackEscape(headline(ev)+": "+a.GetReason()),
		Blocks: blocks,
	}
}

func slackDigest(dg *alertv1.DeliveryDigest) SlackMessage {
	n := len(dg.GetDeliveries())
	title := fmt.Sprintf("%d churn alerts held back by the rate limit or the daily page budget", n)
	lead := title
	if m := slackMention(dg.GetRecipient()); m != "" {
		lead = m + ": " + title
	}
	blocks := []slackBlock{
		{Type: "header", Text: &slackText{Type: "plain_text", Text: "Lodestar digest"}},
		{Type: "section", Text: &slackText{Type: "mrkdwn", Text: lead}},
	}
	// Slack allows 50 blocks per message.
	const maxItems = 45
	for i, d := range dg.GetDeliveries() {
		if i == maxItems {
			blocks = append(blocks, slackBlock{Type: "context", Elements: []any{mrkdwn(fmt.Sprintf("and %d more in Lodestar", n-maxItems))}})
			break
		}
		ev, a := d.GetEvent(), d.GetEvent().GetAlert()
		line := fmt.Sprintf("%s *%s* · %s (%s): %s · score %s", slackIcon(ev), slackEscape(accountName(a)), ruleTitle(a),
			SeverityName(a.GetSeverity()), slackEscape(a.GetReason()), scoreText(a))
		if a.GetLink() != "" {
			line += " · <" + a.GetLink() + "|open>"
		}
		if r := a.GetRankReason(); r != "" {
			line += "\n_" + slackEscape(r) + "_"
		}
		blocks = append(blocks, slackBlock{Type: "section", Text: &slackText{Type: "mrkdwn", Text: truncate(line, 3000)}})
	}
	return SlackMessage{Text: title, Blocks: blocks}
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
