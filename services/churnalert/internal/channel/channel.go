// Package channel delivers alert events to where on-call CSMs are: Slack
// incoming webhooks, the PagerDuty Events API v2, signed generic webhooks and
// e-mail over SMTP. It also says which events a channel carries, validates
// channel settings and keeps their secrets out of API answers.
package channel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"net/url"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"

	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/egress"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/rules"
)

// Channel kinds: the last token of their DELIVERIES subject.
const (
	KindSlack     = "slack"
	KindPagerDuty = "pagerduty"
	KindWebhook   = "webhook"
	KindEmail     = "email"
)

// Kind is a channel's kind, "" when it has no config.
func Kind(c *alertv1.Channel) string {
	switch c.GetConfig().(type) {
	case *alertv1.Channel_Slack:
		return KindSlack
	case *alertv1.Channel_Pagerduty:
		return KindPagerDuty
	case *alertv1.Channel_Webhook:
		return KindWebhook
	case *alertv1.Channel_Email:
		return KindEmail
	}
	return ""
}

// IsPage reports whether an event calls for someone's attention: a new or
// escalated alert, one back from snooze, or a raised severity. Rate limits
// and digests apply to pages only; follow-ups always go through.
func IsPage(ev *alertv1.AlertEvent) bool {
	switch ev.GetType() {
	case alertv1.AlertEventType_ALERT_EVENT_TYPE_OPENED, alertv1.AlertEventType_ALERT_EVENT_TYPE_ESCALATED,
		alertv1.AlertEventType_ALERT_EVENT_TYPE_UNSNOOZED:
		return true
	case alertv1.AlertEventType_ALERT_EVENT_TYPE_UPDATED:
		return ev.GetPreviousSeverity() != alertv1.Severity_SEVERITY_UNSPECIFIED && ev.GetAlert().GetSeverity() > ev.GetPreviousSeverity()
	}
	return false
}

// Wants reports whether a channel carries an event for a recipient. People
// (Slack, e-mail) hear of pages, Slack also of resolutions; PagerDuty follows
// the incident's life; webhooks get every transition but updates. No channel
// hears of an account hovering at a threshold: an alert reopened within its
// cooldown, and its later resolutions, are on the ALERTS stream only.
func Wants(c *alertv1.Channel, ev *alertv1.AlertEvent, recipient *alertv1.Person) bool {
	t := ev.GetType()
	if ev.GetAlert().GetSeverity() < c.GetMinSeverity() || t == alertv1.AlertEventType_ALERT_EVENT_TYPE_REOPENED ||
		(t == alertv1.AlertEventType_ALERT_EVENT_TYPE_RESOLVED && ev.GetAlert().GetReopenCount() > 0) {
		return false
	}
	page := IsPage(ev)
	switch Kind(c) {
	case KindSlack:
		return page || t == alertv1.AlertEventType_ALERT_EVENT_TYPE_RESOLVED
	case KindEmail:
		return page && (recipient.GetEmail() != "" || len(c.GetEmail().GetExtraTo()) > 0)
	case KindPagerDuty:
		return page || t == alertv1.AlertEventType_ALERT_EVENT_TYPE_ACKNOWLEDGED || t == alertv1.AlertEventType_ALERT_EVENT_TYPE_RESOLVED
	case KindWebhook:
		return page || t != alertv1.AlertEventType_ALERT_EVENT_TYPE_UPDATED
	}
	return false
}

// Digestible reports whether a channel kind can gather pages into a digest.
func Digestible(kind string) bool { return kind == KindSlack || kind == KindEmail }

// ValidateOptions are what channel validation depends on in the service's
// configuration.
type ValidateOptions struct {
	// AllowHTTP accepts plain http endpoints (local runs, tests).
	AllowHTTP bool
	// SMTPConfigured is whether e-mail can be sent at all.
	SMTPConfigured bool
	// Egress refuses URLs at addresses a tenant may not reach; nil allows
	// public addresses only. Deliveries check again at dial time.
	Egress *egress.Policy
}

const (
	minSecretLen      = 16
	minDigestInterval = time.Second
	maxDigestInterval = 24 * time.Hour
)

