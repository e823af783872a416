package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"gopkg.in/yaml.v3"

	"github.com/lodestar-cs/lodestar/internal/scorecore/scorecard"
	"github.com/lodestar-cs/lodestar/pkg/humanize"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	forecastv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/forecast/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// scorecardCmd runs the scorecard subcommands. Scorecards are YAML files,
// the form -scoring.scorecard-file reads and scorecard get prints.
func scorecardCmd(ctx context.Context, e *env, args []string) error {
	return subcommand(ctx, e, "scorecard", args, map[string]func(context.Context, *env, []string) error{
		"get":      scorecardGet,
		"validate": scorecardValidate,
		"apply":    scorecardApply,
		"backtest": scorecardBacktest,
	})
}

// scorecardGet prints the active scorecard, or an earlier version, as YAML.
func scorecardGet(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("scorecard get", flag.ContinueOnError)
	version := fs.Int("version", 0, "The version to print; the active one when 0.")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	resp, err := e.scoring.GetScorecard(ctx, &scoringv1.GetScorecardRequest{Version: int32(*version)})
	if err != nil {
		return failed("get scorecard", err)
	}
	if e.json {
		return e.printJSON(resp)
	}
	y, err := scorecard.Marshal(resp.Scorecard)
	if err != nil {
		return err
	}
	_, err = e.out.Write(y)
	return err
}

