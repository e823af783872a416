package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/pkg/humanize"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
)

// alertsCmd runs the alerts subcommands.
func alertsCmd(ctx context.Context, e *env, args []string) error {
	return subcommand(ctx, e, "alerts", args, map[string]func(context.Context, *env, []string) error{
		"list":    alertsList,
		"get":     alertsGet,
		"ack":     alertsAck,
		"snooze":  alertsSnooze,
		"resolve": alertsResolve,
		"watch":   alertsWatch,
	})
}

// alertsList lists alerts, newest first, open and acknowledged ones by
// default.
func alertsList(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("alerts list", flag.ContinueOnError)
	states := fs.String("state", "open,acknowledged,snoozed", "States to list, comma-separated: open, acknowledged, snoozed, resolved, or all.")
	severity := fs.String("severity", "", "Only alerts at least this severe: info, low, medium, high or critical.")
	owner := fs.String("owner", "", "Only alerts of accounts this CSM owns.")
	account := fs.String("account", "", "Only alerts of this account.")
	rule := fs.String("rule", "", "Only alerts of this rule.")
	n := fs.Int("n", 50, "Alerts to list.")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	if *n < 1 {
		return usagef("alerts list: -n %d: want at least 1", *n)
	}
	req := &alertv1.ListAlertsRequest{OwnerCsmId: *owner, AccountId: *account, RuleId: *rule}
	if *states != "all" {
		for _, name := range strings.Split(*states, ",") {
			st, err := parseEnum[alertv1.AlertState](alertv1.AlertState_value, "ALERT_STATE_", name)
			if err != nil {
				return usagef("alerts list: -state: %v", err)
			}
			req.States = append(req.States, st)
		}
	}
	var err error
	if req.MinSeverity, err = parseSeverity(*severity); err != nil {
		return usagef("alerts list: -severity: %v", err)
	}
	var all []*alertv1.Alert
	more := false
	for len(all) < *n {
		req.PageSize = int32(min(*n-len(all), maxPageSize))
		resp, err := e.alerts.ListAlerts(ctx, req)
		if err != nil {
			return failed("list alerts", err)
		}
		all = append(all, resp.Alerts[:min(len(resp.Alerts), *n-len(all))]...)
		if req.PageToken = resp.NextPageToken; req.PageToken == "" {
			break
		}
		more = len(all) == *n
	}
	if e.json {
		return e.printJSON(&alertv1.ListAlertsResponse{Alerts: all})
	}
	if len(all) == 0 {
		_, err := fmt.Fprintln(e.out, "no alerts")
		return err
	}
	tw := newTable(e.out)
	fmt.Fprintln(tw, "ALERT\tSEVERITY\tSTATE\tACCOUNT\tNAME\tSCORE\tARR\tASSIGNEE\tOPENED\tREASON")
	for _, a := range all {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.AlertId, enumName(a.Severity, "SEVERITY_"), e.alertState(a),
			a.AccountId, orDash(a.AccountName), humanize.Score(a.Score), money(a.Arr), orDash(personName(a.Assignee)),
			e.relative(a.CreateTime), a.Reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	count := plural(len(all), "alert")
	if more {
		count += " (more with a larger -n)"
	}
	_, err = fmt.Fprintf(e.out, "\n%s\n", count)
	return err
}

// alertsGet prints one alert in full.
func alertsGet(ctx context.Context, e *env, args []string) error {
	pos, err := parseArgs(flag.NewFlagSet("alerts get", flag.ContinueOnError), args, "ALERT")
	if err != nil {
		return err
	}
	resp, err := e.alerts.GetAlert(ctx, &alertv1.GetAlertRequest{AlertId: pos[0]})
	if err != nil {
		return failed("get alert", err)
	}
	if e.json {
		return e.printJSON(resp)
	}
	return e.printAlert(resp.Alert)
}

// alertsAck acknowledges an alert.
func alertsAck(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("alerts ack", flag.ContinueOnError)
	note := fs.String("note", "", "A note for the audit trail.")
	actor := actorFlag(fs)
	pos, err := parseArgs(fs, args, "ALERT")
	if err != nil {
		return err
	}
	resp, err := e.alerts.AcknowledgeAlert(ctx, &alertv1.AcknowledgeAlertRequest{AlertId: pos[0], Actor: *actor, Note: *note})
	if err != nil {
		return failed("acknowledge alert", err)
	}
	return e.printChanged(resp, resp.Alert)
}

// alertsSnooze silences an alert until a time.
func alertsSnooze(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("alerts snooze", flag.ContinueOnError)
	until := fs.String("until", "", "When the snooze ends: a date (2026-12-24, midnight in -tz), a time (2026-12-24T09:00 in -tz, or RFC 3339) or a duration from now (72h). At most 90 days ahead.")
	reason := fs.String("reason", "", "Why, for whoever looks next (required).")
	actor := actorFlag(fs)
	pos, err := parseArgs(fs, args, "ALERT")
	if err != nil {
		return err
	}
	if *until == "" || *reason == "" {
		return usagef("alerts snooze: want -until and -reason")
	}
	end, err := parseUntil(*until, e.now(), e.loc)
	if err != nil {
		return usagef("alerts snooze: -until: %v", err)
	}
	resp, err := e.alerts.SnoozeAlert(ctx, &alertv1.SnoozeAlertRequest{AlertId: pos[0], SnoozeEndTime: timestamppb.New(end), Reason: *reason, Actor: *actor})
	if err != nil {
		return failed("snooze alert", err)
	}
	return e.printChanged(resp, resp.Alert)
}

// alertsResolve closes an alert.
func alertsResolve(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("alerts resolve", flag.ContinueOnError)
	note := fs.String("note", "", "A note for the audit trail: what was done.")
	actor := actorFlag(fs)
	pos, err := parseArgs(fs, args, "ALERT")
	if err != nil {
		return err
	}
	resp, err := e.alerts.ResolveAlert(ctx, &alertv1.ResolveAlertRequest{AlertId: pos[0], Actor: *actor, Note: *note})
	if err != nil {
		return failed("resolve alert", err)
	}
	return e.printChanged(resp, resp.Alert)
}

// alertsWatch prints alert events as they happen, until interrupted or the
// server ends the stream. With -json it prints one JSON object per line.
func alertsWatch(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("alerts watch", flag.ContinueOnError)
	owner := fs.String("owner", "", "Only alerts of accounts this CSM owns or is assigned.")
	severity := fs.String("severity", "", "Only alerts at least this severe: info, low, medium, high or critical.")
	cursor := fs.String("cursor", "", "Resume after this cursor (printed with -json); only new events when empty.")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	req := &alertv1.WatchAlertsRequest{OwnerCsmId: *owner, Cursor: *cursor}
	var err error
	if req.MinSeverity, err = parseSeverity(*severity); err != nil {
		return usagef("alerts watch: -severity: %v", err)
	}
	stream, err := e.alerts.WatchAlerts(ctx, req)
	if err != nil {
		return failed("watch alerts", err)
	}
	for {
		resp, err := stream.Recv()
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			if ctx.Err() != nil && status.Code(err) == codes.Canceled {
				return nil // interrupted: the normal end of a watch
			}
			return failed("watch alerts", err)
		}
		if e.json {
			if err := e.printJSONLine(resp); err != nil {
				return err
			}
			continue
		}
		ev, a := resp.Event, resp.Event.GetAlert()
		if _, err := fmt.Fprintf(e.out, "%s  %-12s %-8s %s %s (%s, score %s): %s\n", e.dateTime(ev.GetEventTime()),
			enumName(ev.GetType(), "ALERT_EVENT_TYPE_"), enumName(a.GetSeverity(), "SEVERITY_"), a.GetAlertId(), a.GetAccountId(),
			orDash(a.GetAccountName()), humanize.Score(a.GetScore()), a.GetReason()); err != nil {
			return err
		}
	}
}

