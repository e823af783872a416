package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/pkg/humanize"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// maxPageSize is the largest page the list calls return.
const maxPageSize = 1000

// worst lists the worst accounts first, each with its one-line reason, and
// the tenant's band counts.
func worst(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("worst", flag.ContinueOnError)
	n := fs.Int("n", 20, "Accounts to list.")
	bandName := fs.String("band", "", "Only accounts in this band: red, yellow or green.")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	if *n < 1 {
		return usagef("worst: -n %d: want at least 1", *n)
	}
	band := scoringv1.Band_BAND_UNSPECIFIED
	if *bandName != "" {
		v, ok := scoringv1.Band_value["BAND_"+strings.ToUpper(*bandName)]
		if !ok || v == 0 {
			return usagef("worst: -band %q: want red, yellow or green", *bandName)
		}
		band = scoringv1.Band(v)
	}
	var (
		scores []*scoringv1.HealthScore
		counts *scoringv1.BandCounts
		token  string
	)
	for len(scores) < *n {
		resp, err := e.scoring.ListHealthScores(ctx, &scoringv1.ListHealthScoresRequest{
			PageSize:  int32(min(*n-len(scores), maxPageSize)),
			PageToken: token,
			Band:      band,
			OrderBy:   scoringv1.ListHealthScoresOrder_LIST_HEALTH_SCORES_ORDER_SCORE_ASCENDING,
		})
		if err != nil {
			return failed("list health scores", err)
		}
		scores, counts, token = append(scores, resp.Scores...), resp.BandCounts, resp.NextPageToken
		if token == "" {
			break
		}
	}
	scores = scores[:min(len(scores), *n)]
	if e.json {
		return e.printJSON(&scoringv1.ListHealthScoresResponse{Scores: scores, BandCounts: counts})
	}
	out := e.out
	tw := newTable(out)
	fmt.Fprintln(tw, "ACCOUNT\tNAME\tSCORE\tBAND\tDELTA\tSUMMARY")
	for _, s := range scores {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.AccountId, orDash(s.AccountName), humanize.Score(s.Score), enumName(s.Band, "BAND_"), humanize.ScoreDelta(s.Delta), s.Summary)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	total := counts.GetRed() + counts.GetYellow() + counts.GetGreen()
	_, err := fmt.Fprintf(out, "\nbands: %d red, %d yellow, %d green (%d accounts scored)\n", counts.GetRed(), counts.GetYellow(), counts.GetGreen(), total)
	return err
}

