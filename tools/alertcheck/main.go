// Command alertcheck measures alert rules on the simulated product's
// outcomes: for each world (a seed of tools/loadgen's simulator), it plays
// the accounts' history hour by hour, scores it in event time with the
// simulated product's scorecard (internal/scorecore/replay, the scoring
// core itself), records a renewal per account with the outcome its fate
// tells, and replays the score and account changes through the previous and
// the shipped rule sets with churnalert.EvaluateRules, the engine of the
// EvaluateRules RPC. It prints per rule and overall precision, recall,
// lift, median lead time and alerts per CSM per week, side by side, with
// the score's red band over the same windows as the baseline.
//
//	go run ./tools/alertcheck            # two worlds of 600 accounts
//	go run ./tools/alertcheck -out docs/alert-quality.md
//	go run ./tools/alertcheck -demo     # the demo's alerts after its backfill
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/internal/scorecore/replay"
	"github.com/lodestar-cs/lodestar/internal/scorecore/scorecard"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert"
	"github.com/lodestar-cs/lodestar/tools/internal/alertrules"
	"github.com/lodestar-cs/lodestar/tools/loadgen/sim"
)

const (
	day    = 24 * time.Hour
	tenant = "alertcheck"
)

// simNow is the simulator's Now: fixed and in the past (a replay clamps
// event times to the wall clock), so every run gives the same figures.
var simNow = time.Date(2025, 3, 3, 0, 0, 0, 0, time.UTC)

type options struct {
	seeds      string
	accounts   int
	beforeDays int
	afterDays  int
	leadDays   int
	out        string
	demo       bool
}

func main() { os.Exit(run(os.Args[1:], os.Stdout)) }

func run(args []string, stdout io.Writer) int {
	var o options
	fs := flag.NewFlagSet("alertcheck", flag.ContinueOnError)
	fs.StringVar(&o.seeds, "seeds", "1,2", "Comma-separated simulator seeds: one world each.")
	fs.IntVar(&o.accounts, "accounts", 600, "Accounts per world.")
	fs.IntVar(&o.beforeDays, "before-days", 120, "Days of history before the simulator's Now (every fate turns within the last 42).")
	fs.IntVar(&o.afterDays, "after-days", 90, "Renewals fall uniformly within this many days after Now; the history runs to the last.")
	fs.IntVar(&o.leadDays, "lead-days", 90, "An alert warns of a renewal when it opens within this many days before it.")
	fs.StringVar(&o.out, "out", "", "Also write the report (markdown) to this file.")
	fs.BoolVar(&o.demo, "demo", false, "Instead: run the demo (the all-in-one and loadgen's demo scenario, from the repository root) and measure its alerts after the backfill.")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var b strings.Builder
	measure := o.report
	if o.demo {
		measure = o.demoReport
	}
	if err := measure(context.Background(), &b); err != nil {
		fmt.Fprintln(os.Stderr, "alertcheck:", err)
		return 1
	}
	fmt.Fprint(stdout, b.String())
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(b.String()), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "alertcheck:", err)
			return 1
		}
	}
	return 0
}