// scorecardValidate lists every problem of a scorecard file, and fails when
// there is one.
func scorecardValidate(ctx context.Context, e *env, args []string) error {
	pos, err := parseArgs(flag.NewFlagSet("scorecard validate", flag.ContinueOnError), args, "FILE")
	if err != nil {
		return err
	}
	sc, err := readScorecard(pos[0])
	if err != nil {
		return err
	}
	resp, err := e.scoring.ValidateScorecard(ctx, &scoringv1.ValidateScorecardRequest{Scorecard: sc})
	if err != nil {
		return failed("validate scorecard", err)
	}
	if e.json {
		if err := e.printJSON(resp); err != nil {
			return err
		}
	} else if resp.Valid {
		fmt.Fprintf(e.out, "%s: valid (%s)\n", pos[0], plural(len(sc.Measures), "measure"))
	} else {
		tw := newTable(e.out)
		fmt.Fprintln(tw, "FIELD\tPROBLEM")
		for _, p := range resp.Problems {
			fmt.Fprintf(tw, "%s\t%s\n", orDash(p.Field), p.Description)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if !resp.Valid {
		return fmt.Errorf("%s: invalid: %s", pos[0], plural(len(resp.Problems), "problem"))
	}
	return nil
}

// scorecardApply makes a scorecard file the tenant's active scorecard.
func scorecardApply(ctx context.Context, e *env, args []string) error {
	pos, err := parseArgs(flag.NewFlagSet("scorecard apply", flag.ContinueOnError), args, "FILE")
	if err != nil {
		return err
	}
	sc, err := readScorecard(pos[0])
	if err != nil {
		return err
	}
	resp, err := e.scoring.UpdateScorecard(ctx, &scoringv1.UpdateScorecardRequest{Scorecard: sc})
	if err != nil {
		return failed("update scorecard", err)
	}
	if e.json {
		return e.printJSON(resp)
	}
	_, err = fmt.Fprintf(e.out, "scorecard %q is active as version %d; accounts are rescored under it as their events arrive\n",
		resp.Scorecard.GetName(), resp.Scorecard.GetVersion())
	return err
}

// scorecardBacktest evaluates the active scorecard against the recorded
// renewal outcomes, beside a candidate file when one is given.
func scorecardBacktest(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("scorecard backtest", flag.ContinueOnError)
	horizon := fs.Int("horizon", 0, "Days before each renewal at which its score is read; the service's default when 0.")
	var pos []string
	var err error
	// The candidate file is optional.
	if pos, err = parseArgs(fs, args, "FILE"); err != nil {
		if pos, err = parseArgs(fs, args); err != nil {
			return usagef("scorecard backtest: want at most one FILE")
		}
	}
	req := &forecastv1.EvaluateScorecardRequest{HorizonDays: int32(*horizon)}
	if len(pos) == 1 {
		if req.Candidate, err = readScorecard(pos[0]); err != nil {
			return err
		}
	}
	resp, err := e.forecast.EvaluateScorecard(ctx, req)
	if err != nil {
		return failed("evaluate scorecard", err)
	}
	if e.json {
		return e.printJSON(resp)
	}
	if resp.Active.GetRenewals() == 0 && resp.Candidate.GetRenewals() == 0 {
		_, err := fmt.Fprintf(e.out, "Nothing to backtest: no recorded renewal outcome has a score %d days before it (%s unscored).\n"+
			"Record outcomes with AccountService.RecordOutcome.\n", resp.HorizonDays, humanize.Int(int64(resp.Active.GetUnscored())))
		return err
	}
	evals := []*forecastv1.ScorecardEvaluation{resp.Active}
	header := "\tACTIVE"
	if resp.Candidate != nil {
		evals = append(evals, resp.Candidate)
		header += "\tCANDIDATE"
	}
	fmt.Fprintf(e.out, "Backtest against the recorded renewals, scores read %d days before each\n\n", resp.HorizonDays)
	tw := newTable(e.out)
	fmt.Fprintln(tw, header)
	row := func(name string, f func(*forecastv1.ScorecardEvaluation) string) {
		fmt.Fprint(tw, name)
		for _, ev := range evals {
			fmt.Fprint(tw, "\t"+f(ev))
		}
		fmt.Fprintln(tw)
	}
	row("Renewals scored", func(v *forecastv1.ScorecardEvaluation) string { return humanize.Int(int64(v.Renewals)) })
	row("Churned", func(v *forecastv1.ScorecardEvaluation) string { return humanize.Int(int64(v.Churned)) })
	row("Unscored", func(v *forecastv1.ScorecardEvaluation) string { return humanize.Int(int64(v.Unscored)) })
	row("ROC AUC (0.5 chance, 1 perfect)", func(v *forecastv1.ScorecardEvaluation) string { return strconv.FormatFloat(v.RocAuc, 'f', 3, 64) })
	row("Red precision", func(v *forecastv1.ScorecardEvaluation) string { return humanize.Percent(v.RedPrecision) })
	row("Red recall", func(v *forecastv1.ScorecardEvaluation) string { return humanize.Percent(v.RedRecall) })
	row("Median lead time", func(v *forecastv1.ScorecardEvaluation) string {
		return strconv.FormatFloat(v.MedianLeadTimeDays, 'f', 0, 64) + " days"
	})
	row("Churned, red before", func(v *forecastv1.ScorecardEvaluation) string { return humanize.Int(int64(v.ChurnedFlaggedRed)) })
	row("Churned, never red", func(v *forecastv1.ScorecardEvaluation) string { return humanize.Int(int64(v.ChurnedNeverRed)) })
	for _, band := range []scoringv1.Band{scoringv1.Band_BAND_RED, scoringv1.Band_BAND_YELLOW, scoringv1.Band_BAND_GREEN} {
		row("Churn rate, "+enumName(band, "BAND_"), func(v *forecastv1.ScorecardEvaluation) string {
			for _, l := range v.BandLift {
				if l.Band == band {
					return fmt.Sprintf("%s of %s (lift %s)", humanize.Percent(l.ChurnRate), humanize.Int(int64(l.Renewals)), strconv.FormatFloat(l.Lift, 'f', 2, 64))
				}
			}
			return "-"
		})
	}
	return tw.Flush()
}

// readScorecard reads a YAML scorecard file ("-" for stdin) without
// validating it: the server does, and reports every problem.
func readScorecard(path string) (*scoringv1.Scorecard, error) {
	data, err := readInput(path)
	if err != nil {
		return nil, fmt.Errorf("read scorecard: %w", err)
	}
	sc, err := scorecard.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return sc, nil
}

// readInput reads a file, or stdin for "-".
func readInput(path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(path)
}

// rulesCmd runs the rules subcommands.
func rulesCmd(ctx context.Context, e *env, args []string) error {
	return subcommand(ctx, e, "rules", args, map[string]func(context.Context, *env, []string) error{
		"list":     rulesList,
		"get":      rulesGet,
		"evaluate": rulesEvaluate,
	})
}

// rulesList lists the tenant's alert rules.
func rulesList(ctx context.Context, e *env, args []string) error {
	if _, err := parseArgs(flag.NewFlagSet("rules list", flag.ContinueOnError), args); err != nil {
		return err
	}
	resp, err := e.alerts.ListRules(ctx, &alertv1.ListRulesRequest{})
	if err != nil {
		return failed("list rules", err)
	}
	if e.json {
		return e.printJSON(resp)
	}
	tw := newTable(e.out)
	fmt.Fprintln(tw, "RULE\tKIND\tSEVERITY\tCONDITION\tCOOLDOWN\tESCALATES AFTER\tENABLED\tORIGIN")
	for _, r := range resp.Rules {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.RuleId, enumName(r.Kind, "RULE_KIND_"), enumName(r.Severity, "SEVERITY_"),
			condition(r), durationOrDash(r.Cooldown.AsDuration()), durationOrDash(r.EscalateAfter.AsDuration()), yesNo(!r.Disabled), origin(r))
	}
	return tw.Flush()
}

// rulesGet prints one rule in full.
func rulesGet(ctx context.Context, e *env, args []string) error {
	pos, err := parseArgs(flag.NewFlagSet("rules get", flag.ContinueOnError), args, "RULE")
	if err != nil {
		return err
	}
	resp, err := e.alerts.GetRule(ctx, &alertv1.GetRuleRequest{RuleId: pos[0]})
	if err != nil {
		return failed("get rule", err)
	}
	if e.json {
		return e.printJSON(resp)
	}
	r := resp.Rule
	tw := newTable(e.out)
	fmt.Fprintf(tw, "Rule:\t%s  %s\n", r.RuleId, r.DisplayName)
	fmt.Fprintf(tw, "Kind:\t%s\n", enumName(r.Kind, "RULE_KIND_"))
	fmt.Fprintf(tw, "Condition:\t%s\n", condition(r))
	fmt.Fprintf(tw, "Enabled:\t%s\n", yesNo(!r.Disabled))
	fmt.Fprintf(tw, "Origin:\t%s\n", origin(r))
	fmt.Fprintf(tw, "Severity:\t%s\n", enumName(r.Severity, "SEVERITY_"))
	if raise := r.SeverityRaise; raise != nil && (len(raise.Tiers) > 0 || raise.ArrUnitsAtLeast > 0) {
		var why []string
		for _, t := range raise.Tiers {
			why = append(why, enumName(t, "TIER_")+" tier")
		}
		if raise.ArrUnitsAtLeast > 0 {
			why = append(why, "ARR from "+humanize.Int(raise.ArrUnitsAtLeast))
		}
		fmt.Fprintf(tw, "Raised a level for:\t%s\n", joinList(why))
	}
	fmt.Fprintf(tw, "Cooldown:\t%s\n", durationOrDash(r.Cooldown.AsDuration()))
	// Every alert resolves when its condition clears; auto_resolve is
	// kept on the wire but no longer read.
	fmt.Fprintf(tw, "Resolves:\twhen its condition clears (reopens quietly within the cooldown)\n")
	if r.RedOnly {
		fmt.Fprintf(tw, "Fires on:\tred accounts only\n")
	}
	fmt.Fprintf(tw, "Escalates after:\t%s\n", durationOrDash(r.EscalateAfter.AsDuration()))
	if r.EscalationScheduleId != "" {
		fmt.Fprintf(tw, "Escalates to:\t%s\n", r.EscalationScheduleId)
	}
	return tw.Flush()
}

// rulesEvaluate replays the tenant's history through its rules, or through
// a candidate rule set from FILE, and measures the alerts against the
// recorded renewal outcomes, beside the red band.
func rulesEvaluate(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("rules evaluate", flag.ContinueOnError)
	leadDays := fs.Int("lead-days", 0, "An alert warns of a renewal when it opens within this many days before it; the service's default (90) when 0.")
	pos, err := parseArgs(fs, args, "FILE")
	if err != nil {
		// The candidate file is optional.
		if pos, err = parseArgs(fs, args); err != nil {
			return usagef("rules evaluate: want at most one FILE")
		}
	}
	req := &alertv1.EvaluateRulesRequest{LeadDays: int32(*leadDays)}
	if len(pos) == 1 {
		if req.Rules, err = readRules(pos[0]); err != nil {
			return err
		}
	}
	resp, err := e.alerts.EvaluateRules(ctx, req)
	if err != nil {
		return failed("evaluate rules", err)
	}
	if e.json {
		return e.printJSON(resp)
	}
	fmt.Fprintf(e.out, "%s replayed (%s to %s, %s weeks), %s recorded: %s churned, %s contracted; %s\n\n",
		plural(len(resp.Rules), "rule"), e.date(resp.StartTime), e.date(resp.EndTime), strconv.FormatFloat(resp.Weeks, 'f', 1, 64),
		plural(int(resp.Renewals), "renewal"), humanize.Int(int64(resp.Churned)), humanize.Int(int64(resp.Contracted)), plural(int(resp.Csms), "CSM"))
	tw := newTable(e.out)
	fmt.Fprintln(tw, "RULE\tALERTS\tFLAGGED\tLOST\tPRECISION\tRECALL\tLIFT\tMEDIAN LEAD\tPER CSM-WEEK")
	row := func(name string, q *alertv1.AlertQuality) {
		lead := "-"
		if d := q.GetMedianLeadTime().AsDuration(); q.GetMedianLeadTime() != nil {
			lead = humanize.Duration(d)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, humanize.Int(int64(q.GetAlerts())), humanize.Int(int64(q.GetFlaggedRenewals())),
			humanize.Int(int64(q.GetFlaggedLost())), humanize.Percent(q.GetPrecision()), humanize.Percent(q.GetRecall()),
			strconv.FormatFloat(q.GetLift(), 'f', 2, 64), lead, strconv.FormatFloat(q.GetAlertsPerCsmPerWeek(), 'f', 2, 64))
	}
	for _, r := range resp.Rules {
		row(r.RuleId, r.Quality)
	}
	row("risk rules together", resp.Overall)
	row("red band (baseline)", resp.RedBand)
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.out, "\nAt the end: %s open, %s of them stale (condition no longer holds), %s risk alerts on green accounts; %s in accounts' first 14 days.\n",
		plural(int(resp.OpenAlerts), "alert"), humanize.Int(int64(resp.StaleOpenAlerts)), humanize.Int(int64(resp.OpenOnGreen)), plural(int(resp.EarlyAlerts), "alert"))
	return err
}

