package churnalert_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/internal/testenv/receivers"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/channel"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/streams"
)

const day = 24 * time.Hour

// webhook creates a signed webhook channel for a tenant and returns its
// receiver and secret.
func (e *env) webhook(tenant, id string, respond func(int, []byte) int) (*receivers.HTTP, string) {
	e.t.Helper()
	rcv := receivers.NewHTTP(e.t, respond)
	secret := "whsec-" + tenant + "-" + id + "-0123456789"
	_, err := e.client.CreateChannel(e.as(tenant), &alertv1.CreateChannelRequest{Channel: &alertv1.Channel{
		ChannelId: id, Config: &alertv1.Channel_Webhook{Webhook: &alertv1.WebhookChannel{Url: rcv.URL, Secret: secret}},
	}})
	if err != nil {
		e.t.Fatal(err)
	}
	return rcv, secret
}

// received decodes what a webhook receiver got, verifying every signature
// against the service's clock.
func (e *env) received(rcv *receivers.HTTP, secret string) []*alertv1.Delivery {
	e.t.Helper()
	var out []*alertv1.Delivery
	for _, r := range rcv.Requests() {
		if err := churnalert.VerifyWebhook([]byte(secret), r.Header.Get(channel.HeaderSignature), r.Body, e.clock.Now(), 5*time.Minute); err != nil {
			e.t.Errorf("webhook signature: %v", err)
		}
		d := &alertv1.Delivery{}
		if err := protojson.Unmarshal(r.Body, d); err != nil {
			e.t.Fatalf("webhook body: %v", err)
		}
		if r.Header.Get(channel.HeaderDeliveryID) != d.GetDeliveryId() {
			e.t.Errorf("delivery id header %q, body %q", r.Header.Get(channel.HeaderDeliveryID), d.GetDeliveryId())
		}
		out = append(out, d)
	}
	return out
}