// Validate lists every problem of a channel.
func Validate(c *alertv1.Channel, o ValidateOptions) []*errdetails.BadRequest_FieldViolation {
	if c == nil {
		return []*errdetails.BadRequest_FieldViolation{{Field: "channel", Description: "required"}}
	}
	var out []*errdetails.BadRequest_FieldViolation
	bad := func(field, format string, args ...any) {
		out = append(out, &errdetails.BadRequest_FieldViolation{Field: "channel." + field, Description: fmt.Sprintf(format, args...)})
	}
	if v := rules.ValidID("channel.channel_id", c.GetChannelId()); v != nil {
		out = append(out, v)
	}
	if _, ok := alertv1.Severity_name[int32(c.GetMinSeverity())]; !ok {
		bad("min_severity", "unknown severity")
	}
	checkURL := func(field, raw string) {
		u, err := url.Parse(raw)
		switch {
		case raw == "":
			bad(field, "required")
		case err != nil || u.Host == "":
			bad(field, "not an absolute URL")
		case u.Scheme != "https" && !(u.Scheme == "http" && o.AllowHTTP):
			bad(field, "must be https (http only with -churn-alert.allow-http-endpoints)")
		case u.User != nil:
			bad(field, "must not carry user information")
		default:
			if err := o.Egress.CheckHost(u.Hostname()); err != nil {
				bad(field, "%v", err)
			}
		}
	}
	switch cfg := c.GetConfig().(type) {
	case *alertv1.Channel_Slack:
		checkURL("slack.webhook_url", cfg.Slack.GetWebhookUrl())
	case *alertv1.Channel_Pagerduty:
		if k := cfg.Pagerduty.GetRoutingKey(); k == "" || len(k) > 64 {
			bad("pagerduty.routing_key", "required, at most 64 characters")
		}
	case *alertv1.Channel_Webhook:
		checkURL("webhook.url", cfg.Webhook.GetUrl())
		if len(cfg.Webhook.GetSecret()) < minSecretLen {
			bad("webhook.secret", "at least %d characters", minSecretLen)
		}
	case *alertv1.Channel_Email:
		if !o.SMTPConfigured {
			bad("email", "this server has no SMTP relay (-churn-alert.smtp-addr)")
		}
		for i, a := range cfg.Email.GetExtraTo() {
			if _, err := mail.ParseAddress(a); err != nil {
				bad(fmt.Sprintf("email.extra_to[%d]", i), "%v", err)
			}
		}
	default:
		bad("config", "one of slack, pagerduty, webhook or email is required")
	}
	rl := c.GetRateLimit()
	if rl.GetMaxPerHour() < 0 || rl.GetBurst() < 0 {
		bad("rate_limit", "must not be negative")
	}
	if d := rl.GetDigestInterval(); d != nil {
		switch {
		case !d.IsValid() || d.AsDuration() < 0:
			bad("rate_limit.digest_interval", "invalid duration")
		case d.AsDuration() == 0:
		case !Digestible(Kind(c)):
			bad("rate_limit.digest_interval", "only Slack and e-mail channels send digests")
		case d.AsDuration() < minDigestInterval || d.AsDuration() > maxDigestInterval:
			bad("rate_limit.digest_interval", "want %s to %s", minDigestInterval, maxDigestInterval)
		}
	}
	return out
}

// secrets returns pointers to a channel's write-only fields.
func secrets(c *alertv1.Channel) []*string {
	switch cfg := c.GetConfig().(type) {
	case *alertv1.Channel_Slack:
		return []*string{&cfg.Slack.WebhookUrl}
	case *alertv1.Channel_Pagerduty:
		return []*string{&cfg.Pagerduty.RoutingKey}
	case *alertv1.Channel_Webhook:
		return []*string{&cfg.Webhook.Secret}
	}
	return nil
}

// Redact returns a copy of a channel without its secrets, for API answers.
func Redact(c *alertv1.Channel) *alertv1.Channel {
	c = proto.CloneOf(c)
	for _, s := range secrets(c) {
		*s = ""
	}
	return c
}

// KeepSecrets fills the secrets an update left empty from the stored channel
// of the same kind.
func KeepSecrets(update, stored *alertv1.Channel) {
	if Kind(update) != Kind(stored) {
		return
	}
	old := secrets(stored)
	for i, s := range secrets(update) {
		if *s == "" {
			*s = *old[i]
		}
	}
}

