package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/internal/scorecards"
	"github.com/lodestar-cs/lodestar/internal/scorecore/scorecard"
	"github.com/lodestar-cs/lodestar/pkg/grpcerr"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	forecastv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/forecast/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/history"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/retention"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/suggest"
)

// SuggestScorecard limits.
const (
	// suggestHorizonDays is the default days before a renewal at which the
	// sub-scores are read: a quarter ahead, time for a CSM to act.
	suggestHorizonDays = 90
	// Each side of the split needs minSideRenewals scored renewals, at least
	// minSideOutcome of them churned and as many renewed: fewer cannot
	// support a fit of several weights, nor judge one.
	minSideRenewals = 20
	minSideOutcome  = 5
)

// SuggestScorecard fits the weights of a base scorecard's measures to the
// tenant's renewal outcomes before a split time and backtests the candidate
// beside the active and base scorecards on the renewals after it.
func (s *Server) SuggestScorecard(ctx context.Context, req *forecastv1.SuggestScorecardRequest) (*forecastv1.SuggestScorecardResponse, error) {
	tenant, err := grpcerr.Tenant(ctx)
	if err != nil {
		return nil, err
	}
	var bad violations
	if h := req.GetHorizonDays(); h < 0 || h > maxHorizonDays {
		bad.add("horizon_days", "must be 1 to %d, or 0 for %d", maxHorizonDays, suggestHorizonDays)
	}
	bad.timestamp("split_time", req.GetSplitTime())
	bad.scorecard("base", req.GetBase())
	if err := bad.err("invalid suggestion request"); err != nil {
		return nil, err
	}
	horizon := int(req.GetHorizonDays())
	if horizon == 0 {
		horizon = suggestHorizonDays
	}
	resp := &forecastv1.SuggestScorecardResponse{HorizonDays: int32(horizon)}
	base := req.GetBase()
	if base == nil {
		if base, err = s.activeScorecard(ctx, tenant); err != nil {
			return nil, s.failed("read the active scorecard", err)
		}
		resp.Notes = append(resp.Notes, fmt.Sprintf("base: the active scorecard %q (version %d)", base.GetName(), base.GetVersion()))
	}

	v := s.store.View(tenant)
	split := medianRenewal(v.Accounts)
	if req.GetSplitTime() != nil {
		split = req.GetSplitTime().AsTime()
	}
	resp.SplitTime = timestamppb.New(split)
	// The recorded outcomes alone may already be too few: say so before
	// replaying the whole history.
	var fitAll, testAll sideCount
	for _, acc := range v.Accounts {
		for _, o := range retention.Outcomes(acc) {
			side := &testAll
			if o.GetOutcomeTime().AsTime().Before(split) {
				side = &fitAll
			}
			side.add(o.GetType() == accountv1.OutcomeType_OUTCOME_TYPE_CHURNED)
		}
	}
	if err := tooFew(fitAll, testAll, split, "recorded"); err != nil {
		return nil, err
	}

	subs, baseTL := subScores{}, history.Timelines{}
	index := map[string]int{}
	for j, m := range base.GetMeasures() {
		index[m.GetName()] = j
	}
	err = s.replay(ctx, tenant, base, v.Accounts, func(hs *scoringv1.HealthScore) {
		baseTL.Add(hs)
		subs.add(hs, index)
	})
	if err != nil {
		return nil, s.failed("replay base scorecard", err)
	}
	var train []suggest.Sample
	var fitSide, testSide sideCount
	for _, acc := range v.Accounts {
		for _, o := range retention.Outcomes(acc) {
			at := o.GetOutcomeTime().AsTime()
			x, ok := subs.at(acc.GetAccountId(), at.Add(-time.Duration(horizon)*day))
			if !ok {
				continue
			}
			churned := o.GetType() == accountv1.OutcomeType_OUTCOME_TYPE_CHURNED
			if !at.Before(split) {
				testSide.add(churned)
				continue
			}
			fitSide.add(churned)
			train = append(train, suggest.Sample{SubScores: x, Churned: churned})
		}
	}
	if err := tooFew(fitSide, testSide, split, fmt.Sprintf("scored %d days ahead", horizon)); err != nil {
		return nil, err
	}
	resp.FitRenewals, resp.FitChurned = int32(fitSide.n), int32(fitSide.churned)
	resp.TestRenewals, resp.TestChurned = int32(testSide.n), int32(testSide.churned)

	res, err := suggest.Suggest(base, train)
	if errors.Is(err, suggest.ErrNoSignal) {
		return nil, grpcerr.WithDetails(codes.FailedPrecondition, "no scorecard of these measures ranks churn: "+err.Error(),
			&errdetails.PreconditionFailure{Violations: []*errdetails.PreconditionFailure_Violation{{
				Type: "SIGNAL", Subject: "base.measures", Description: err.Error(),
			}}})
	}
	if err != nil {
		return nil, s.failed("suggest scorecard", err)
	}
	resp.Scorecard, resp.Measures = res.Scorecard, res.Measures
	resp.Notes = append(resp.Notes, fmt.Sprintf("fitted on %d renewals before %s (%d churned), L2 penalty %g on standardised sub-scores; tested on %d from then on (%d churned)",
		fitSide.n, split.Format(time.DateOnly), fitSide.churned, suggest.Lambda, testSide.n, testSide.churned))
	resp.Notes = append(resp.Notes, res.Notes...)

	candTL := history.Timelines{}
	if err := s.replay(ctx, tenant, res.Scorecard, v.Accounts, candTL.Add); err != nil {
		return nil, s.failed("replay candidate scorecard", err)
	}
	end := time.Unix(1<<62, 0)
	active := renewals(v, v, horizon, split, end)
	baseR := renewals(v, baseTL, horizon, split, end)
	cand := renewals(v, candTL, horizon, split, end)
	all := func(i int) bool { return active[i].scored && baseR[i].scored && cand[i].scored }
	resp.Active, resp.Base, resp.Candidate = evaluate(active, all), evaluate(baseR, all), evaluate(cand, all)
	return resp, nil
}

