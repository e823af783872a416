package churnalert_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
)

// TestEvaluateRules: the tenant's stored history replayed through its rules
// and a candidate set, measured against the recorded renewals.
func TestEvaluateRules(t *testing.T) {
	tenant := testenv.Tenant(t)
	e := newEnv(t, testConfig(), tenant)
	now := time.Now().Truncate(time.Second)
	renewal := now.Add(-10 * day)
	var steps []step
	// Four renewals: two churned (red for weeks before), two renewed (green).
	for i := range 4 {
		churns := i < 2
		a := &accountv1.Account{AccountId: fmt.Sprintf("a%d", i), RenewalTime: timestamppb.New(renewal),
			Owner: &accountv1.Owner{CsmId: "dana"}}
		outcome := accountv1.OutcomeType_OUTCOME_TYPE_RENEWED
		if churns {
			outcome = accountv1.OutcomeType_OUTCOME_TYPE_CHURNED
		}
		a.Outcomes = []*accountv1.RenewalOutcome{{AccountId: a.AccountId, Type: outcome, OutcomeTime: timestamppb.New(renewal)}}
		steps = append(steps, account(a))
	}
	for d := 60; d >= 11; d-- {
		for i := range 4 {
			score := 85.0
			if i < 2 && d < 40 {
				score = 30
			}
			steps = append(steps, scored(fmt.Sprintf("a%d", i), now.Add(-time.Duration(d)*day), score))
		}
	}
	publish(t, e.js, tenant, steps...)

	resp, err := e.client.EvaluateRules(e.as(tenant), &alertv1.EvaluateRulesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	o := resp.GetOverall()
	if resp.GetRenewals() != 4 || resp.GetChurned() != 2 || o.GetFlaggedRenewals() != 2 || o.GetFlaggedChurned() != 2 ||
		o.GetPrecision() != 1 || o.GetRecall() != 1 || o.GetLift() != 2 {
		t.Fatalf("overall %v of %d renewals (%d churned), want the two churned flagged: precision 1, recall 1, lift 2", o, resp.GetRenewals(), resp.GetChurned())
	}
	if lead := o.GetMedianLeadTime().AsDuration(); lead != 29*day {
		t.Errorf("median lead %v, want 29 days (red 39 days ago, renewal 10 days ago)", lead)
	}
	if resp.GetRedBand().GetRecall() != 1 || resp.GetCsms() != 1 || resp.GetStaleOpenAlerts() != 0 || resp.GetOpenOnGreen() != 0 {
		t.Fatalf("red band %v, csms %d, stale %d, on green %d", resp.GetRedBand(), resp.GetCsms(), resp.GetStaleOpenAlerts(), resp.GetOpenOnGreen())
	}
	var red *alertv1.RuleQuality
	for _, rq := range resp.GetRules() {
		if rq.GetRuleId() == "red-band" {
			red = rq
		}
	}
	if red.GetQuality().GetAlerts() != 2 {
		t.Fatalf("red-band opened %d alerts, want 2", red.GetQuality().GetAlerts())
	}

	// A candidate set, not activated: only a silent-account rule, which
	// nothing here fires.
	cand := &alertv1.Rule{RuleId: "quiet", Kind: alertv1.RuleKind_RULE_KIND_SILENT_ACCOUNT, Threshold: 30, Severity: alertv1.Severity_SEVERITY_LOW}
	resp, err = e.client.EvaluateRules(e.as(tenant), &alertv1.EvaluateRulesRequest{Rules: []*alertv1.Rule{cand}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetRules()) != 1 || resp.GetOverall().GetAlerts() != 0 || resp.GetOverall().GetRecall() != 0 {
		t.Fatalf("candidate set: %v", resp)
	}
	if rs, _ := e.client.ListRules(e.as(tenant), &alertv1.ListRulesRequest{}); len(rs.GetRules()) < 2 {
		t.Fatal("evaluating a candidate set changed the tenant's rules")
	}

	_, err = e.client.EvaluateRules(e.as(tenant), &alertv1.EvaluateRulesRequest{LeadDays: 400, Rules: []*alertv1.Rule{cand, cand, {RuleId: "Bad"}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad request: %v", err)
	}
}