// score prints an account's score with its full explanation.
func score(ctx context.Context, e *env, args []string) error {
	pos, err := parseArgs(flag.NewFlagSet("score", flag.ContinueOnError), args, "ACCOUNT")
	if err != nil {
		return err
	}
	resp, err := e.scoring.GetHealthScore(ctx, &scoringv1.GetHealthScoreRequest{AccountId: pos[0]})
	if err != nil {
		return failed("get health score", err)
	}
	if e.json {
		return e.printJSON(resp)
	}
	out := e.out
	s := resp.Score
	tw := newTable(out)
	fmt.Fprintf(tw, "Account:\t%s  %s\n", s.AccountId, s.AccountName)
	fmt.Fprintf(tw, "Score:\t%s %s (%s from %s)\n", humanize.Score(s.Score), enumName(s.Band, "BAND_"), humanize.ScoreDelta(s.Delta), humanize.Score(s.PreviousScore))
	fmt.Fprintf(tw, "Summary:\t%s\n", s.Summary)
	fmt.Fprintf(tw, "Stage:\t%s\n", enumName(s.LifecycleStage, "LIFECYCLE_STAGE_"))
	fmt.Fprintf(tw, "Tier:\t%s\n", enumName(s.Tier, "TIER_"))
	fmt.Fprintf(tw, "Owner:\t%s\n", orDash(s.OwnerCsmId))
	fmt.Fprintf(tw, "Segment:\t%s\n", orDash(s.Segment))
	fmt.Fprintf(tw, "ARR:\t%s\n", money(s.Arr))
	fmt.Fprintf(tw, "Renewal:\t%s\n", e.dateAndWhen(s.RenewalTime))
	fmt.Fprintf(tw, "Scored at:\t%s (event time), scorecard version %d\n", e.dateTime(s.ScoreTime), s.ScorecardVersion)
	fmt.Fprintf(tw, "Largest 7-day drop:\t%s\n", humanize.Score(s.Drop_7D))
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(out)
	tw = newTable(out)
	fmt.Fprintln(tw, "MEASURE\tRAW\tDETAIL\tSUB-SCORE\tWEIGHT\tEFFECTIVE\tCONTRIBUTION")
	for _, m := range s.Measures {
		if !m.HasData {
			fmt.Fprintf(tw, "%s\t-\tno data\t-\t%s\t-\t-\n", m.Name, number(m.Weight))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			m.Name, number(m.RawValue), orDash(m.Detail), humanize.Score(m.SubScore), number(m.Weight), humanize.Percent(m.EffectiveWeight), humanize.Score(m.Contribution))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(s.Attributions) > 0 {
		parts := make([]string, len(s.Attributions))
		for i, a := range s.Attributions {
			parts[i] = a.Measure + " " + humanize.ScoreDelta(a.Points)
		}
		fmt.Fprintf(out, "\nMoved by: %s\n", strings.Join(parts, ", "))
	}
	if s.ScorecardChanged {
		fmt.Fprintln(out, "\nFirst score under a new scorecard version: its change is not behaviour.")
	}
	if len(s.Notes) > 0 {
		fmt.Fprintln(out, "\nNotes:")
		for _, n := range s.Notes {
			fmt.Fprintln(out, "  - "+n)
		}
	}
	return nil
}

// history lists an account's score changes, newest first.
func history(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("history", flag.ContinueOnError)
	n := fs.Int("n", 20, "Score changes to list.")
	pos, err := parseArgs(fs, args, "ACCOUNT")
	if err != nil {
		return err
	}
	if *n < 1 || *n > maxPageSize {
		return usagef("history: -n %d: want 1 to %d", *n, maxPageSize)
	}
	resp, err := e.scoring.GetScoreHistory(ctx, &scoringv1.GetScoreHistoryRequest{AccountId: pos[0], PageSize: int32(*n)})
	if err != nil {
		return failed("get score history", err)
	}
	if e.json {
		return e.printJSON(resp)
	}
	tw := newTable(e.out)
	fmt.Fprintln(tw, "SCORE TIME\tSCORE\tBAND\tDELTA\tSUMMARY")
	for _, s := range resp.Scores {
		summary := s.Summary
		if s.ScorecardChanged {
			summary = fmt.Sprintf("[scorecard v%d] %s", s.ScorecardVersion, summary)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.dateTime(s.ScoreTime), humanize.Score(s.Score), enumName(s.Band, "BAND_"), humanize.ScoreDelta(s.Delta), summary)
	}
	return tw.Flush()
}

// activity shows an account's core events per day and its key events.
func activity(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("activity", flag.ContinueOnError)
	days := fs.Int("days", 30, "Days of activity up to the tenant's latest event (1-90).")
	pos, err := parseArgs(fs, args, "ACCOUNT")
	if err != nil {
		return err
	}
	if *days < 1 || *days > 90 {
		return usagef("activity: -days %d: want 1 to 90", *days)
	}
	resp, err := e.scoring.GetAccountActivity(ctx, &scoringv1.GetAccountActivityRequest{AccountId: pos[0], Days: int32(*days)})
	if err != nil {
		return failed("get account activity", err)
	}
	if e.json {
		return e.printJSON(resp)
	}
	tw := newTable(e.out)
	fmt.Fprintln(tw, "DAY (UTC)\tCORE EVENTS")
	for _, d := range resp.Days {
		fmt.Fprintf(tw, "%s\t%s\n", humanize.Date(d.Day.AsTime(), time.UTC), humanize.Int(d.CoreEvents))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(e.out, "\nKey events:")
	tw = newTable(e.out)
	for _, k := range resp.KeyEvents {
		when := e.dateTime(k.Time)
		if k.DayOnly {
			when = humanize.Date(k.Time.AsTime(), time.UTC) + " (UTC)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", when, k.Name, k.Detail)
	}
	return tw.Flush()
}

// accounts lists the accounts with their CRM facts.
func accounts(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("accounts", flag.ContinueOnError)
	n := fs.Int("n", 100, "Accounts to list.")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	if *n < 1 {
		return usagef("accounts: -n %d: want at least 1", *n)
	}
	var all []*accountv1.Account
	for token := ""; len(all) < *n; {
		resp, err := e.accounts.ListAccounts(ctx, &accountv1.ListAccountsRequest{PageSize: int32(min(*n-len(all), maxPageSize)), PageToken: token})
		if err != nil {
			return failed("list accounts", err)
		}
		all = append(all, resp.Accounts[:min(len(resp.Accounts), *n-len(all))]...)
		if token = resp.NextPageToken; token == "" {
			break
		}
	}
	if e.json {
		return e.printJSON(&accountv1.ListAccountsResponse{Accounts: all})
	}
	tw := newTable(e.out)
	fmt.Fprintln(tw, "ACCOUNT\tNAME\tTIER\tSTAGE\tSEATS\tARR\tOWNER\tRENEWAL")
	for _, a := range all {
		owner := a.GetOwner().GetName()
		if owner == "" {
			owner = a.GetOwner().GetCsmId()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.AccountId, orDash(a.Name), enumName(a.Tier, "TIER_"),
			enumName(a.LifecycleStage, "LIFECYCLE_STAGE_"), humanize.Int(int64(a.SeatsPurchased)), money(a.Arr), orDash(owner), e.date(a.RenewalTime))
	}
	return tw.Flush()
}

// failed describes a failed call by its gRPC code and message, which read
// better than the status error's own text, followed by every field problem
// of a google.rpc.BadRequest detail, one per line.
func failed(op string, err error) error {
	st := status.Convert(err)
	msg := st.Message()
	var problems []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.FieldViolations {
				problems = append(problems, "\n  "+v.Field+": "+v.Description)
			}
		}
	}
	// A message that repeats every problem is cut to its summary: the
	// problems follow, one per line.
	if len(problems) > 0 && !slices.ContainsFunc(problems, func(p string) bool { return !strings.Contains(msg, p[strings.LastIndex(p, ": ")+2:]) }) {
		if i := strings.Index(msg, ":"); i > 0 {
			msg = msg[:i]
		}
	}
	msg = fmt.Sprintf("%s: %s: %s%s", op, st.Code(), msg, strings.Join(problems, ""))
	if st.Code() == codes.Unavailable {
		msg += "\n(is Lodestar running at -addr?)"
	}
	return errors.New(msg)
}