// activeScorecard returns the tenant's active scorecard: the one stored in
// the scorecards bucket, else the built-in default the scoring service uses
// when there is none.
func (s *Server) activeScorecard(ctx context.Context, tenant string) (*scoringv1.Scorecard, error) {
	kv, err := s.js.KeyValue(ctx, scorecards.Bucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
	case err != nil:
		return nil, fmt.Errorf("open scorecards bucket: %w", err)
	default:
		sc, err := scorecards.New(kv).Active(ctx, tenant)
		if !errors.Is(err, scorecards.ErrNotFound) {
			return sc, err
		}
	}
	return scorecard.Default()
}

// sideCount counts the renewals on one side of the split.
type sideCount struct{ n, churned int }

func (c *sideCount) add(churned bool) {
	c.n++
	if churned {
		c.churned++
	}
}

func (c sideCount) enough() bool {
	return c.n >= minSideRenewals && c.churned >= minSideOutcome && c.n-c.churned >= minSideOutcome
}

// tooFew is a FailedPrecondition when either side of the split has too few
// renewals (what counts: "recorded", or scored at the horizon).
func tooFew(fit, test sideCount, split time.Time, what string) error {
	if fit.enough() && test.enough() {
		return nil
	}
	var pf errdetails.PreconditionFailure
	for _, side := range []struct {
		name string
		c    sideCount
		when string
	}{{"fit", fit, "before"}, {"test", test, "from"}} {
		if !side.c.enough() {
			pf.Violations = append(pf.Violations, &errdetails.PreconditionFailure_Violation{
				Type:    "RENEWALS",
				Subject: side.name,
				Description: fmt.Sprintf("%d renewals %s %s %s (%d churned, %d renewed); want at least %d, with %d of each outcome",
					side.c.n, what, side.when, split.Format(time.DateOnly), side.c.churned, side.c.n-side.c.churned, minSideRenewals, minSideOutcome),
			})
		}
	}
	msg := "too few renewal outcomes to learn a scorecard from"
	for _, v := range pf.Violations {
		msg += "; " + v.GetSubject() + ": " + v.GetDescription()
	}
	return grpcerr.WithDetails(codes.FailedPrecondition, msg, &pf)
}

// medianRenewal is the median time of the recorded renewal outcomes: the
// default split, half the renewals to fit and half to test.
func medianRenewal(accounts []*accountv1.Account) time.Time {
	var ts []time.Time
	for _, acc := range accounts {
		for _, o := range retention.Outcomes(acc) {
			ts = append(ts, o.GetOutcomeTime().AsTime())
		}
	}
	if len(ts) == 0 {
		return time.Time{}
	}
	slices.SortFunc(ts, time.Time.Compare)
	return ts[len(ts)/2]
}

// subScores are the base measures' sub-scores of every account through a
// replay, one point per score change: 8 bytes a measure per change.
type subScores map[string][]subPoint

type subPoint struct {
	time int64
	// subs are by measure index; NaN where the measure had no data.
	subs []float64
}

// add records a score's sub-scores of the measures in index.
func (ss subScores) add(hs *scoringv1.HealthScore, index map[string]int) {
	p := subPoint{time: hs.GetScoreTime().GetSeconds(), subs: make([]float64, len(index))}
	for j := range p.subs {
		p.subs[j] = math.NaN()
	}
	for _, m := range hs.GetMeasures() {
		if j, ok := index[m.GetName()]; ok && m.GetHasData() {
			p.subs[j] = m.GetSubScore()
		}
	}
	id := hs.GetAccountId()
	if _, ok := ss[id]; !ok {
		id = strings.Clone(id) // not the score's: it is dropped after the call
	}
	ss[id] = append(ss[id], p)
}

// at returns the sub-scores in force at t, as history.Scores.At; the replay
// emits them oldest day first.
func (ss subScores) at(account string, t time.Time) ([]float64, bool) {
	pts := ss[account]
	i := sort.Search(len(pts), func(i int) bool { return pts[i].time > t.Unix() })
	if i == 0 {
		return nil, false
	}
	return pts[i-1].subs, true
}
