// Package renewalforecast is Lodestar's renewal forecast service: it follows
// the account changes (with their recorded renewal outcomes) and the health
// score history in event time, and serves lodestar.forecast.v1.ForecastService:
// per-account renewal probabilities from behaviour, explained; portfolio
// forecasts of a period with Monte Carlo ranges; the retention realised, by
// DOMAIN.md's definitions; and backtests showing how well the active, or a
// candidate, scorecard predicted past renewals.
//
// Its state is rebuilt from the ACCOUNT_CHANGES and SCORES streams at every
// start (ordered consumers, nothing stored of its own); a candidate
// scorecard is judged by replaying the EVENTS stream through the scoring core
// (internal/scorecore/replay).
package renewalforecast

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"

	"github.com/lodestar-cs/lodestar/pkg/natsx"
	"github.com/lodestar-cs/lodestar/pkg/service"
	forecastv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/forecast/v1"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/api"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/follow"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/history"
)

// Target is the service's name as a -target, NATS name and OTel service.
const Target = "renewal-forecast"

// Config configures the service.
type Config struct {
	// MinOutcomes is how many recorded renewal outcomes a tenant needs (at
	// least 10 churned and 10 renewed among them) before its own model is
	// fitted; the default model serves it until then.
	MinOutcomes int
	// Simulations is the default number of Monte Carlo draws of a portfolio
	// forecast, Seed their default seed.
	Simulations int
	Seed        uint64
	// AtRiskBelow is the renewal probability below which a renewal is at risk.
	AtRiskBelow float64
	// HorizonDays is how many days before each renewal a backtest reads the
	// score, unless a request says otherwise.
	HorizonDays int
}

// DefaultConfig is the configuration of a local run.
func DefaultConfig() Config {
	return Config{MinOutcomes: 50, Simulations: 2000, Seed: 1, AtRiskBelow: 0.7, HorizonDays: 90}
}

// RegisterFlags registers the configuration as -<prefix>.* flags (the
// runner's prefix is Target), with c's values as defaults.
func (c *Config) RegisterFlags(prefix string, fs *flag.FlagSet) {
	fs.IntVar(&c.MinOutcomes, prefix+".min-outcomes", c.MinOutcomes, "Recorded renewal outcomes (at least 10 churned and 10 renewed) from which a tenant's renewal model is fitted instead of the default.")
	fs.IntVar(&c.Simulations, prefix+".simulations", c.Simulations, "Monte Carlo draws of a portfolio forecast's ranges, unless a request asks for another number (at most 20000).")
	fs.Uint64Var(&c.Seed, prefix+".seed", c.Seed, "Seed of the portfolio simulations, unless a request gives one: the same seed and state give the same ranges.")
	fs.Float64Var(&c.AtRiskBelow, prefix+".at-risk-below", c.AtRiskBelow, "Renewal probability below which a renewal counts as at risk (at-risk ARR, ListRenewals at_risk_only).")
	fs.IntVar(&c.HorizonDays, prefix+".horizon-days", c.HorizonDays, "Days before each renewal at which EvaluateScorecard reads the health score, unless a request gives its own.")
}

// Validate reports every problem of the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.MinOutcomes < 20 {
		errs = append(errs, fmt.Errorf("-renewal-forecast.min-outcomes %d: want at least 20 (10 churned and 10 renewed)", c.MinOutcomes))
	}
	if c.Simulations < 100 || c.Simulations > 20000 {
		errs = append(errs, fmt.Errorf("-renewal-forecast.simulations %d: want 100 to 20000", c.Simulations))
	}
	if c.Seed == 0 {
		errs = append(errs, errors.New("-renewal-forecast.seed must not be 0 (a request's 0 means the default)"))
	}
	if c.AtRiskBelow <= 0 || c.AtRiskBelow >= 1 {
		errs = append(errs, fmt.Errorf("-renewal-forecast.at-risk-below %v: want a probability strictly between 0 and 1", c.AtRiskBelow))
	}
	if c.HorizonDays < 1 || c.HorizonDays > 365 {
		errs = append(errs, fmt.Errorf("-renewal-forecast.horizon-days %d: want 1 to 365", c.HorizonDays))
	}
	return errors.Join(errs...)
}

// Deps are the service's dependencies.
type Deps struct {
	JS     jetstream.JetStream
	Limits natsx.Limits
	service.Deps
}

// Service is the renewal forecast service.
type Service struct {
	deps     Deps
	api      *api.Server
	follower *follow.Follower
	started  atomic.Bool
}

// New builds the service; Run starts it.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.JS == nil {
		return nil, errors.New("Deps.JS is required")
	}
	deps.Deps = deps.Deps.WithDefaults()
	store := history.NewStore()
	return &Service{
		deps: deps,
		api: api.New(api.Config{
			MinOutcomes: cfg.MinOutcomes,
			Simulations: cfg.Simulations,
			Seed:        cfg.Seed,
			AtRiskBelow: cfg.AtRiskBelow,
			HorizonDays: cfg.HorizonDays,
		}, store, deps.JS, deps.Logger),
		follower: follow.New(deps.JS, store, deps.Logger,
			deps.MeterProvider.Meter("github.com/lodestar-cs/lodestar/services/renewalforecast")),
	}, nil
}

// Register registers ForecastService. Until Run has read the streams'
// backlog the answers rest on part of the history; Ready says when it has.
func (s *Service) Register(r grpc.ServiceRegistrar) {
	forecastv1.RegisterForecastServiceServer(r, s.api)
}

// Run ensures the streams it reads, then follows them until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	l := s.deps.Limits
	if err := natsx.EnsureStreams(ctx, s.deps.JS, l.EventsStream(), l.AccountChangesStream(), l.ScoresStream()); err != nil {
		return err
	}
	s.started.Store(true)
	return s.follower.Run(ctx)
}

// Ready reports whether the account changes and score history present at
// start have been read.
func (s *Service) Ready() bool { return s.started.Load() && s.follower.Ready() }
