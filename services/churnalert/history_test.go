package churnalert_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/streams"
)

// TestBackfillIsHistory: a backfill of 40 days builds the alert history in
// event time (a renewal already past on the wall clock was at risk then,
// and resolved when the tenant's clock passed it) but delivers nothing;
// once the tenant has caught up, and the freshness window after that has
// passed, a fresh change pages.
func TestBackfillIsHistory(t *testing.T) {
	tenant := testenv.Tenant(t)
	cfg := testConfig()
	cfg.Freshness = 5 * time.Second // the wait after catching up
	e := newEnv(t, cfg, tenant)
	rcv, secret := e.webhook(tenant, "hook", nil)
	now := time.Now().Truncate(time.Second)
	renewal := now.Add(-20 * day)
	// The account first: account changes and scores are separate streams.
	publish(t, e.js, tenant, account(&accountv1.Account{AccountId: "renewing", RenewalTime: timestamppb.New(renewal)}))
	settle(t, e.js)
	var steps []step
	for d := 40; d >= 3; d-- {
		at := now.Add(-time.Duration(d) * day)
		for i := range 5 {
			steps = append(steps, scored(fmt.Sprintf("declining-%d", i), at, 30+float64(d)))
		}
		steps = append(steps, scored("renewing", at, 35))
	}
	publish(t, e.js, tenant, steps...)
	settle(t, e.js)
	e.drained()
	if ds := e.received(rcv, secret); len(ds) != 0 {
		t.Fatalf("the backfill delivered %d times, want 0 (first: %v)", len(ds), ds[0])
	}
	var events, historical int
	cons, err := e.js.OrderedConsumer(context.Background(), streams.Alerts, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if err != nil {
			break
		}
		var ev alertv1.AlertEvent
		if err := proto.Unmarshal(m.Data(), &ev); err != nil {
			t.Fatal(err)
		}
		events++
		if ev.GetHistorical() {
			historical++
		}
	}
	if events == 0 || historical != events {
		t.Fatalf("%d of %d alert events historical, want all (and some)", historical, events)
	}
	// The view follows ALERTS on its own: wait until it shows the history.
	var renewalAlert *alertv1.Alert
	red := 0
	var seen []string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("alerts: %v", seen)
		}
	})
	waitFor(t, 20*time.Second, "the alerts in the view", func() bool {
		seen = seen[:0]
		renewalAlert, red = nil, 0
		for _, a := range e.alerts(tenant) {
			seen = append(seen, a.GetAccountId()+"/"+a.GetRuleId()+"/"+a.GetState().String())
			switch {
			case a.GetRuleId() == "renewal-at-risk" && a.GetAccountId() == "renewing":
				renewalAlert = a
			case a.GetRuleId() == "red-band" && a.GetState() == alertv1.AlertState_ALERT_STATE_OPEN:
				red++
			}
		}
		return red == 6 && renewalAlert.GetState() == alertv1.AlertState_ALERT_STATE_RESOLVED // the declining five and renewing
	})
	for _, a := range e.alerts(tenant) {
		switch {
		case a.GetRuleId() == "red-band" && a.GetState() == alertv1.AlertState_ALERT_STATE_OPEN:
			if !a.GetCreateTime().AsTime().Before(now.Add(-3 * day)) {
				t.Errorf("red-band alert created at %v, want in event time (before the last score)", a.GetCreateTime().AsTime())
			}
		}
	}
	if renewalAlert.GetState() != alertv1.AlertState_ALERT_STATE_RESOLVED || renewalAlert.GetCreateTime().AsTime().After(renewal) ||
		renewalAlert.GetResolveTime().AsTime().Before(renewal) {
		t.Fatalf("renewal alert %v: want opened before the renewal on %v and resolved after it, in event time", renewalAlert, renewal)
	}

	// Live: the tenant catches up with a recent score; within the freshness
	// window that is the catch-up's, after it a fresh change pages.
	publish(t, e.js, tenant, scored("fresh", time.Now(), 85))
	settle(t, e.js)
	time.Sleep(cfg.Freshness + 500*time.Millisecond)
	publish(t, e.js, tenant, scored("fresh", time.Now(), 30))
	settle(t, e.js)
	e.drained()
	ds := e.received(rcv, secret)
	if len(ds) == 0 {
		t.Fatal("after the catch-up, a fresh red score delivered nothing")
	}
	for _, d := range ds {
		if a := d.GetEvent().GetAlert(); a.GetAccountId() != "fresh" || d.GetEvent().GetType() != alertv1.AlertEventType_ALERT_EVENT_TYPE_OPENED {
			t.Errorf("after the catch-up: %v %s %s, want only the fresh account's new alerts", d.GetEvent().GetType(), a.GetAccountId(), a.GetRuleId())
		}
	}
}
