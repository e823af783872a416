// Package api implements lodestar.forecast.v1.ForecastService over the
// forecast's history: it turns accounts and score histories into model
// inputs, keeps each tenant's fitted model, and answers from the retention,
// portfolio and backtest packages.
package api

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/internal/scorecore/replay"
	"github.com/lodestar-cs/lodestar/pkg/grpcerr"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	forecastv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/forecast/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/history"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/model"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/portfolio"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/retention"
)

// Config tunes the API; the service's flags set it.
type Config struct {
	// MinOutcomes is the number of recorded outcomes from which a tenant's
	// model is fitted rather than the default used.
	MinOutcomes int
	// Simulations and Seed are the Monte Carlo defaults of portfolio forecasts.
	Simulations int
	Seed        uint64
	// AtRiskBelow is the renewal probability below which a renewal is at risk.
	AtRiskBelow float64
	// HorizonDays is the default number of days before a renewal at which a
	// backtest reads the score.
	HorizonDays int
}

// Request bounds.
const (
	maxPageSize     = 1000
	defaultPageSize = 100
	maxSimulations  = 20000
	maxPeriods      = 120
	maxHorizonDays  = 365
	// defaultRenewalWindow is ListRenewals' window when none is given.
	defaultRenewalWindow = 90 * 24 * time.Hour
	// refitAfter bounds how long a fitted model is kept while its tenant's
	// outcomes stay the same: score history keeps growing under it.
	refitAfter = time.Hour
	// seatsNearlyFull is the active seat ratio from which an account shows an
	// expansion signal.
	seatsNearlyFull = 0.9
	// trendDays is the span of the score trend.
	trendDays = 30
	day       = 24 * time.Hour
)

// Server serves ForecastService.
type Server struct {
	forecastv1.UnimplementedForecastServiceServer

	cfg    Config
	store  *history.Store
	js     jetstream.JetStream
	logger *slog.Logger
	now    func() time.Time
	// replays bounds the candidate scorecard replays running at once: each
	// reads a tenant's whole event history.
	replays chan struct{}

	mu     sync.Mutex
	models map[string]*fitted
}

// fitted is a tenant's model, as of a version of its outcomes.
type fitted struct {
	outcomes uint64
	at       time.Time
	model    *model.Model
	rates    portfolio.Rates
}

// New returns the server.
func New(cfg Config, store *history.Store, js jetstream.JetStream, logger *slog.Logger) *Server {
	return &Server{
		cfg:     cfg,
		store:   store,
		js:      js,
		logger:  logger,
		now:     time.Now,
		replays: make(chan struct{}, 1),
		models:  map[string]*fitted{},
	}
}

// violations collects the invalid fields of a request.
type violations []*errdetails.BadRequest_FieldViolation

func (v *violations) add(field, format string, args ...any) {
	*v = append(*v, grpcerr.Violation(field, fmt.Sprintf(format, args...)))
}

// err is an InvalidArgument status with the violations as BadRequest, or nil.
func (v violations) err(msg string) error {
	if len(v) == 0 {
		return nil
	}
	return grpcerr.Error(codes.InvalidArgument, msg, v...)
}

func (v *violations) timestamp(field string, t *timestamppb.Timestamp) {
	if t != nil && t.CheckValid() != nil {
		v.add(field, "invalid timestamp: %v", t.CheckValid())
	}
}

// window checks a [start, end) pair of timestamps, either of which may be unset.
func (v *violations) window(start, end *timestamppb.Timestamp) {
	v.timestamp("start_time", start)
	v.timestamp("end_time", end)
	if start != nil && end != nil && !start.AsTime().Before(end.AsTime()) {
		v.add("end_time", "must be after start_time")
	}
}

// scorecard adds a violation per problem of sc, an optional scorecard of
// the request at field.
func (v *violations) scorecard(field string, sc *scoringv1.Scorecard) {
	if sc == nil {
		return
	}
	for _, p := range replay.Validate(sc) {
		v.add(field+"."+p.GetField(), "%s", p.GetDescription())
	}
}

var currencyCode = regexp.MustCompile(`^[A-Z]{3}$`)

func (v *violations) currency(c string) {
	if c != "" && !currencyCode.MatchString(c) {
		v.add("currency_code", "%q is not an ISO 4217 code such as USD", c)
	}
}

func (v *violations) unit(u forecastv1.PeriodUnit) {
	if _, ok := forecastv1.PeriodUnit_name[int32(u)]; !ok {
		v.add("unit", "unknown period unit %d", u)
	}
}

