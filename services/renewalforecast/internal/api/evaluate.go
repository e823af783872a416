package api

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/internal/scorecore/replay"
	"github.com/lodestar-cs/lodestar/pkg/grpcerr"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	forecastv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/forecast/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/backtest"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/eventreplay"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/history"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/retention"
)

// leadLookback bounds how far before a churn its first red score is looked
// for: a red spell in an earlier term is not a warning of this churn.
const leadLookback = 365 * day

// EvaluateScorecard backtests the active scorecard and, when given, a
// candidate replayed over the stored events.
func (s *Server) EvaluateScorecard(ctx context.Context, req *forecastv1.EvaluateScorecardRequest) (*forecastv1.EvaluateScorecardResponse, error) {
	tenant, err := grpcerr.Tenant(ctx)
	if err != nil {
		return nil, err
	}
	var bad violations
	if h := req.GetHorizonDays(); h < 0 || h > maxHorizonDays {
		bad.add("horizon_days", "must be 0 to %d", maxHorizonDays)
	}
	bad.window(req.GetStartTime(), req.GetEndTime())
	bad.scorecard("candidate", req.GetCandidate())
	if err := bad.err("invalid evaluation request"); err != nil {
		return nil, err
	}
	horizon := int(req.GetHorizonDays())
	if horizon == 0 {
		horizon = s.cfg.HorizonDays
	}
	from, to := time.Time{}, time.Unix(1<<62, 0)
	if req.GetStartTime() != nil {
		from = req.GetStartTime().AsTime()
	}
	if req.GetEndTime() != nil {
		to = req.GetEndTime().AsTime()
	}

	v := s.store.View(tenant)
	active := renewals(v, v, horizon, from, to)
	resp := &forecastv1.EvaluateScorecardResponse{HorizonDays: int32(horizon)}
	if req.GetCandidate() == nil {
		resp.Active = evaluate(active, func(i int) bool { return active[i].scored })
		return resp, nil
	}
	replayed := history.Timelines{}
	if err := s.replay(ctx, tenant, req.GetCandidate(), v.Accounts, replayed.Add); err != nil {
		return nil, s.failed("replay candidate scorecard", err)
	}
	candidate := renewals(v, replayed, horizon, from, to)
	// Both on the renewals both could score: a fair comparison.
	both := func(i int) bool { return active[i].scored && candidate[i].scored }
	resp.Active, resp.Candidate = evaluate(active, both), evaluate(candidate, both)
	return resp, nil
}

// replay scores the tenant's stored events with sc and passes each score
// change to emit, one replay at a time.
func (s *Server) replay(ctx context.Context, tenant string, sc *scoringv1.Scorecard, accounts []*accountv1.Account, emit func(*scoringv1.HealthScore)) error {
	select {
	case s.replays <- struct{}{}:
		defer func() { <-s.replays }()
	case <-ctx.Done():
		return ctx.Err()
	}
	var facts []replay.Fact
	for _, acc := range accounts {
		facts = append(facts, factsOf(acc)...)
	}
	if err := eventreplay.Stream(ctx, s.js, tenant, sc, facts, emit); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	return nil
}

// factsOf rebuilds an account's CRM facts through its history from its
// outcomes: before each renewal, its date and the ARR then; after a churn,
// the churned stage. The lifecycle stage is otherwise left to the scoring
// core to derive from the dates (onboarding, pre-renewal), as it was then.
func factsOf(acc *accountv1.Account) []replay.Fact {
	outcomes := retention.Outcomes(acc)
	base := proto.CloneOf(acc)
	base.Outcomes, base.LifecycleStage = nil, accountv1.LifecycleStage_LIFECYCLE_STAGE_UNSPECIFIED
	renewalAfter := func(k int, at time.Time) time.Time {
		if k+1 < len(outcomes) {
			return outcomes[k+1].GetOutcomeTime().AsTime()
		}
		if r := acc.GetRenewalTime(); r != nil && r.AsTime().After(at) {
			return r.AsTime()
		}
		return at.AddDate(1, 0, 0)
	}
	first := proto.CloneOf(base)
	if len(outcomes) > 0 {
		first.RenewalTime, first.Arr = outcomes[0].GetOutcomeTime(), outcomes[0].GetArrBefore()
	}
	facts := []replay.Fact{{Account: first}}
	for k, o := range outcomes {
		at := o.GetOutcomeTime().AsTime()
		f := proto.CloneOf(base)
		f.Arr = o.GetArrAfter()
		f.LifecycleStage = accountv1.LifecycleStage_LIFECYCLE_STAGE_RENEWED
		if o.GetType() == accountv1.OutcomeType_OUTCOME_TYPE_CHURNED {
			f.LifecycleStage = accountv1.LifecycleStage_LIFECYCLE_STAGE_CHURNED
		}
		f.RenewalTime = timestamppb.New(renewalAfter(k, at))
		facts = append(facts, replay.Fact{At: at, Account: f})
	}
	return facts
}

// scoredRenewal is a recorded renewal with the score read at the horizon.
type scoredRenewal struct {
	sample backtest.Sample
	scored bool
}

// renewals reads, for every recorded renewal of the view in [from, to), the
// score src had for the account horizon days before it. The order is the
// view's, so that two sources' lists line up.
func renewals(v *history.View, src history.Source, horizon int, from, to time.Time) []scoredRenewal {
	var out []scoredRenewal
	for _, acc := range v.Accounts {
		scores := src.Scores(acc.GetAccountId())
		prev := time.Time{}
		for _, o := range retention.Outcomes(acc) {
			at := o.GetOutcomeTime().AsTime()
			termStart := prev
			prev = at
			if at.Before(from) || !at.Before(to) {
				continue
			}
			p, ok := scores.At(at.Add(-time.Duration(horizon) * day))
			r := scoredRenewal{scored: ok, sample: backtest.Sample{
				Score:   float64(p.Score),
				Band:    p.Band,
				Churned: o.GetType() == accountv1.OutcomeType_OUTCOME_TYPE_CHURNED,
			}}
			if r.sample.Churned {
				if red, ok := scores.FirstRed(maxTime(termStart, at.Add(-leadLookback)), at); ok {
					r.sample.FlaggedRed, r.sample.LeadDays = true, at.Sub(red).Hours()/24
				}
			}
			out = append(out, r)
		}
	}
	return out
}

func evaluate(rs []scoredRenewal, keep func(int) bool) *forecastv1.ScorecardEvaluation {
	var samples []backtest.Sample
	for i, r := range rs {
		if keep(i) {
			samples = append(samples, r.sample)
		}
	}
	return backtest.Evaluate(samples, len(rs)-len(samples))
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