func (o options) report(ctx context.Context, w io.Writer) error {
	previous, shipped := alertrules.Previous(), churnalert.DefaultRules()
	fmt.Fprintf(w, "# Alert quality on the simulated product\n\n")
	fmt.Fprintf(w, "`go run ./tools/alertcheck -seeds %s -accounts %d -before-days %d -after-days %d -lead-days %d`\n\n",
		o.seeds, o.accounts, o.beforeDays, o.afterDays, o.leadDays)
	fmt.Fprint(w, method)
	for _, f := range strings.Split(o.seeds, ",") {
		seed, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
		if err != nil {
			return fmt.Errorf("-seeds: %w", err)
		}
		start := time.Now()
		h, err := o.world(ctx, seed)
		if err != nil {
			return err
		}
		played := time.Since(start)
		lead := time.Duration(o.leadDays) * day
		a, b := churnalert.EvaluateRules(h, previous, lead), churnalert.EvaluateRules(h, shipped, lead)
		fmt.Fprintf(w, "## World %d\n\n", seed)
		fmt.Fprintf(w, "%d accounts, %d score changes, %s to %s (%.1f weeks), %d CSMs; %d renewals: %d churned, %d contracted (base churn rate %.2f). Played and scored in %s, replayed through both rule sets in %s.\n\n",
			o.accounts, len(h.Scores), a.GetStartTime().AsTime().Format(time.DateOnly), a.GetEndTime().AsTime().Format(time.DateOnly), a.GetWeeks(),
			a.GetCsms(), a.GetRenewals(), a.GetChurned(), a.GetContracted(), float64(a.GetChurned())/float64(max(1, a.GetRenewals())),
			played.Round(time.Second), (time.Since(start) - played).Round(time.Second))
		fmt.Fprintf(w, "| rule set | rule | alerts | alerts/CSM/week | precision | recall | lift | median lead (days) |\n|---|---|---:|---:|---:|---:|---:|---:|\n")
		for _, set := range []struct {
			name string
			r    *alertv1.EvaluateRulesResponse
		}{{"previous", a}, {"shipped", b}} {
			for _, rq := range set.r.GetRules() {
				row(w, set.name, rq.GetRuleId(), rq.GetQuality())
			}
			row(w, set.name, "**all risk rules**", set.r.GetOverall())
		}
		row(w, "baseline", "score in the red band", a.GetRedBand())
		fmt.Fprintf(w, "\nAfter the history: previous %d open alerts (%d stale, %d risk alerts on green accounts), %d alerts in an account's first 14 days; shipped %d open (%d stale, %d on green), %d early.\n\n",
			a.GetOpenAlerts(), a.GetStaleOpenAlerts(), a.GetOpenOnGreen(), a.GetEarlyAlerts(), b.GetOpenAlerts(), b.GetStaleOpenAlerts(), b.GetOpenOnGreen(), b.GetEarlyAlerts())
	}
	return nil
}

// method says how the report is made.
const method = `Each world is tools/loadgen's simulated product (a seed, -accounts accounts) played hour by hour from -before-days days before the simulator's Now to -after-days days after, scored in event time with the simulated product's scorecard (the scoring core), each account (onboarding ones excepted) renewing once in the -after-days days after Now with the outcome its fate tells (churning and silent accounts churn, declining ones contract). The score and account changes are replayed through each rule set by churnalert.EvaluateRules, the engine of AlertService.EvaluateRules. A renewal is flagged when an alert opened on its account within the -lead-days days before it (the red band: when the account scored red in them); precision counts churned and contracted renewals as lost, lift is the churn rate among flagged renewals over the base churn rate. The shipped set (churnalert.DefaultRules) is the previous one with two principles and no threshold moved: risk rules fire only on red accounts (the scorecard decides whether an account is at risk; Rule.red_only, onboarding-stalled excepted), and risk rules cool down for 30 days (a CSM acts within a month). The previous set fired its risk rules on yellow accounts too, with cooldowns of 7 or 14 days.

`

func row(w io.Writer, set, rule string, q *alertv1.AlertQuality) {
	fmt.Fprintf(w, "| %s | %s | %d | %.2f | %.2f | %.2f | %.2f | %.0f |\n", set, rule, q.GetAlerts(), q.GetAlertsPerCsmPerWeek(),
		q.GetPrecision(), q.GetRecall(), q.GetLift(), q.GetMedianLeadTime().AsDuration().Hours()/24)
}