// modelFor returns the tenant's model and outcome rates: fitted to its
// recorded outcomes when it has enough, else the default ones at the level
// of the outcomes it has.
func (s *Server) modelFor(tenant string, v *history.View) (*model.Model, portfolio.Rates) {
	s.mu.Lock()
	f := s.models[tenant]
	s.mu.Unlock()
	now := s.now()
	if f != nil && f.outcomes == v.Outcomes && now.Sub(f.at) < refitAfter {
		return f.model, f.rates
	}
	examples, observed := training(v)
	m, err := model.Fit(examples, s.cfg.MinOutcomes)
	if err != nil {
		if !errors.Is(err, model.ErrTooFew) {
			s.logger.Warn("fit renewal model: using the default", "tenant", tenant, "err", err)
		}
		// Too few outcomes to fit slopes, but any say where the tenant's level is.
		m = model.DefaultFor(examples)
	}
	f = &fitted{outcomes: v.Outcomes, at: now, model: m, rates: portfolio.EstimateRates(observed)}
	s.mu.Lock()
	s.models[tenant] = f
	s.mu.Unlock()
	return f.model, f.rates
}

// horizons are the days before a recorded renewal at which the model learns
// from it: through the pre-renewal stage and before it, so that it learns
// what a score means at each distance from the decision.
func horizons() [3]int { return [3]int{30, 90, 180} }

// training turns the tenant's recorded outcomes into model examples and
// observations for the outcome rates.
func training(v *history.View) ([]model.Example, []portfolio.Observed) {
	var examples []model.Example
	var observed []portfolio.Observed
	for _, acc := range v.Accounts {
		scores := v.Scores(acc.GetAccountId())
		for _, o := range retention.Outcomes(acc) {
			at := o.GetOutcomeTime().AsTime()
			var ins []model.Inputs
			for _, h := range horizons() {
				if in, _, ok := inputsAt(acc, scores, at.Add(-time.Duration(h)*day), float64(h)); ok {
					ins = append(ins, in)
				}
			}
			renewed := o.GetType() != accountv1.OutcomeType_OUTCOME_TYPE_CHURNED
			id := outcomeID(acc.GetAccountId(), at)
			for _, in := range ins {
				examples = append(examples, model.Example{Inputs: in, Renewed: renewed, Weight: 1 / float64(len(ins)), Outcome: id})
			}
			p, _ := scores.At(at.Add(-trendDays * day))
			observed = append(observed, portfolio.Observed{
				Type:   o.GetType(),
				Before: retention.Money(o.GetArrBefore()),
				After:  retention.Money(o.GetArrAfter()),
				Signal: seatsFull(p),
			})
		}
	}
	return examples, observed
}

func outcomeID(account string, at time.Time) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%d", account, at.UnixNano())
	return h.Sum64()
}

// inputsAt reads the model's inputs for acc at time at; false when the
// account had no score by then (the inputs then say so).
func inputsAt(acc *accountv1.Account, scores history.Scores, at time.Time, daysToRenewal float64) (model.Inputs, history.Point, bool) {
	in := model.Inputs{Stage: acc.GetLifecycleStage(), Tier: acc.GetTier(), DaysToRenewal: daysToRenewal}
	p, ok := scores.At(at)
	if !ok {
		return in, p, false
	}
	in.HasScore, in.Score, in.Band, in.Stage = true, float64(p.Score), p.Band, p.Stage
	if before, ok := scores.At(at.Add(-trendDays * day)); ok {
		in.Trend = float64(p.Score - before.Score)
	}
	if !math.IsNaN(float64(p.Stakeholders)) {
		in.HasStakeholders, in.Stakeholders = true, float64(p.Stakeholders)
	}
	return in, p, true
}

// seatsFull reports the expansion signal: seats nearly all in use.
func seatsFull(p history.Point) bool {
	return !math.IsNaN(float64(p.Seats)) && p.Seats >= seatsNearlyFull
}

// nextRenewal is acc's next renewal not settled by a recorded outcome: the
// CRM's renewal date, a year on for each renewal already recorded for it
// (until the CRM moves the date itself).
func nextRenewal(acc *accountv1.Account) (time.Time, bool) {
	if acc.GetRenewalTime() == nil {
		return time.Time{}, false
	}
	rt, outcomes := acc.GetRenewalTime().AsTime(), retention.Outcomes(acc)
	for retention.Settled(outcomes, rt) {
		rt = rt.AddDate(1, 0, 0)
	}
	return rt, true
}

// bandName is a band as a breakdown key.
func bandName(b scoringv1.Band) string {
	if b == scoringv1.Band_BAND_UNSPECIFIED {
		return retention.None
	}
	return strings.ToLower(strings.TrimPrefix(b.String(), "BAND_"))
}

// inCurrency selects the accounts in currency (those with none count in
// any) and counts the others.
func inCurrency(accounts []*accountv1.Account, currency string) ([]*accountv1.Account, int) {
	var out []*accountv1.Account
	for _, a := range accounts {
		if c := retention.Currency(a); c == "" || c == currency {
			out = append(out, a)
		}
	}
	return out, len(accounts) - len(out)
}

// failed turns an error of the work behind a call into a status.
func (s *Server) failed(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	s.logger.Error(op, "err", err)
	return status.Errorf(codes.Unavailable, "%s: %v", op, err)
}