// readRules reads a rule set ("-" for stdin) in the form rules list -json
// prints, as JSON or YAML: {"rules": [...]}.
func readRules(path string) ([]*alertv1.Rule, error) {
	data, err := readInput(path)
	if err != nil {
		return nil, fmt.Errorf("read rules: %w", err)
	}
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	js, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var set alertv1.ListRulesResponse
	if err := protojson.Unmarshal(js, &set); err != nil {
		return nil, fmt.Errorf("%s: want {\"rules\": [...]} as rules list -json prints: %w", path, err)
	}
	if len(set.Rules) == 0 {
		return nil, fmt.Errorf("%s: no rules", path)
	}
	return set.Rules, nil
}

// condition says when a rule fires, with its numbers.
func condition(r *alertv1.Rule) string {
	th := strconv.FormatFloat(r.Threshold, 'g', -1, 64)
	switch r.Kind {
	case alertv1.RuleKind_RULE_KIND_RED_BAND:
		return "band is red"
	case alertv1.RuleKind_RULE_KIND_SCORE_DROP:
		return fmt.Sprintf("score %s points below its %d-day high", th, r.WindowDays)
	case alertv1.RuleKind_RULE_KIND_USAGE_DROP:
		return fmt.Sprintf("7-day usage below %s%% of baseline", th)
	case alertv1.RuleKind_RULE_KIND_SILENT_ACCOUNT:
		return fmt.Sprintf("no core event for %s days", th)
	case alertv1.RuleKind_RULE_KIND_RENEWAL_AT_RISK:
		if r.RedOnly {
			return fmt.Sprintf("renewal within %d days, band red", r.WindowDays)
		}
		return fmt.Sprintf("renewal within %d days, band not green", r.WindowDays)
	case alertv1.RuleKind_RULE_KIND_STAKEHOLDERS_DISENGAGED:
		if r.Threshold == 0 {
			return "no S/A stakeholder active (in the measure's window)"
		}
		return fmt.Sprintf("no S/A stakeholder active for %s more days", th)
	case alertv1.RuleKind_RULE_KIND_ONBOARDING_STALLED:
		return fmt.Sprintf("%d days into onboarding, under %s of milestones", r.WindowDays, humanize.Percent(r.Threshold))
	case alertv1.RuleKind_RULE_KIND_EXPANSION_OPPORTUNITY:
		return fmt.Sprintf("at least %s of seats active", humanize.Percent(r.Threshold))
	case alertv1.RuleKind_RULE_KIND_WIN_BACK:
		return fmt.Sprintf("churned, core event in the last %s days", th)
	}
	return fmt.Sprintf("threshold %s, window %d days", th, r.WindowDays)
}

func origin(r *alertv1.Rule) string {
	if r.Shipped {
		return "shipped"
	}
	return "tenant"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func joinList(items []string) string {
	switch len(items) {
	case 0:
		return "-"
	case 1:
		return items[0]
	}
	out := items[0]
	for _, s := range items[1 : len(items)-1] {
		out += ", " + s
	}
	return out + " or " + items[len(items)-1]
}

// durationOrDash prints a rule's duration in words when that is exact
// ("3 days", "36 hours"), else as Go does ("90m30s"); 0 is "-".
func durationOrDash(d time.Duration) string {
	day := 24 * time.Hour
	switch {
	case d == 0:
		return "-"
	case d%day == 0 && d < 100*day,
		d < day && d%time.Hour == 0,
		d < time.Hour && d%time.Minute == 0:
		return humanize.Duration(d)
	case d%time.Hour == 0:
		return humanize.Int(int64(d/time.Hour)) + " hours"
	}
	return d.String()
}