// world plays one simulated world and returns its history.
func (o options) world(ctx context.Context, seed uint64) (churnalert.History, error) {
	p, err := sim.New(sim.Config{Seed: seed, Accounts: o.accounts, Now: simNow, Mix: sim.DefaultMix()})
	if err != nil {
		return churnalert.History{}, err
	}
	sc, err := scorecard.Parse(sim.ScorecardYAML)
	if err != nil {
		return churnalert.History{}, err
	}
	renewals := o.renewals(p, seed)
	facts := facts(p, renewals)
	rf := make([]replay.Fact, len(facts))
	for i, f := range facts {
		rf[i] = replay.Fact{At: f.At, Account: f.Account}
	}
	r, err := replay.New(tenant, sc, rf)
	if err != nil {
		return churnalert.History{}, err
	}
	h := churnalert.History{Tenant: tenant, Facts: facts}
	for _, rn := range renewals {
		h.Renewals = append(h.Renewals, churnalert.Renewal{AccountID: rn.acc.ID, At: rn.at, Outcome: rn.outcome})
	}
	from, to := simNow.Add(-time.Duration(o.beforeDays)*day), simNow.Add(time.Duration(o.afterDays)*day)
	wall := time.Now() // after the whole history: no event time is clamped
	var buf []sim.Event
	for hour := from; hour.Before(to); hour = hour.Add(time.Hour) {
		if err := ctx.Err(); err != nil {
			return h, err
		}
		buf = p.AppendHour(buf[:0], hour)
		evs := make([]*eventv1.Event, 0, len(buf))
		for _, ev := range buf {
			pe, err := ev.Proto()
			if err != nil {
				return h, err
			}
			pe.TenantId = tenant
			evs = append(evs, pe)
		}
		h.Scores = append(h.Scores, r.Apply(evs, wall)...)
	}
	h.Scores = append(h.Scores, r.Finish()...)
	return h, nil
}

// renewal is one account's recorded renewal.
type renewal struct {
	acc     *sim.Account
	at      time.Time
	outcome accountv1.OutcomeType
}

// renewals gives every account with a term to renew a renewal uniformly
// within the after-days after Now, when every fate has shown, with the
// outcome its fate tells: churning and silent accounts churn, declining
// ones renew contracted, expanding ones expanded, healthy ones renew.
// Onboarding accounts signed within the last four weeks: no renewal.
func (o options) renewals(p *sim.Product, seed uint64) []renewal {
	r := rand.New(rand.NewPCG(seed, 2))
	var out []renewal
	for _, a := range p.Accounts() {
		at := simNow.Add(time.Duration(r.Int64N(int64(time.Duration(o.afterDays) * day))))
		var oc accountv1.OutcomeType
		switch a.Fate {
		case sim.Onboarding:
			continue
		case sim.Churning, sim.Silent:
			oc = accountv1.OutcomeType_OUTCOME_TYPE_CHURNED
		case sim.Declining:
			oc = accountv1.OutcomeType_OUTCOME_TYPE_CONTRACTED
		case sim.Expanding:
			oc = accountv1.OutcomeType_OUTCOME_TYPE_EXPANDED
		default:
			oc = accountv1.OutcomeType_OUTCOME_TYPE_RENEWED
		}
		out = append(out, renewal{acc: a, at: at, outcome: oc})
	}
	return out
}

// facts are the CRM facts through the history: the account as loadgen
// upserts it, renewing on its recorded date, and from then on renewed (a
// year later) or churned.
func facts(p *sim.Product, renewals []renewal) []churnalert.Fact {
	byID := map[string]renewal{}
	for _, r := range renewals {
		byID[r.acc.ID] = r
	}
	var out []churnalert.Fact
	for _, a := range p.Accounts() {
		acc := a.CRM()
		r, ok := byID[a.ID]
		if !ok {
			out = append(out, churnalert.Fact{Account: acc})
			continue
		}
		acc.LifecycleStage = accountv1.LifecycleStage_LIFECYCLE_STAGE_UNSPECIFIED // derived from the dates, as then
		acc.RenewalTime = timestamppb.New(r.at)
		after := proto.CloneOf(acc)
		after.RenewalTime = timestamppb.New(r.at.AddDate(1, 0, 0))
		after.LifecycleStage = accountv1.LifecycleStage_LIFECYCLE_STAGE_RENEWED
		if r.outcome == accountv1.OutcomeType_OUTCOME_TYPE_CHURNED {
			after.LifecycleStage = accountv1.LifecycleStage_LIFECYCLE_STAGE_CHURNED
			after.Outcomes = append(after.Outcomes, &accountv1.RenewalOutcome{AccountId: a.ID, Type: r.outcome, OutcomeTime: timestamppb.New(r.at)})
		}
		out = append(out, churnalert.Fact{Account: acc}, churnalert.Fact{At: r.at, Account: after})
	}
	return out
}
