package channel_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/internal/testenv/receivers"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/channel"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/egress"
)

var now = time.Date(2026, 3, 10, 9, 30, 0, 0, time.UTC)

// loopback lets the tests' receivers on 127.0.0.1 be reached.
var loopback, _ = egress.NewPolicy([]string{"127.0.0.1"})

func sender(smtpAddr string) *channel.Sender {
	return &channel.Sender{
		Client: channel.NewHTTPClient(5*time.Second, loopback),
		SMTP:   channel.SMTP{Addr: smtpAddr, From: "Lodestar <alerts@lodestar.test>"},
		Now:    func() time.Time { return now },
	}
}

func delivery(typ alertv1.AlertEventType) *alertv1.Delivery {
	dana := &alertv1.Person{PersonId: "dana", Name: "Dana Scully", Email: "dana@example.com", ChatHandle: "U024BE7LH"}
	return &alertv1.Delivery{
		DeliveryId: "al-1-1-ch", TenantId: "acme", ChannelId: "ch", Recipient: dana,
		Event: &alertv1.AlertEvent{
			Type: typ, EventTime: timestamppb.New(now),
			Alert: &alertv1.Alert{
				AlertId: "al-1", TenantId: "acme", AccountId: "acct-7", AccountName: "Acme <Corp> & Co",
				RuleId: "red-band", RuleKind: alertv1.RuleKind_RULE_KIND_RED_BAND, State: alertv1.AlertState_ALERT_STATE_OPEN,
				Severity: alertv1.Severity_SEVERITY_HIGH, Reason: "In the red band at 38 (-24)",
				Score: 38, Delta: -24, Band: scoringv1.Band_BAND_RED, ScoreSummary: "usage_trend fell 12 points",
				Tier: accountv1.Tier_TIER_GROWTH, Arr: &accountv1.Money{CurrencyCode: "USD", Units: 120_000},
				RenewalTime: timestamppb.New(now.Add(45 * 24 * time.Hour)),
				Owner:       dana, Assignee: dana, Version: 1, Link: "https://lodestar.test/accounts/acme/acct-7",
				PreviousAlerts: []*alertv1.PreviousAlert{
					{RuleKind: alertv1.RuleKind_RULE_KIND_SILENT_ACCOUNT, CreateTime: timestamppb.New(now.Add(-3 * 24 * time.Hour))},
					{RuleKind: alertv1.RuleKind_RULE_KIND_RED_BAND, CreateTime: timestamppb.New(now.Add(-60 * 24 * time.Hour)), ResolveTime: timestamppb.New(now.Add(-50 * 24 * time.Hour))},
				},
			},
		},
	}
}

func TestSlack(t *testing.T) {
	rcv := receivers.NewHTTP(t, func(int, []byte) int { return http.StatusOK })
	ch := &alertv1.Channel{ChannelId: "ch", Config: &alertv1.Channel_Slack{Slack: &alertv1.SlackChannel{WebhookUrl: rcv.URL + "/services/T/B/X"}}}
	if err := sender("").Send(context.Background(), ch, delivery(alertv1.AlertEventType_ALERT_EVENT_TYPE_OPENED)); err != nil {
		t.Fatal(err)
	}
	req := rcv.Requests()[0]
	if ct := req.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
	var msg struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type     string `json:"type"`
			Text     *struct{ Type, Text string }
			Fields   []struct{ Type, Text string }
			Elements []map[string]any
		} `json:"blocks"`
	}
	if err := json.Unmarshal(req.Body, &msg); err != nil {
		t.Fatal(err)
	}
	want := "New alert · Acme <Corp> & Co · Red band (HIGH)"
	// The fallback text is mrkdwn: reserved characters are escaped.
	if msg.Text != ":red_circle: New alert · Acme &lt;Corp&gt; &amp; Co · Red band (HIGH): In the red band at 38 (-24)" {
		t.Errorf("fallback text %q", msg.Text)
	}
	if b := msg.Blocks[0]; b.Type != "header" || b.Text.Type != "plain_text" || b.Text.Text != want {
		t.Errorf("header %+v", b)
	}
	if b := msg.Blocks[1]; b.Text.Text != "<@U024BE7LH> *In the red band at 38 (-24)*" {
		t.Errorf("lead %q", b.Text.Text)
	}
	var fields []string
	for _, f := range msg.Blocks[2].Fields {
		if f.Type != "mrkdwn" {
			t.Errorf("field type %q", f.Type)
		}
		fields = append(fields, f.Text)
	}
	wantFields := []string{"*Score*\n38 (−24), red", "*Renewal*\n2026-04-24 (in 45 days)", "*ARR*\nUSD 120,000", "*Owner*\nDana Scully &lt;dana@example.com&gt;",
		"*Before*\nSilent account since 2026-03-07; Red band 2026-01-09 to 2026-01-19"}
	if strings.Join(fields, "|") != strings.Join(wantFields, "|") {
		t.Errorf("fields\n%q\nwant\n%q", fields, wantFields)
	}
	if b := msg.Blocks[3]; b.Type != "context" || b.Elements[0]["text"] != "usage_trend fell 12 points" {
		t.Errorf("context %+v", b)
	}
	if b := msg.Blocks[4]; b.Type != "actions" || b.Elements[0]["type"] != "button" || b.Elements[0]["url"] != "https://lodestar.test/accounts/acme/acct-7" {
		t.Errorf("actions %+v", b)
	}
}

