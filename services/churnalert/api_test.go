package churnalert_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/internal/testenv/receivers"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
)

// wantCode fails unless err is a status with code.
func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("error %v, want %v", err, code)
	}
}

// wantInvalid fails unless err is INVALID_ARGUMENT whose BadRequest names
// every one of fields.
func wantInvalid(t *testing.T, err error, fields ...string) {
	t.Helper()
	wantCode(t, err, codes.InvalidArgument)
	var got []string
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				got = append(got, v.GetField())
			}
		}
	}
	for _, f := range fields {
		if !slices.Contains(got, f) {
			t.Errorf("BadRequest lacks %s: %v", f, got)
		}
	}
}

func TestAlertAPI(t *testing.T) {
	tenant, other := testenv.Tenant(t), testenv.Tenant(t)
	e := newEnv(t, testConfig(), tenant, other)
	ctx := e.as(tenant)
	owned := func(id, csm string, tier accountv1.Tier) step {
		return account(&accountv1.Account{AccountId: id, Name: "Account " + id, Tier: tier, Owner: &accountv1.Owner{CsmId: csm, Email: csm + "@example.com"}})
	}
	now := time.Now()
	publish(t, e.js, tenant, owned("a1", "dana", accountv1.Tier_TIER_STANDARD), owned("a2", "dana", accountv1.Tier_TIER_STANDARD),
		owned("a3", "fox", accountv1.Tier_TIER_BENCHMARK))
	settle(t, e.js)
	e.only(tenant, "red-band", nil)
	publish(t, e.js, tenant, scored("a1", now, 30))
	publish(t, e.js, tenant, scored("a2", now.Add(time.Second), 31))
	publish(t, e.js, tenant, scored("a3", now.Add(2*time.Second), 32))
	settle(t, e.js)
	waitFor(t, 10*time.Second, "three alerts", func() bool { return len(e.alerts(tenant)) == 3 })

	byAccount := map[string]*alertv1.Alert{}
	for _, a := range e.alerts(tenant) {
		byAccount[a.GetAccountId()] = a
	}
	if byAccount["a3"].GetSeverity() != alertv1.Severity_SEVERITY_CRITICAL || byAccount["a1"].GetSeverity() != alertv1.Severity_SEVERITY_HIGH {
		t.Fatalf("benchmark tier must raise HIGH to CRITICAL: a1 %v a3 %v", byAccount["a1"].GetSeverity(), byAccount["a3"].GetSeverity())
	}

	t.Run("list", func(t *testing.T) {
		tests := []struct {
			name string
			req  *alertv1.ListAlertsRequest
			want []string
		}{
			{"all", &alertv1.ListAlertsRequest{}, []string{"a1", "a2", "a3"}},
			{"owner", &alertv1.ListAlertsRequest{OwnerCsmId: "dana"}, []string{"a1", "a2"}},
			{"severity", &alertv1.ListAlertsRequest{MinSeverity: alertv1.Severity_SEVERITY_CRITICAL}, []string{"a3"}},
			{"account", &alertv1.ListAlertsRequest{AccountId: "a2"}, []string{"a2"}},
			{"state", &alertv1.ListAlertsRequest{States: []alertv1.AlertState{alertv1.AlertState_ALERT_STATE_RESOLVED}}, nil},
			{"rule", &alertv1.ListAlertsRequest{RuleId: "score-drop"}, nil},
		}
		for _, tc := range tests {
			resp, err := e.client.ListAlerts(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, a := range resp.GetAlerts() {
				got = append(got, a.GetAccountId())
			}
			sort.Strings(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
			}
		}
		// Pages: newest first, no alert twice or missed.
		var seen []string
		req := &alertv1.ListAlertsRequest{PageSize: 2}
		for {
			resp, err := e.client.ListAlerts(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range resp.GetAlerts() {
				seen = append(seen, a.GetAccountId())
			}
			if resp.GetNextPageToken() == "" {
				break
			}
			req.PageToken = resp.GetNextPageToken()
		}
		if len(seen) != 3 || seen[0] == seen[1] || seen[1] == seen[2] || seen[0] == seen[2] {
			t.Errorf("paged through %v", seen)
		}
		_, err := e.client.ListAlerts(ctx, &alertv1.ListAlertsRequest{PageSize: -1, PageToken: "!!", States: []alertv1.AlertState{1}})
		wantInvalid(t, err, "page_size", "page_token")
		// Undefined enum numbers are refused before the handler (grpcserver).
		_, err = e.client.ListAlerts(ctx, &alertv1.ListAlertsRequest{PageSize: -1, States: []alertv1.AlertState{1, 99}})
		wantInvalid(t, err, "states[1]")
	})

	t.Run("tenant isolation", func(t *testing.T) {
		id := byAccount["a1"].GetAlertId()
		if got := e.alerts(other); len(got) != 0 {
			t.Fatalf("other tenant sees %d alerts", len(got))
		}
		_, err := e.client.GetAlert(e.as(other), &alertv1.GetAlertRequest{AlertId: id})
		wantCode(t, err, codes.NotFound)
		_, err = e.client.AcknowledgeAlert(e.as(other), &alertv1.AcknowledgeAlertRequest{AlertId: id})
		wantCode(t, err, codes.NotFound)
		_, err = e.client.ListAlerts(context.Background(), &alertv1.ListAlertsRequest{})
		wantCode(t, err, codes.Unauthenticated)
	})

	t.Run("lifecycle and watch", func(t *testing.T) {
		id := byAccount["a1"].GetAlertId()
		// Watch from now: what follows is this test's.
		from := time.Now()
		watchCtx, stopWatch := context.WithCancel(ctx)
		w, err := e.client.WatchAlerts(watchCtx, &alertv1.WatchAlertsRequest{OwnerCsmId: "dana", Cursor: fmt.Sprintf("%d.0", from.UnixNano())})
		if err != nil {
			t.Fatal(err)
		}

		ack, err := e.client.AcknowledgeAlert(ctx, &alertv1.AcknowledgeAlertRequest{AlertId: id, Actor: "dana", Note: "calling them"})
		if err != nil {
			t.Fatal(err)
		}
		if a := ack.GetAlert(); a.GetState() != alertv1.AlertState_ALERT_STATE_ACKNOWLEDGED || a.GetActor() != "dana" || a.GetNote() != "calling them" {
			t.Fatalf("acknowledged %v", a)
		}
		got, err := e.client.GetAlert(ctx, &alertv1.GetAlertRequest{AlertId: id})
		if err != nil || got.GetAlert().GetVersion() != ack.GetAlert().GetVersion() {
			t.Fatalf("GetAlert does not read the acknowledgement: %v %v", got, err)
		}
		if _, err := e.client.AcknowledgeAlert(ctx, &alertv1.AcknowledgeAlertRequest{AlertId: id}); err != nil {
			t.Fatal("acknowledging twice must succeed:", err)
		}
		_, err = e.client.SnoozeAlert(ctx, &alertv1.SnoozeAlertRequest{AlertId: id, SnoozeEndTime: timestamppb.New(time.Now().Add(-time.Hour))})
		wantInvalid(t, err, "snooze_end_time", "reason")
		snooze, err := e.client.SnoozeAlert(ctx, &alertv1.SnoozeAlertRequest{AlertId: id, SnoozeEndTime: timestamppb.New(e.clock.Now().Add(time.Minute)), Reason: "waiting for their board"})
		if err != nil || snooze.GetAlert().GetState() != alertv1.AlertState_ALERT_STATE_SNOOZED {
			t.Fatalf("snooze: %v %v", snooze, err)
		}
		e.clock.Advance(2 * time.Minute)
		waitFor(t, 10*time.Second, "snooze to end", func() bool {
			a, err := e.client.GetAlert(ctx, &alertv1.GetAlertRequest{AlertId: id})
			return err == nil && a.GetAlert().GetState() == alertv1.AlertState_ALERT_STATE_OPEN
		})

		types := func(n int) (out []alertv1.AlertEventType, cursor string) {
			for range n {
				r, err := w.Recv()
				if err != nil {
					t.Fatal(err)
				}
				if r.GetEvent().GetAlert().GetOwner().GetPersonId() != "dana" {
					t.Fatalf("watch filter let through %v", r.GetEvent().GetAlert())
				}
				out, cursor = append(out, r.GetEvent().GetType()), r.GetCursor()
				// The cursor is the tenant's: its event's time, not the
				// stream's sequence, which counts every tenant's alerts.
				ns, n, ok := strings.Cut(cursor, ".")
				at, err := strconv.ParseInt(ns, 10, 64)
				if !ok || err != nil || n == "" || time.Unix(0, at).Before(from) || time.Unix(0, at).After(time.Now()) {
					t.Fatalf("cursor %q is not the time of the tenant's event", cursor)
				}
			}
			return out, cursor
		}
		got3, cursor := types(3)
		want3 := []alertv1.AlertEventType{alertv1.AlertEventType_ALERT_EVENT_TYPE_ACKNOWLEDGED, alertv1.AlertEventType_ALERT_EVENT_TYPE_SNOOZED, alertv1.AlertEventType_ALERT_EVENT_TYPE_UNSNOOZED}
		if !slices.Equal(got3, want3) {
			t.Fatalf("watched %v, want %v", got3, want3)
		}
		stopWatch()

		res, err := e.client.ResolveAlert(ctx, &alertv1.ResolveAlertRequest{AlertId: id, Actor: "dana", Note: "renewal signed"})
		if err != nil || res.GetAlert().GetState() != alertv1.AlertState_ALERT_STATE_RESOLVED {
			t.Fatalf("resolve: %v %v", res, err)
		}
		_, err = e.client.AcknowledgeAlert(ctx, &alertv1.AcknowledgeAlertRequest{AlertId: id})
		wantCode(t, err, codes.FailedPrecondition)

		// Resuming from the cursor delivers what happened in between.
		w2, err := e.client.WatchAlerts(ctx, &alertv1.WatchAlertsRequest{Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		r, err := w2.Recv()
		if err != nil || r.GetEvent().GetType() != alertv1.AlertEventType_ALERT_EVENT_TYPE_RESOLVED || r.GetEvent().GetAlert().GetNote() != "renewal signed" {
			t.Fatalf("resumed watch: %v %v", r, err)
		}
		// Cursors past the end were never answered (issue 13, item 8).
		for _, c := range []string{"18446744073709551615", "18446744073709551615.0", fmt.Sprintf("%d.0", time.Now().AddDate(1, 0, 0).UnixNano()), "-1.0", "1.-1"} {
			_, err = recvErr(e.client, ctx, &alertv1.WatchAlertsRequest{Cursor: c})
			wantInvalid(t, err, "cursor")
		}
		_, err = recvErr(e.client, ctx, &alertv1.WatchAlertsRequest{Cursor: "x"})
		wantInvalid(t, err, "cursor")
	})

	t.Run("watch ends on shutdown", func(t *testing.T) {
		w, err := e.client.WatchAlerts(ctx, &alertv1.WatchAlertsRequest{Cursor: "0.0"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Recv(); err != nil { // the stream runs
			t.Fatal(err)
		}
		go e.stop()
		for err == nil { // the rest of the history, then the end
			_, err = w.Recv()
		}
		if !errors.Is(err, io.EOF) {
			t.Fatalf("watch after shutdown: %v, want a clean end", err)
		}
	})
}

// recvErr opens a watch and returns its first answer's error.
func recvErr(c alertv1.AlertServiceClient, ctx context.Context, req *alertv1.WatchAlertsRequest) (*alertv1.WatchAlertsResponse, error) {
	w, err := c.WatchAlerts(ctx, req)
	if err != nil {
		return nil, err
	}
	return w.Recv()
}

func TestSettingsAPI(t *testing.T) {
	tenant, other := testenv.Tenant(t), testenv.Tenant(t)
	pd := receivers.NewHTTP(t, nil)
	cfg := testConfig()
	cfg.PagerDutyURL = pd.URL + "/v2/enqueue"
	e := newEnv(t, cfg, tenant, other)
	ctx := e.as(tenant)

	t.Run("rules", func(t *testing.T) {
		list, err := e.client.ListRules(ctx, &alertv1.ListRulesRequest{})
		if err != nil || len(list.GetRules()) != 9 {
			t.Fatalf("shipped rules: %d, %v", len(list.GetRules()), err)
		}
		for _, r := range list.GetRules() {
			if !r.GetShipped() {
				t.Errorf("%s not marked shipped", r.GetRuleId())
			}
		}
		_, err = e.client.CreateRule(ctx, &alertv1.CreateRuleRequest{Rule: &alertv1.Rule{
			RuleId: "No Good", Kind: alertv1.RuleKind_RULE_KIND_SCORE_DROP, Threshold: -1, Cooldown: durationpb.New(-time.Second), EscalationScheduleId: "ghost",
		}})
		wantInvalid(t, err, "rule.rule_id", "rule.threshold", "rule.window_days", "rule.severity", "rule.cooldown", "rule.escalation_schedule_id")

		big := &alertv1.Rule{RuleId: "big-drop", DisplayName: "30 points in 14 days", Kind: alertv1.RuleKind_RULE_KIND_SCORE_DROP,
			Threshold: 30, WindowDays: 14, Severity: alertv1.Severity_SEVERITY_HIGH, Shipped: true}
		created, err := e.client.CreateRule(ctx, &alertv1.CreateRuleRequest{Rule: big})
		if err != nil || created.GetRule().GetShipped() {
			t.Fatalf("create: %v %v", created, err)
		}
		_, err = e.client.CreateRule(ctx, &alertv1.CreateRuleRequest{Rule: big})
		wantCode(t, err, codes.AlreadyExists)
		red, err := e.client.GetRule(ctx, &alertv1.GetRuleRequest{RuleId: "red-band"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.client.CreateRule(ctx, &alertv1.CreateRuleRequest{Rule: red.GetRule()})
		wantCode(t, err, codes.AlreadyExists)
		changed := proto.CloneOf(red.GetRule())
		changed.Disabled = true
		if _, err := e.client.UpdateRule(ctx, &alertv1.UpdateRuleRequest{Rule: changed}); err != nil {
			t.Fatal(err)
		}
		if got, _ := e.client.GetRule(ctx, &alertv1.GetRuleRequest{RuleId: "red-band"}); !got.GetRule().GetDisabled() || !got.GetRule().GetShipped() {
			t.Fatalf("updated shipped rule %v", got.GetRule())
		}
		if got, _ := e.client.GetRule(e.as(other), &alertv1.GetRuleRequest{RuleId: "red-band"}); got.GetRule().GetDisabled() {
			t.Fatal("a tenant's change leaked to another tenant")
		}
		if _, err := e.client.DeleteRule(ctx, &alertv1.DeleteRuleRequest{RuleId: "red-band"}); err != nil {
			t.Fatal(err)
		}
		if got, _ := e.client.GetRule(ctx, &alertv1.GetRuleRequest{RuleId: "red-band"}); got.GetRule().GetDisabled() {
			t.Fatal("deleting a shipped rule must restore it")
		}
		if _, err := e.client.DeleteRule(ctx, &alertv1.DeleteRuleRequest{RuleId: "big-drop"}); err != nil {
			t.Fatal(err)
		}
		_, err = e.client.GetRule(ctx, &alertv1.GetRuleRequest{RuleId: "big-drop"})
		wantCode(t, err, codes.NotFound)
		_, err = e.client.UpdateRule(ctx, &alertv1.UpdateRuleRequest{Rule: big})
		wantCode(t, err, codes.NotFound)
	})

	t.Run("schedules", func(t *testing.T) {
		ann := &alertv1.Person{PersonId: "ann", Email: "ann@example.com"}
		_, err := e.client.CreateOnCallSchedule(ctx, &alertv1.CreateOnCallScheduleRequest{Schedule: &alertv1.OnCallSchedule{ScheduleId: "x", TimeZone: "Nowhere/Land"}})
		wantInvalid(t, err, "schedule.time_zone", "schedule.rotation_start_time", "schedule.participants")
		// Issue 13's probe: 20,000 participants from year 1.
		crowd := make([]*alertv1.Person, 20_000)
		for i := range crowd {
			crowd[i] = &alertv1.Person{PersonId: fmt.Sprint("p", i), Email: fmt.Sprintf("p%d@example.com", i)}
		}
		_, err = e.client.CreateOnCallSchedule(ctx, &alertv1.CreateOnCallScheduleRequest{Schedule: &alertv1.OnCallSchedule{ScheduleId: "crowd", TimeZone: "UTC",
			RotationStartTime: timestamppb.New(time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)), Participants: crowd}})
		wantInvalid(t, err, "schedule.participants", "schedule.rotation_start_time")
		_, err = e.client.CreateOnCallSchedule(ctx, &alertv1.CreateOnCallScheduleRequest{Schedule: &alertv1.OnCallSchedule{ScheduleId: "later", TimeZone: "UTC",
			RotationStartTime: timestamppb.New(time.Now().AddDate(50, 0, 0)), Participants: crowd[:2]}})
		wantInvalid(t, err, "schedule.rotation_start_time")
		sc := &alertv1.OnCallSchedule{ScheduleId: "weekly", TimeZone: "UTC", RotationStartTime: timestamppb.New(time.Now().Add(-time.Hour)), Participants: []*alertv1.Person{ann}}
		if _, err := e.client.CreateOnCallSchedule(ctx, &alertv1.CreateOnCallScheduleRequest{Schedule: sc}); err != nil {
			t.Fatal(err)
		}
		got, err := e.client.GetOnCallSchedule(ctx, &alertv1.GetOnCallScheduleRequest{ScheduleId: "weekly"})
		if err != nil || got.GetOnCall().GetPersonId() != "ann" {
			t.Fatalf("on call: %v %v", got, err)
		}
		r := &alertv1.Rule{RuleId: "escalating", Kind: alertv1.RuleKind_RULE_KIND_RED_BAND, Severity: alertv1.Severity_SEVERITY_HIGH,
			EscalateAfter: durationpb.New(time.Hour), EscalationScheduleId: "weekly"}
		if _, err := e.client.CreateRule(ctx, &alertv1.CreateRuleRequest{Rule: r}); err != nil {
			t.Fatal(err)
		}
		_, err = e.client.DeleteOnCallSchedule(ctx, &alertv1.DeleteOnCallScheduleRequest{ScheduleId: "weekly"})
		wantCode(t, err, codes.FailedPrecondition)
		if _, err := e.client.DeleteRule(ctx, &alertv1.DeleteRuleRequest{RuleId: "escalating"}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.client.DeleteOnCallSchedule(ctx, &alertv1.DeleteOnCallScheduleRequest{ScheduleId: "weekly"}); err != nil {
			t.Fatal(err)
		}
		if list, _ := e.client.ListOnCallSchedules(ctx, &alertv1.ListOnCallSchedulesRequest{}); len(list.GetSchedules()) != 0 {
			t.Fatalf("schedules left: %v", list)
		}
	})

	t.Run("channels", func(t *testing.T) {
		c := &alertv1.Channel{ChannelId: "pd", Config: &alertv1.Channel_Pagerduty{Pagerduty: &alertv1.PagerDutyChannel{RoutingKey: "R0UT1NG"}}}
		created, err := e.client.CreateChannel(ctx, &alertv1.CreateChannelRequest{Channel: c})
		if err != nil || created.GetChannel().GetPagerduty().GetRoutingKey() != "" {
			t.Fatalf("create must answer without the secret: %v %v", created, err)
		}
		got, err := e.client.GetChannel(ctx, &alertv1.GetChannelRequest{ChannelId: "pd"})
		if err != nil || got.GetChannel().GetPagerduty() == nil || got.GetChannel().GetPagerduty().GetRoutingKey() != "" {
			t.Fatalf("get: %v %v", got, err)
		}
		update := proto.CloneOf(got.GetChannel())
		update.MinSeverity = alertv1.Severity_SEVERITY_HIGH
		if _, err := e.client.UpdateChannel(ctx, &alertv1.UpdateChannelRequest{Channel: update}); err != nil {
			t.Fatal("an update without the secret must keep it:", err)
		}
		ok, err := e.client.TestChannel(ctx, &alertv1.TestChannelRequest{ChannelId: "pd"})
		if err != nil || !ok.GetOk() {
			t.Fatalf("test channel: %v %v", ok, err)
		}
		reqs := pd.Requests()
		if len(reqs) != 2 || !strings.Contains(string(reqs[0].Body), `"routing_key":"R0UT1NG","event_action":"trigger"`) ||
			!strings.Contains(string(reqs[1].Body), `"event_action":"resolve"`) {
			t.Fatalf("PagerDuty test: want a trigger and its resolve with the kept key, got %d requests", len(reqs))
		}

		down := receivers.NewHTTP(t, func(int, []byte) int { return 500 })
		_, err = e.client.CreateChannel(ctx, &alertv1.CreateChannelRequest{Channel: &alertv1.Channel{ChannelId: "down",
			Config: &alertv1.Channel_Webhook{Webhook: &alertv1.WebhookChannel{Url: down.URL, Secret: "a-secret-of-16-chars"}}}})
		if err != nil {
			t.Fatal(err)
		}
		failing, err := e.client.TestChannel(ctx, &alertv1.TestChannelRequest{ChannelId: "down"})
		if err != nil || failing.GetOk() || !strings.Contains(failing.GetDetail(), "500") {
			t.Fatalf("failing test channel: %v %v", failing, err)
		}
		_, err = e.client.CreateChannel(ctx, &alertv1.CreateChannelRequest{Channel: &alertv1.Channel{ChannelId: "mail",
			Config: &alertv1.Channel_Email{Email: &alertv1.EmailChannel{}}}})
		wantInvalid(t, err, "channel.email")
		if list, _ := e.client.ListChannels(e.as(other), &alertv1.ListChannelsRequest{}); len(list.GetChannels()) != 0 {
			t.Fatal("another tenant sees the channels")
		}
		if _, err := e.client.DeleteChannel(ctx, &alertv1.DeleteChannelRequest{ChannelId: "pd"}); err != nil {
			t.Fatal(err)
		}
		_, err = e.client.GetChannel(ctx, &alertv1.GetChannelRequest{ChannelId: "pd"})
		wantCode(t, err, codes.NotFound)
	})
}