// only leaves one of a tenant's rules enabled, changed by edit.
func (e *env) only(tenant, ruleID string, edit func(*alertv1.Rule)) {
	e.t.Helper()
	rs, err := e.client.ListRules(e.as(tenant), &alertv1.ListRulesRequest{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, r := range rs.GetRules() {
		if r.GetRuleId() == ruleID {
			if edit == nil {
				continue
			}
			edit(r)
		} else {
			r.Disabled = true
		}
		if _, err := e.client.UpdateRule(e.as(tenant), &alertv1.UpdateRuleRequest{Rule: r}); err != nil {
			e.t.Fatal(err)
		}
	}
}

// drained waits until every delivery has left the work queue.
func (e *env) drained() {
	e.t.Helper()
	waitFor(e.t, 20*time.Second, "deliveries sent", func() bool {
		st, err := e.js.Stream(context.Background(), streams.Deliveries)
		if err != nil {
			return false
		}
		info, err := st.Info(context.Background())
		return err == nil && info.State.Msgs == 0
	})
}

func (e *env) alerts(tenant string) []*alertv1.Alert {
	e.t.Helper()
	resp, err := e.client.ListAlerts(e.as(tenant), &alertv1.ListAlertsRequest{})
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.GetAlerts()
}

// TestRules runs each shipped rule, alone, on two scripted account
// histories: one that must raise an alert and one that must not.
func TestRules(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	churned := func(id string) *accountv1.Account {
		return &accountv1.Account{AccountId: id, Name: "Account " + id, LifecycleStage: accountv1.LifecycleStage_LIFECYCLE_STAGE_CHURNED,
			Outcomes: []*accountv1.RenewalOutcome{{AccountId: id, Type: accountv1.OutcomeType_OUTCOME_TYPE_CHURNED, OutcomeTime: timestamppb.New(now.Add(-60 * day))}}}
	}
	onboarding := func(id string, started time.Duration) *accountv1.Account {
		return &accountv1.Account{AccountId: id, LifecycleStage: accountv1.LifecycleStage_LIFECYCLE_STAGE_ONBOARDING,
			ContractStartTime: timestamppb.New(now.Add(-started))}
	}
	renewing := func(id string, in time.Duration) *accountv1.Account {
		return &accountv1.Account{AccountId: id, RenewalTime: timestamppb.New(now.Add(in)), Arr: &accountv1.Money{CurrencyCode: "EUR", Units: 40_000}}
	}
	const (
		trend  = scoringv1.MeasureKind_MEASURE_KIND_USAGE_TREND
		recent = scoringv1.MeasureKind_MEASURE_KIND_RECENCY
		stake  = scoringv1.MeasureKind_MEASURE_KIND_STAKEHOLDER_ENGAGEMENT
		miles  = scoringv1.MeasureKind_MEASURE_KIND_ONBOARDING_MILESTONES
		seats  = scoringv1.MeasureKind_MEASURE_KIND_ACTIVE_SEAT_RATIO
	)
	tests := []struct {
		rule        string
		fire, quiet []step
		reason      string
		severity    alertv1.Severity
	}{
		{"red-band",
			[]step{scored("f", now.Add(-40*time.Minute), 72), scored("f", now.Add(-20*time.Minute), 55), scored("f", now, 38)},
			[]step{scored("q", now.Add(-40*time.Minute), 72), scored("q", now.Add(-20*time.Minute), 55), scored("q", now, 45)},
			"In the red band at 38", alertv1.Severity_SEVERITY_HIGH},
		// The risk rules below fire on red accounts only: each quiet history
		// also has a yellow account, y, that meets the rest of the condition.
		{"score-drop",
			[]step{scored("f", now.Add(-5*time.Minute), 55), scored("f", now.Add(-3*time.Minute), 45), scored("f", now, 33)},
			[]step{scored("q", now.Add(-5*time.Minute), 45), scored("q", now.Add(-3*time.Minute), 40), scored("q", now, 33),
				scored("y", now.Add(-5*time.Minute), 80), scored("y", now.Add(-3*time.Minute), 70), scored("y", now, 58)},
			"Score fell 22 points within 7 days (55 → 33)", alertv1.Severity_SEVERITY_MEDIUM},
		{"usage-drop",
			[]step{scored("f", now, 35, measure(trend, 0.35))},
			[]step{scored("q", now, 35, measure(trend, 0.8)), scored("y", now, 60, measure(trend, 0.35))},
			"Usage at 35% of its own baseline", alertv1.Severity_SEVERITY_MEDIUM},
		{"silent-account",
			[]step{scored("f", now.Add(-10*day), 60, measure(recent, 6)), scored("f", now, 35, measure(recent, 16))},
			[]step{scored("q", now, 35, measure(recent, 3)), scored("y", now, 60, measure(recent, 16))},
			"Silent for 16 days", alertv1.Severity_SEVERITY_HIGH},
		{"renewal-at-risk",
			[]step{account(renewing("f", 45*day)), scored("f", now, 35)},
			[]step{account(renewing("q", 200*day)), scored("q", now, 35), account(renewing("y", 45*day)), scored("y", now, 55)},
			"while red at 35", alertv1.Severity_SEVERITY_HIGH},
		{"stakeholders-disengaged",
			[]step{scored("f", now, 35, measure(stake, 0))},
			[]step{scored("q", now, 35, measure(stake, 0.5)), scored("y", now, 50, measure(stake, 0))},
			"No S/A stakeholder active", alertv1.Severity_SEVERITY_MEDIUM},
		{"onboarding-stalled",
			[]step{account(onboarding("f", 35*day)), scored("f", now, 40, measure(miles, 0.33))},
			[]step{account(onboarding("q", 10*day)), scored("q", now, 40, measure(miles, 0.33))},
			"Day 35 of onboarding without first value: 33% of milestones reached", alertv1.Severity_SEVERITY_MEDIUM},
		{"expansion-opportunity",
			[]step{scored("f", now, 90, measure(seats, 0.95))},
			[]step{scored("q", now, 70, measure(seats, 0.6))},
			"95% of purchased seats active", alertv1.Severity_SEVERITY_INFO},
		{"win-back",
			[]step{account(churned("f")), scored("f", now, 20, measure(recent, 2))},
			[]step{account(churned("q")), scored("q", now, 10, measure(recent, 30))},
			"and active again", alertv1.Severity_SEVERITY_LOW},
	}
	tenants := make([]string, len(tests))
	for i := range tests {
		tenants[i] = testenv.Tenant(t)
	}
	e := newEnv(t, testConfig(), tenants...)
	for i, tc := range tests {
		t.Run(tc.rule, func(t *testing.T) {
			t.Parallel()
			tenant := tenants[i]
			e.only(tenant, tc.rule, nil)
			rcv, secret := e.webhook(tenant, "hook", nil)
			// The quiet account shares the firing one's partition, whose
			// tenant clock its recent score makes live: f's history then
			// is news, not a catch-up of the partition.
			publish(t, e.js, tenant, renamed(tc.quiet, "q", partitionMate(tenant, "f"))...)
			publish(t, e.js, tenant, tc.fire...)
			rcv.Wait(t, 1, 20*time.Second)
			settle(t, e.js)
			e.drained()

			alerts := e.alerts(tenant)
			if len(alerts) != 1 {
				t.Fatalf("%d alerts, want 1 (for the firing account): %v", len(alerts), alerts)
			}
			a := alerts[0]
			if a.GetAccountId() != "f" || a.GetRuleId() != tc.rule || a.GetState() != alertv1.AlertState_ALERT_STATE_OPEN ||
				a.GetSeverity() != tc.severity || !strings.Contains(a.GetReason(), tc.reason) {
				t.Fatalf("alert %v\nwant account f, rule %s, open, %v, reason with %q", a, tc.rule, tc.severity, tc.reason)
			}
			ds := e.received(rcv, secret)
			if len(ds) != 1 {
				t.Fatalf("webhook got %d deliveries, want 1", len(ds))
			}
			d := ds[0]
			if d.GetEvent().GetType() != alertv1.AlertEventType_ALERT_EVENT_TYPE_OPENED || d.GetEvent().GetAlert().GetAlertId() != a.GetAlertId() ||
				d.GetTenantId() != tenant || d.GetChannelId() != "hook" || d.GetEvent().GetAlert().GetLink() != "https://lodestar.test/accounts/"+tenant+"/f" {
				t.Fatalf("delivery %v", d)
			}
		})
	}
}

// TestFlappingAccount: twenty swings in and out of the red band raise one
// alert and one page (and the first resolution); the swings are in the
// audit trail as quiet resolutions and reopenings.
func TestFlappingAccount(t *testing.T) {
	tenant := testenv.Tenant(t)
	e := newEnv(t, testConfig(), tenant)
	e.only(tenant, "red-band", nil)
	rcv, secret := e.webhook(tenant, "hook", nil)
	start := time.Now().Add(-time.Minute)
	var steps []step
	for i := range 21 {
		score := 38.0
		if i%2 == 1 {
			score = 45
		}
		steps = append(steps, scored("flappy", start.Add(time.Duration(i)*time.Second), score))
	}
	publish(t, e.js, tenant, steps...)
	settle(t, e.js)
	e.drained()
	if alerts := e.alerts(tenant); len(alerts) != 1 || alerts[0].GetState() != alertv1.AlertState_ALERT_STATE_OPEN {
		t.Fatalf("alerts %v, want one open", alerts)
	}
	ds := e.received(rcv, secret)
	var types []alertv1.AlertEventType
	for _, d := range ds {
		types = append(types, d.GetEvent().GetType())
	}
	slices.Sort(types)
	if !slices.Equal(types, []alertv1.AlertEventType{alertv1.AlertEventType_ALERT_EVENT_TYPE_OPENED, alertv1.AlertEventType_ALERT_EVENT_TYPE_RESOLVED}) {
		t.Fatalf("webhook got %v, want OPENED and the first RESOLVED", types)
	}
	// The audit trail has the opening, and a resolution or reopening per
	// band change.
	st, err := e.js.Stream(context.Background(), streams.Alerts)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil || info.State.Msgs != 21 {
		t.Fatalf("ALERTS holds %d events, want 1 opened + 10 resolved + 10 reopened (err %v)", info.State.Msgs, err)
	}
}

// TestEscalationToOnCall: an alert nobody acknowledges within the rule's
// time goes to the on-call CSM of the tenant's rotation; Slack mentions them
// and e-mail reaches them. An acknowledged alert does not escalate.
func TestEscalationToOnCall(t *testing.T) {
	tenant := testenv.Tenant(t)
	smtp := receivers.NewSMTP(t)
	cfg := testConfig()
	cfg.SMTPAddr = smtp.Addr
	e := newEnv(t, cfg, tenant)
	ctx := e.as(tenant)
	oscar := &alertv1.Person{PersonId: "oscar", Name: "Oscar", Email: "oscar@example.com", ChatHandle: "U0OSCAR01"}
	_, err := e.client.CreateOnCallSchedule(ctx, &alertv1.CreateOnCallScheduleRequest{Schedule: &alertv1.OnCallSchedule{
		ScheduleId: "csm-rotation", TimeZone: "UTC", RotationStartTime: timestamppb.New(time.Now().Add(-3 * day)),
		Participants: []*alertv1.Person{oscar, {PersonId: "pat", Email: "pat@example.com"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	e.only(tenant, "red-band", func(r *alertv1.Rule) {
		r.EscalateAfter = durationpb.New(10 * time.Minute)
		r.EscalationScheduleId = "csm-rotation"
	})
	slack := receivers.NewHTTP(t, func(int, []byte) int { return 200 })
	for _, c := range []*alertv1.Channel{
		{ChannelId: "slack", Config: &alertv1.Channel_Slack{Slack: &alertv1.SlackChannel{WebhookUrl: slack.URL}}},
		{ChannelId: "mail", Config: &alertv1.Channel_Email{Email: &alertv1.EmailChannel{}}},
	} {
		if _, err := e.client.CreateChannel(ctx, &alertv1.CreateChannelRequest{Channel: c}); err != nil {
			t.Fatal(err)
		}
	}
	owner := func(id string) *accountv1.Account {
		return &accountv1.Account{AccountId: id, Name: "Account " + id, Owner: &accountv1.Owner{CsmId: "dana", Name: "Dana", Email: "dana@example.com", ChatHandle: "U0DANA001"}}
	}
	now := time.Now()
	publish(t, e.js, tenant, account(owner("ignored")), account(owner("handled")))
	settle(t, e.js)
	publish(t, e.js, tenant, scored("ignored", now, 30), scored("handled", now, 32))
	slack.Wait(t, 2, 20*time.Second)
	smtp.Wait(t, 2, 20*time.Second)
	settle(t, e.js)
	var handled *alertv1.Alert
	for _, a := range e.alerts(tenant) {
		if a.GetAssignee().GetPersonId() != "dana" {
			t.Fatalf("alert not routed to the owner: %v", a)
		}
		if a.GetAccountId() == "handled" {
			handled = a
		}
	}
	if _, err := e.client.AcknowledgeAlert(ctx, &alertv1.AcknowledgeAlertRequest{AlertId: handled.GetAlertId(), Actor: "dana"}); err != nil {
		t.Fatal(err)
	}

	e.clock.Advance(11 * time.Minute)
	slack.Wait(t, 3, 20*time.Second)
	mails := smtp.Wait(t, 3, 20*time.Second)
	e.drained()
	time.Sleep(100 * time.Millisecond) // a few more sweeps: nothing else may escalate
	if n := len(slack.Requests()); n != 3 {
		t.Fatalf("slack got %d messages, want 2 pages and 1 escalation", n)
	}
	var msg channel.SlackMessage
	if err := json.Unmarshal(slack.Requests()[2].Body, &msg); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(msg.Blocks[0].Text.Text, "Escalated: not acknowledged in time · Account ignored") ||
		!strings.HasPrefix(msg.Blocks[1].Text.Text, "<@U0OSCAR01>") {
		t.Fatalf("escalation message: %q / %q", msg.Blocks[0].Text.Text, msg.Blocks[1].Text.Text)
	}
	if m := mails[2]; len(m.To) != 1 || m.To[0] != "oscar@example.com" || !strings.Contains(m.Subject, "Escalated") {
		t.Fatalf("escalation mail to %v: %q", m.To, m.Subject)
	}
	for _, a := range e.alerts(tenant) {
		switch a.GetAccountId() {
		case "ignored":
			if a.GetEscalationLevel() != 1 || a.GetAssignee().GetPersonId() != "oscar" || a.GetOwner().GetPersonId() != "dana" {
				t.Fatalf("ignored alert not escalated: %v", a)
			}
		case "handled":
			if a.GetEscalationLevel() != 0 || a.GetState() != alertv1.AlertState_ALERT_STATE_ACKNOWLEDGED {
				t.Fatalf("acknowledged alert escalated: %v", a)
			}
		}
	}
}