// printChanged prints an alert after an action: the response as JSON, or
// the alert's new state.
func (e *env) printChanged(resp proto.Message, a *alertv1.Alert) error {
	if e.json {
		return e.printJSON(resp)
	}
	return e.printAlert(a)
}

// printAlert prints an alert's fields, one per line.
func (e *env) printAlert(a *alertv1.Alert) error {
	tw := newTable(e.out)
	fmt.Fprintf(tw, "Alert:\t%s\n", a.AlertId)
	fmt.Fprintf(tw, "State:\t%s\n", e.alertState(a))
	fmt.Fprintf(tw, "Severity:\t%s\n", enumName(a.Severity, "SEVERITY_"))
	fmt.Fprintf(tw, "Account:\t%s  %s\n", a.AccountId, a.AccountName)
	fmt.Fprintf(tw, "Rule:\t%s (%s)\n", a.RuleId, enumName(a.RuleKind, "RULE_KIND_"))
	fmt.Fprintf(tw, "Reason:\t%s\n", a.Reason)
	fmt.Fprintf(tw, "Score:\t%s %s (%s): %s\n", humanize.Score(a.Score), enumName(a.Band, "BAND_"), humanize.ScoreDelta(a.Delta), orDash(a.ScoreSummary))
	fmt.Fprintf(tw, "Tier, stage:\t%s, %s\n", enumName(a.Tier, "TIER_"), enumName(a.LifecycleStage, "LIFECYCLE_STAGE_"))
	fmt.Fprintf(tw, "ARR:\t%s\n", money(a.Arr))
	fmt.Fprintf(tw, "Renewal:\t%s\n", e.dateAndWhen(a.RenewalTime))
	fmt.Fprintf(tw, "Owner:\t%s\n", orDash(personName(a.Owner)))
	fmt.Fprintf(tw, "Assignee:\t%s\n", orDash(personName(a.Assignee)))
	if a.EscalateTime != nil {
		fmt.Fprintf(tw, "Escalates:\t%s (%s) unless acknowledged\n", e.dateTime(a.EscalateTime), e.relative(a.EscalateTime))
	}
	if a.EscalationLevel > 0 {
		fmt.Fprintf(tw, "Escalated:\tto on-call\n")
	}
	fmt.Fprintf(tw, "Opened:\t%s\n", e.dateTime(a.CreateTime))
	fmt.Fprintf(tw, "Updated:\t%s\n", e.dateTime(a.UpdateTime))
	if a.Actor != "" || a.Note != "" {
		action := "by " + orDash(a.Actor)
		if a.Note != "" {
			action += ": " + a.Note
		}
		fmt.Fprintf(tw, "Last action:\t%s\n", action)
	}
	if a.ReopenCount > 0 {
		fmt.Fprintf(tw, "Reopened:\t%s\n", plural(int(a.ReopenCount), "time"))
	}
	if a.Link != "" {
		fmt.Fprintf(tw, "Link:\t%s\n", a.Link)
	}
	return tw.Flush()
}