// PermanentError is a failure that retrying will not fix (a 4xx answer, a
// rejected address): the delivery goes to the dead letters at once.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// IsPermanent reports whether err is a PermanentError.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// SMTP is the relay e-mail goes through.
type SMTP struct {
	// Addr is host:port; empty disables e-mail.
	Addr     string
	From     string
	Username string
	Password string
}

// Sender sends deliveries. It is safe for concurrent use.
type Sender struct {
	// Client must not follow redirects and must check the addresses it
	// connects to (see NewHTTPClient).
	Client       *http.Client
	PagerDutyURL string
	SMTP         SMTP
	Now          func() time.Time
}

// NewHTTPClient returns the client for webhooks: bounded in time, never
// following a redirect, so an endpoint cannot bounce a signed request
// somewhere else, and connecting only to addresses the policy allows,
// checked after DNS resolution.
func NewHTTPClient(timeout time.Duration, policy *egress.Policy) *http.Client {
	return &http.Client{
		Timeout:       timeout,
		Transport:     policy.Transport(timeout),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Send delivers one event through a channel.
func (s *Sender) Send(ctx context.Context, c *alertv1.Channel, d *alertv1.Delivery) error {
	switch cfg := c.GetConfig().(type) {
	case *alertv1.Channel_Slack:
		return s.postJSON(ctx, cfg.Slack.GetWebhookUrl(), slackMessage(d, s.Now()))
	case *alertv1.Channel_Pagerduty:
		return s.postJSON(ctx, s.PagerDutyURL, pagerDutyEvent(cfg.Pagerduty.GetRoutingKey(), d))
	case *alertv1.Channel_Webhook:
		return s.webhook(ctx, cfg.Webhook, d)
	case *alertv1.Channel_Email:
		return s.mail(ctx, cfg.Email, d.GetRecipient(), d.GetDeliveryId(), emailMessage(d, s.Now()))
	}
	return &PermanentError{fmt.Errorf("channel %q has no config", c.GetChannelId())}
}

// SendDigest delivers the pages a recipient got over the rate limit as one
// message (Slack and e-mail only).
func (s *Sender) SendDigest(ctx context.Context, c *alertv1.Channel, dg *alertv1.DeliveryDigest) error {
	switch cfg := c.GetConfig().(type) {
	case *alertv1.Channel_Slack:
		return s.postJSON(ctx, cfg.Slack.GetWebhookUrl(), slackDigest(dg))
	case *alertv1.Channel_Email:
		id := "digest-" + dg.GetDeliveries()[0].GetDeliveryId()
		return s.mail(ctx, cfg.Email, dg.GetRecipient(), id, emailDigest(dg))
	}
	return &PermanentError{fmt.Errorf("channel %q cannot send digests", c.GetChannelId())}
}

// Test sends a test message through a channel; PagerDuty gets a trigger and
// its resolve, so no incident stays open.
func (s *Sender) Test(ctx context.Context, tenant string, c *alertv1.Channel, recipient *alertv1.Person) error {
	d := TestDelivery(tenant, c.GetChannelId(), recipient, s.Now())
	if err := s.Send(ctx, c, d); err != nil || Kind(c) != KindPagerDuty {
		return err
	}
	d.Event.Type = alertv1.AlertEventType_ALERT_EVENT_TYPE_RESOLVED
	return s.Send(ctx, c, d)
}

// post sends a request and classifies the answer: 2xx is success; 408, 429
// and 5xx are worth retrying; other answers are permanent failures.
func (s *Sender) post(ctx context.Context, url, contentType string, body []byte, header http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(string(body)))
	if err != nil {
		return &PermanentError{fmt.Errorf("build request: %w", err)}
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", "Lodestar-Alerts/1")
	resp, err := s.Client.Do(req)
	if errors.Is(err, egress.ErrBlocked) {
		return &PermanentError{fmt.Errorf("post to %s: %w", req.URL.Host, err)}
	}
	if err != nil {
		return fmt.Errorf("post to %s: %w", req.URL.Redacted(), err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // reuse the connection
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	// The status code only: the answer's body is the endpoint's, and a
	// tenant must not read an internal service through TestChannel or the
	// dead letters.
	err = fmt.Errorf("post to %s: answered %d %s", req.URL.Host, resp.StatusCode, http.StatusText(resp.StatusCode))
	if resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		return err
	}
	return &PermanentError{err}
}