func TestPagerDuty(t *testing.T) {
	rcv := receivers.NewHTTP(t, nil)
	s := sender("")
	s.PagerDutyURL = rcv.URL + "/v2/enqueue"
	ch := &alertv1.Channel{ChannelId: "pd", Config: &alertv1.Channel_Pagerduty{Pagerduty: &alertv1.PagerDutyChannel{RoutingKey: "R0UT1NGKEY"}}}
	for _, typ := range []alertv1.AlertEventType{alertv1.AlertEventType_ALERT_EVENT_TYPE_OPENED, alertv1.AlertEventType_ALERT_EVENT_TYPE_ACKNOWLEDGED, alertv1.AlertEventType_ALERT_EVENT_TYPE_RESOLVED} {
		if err := s.Send(context.Background(), ch, delivery(typ)); err != nil {
			t.Fatal(err)
		}
	}
	reqs := rcv.Requests()
	var events [3]map[string]any
	for i := range events {
		if err := json.Unmarshal(reqs[i].Body, &events[i]); err != nil {
			t.Fatal(err)
		}
		if events[i]["routing_key"] != "R0UT1NGKEY" || events[i]["dedup_key"] != "lodestar/acme/al-1" {
			t.Errorf("event %d: routing key %v, dedup key %v", i, events[i]["routing_key"], events[i]["dedup_key"])
		}
	}
	for i, action := range []string{"trigger", "acknowledge", "resolve"} {
		if events[i]["event_action"] != action {
			t.Errorf("event %d action %v, want %s", i, events[i]["event_action"], action)
		}
	}
	if events[1]["payload"] != nil || events[2]["payload"] != nil {
		t.Error("acknowledge and resolve carry no payload")
	}
	p := events[0]["payload"].(map[string]any)
	want := map[string]any{
		"summary": "HIGH churn alert: Acme <Corp> & Co: In the red band at 38 (-24)", "source": "lodestar/acme", "severity": "error",
		"timestamp": "2026-03-10T09:30:00Z", "component": "Acme <Corp> & Co", "group": "dana", "class": "red-band",
	}
	for k, v := range want {
		if p[k] != v {
			t.Errorf("payload.%s = %v, want %v", k, p[k], v)
		}
	}
	d := p["custom_details"].(map[string]any)
	for k, v := range map[string]any{"score": 38.0, "delta": -24.0, "band": "BAND_RED", "renewal_date": "2026-04-24", "arr": "USD 120,000",
		"owner": "Dana Scully <dana@example.com>", "account_id": "acct-7", "alert_id": "al-1", "reason": "In the red band at 38 (-24)"} {
		if d[k] != v {
			t.Errorf("custom_details.%s = %v, want %v", k, d[k], v)
		}
	}
	links := events[0]["links"].([]any)
	if l := links[0].(map[string]any); l["href"] != "https://lodestar.test/accounts/acme/acct-7" || events[0]["client"] != "Lodestar" {
		t.Errorf("links %v client %v", links, events[0]["client"])
	}
}