// alertState is the state with its snooze end: "snoozed until 24 Dec 2026".
func (e *env) alertState(a *alertv1.Alert) string {
	st := enumName(a.State, "ALERT_STATE_")
	if a.State == alertv1.AlertState_ALERT_STATE_SNOOZED && a.SnoozeEndTime != nil {
		st += " until " + e.dateTime(a.SnoozeEndTime)
		if a.SnoozeReason != "" {
			st += " (" + a.SnoozeReason + ")"
		}
	}
	return st
}

func (e *env) relative(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return humanize.Relative(ts.AsTime(), e.now(), e.loc)
}

// actorFlag is who acts, for the alert's audit trail.
func actorFlag(fs *flag.FlagSet) *string {
	return fs.String("actor", "", "Who acts, for the audit trail: your name or e-mail.")
}

func personName(p *alertv1.Person) string {
	if p.GetName() != "" {
		return p.GetName()
	}
	return p.GetPersonId()
}

// parseUntil reads a snooze end: a duration from now, a date or a local
// time in loc, or an RFC 3339 time.
func parseUntil(s string, now time.Time, loc *time.Location) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("%q: want a positive duration", s)
		}
		return now.Add(d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02 15:04", time.DateOnly} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q: want a duration (72h), a date (2026-12-24) or a time (2026-12-24T09:00)", s)
}

func parseSeverity(name string) (alertv1.Severity, error) {
	if name == "" {
		return alertv1.Severity_SEVERITY_UNSPECIFIED, nil
	}
	return parseEnum[alertv1.Severity](alertv1.Severity_value, "SEVERITY_", name)
}

// parseEnum reads an enum value by its short name ("pre-renewal" for
// LIFECYCLE_STAGE_PRE_RENEWAL); the unspecified value is refused.
func parseEnum[E ~int32](values map[string]int32, prefix, name string) (E, error) {
	v, ok := values[prefix+strings.ReplaceAll(strings.ToUpper(strings.TrimSpace(name)), "-", "_")]
	if ok && v != 0 {
		return E(v), nil
	}
	// In the enum's order: info, low, medium, high, critical.
	byValue := make([]string, 0, len(values))
	for full := range values {
		byValue = append(byValue, full)
	}
	slices.SortFunc(byValue, func(a, b string) int { return cmp.Compare(values[a], values[b]) })
	var names []string
	for _, full := range byValue[1:] {
		names = append(names, enumName(enumString(full), prefix))
	}
	return 0, fmt.Errorf("%q: want %s", name, strings.Join(names, ", "))
}

// enumString lets enumName shorten a value's full name.
type enumString string

func (s enumString) String() string { return string(s) }

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return humanize.Int(int64(n)) + " " + unit + "s"
}