func newTable(out io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(out, 0, 0, 2, ' ', 0) }

// enumName turns an enum value into a short lower-case name:
// LIFECYCLE_STAGE_PRE_RENEWAL becomes pre-renewal, an unspecified value -.
func enumName(v fmt.Stringer, prefix string) string {
	name := strings.TrimPrefix(v.String(), prefix)
	if name == "UNSPECIFIED" {
		return "-"
	}
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// number prints whole numbers without decimals and others with two.
func number(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// money prints an amount as the console does: "$48,000".
func money(m *accountv1.Money) string {
	if m == nil {
		return "-"
	}
	return humanize.Money(float64(m.Units)+float64(m.Nanos)/1e9, m.CurrencyCode)
}

// printJSON prints a response in the proto3 JSON mapping.
func (e *env) printJSON(m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = fmt.Fprintf(e.out, "%s\n", b)
	return err
}

// printJSONLine prints a message as one line of JSON, for streams.
func (e *env) printJSONLine(m proto.Message) error {
	b, err := protojson.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = fmt.Fprintf(e.out, "%s\n", b)
	return err
}

func (e *env) date(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return humanize.Date(ts.AsTime(), e.loc)
}

func (e *env) dateTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return humanize.DateTime(ts.AsTime(), e.loc)
}

// dateAndWhen prints a date with how far it is: "23 Feb 2027 (in 79 days)".
func (e *env) dateAndWhen(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return humanize.Date(ts.AsTime(), e.loc) + " (" + humanize.Relative(ts.AsTime(), e.now(), e.loc) + ")"
}