func TestWebhookSignature(t *testing.T) {
	secret := []byte("s3cret-s3cret-s3cret")
	rcv := receivers.NewHTTP(t, func(int, []byte) int { return http.StatusNoContent })
	ch := &alertv1.Channel{ChannelId: "hook", Config: &alertv1.Channel_Webhook{Webhook: &alertv1.WebhookChannel{Url: rcv.URL, Secret: string(secret)}}}
	d := delivery(alertv1.AlertEventType_ALERT_EVENT_TYPE_OPENED)
	if err := sender("").Send(context.Background(), ch, d); err != nil {
		t.Fatal(err)
	}
	req := rcv.Requests()[0]
	sig := req.Header.Get(channel.HeaderSignature)
	if !strings.HasPrefix(sig, "t=1773135000,v1=") {
		t.Errorf("signature header %q", sig)
	}
	if req.Header.Get(channel.HeaderDeliveryID) != "al-1-1-ch" || req.Header.Get(channel.HeaderEvent) != "ALERT_EVENT_TYPE_OPENED" {
		t.Errorf("headers %v", req.Header)
	}
	var got alertv1.Delivery
	if err := protojson.Unmarshal(req.Body, &got); err != nil || !proto.Equal(&got, d) {
		t.Fatalf("body does not decode to the delivery: %v\n%s", err, req.Body)
	}
	tolerance := 5 * time.Minute
	tests := []struct {
		name   string
		secret []byte
		sig    string
		body   []byte
		at     time.Time
		ok     bool
	}{
		{"genuine", secret, sig, req.Body, now.Add(time.Minute), true},
		{"tampered body", secret, sig, append([]byte(" "), req.Body...), now, false},
		{"wrong secret", []byte("another-secret-0000"), sig, req.Body, now, false},
		{"replayed later", secret, sig, req.Body, now.Add(10 * time.Minute), false},
		// A replayer who rewrites the timestamp cannot re-sign it.
		{"fresh timestamp, old signature", secret, strings.Replace(sig, "t=1773135000", "t=1773135600", 1), req.Body, now.Add(10 * time.Minute), false},
		{"malformed", secret, "v1=abc", req.Body, now, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := channel.Verify(tc.secret, tc.sig, tc.body, tc.at, tolerance)
			if (err == nil) != tc.ok {
				t.Fatalf("Verify: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestEmail(t *testing.T) {
	smtp := receivers.NewSMTP(t)
	ch := &alertv1.Channel{ChannelId: "mail", Config: &alertv1.Channel_Email{Email: &alertv1.EmailChannel{ExtraTo: []string{"CS Team <cs@example.com>"}}}}
	if err := sender(smtp.Addr).Send(context.Background(), ch, delivery(alertv1.AlertEventType_ALERT_EVENT_TYPE_ESCALATED)); err != nil {
		t.Fatal(err)
	}
	m := smtp.Mails()[0]
	if m.From != "alerts@lodestar.test" || strings.Join(m.To, ",") != "dana@example.com,cs@example.com" {
		t.Errorf("envelope from %q to %q", m.From, m.To)
	}
	for k, v := range map[string]string{
		"From":                   `"Lodestar" <alerts@lodestar.test>`,
		"To":                     `"Dana Scully" <dana@example.com>, "CS Team" <cs@example.com>`,
		"Message-Id":             "<al-1-1-ch@lodestar>",
		"X-Lodestar-Delivery-Id": "al-1-1-ch",
		"Content-Type":           "text/plain; charset=utf-8",
		"Date":                   "Tue, 10 Mar 2026 09:30:00 +0000",
	} {
		if got := m.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if m.Subject != "[Lodestar] Escalated: not acknowledged in time · Acme <Corp> & Co · Red band (HIGH)" {
		t.Errorf("subject %q", m.Subject)
	}
	for _, line := range []string{"In the red band at 38 (-24)", "Score:    38 (−24), red", "Renewal:  2026-04-24 (in 45 days)",
		"ARR:      USD 120,000", "Owner:    Dana Scully <dana@example.com>", "usage_trend fell 12 points",
		"Open in Lodestar: https://lodestar.test/accounts/acme/acct-7", "Alert al-1, rule red-band."} {
		if !strings.Contains(m.Body, line+"\n") {
			t.Errorf("body lacks %q:\n%s", line, m.Body)
		}
	}
}

func TestDigests(t *testing.T) {
	rcv := receivers.NewHTTP(t, func(int, []byte) int { return http.StatusOK })
	smtp := receivers.NewSMTP(t)
	s := sender(smtp.Addr)
	dg := &alertv1.DeliveryDigest{TenantId: "acme", ChannelId: "ch", Recipient: delivery(0).GetRecipient()}
	for i := range 3 {
		d := delivery(alertv1.AlertEventType_ALERT_EVENT_TYPE_OPENED)
		d.Event.Alert.AccountName = "Account " + string(rune('A'+i))
		dg.Deliveries = append(dg.Deliveries, d)
	}
	slack := &alertv1.Channel{Config: &alertv1.Channel_Slack{Slack: &alertv1.SlackChannel{WebhookUrl: rcv.URL}}}
	mail := &alertv1.Channel{Config: &alertv1.Channel_Email{Email: &alertv1.EmailChannel{}}}
	for _, ch := range []*alertv1.Channel{slack, mail} {
		if err := s.SendDigest(context.Background(), ch, dg); err != nil {
			t.Fatal(err)
		}
	}
	var msg channel.SlackMessage
	if err := json.Unmarshal(rcv.Requests()[0].Body, &msg); err != nil {
		t.Fatal(err)
	}
	if msg.Text != "3 churn alerts held back by the rate limit or the daily page budget" || len(msg.Blocks) != 5 {
		t.Errorf("slack digest: %q with %d blocks", msg.Text, len(msg.Blocks))
	}
	if b := msg.Blocks[4].Text.Text; !strings.Contains(b, "*Account C* · Red band (HIGH)") || !strings.Contains(b, "<https://lodestar.test/accounts/acme/acct-7|open>") {
		t.Errorf("slack digest item %q", b)
	}
	m := smtp.Mails()[0]
	if m.Subject != "[Lodestar] Digest: 3 churn alerts" || strings.Count(m.Body, "New alert · Account") != 3 {
		t.Errorf("mail digest %q:\n%s", m.Subject, m.Body)
	}
}

func TestErrorsClassified(t *testing.T) {
	tests := []struct {
		status    int
		permanent bool
	}{
		{http.StatusInternalServerError, false},
		{http.StatusBadGateway, false},
		{http.StatusTooManyRequests, false},
		{http.StatusRequestTimeout, false},
		{http.StatusBadRequest, true},
		{http.StatusNotFound, true},
		{http.StatusFound, true}, // redirects are not followed
	}
	for _, tc := range tests {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			rcv := receivers.NewHTTP(t, func(int, []byte) int { return tc.status })
			ch := &alertv1.Channel{Config: &alertv1.Channel_Slack{Slack: &alertv1.SlackChannel{WebhookUrl: rcv.URL}}}
			err := sender("").Send(context.Background(), ch, delivery(alertv1.AlertEventType_ALERT_EVENT_TYPE_OPENED))
			if err == nil || channel.IsPermanent(err) != tc.permanent {
				t.Fatalf("err %v, want permanent=%v", err, tc.permanent)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	bad := []*alertv1.Channel{
		{ChannelId: "Bad!", Config: &alertv1.Channel_Slack{Slack: &alertv1.SlackChannel{WebhookUrl: "http://hooks.slack.com/x"}}},
		{ChannelId: "w", Config: &alertv1.Channel_Webhook{Webhook: &alertv1.WebhookChannel{Url: "not a url", Secret: "short"}},
			RateLimit: &alertv1.RateLimit{MaxPerHour: 5, DigestInterval: durationpb.New(time.Hour)}},
		{ChannelId: "m", Config: &alertv1.Channel_Email{Email: &alertv1.EmailChannel{ExtraTo: []string{"nope"}}}},
		{ChannelId: "p", Config: &alertv1.Channel_Pagerduty{Pagerduty: &alertv1.PagerDutyChannel{}}, RateLimit: &alertv1.RateLimit{MaxPerHour: -1}},
		{ChannelId: "none"},
	}
	want := [][]string{
		{"channel.channel_id", "channel.slack.webhook_url"},
		{"channel.webhook.url", "channel.webhook.secret", "channel.rate_limit.digest_interval"},
		{"channel.email", "channel.email.extra_to[0]"},
		{"channel.pagerduty.routing_key", "channel.rate_limit"},
		{"channel.config"},
	}
	for i, c := range bad {
		var got []string
		for _, p := range channel.Validate(c, channel.ValidateOptions{}) {
			got = append(got, p.GetField())
		}
		if strings.Join(got, ",") != strings.Join(want[i], ",") {
			t.Errorf("channel %d: problems %v, want %v", i, got, want[i])
		}
	}
	local := &alertv1.Channel{ChannelId: "local", Config: &alertv1.Channel_Webhook{Webhook: &alertv1.WebhookChannel{Url: "http://127.0.0.1:9/x", Secret: "0123456789abcdef"}}}
	if ps := channel.Validate(local, channel.ValidateOptions{AllowHTTP: true, Egress: loopback}); len(ps) > 0 {
		t.Errorf("http and 127.0.0.1 allowed, still %v", ps)
	}
}

// TestValidateRefusesPrivateTargets: the targets of issue 13's SSRF probe
// whose host is an address, a numeric form of one or a name of this
// machine or a metadata service are refused when the channel is created.
// Host names that resolve to such addresses are refused when connecting
// (TestSendRefusesPrivateTargets).
func TestValidateRefusesPrivateTargets(t *testing.T) {
	for _, u := range []string{
		"https://127.0.0.1/x", "https://127.0.0.1:8080/x", "https://169.254.169.254/latest/meta-data/",
		"https://[::1]/x", "https://10.0.0.1/x", "https://10.255.255.254:9200/x", "https://192.168.1.1/x",
		"https://172.16.5.4/x", "https://0x7f000001/x", "https://2130706433/x", "https://[::ffff:127.0.0.1]/x",
		"https://[::ffff:169.254.169.254]/x", "https://metadata.google.internal/computeMetadata/v1/",
		"https://localhost:6379/x", "https://0.0.0.0/x", "https://100.100.100.200/x", "https://[fd00:ec2::254]/x",
		"https://user:pass@hooks.slack.com/x",
	} {
		for _, c := range []*alertv1.Channel{
			{ChannelId: "s", Config: &alertv1.Channel_Slack{Slack: &alertv1.SlackChannel{WebhookUrl: u}}},
			{ChannelId: "w", Config: &alertv1.Channel_Webhook{Webhook: &alertv1.WebhookChannel{Url: u, Secret: "0123456789abcdef"}}},
		} {
			ps := channel.Validate(c, channel.ValidateOptions{})
			if len(ps) != 1 || !strings.HasSuffix(ps[0].GetField(), "url") {
				t.Errorf("%s (%s): problems %v, want the URL refused", u, channel.Kind(c), ps)
			}
		}
	}
	public := &alertv1.Channel{ChannelId: "s", Config: &alertv1.Channel_Slack{Slack: &alertv1.SlackChannel{WebhookUrl: "https://hooks.slack.com/services/T/B/X"}}}
	if ps := channel.Validate(public, channel.ValidateOptions{}); len(ps) > 0 {
		t.Errorf("a public URL refused: %v", ps)
	}
}

// TestSendRefusesPrivateTargets: without an allow-list, a delivery to a
// name that resolves to loopback fails for good when connecting, and the
// receiver never sees it.
func TestSendRefusesPrivateTargets(t *testing.T) {
	rcv := receivers.NewHTTP(t, func(int, []byte) int { return http.StatusOK })
	s := sender("")
	s.Client = channel.NewHTTPClient(5*time.Second, nil)
	byName := strings.Replace(rcv.URL, "127.0.0.1", "localhost", 1)
	for _, u := range []string{rcv.URL, byName} {
		ch := &alertv1.Channel{ChannelId: "ch", Config: &alertv1.Channel_Webhook{Webhook: &alertv1.WebhookChannel{Url: u, Secret: "0123456789abcdef"}}}
		err := s.Send(context.Background(), ch, delivery(alertv1.AlertEventType_ALERT_EVENT_TYPE_OPENED))
		if !errors.Is(err, egress.ErrBlocked) || !channel.IsPermanent(err) {
			t.Errorf("%s: %v, want a permanent ErrBlocked", u, err)
		}
	}
	if n := len(rcv.Requests()); n != 0 {
		t.Fatalf("the private receiver got %d requests", n)
	}
}

// TestErrorHidesAnswerBody: a failed send names the status code only, never
// what the endpoint answered, which TestChannel would show the tenant.
func TestErrorHidesAnswerBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"internal":"redis-password=hunter2"}`))
	}))
	t.Cleanup(srv.Close)
	ch := &alertv1.Channel{ChannelId: "ch", Config: &alertv1.Channel_Slack{Slack: &alertv1.SlackChannel{WebhookUrl: srv.URL}}}
	err := sender("").Send(context.Background(), ch, delivery(alertv1.AlertEventType_ALERT_EVENT_TYPE_OPENED))
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "403") {
		t.Fatalf("error %v: want the status code without the answer", err)
	}
}

func TestSecrets(t *testing.T) {
	stored := &alertv1.Channel{ChannelId: "pd", Config: &alertv1.Channel_Pagerduty{Pagerduty: &alertv1.PagerDutyChannel{RoutingKey: "SECRET"}}}
	if r := channel.Redact(stored); r.GetPagerduty().GetRoutingKey() != "" || stored.GetPagerduty().GetRoutingKey() != "SECRET" {
		t.Fatal("Redact must blank a copy")
	}
	update := &alertv1.Channel{ChannelId: "pd", MinSeverity: alertv1.Severity_SEVERITY_HIGH, Config: &alertv1.Channel_Pagerduty{Pagerduty: &alertv1.PagerDutyChannel{}}}
	channel.KeepSecrets(update, stored)
	if update.GetPagerduty().GetRoutingKey() != "SECRET" {
		t.Fatal("an empty secret in an update must keep the stored one")
	}
}

func TestWants(t *testing.T) {
	ev := func(typ alertv1.AlertEventType, sev, prev alertv1.Severity) *alertv1.AlertEvent {
		return &alertv1.AlertEvent{Type: typ, PreviousSeverity: prev, Alert: &alertv1.Alert{Severity: sev}}
	}
	slack := &alertv1.Channel{Config: &alertv1.Channel_Slack{Slack: &alertv1.SlackChannel{}}}
	pd := &alertv1.Channel{Config: &alertv1.Channel_Pagerduty{Pagerduty: &alertv1.PagerDutyChannel{}}, MinSeverity: alertv1.Severity_SEVERITY_HIGH}
	hook := &alertv1.Channel{Config: &alertv1.Channel_Webhook{Webhook: &alertv1.WebhookChannel{}}}
	mail := &alertv1.Channel{Config: &alertv1.Channel_Email{Email: &alertv1.EmailChannel{}}}
	withMail, noMail := &alertv1.Person{Email: "a@b.c"}, &alertv1.Person{}
	const (
		opened   = alertv1.AlertEventType_ALERT_EVENT_TYPE_OPENED
		updated  = alertv1.AlertEventType_ALERT_EVENT_TYPE_UPDATED
		acked    = alertv1.AlertEventType_ALERT_EVENT_TYPE_ACKNOWLEDGED
		reopen   = alertv1.AlertEventType_ALERT_EVENT_TYPE_REOPENED
		resolved = alertv1.AlertEventType_ALERT_EVENT_TYPE_RESOLVED
		high     = alertv1.Severity_SEVERITY_HIGH
		medium   = alertv1.Severity_SEVERITY_MEDIUM
		none     = alertv1.Severity_SEVERITY_UNSPECIFIED
	)
	reopened := func(e *alertv1.AlertEvent) *alertv1.AlertEvent {
		e.Alert.ReopenCount = 1
		return e
	}
	tests := []struct {
		name string
		c    *alertv1.Channel
		ev   *alertv1.AlertEvent
		p    *alertv1.Person
		want bool
	}{
		{"slack opened", slack, ev(opened, medium, none), nil, true},
		{"slack quiet update", slack, ev(updated, medium, none), nil, false},
		{"slack severity raised", slack, ev(updated, high, medium), nil, true},
		{"slack acknowledged", slack, ev(acked, medium, none), nil, false},
		{"pagerduty below min severity", pd, ev(opened, medium, none), nil, false},
		{"pagerduty acknowledged", pd, ev(acked, high, none), nil, true},
		{"webhook reopened: a flapping account", hook, ev(reopen, medium, none), nil, false},
		{"webhook resolved", hook, ev(resolved, medium, none), nil, true},
		{"slack resolved after a reopening", slack, reopened(ev(resolved, medium, none)), nil, false},
		{"webhook quiet update", hook, ev(updated, medium, none), nil, false},
		{"mail with address", mail, ev(opened, medium, none), withMail, true},
		{"mail without address", mail, ev(opened, medium, none), noMail, false},
	}
	for _, tc := range tests {
		if got := channel.Wants(tc.c, tc.ev, tc.p); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
