package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/types/known/timestamppb"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert"
	"github.com/lodestar-cs/lodestar/tools/internal/alertrules"
)

// Alert quality on the real invoices: every customer with history renews
// at the split's end, churned or renewed as the data set's label says, and
// is owned by one of retailCSMs CSMs, so that alerts per CSM per week is
// defined; the rule sets are measured with a 90-day lead window.
const (
	retailCSMs     = 6
	retailLeadDays = 90
)

// AlertSet is one rule set's (or the red band's) alert quality.
type AlertSet struct {
	Set  string `json:"set"`
	Rule string `json:"rule"`
	// Alerts opened over the history (for the red band: red spells).
	Alerts           int32   `json:"alerts"`
	AlertsPerCSMWeek float64 `json:"alerts_per_csm_per_week"`
	Precision        float64 `json:"precision"`
	Recall           float64 `json:"recall"`
	Lift             float64 `json:"lift"`
	MedianLeadDays   float64 `json:"median_lead_days"`
}

// AlertQuality is what AlertService.EvaluateRules measured on a data set.
type AlertQuality struct {
	Description string     `json:"description"`
	Rows        []AlertSet `json:"rows"`
	// After the history, per rule set: open alerts and the ones that should
	// not be (stale, risk alerts on green accounts, alerts in an account's
	// first days).
	After []string `json:"after"`
}

// csmOf assigns an account one of n CSMs by a hash of its id.
func csmOf(id string, n int) string {
	h := fnv.New32a()
	h.Write([]byte(id))
	return fmt.Sprintf("csm-%02d", h.Sum32()%uint32(n)+1)
}

// recordRenewals makes every account renew at `at` with the outcome its
// label tells (CHURNED when positive, else RENEWED) through the
// AccountService: first an owner and the renewal date (an account's first
// version holds from the start of the history for EvaluateRules), then the
// outcome. Nothing else about the account is known, so its ARR is zero.
func recordRenewals(ctx context.Context, r *scoreReader, accts []account, at time.Time, concurrency int) error {
	client := accountv1.NewAccountServiceClient(r.conn)
	const maxUpsert = 1000
	for start := 0; start < len(accts); start += maxUpsert {
		req := &accountv1.UpsertAccountsRequest{}
		for _, a := range accts[start:min(start+maxUpsert, len(accts))] {
			req.Accounts = append(req.Accounts, &accountv1.Account{
				AccountId: a.ID, Name: a.ID, RenewalTime: timestamppb.New(at),
				Owner: &accountv1.Owner{CsmId: csmOf(a.ID, retailCSMs)},
			})
		}
		if _, err := client.UpsertAccounts(r.auth(ctx), req); err != nil {
			return fmt.Errorf("UpsertAccounts: %w", err)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, concurrency))
	for _, a := range accts {
		o := &accountv1.RenewalOutcome{
			AccountId: a.ID, Type: accountv1.OutcomeType_OUTCOME_TYPE_RENEWED, OutcomeTime: timestamppb.New(at),
			ArrBefore: &accountv1.Money{CurrencyCode: "GBP"}, ArrAfter: &accountv1.Money{CurrencyCode: "GBP"},
		}
		if a.Positive {
			o.Type, o.ArrAfter = accountv1.OutcomeType_OUTCOME_TYPE_CHURNED, nil
		}
		g.Go(func() error {
			if _, err := client.RecordOutcome(r.auth(gctx), &accountv1.RecordOutcomeRequest{Outcome: o}); err != nil {
				return fmt.Errorf("RecordOutcome %s: %w", a.ID, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// evaluateAlerts measures the shipped and the previous rule sets with
// AlertService.EvaluateRules over the tenant's stored history, beside the
// score's red band over the same windows.
func evaluateAlerts(ctx context.Context, r *scoreReader) ([]AlertSet, []string, error) {
	client := alertv1.NewAlertServiceClient(r.conn)
	var rows []AlertSet
	var after []string
	var red *alertv1.AlertQuality
	for _, set := range []struct {
		name  string
		rules []*alertv1.Rule
	}{{"previous", alertrules.Previous()}, {"shipped", churnalert.DefaultRules()}} {
		resp, err := client.EvaluateRules(r.auth(ctx), &alertv1.EvaluateRulesRequest{Rules: set.rules, LeadDays: retailLeadDays})
		if err != nil {
			return nil, nil, fmt.Errorf("EvaluateRules (%s rules): %w", set.name, err)
		}
		for _, q := range resp.GetRules() {
			rows = append(rows, alertSet(set.name, q.GetRuleId(), q.GetQuality()))
		}
		rows = append(rows, alertSet(set.name, "all risk rules", resp.GetOverall()))
		after = append(after, fmt.Sprintf("%s: %d open alerts after the history (%d stale, %d risk alerts on green accounts), %d alerts in an account's first 14 days; %d renewals, %d churned (base churn rate %.3f), %d CSMs, %.1f weeks (%s .. %s)",
			set.name, resp.GetOpenAlerts(), resp.GetStaleOpenAlerts(), resp.GetOpenOnGreen(), resp.GetEarlyAlerts(),
			resp.GetRenewals(), resp.GetChurned(), float64(resp.GetChurned())/float64(max(1, resp.GetRenewals())), resp.GetCsms(), resp.GetWeeks(),
			resp.GetStartTime().AsTime().Format(time.DateOnly), resp.GetEndTime().AsTime().Format(time.DateOnly)))
		red = resp.GetRedBand()
	}
	rows = append(rows, alertSet("baseline", "score in the red band", red))
	return rows, after, nil
}

func alertSet(set, rule string, q *alertv1.AlertQuality) AlertSet {
	return AlertSet{
		Set: set, Rule: rule, Alerts: q.GetAlerts(), AlertsPerCSMWeek: q.GetAlertsPerCsmPerWeek(),
		Precision: q.GetPrecision(), Recall: q.GetRecall(), Lift: q.GetLift(),
		MedianLeadDays: q.GetMedianLeadTime().AsDuration().Hours() / 24,
	}
}
