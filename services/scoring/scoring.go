// Package scoring is Lodestar's scoring service: it keeps per-account
// aggregates of the EVENTS stream in event time, scores every account with
// its tenant's scorecard, writes score changes to the hot cache and the
// SCORES stream, and serves lodestar.scoring.v1.ScoringService from the cache.
package scoring

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"

	"github.com/lodestar-cs/lodestar/internal/scorecards"
	"github.com/lodestar-cs/lodestar/internal/scorecore/engine"
	"github.com/lodestar-cs/lodestar/internal/scorecore/scorecard"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	"github.com/lodestar-cs/lodestar/pkg/service"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/scoring/internal/api"
	"github.com/lodestar-cs/lodestar/services/scoring/internal/pipeline"
	"github.com/lodestar-cs/lodestar/services/scoring/internal/snapshot"
)

// Target is the service's name as a -target, NATS name and OTel service.
const Target = "scoring"

const instrumentation = "github.com/lodestar-cs/lodestar/services/scoring"

// Config configures the service.
type Config struct {
	// WindowDays is the event-time history kept per account.
	WindowDays int
	// ScorecardFile is the YAML scorecard of tenants without one of their own;
	// the built-in scorecard, made for any product's events, when empty.
	ScorecardFile string
	// Partitions this instance owns, as a comma list; all when empty.
	Partitions string
	// MaxUsersPerAccount bounds memory per account.
	MaxUsersPerAccount int
	// FlushInterval is how often the accounts due are scored, their scores
	// set in the cache and their changes published; IndexInterval how often
	// the rankings and history catch up with them.
	FlushInterval    time.Duration
	IndexInterval    time.Duration
	TickInterval     time.Duration
	SnapshotInterval time.Duration
	// DedupeWindow is how long, in receive time, an event's message id
	// counts once: as long as clients retry (Segment's libraries give up
	// within hours). DedupeMaxIDs bounds the ids kept per tenant for it
	// (about 36 bytes each, and 12 in a snapshot).
	DedupeWindow time.Duration
	DedupeMaxIDs int
}

// DefaultConfig is the configuration of a local run.
func DefaultConfig() Config {
	return Config{
		WindowDays:         90,
		MaxUsersPerAccount: 2000,
		FlushInterval:      50 * time.Millisecond,
		IndexInterval:      250 * time.Millisecond,
		TickInterval:       10 * time.Second,
		SnapshotInterval:   time.Minute,
		DedupeWindow:       engine.DefaultDedupeWindow,
		DedupeMaxIDs:       engine.DefaultDedupeMaxIDs,
	}
}

// RegisterFlags registers the configuration as -<prefix>.* flags (the
// runner's prefix is Target), with c's values as defaults.
func (c *Config) RegisterFlags(prefix string, fs *flag.FlagSet) {
	fs.IntVar(&c.WindowDays, prefix+".window-days", c.WindowDays, "Days of event-time history kept per account (35-90).")
	fs.StringVar(&c.ScorecardFile, prefix+".scorecard-file", c.ScorecardFile, "YAML scorecard for tenants without their own; empty: the built-in scorecard, made for any product's events.")
	fs.StringVar(&c.Partitions, prefix+".partitions", c.Partitions, "Comma list of the event partitions this instance scores; empty: all.")
	fs.IntVar(&c.MaxUsersPerAccount, prefix+".max-users-per-account", c.MaxUsersPerAccount, "Users tracked per account; further users count as overflow (bounds memory).")
	fs.DurationVar(&c.FlushInterval, prefix+".flush-interval", c.FlushInterval, "How often the accounts due are scored, their scores set in the cache and their changes published on SCORES: bounds event-to-score latency.")
	fs.DurationVar(&c.IndexInterval, prefix+".index-interval", c.IndexInterval, "How often rankings, band counts and history in the cache catch up with the current scores.")
	fs.DurationVar(&c.TickInterval, prefix+".tick-interval", c.TickInterval, "How often time passes for silent accounts of live tenants.")
	fs.DurationVar(&c.SnapshotInterval, prefix+".snapshot-interval", c.SnapshotInterval, "How often scoring state is snapshotted (restarts replay only what came after).")
	fs.DurationVar(&c.DedupeWindow, prefix+".dedupe-window", c.DedupeWindow, "How long, in receive time, an event's message id counts once: at least the clients' retry horizon (whole hours).")
	fs.IntVar(&c.DedupeMaxIDs, prefix+".dedupe-max-ids", c.DedupeMaxIDs, "Message ids kept per tenant for deduplication (about 36 bytes each); a tenant with more within the window gets a shorter one.")
}

// Validate reports every problem of the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.WindowDays < 35 || c.WindowDays > 90 {
		errs = append(errs, fmt.Errorf("-scoring.window-days %d: want 35 to 90", c.WindowDays))
	}
	if _, err := c.partitions(); err != nil {
		errs = append(errs, err)
	}
	if c.MaxUsersPerAccount < 1 {
		errs = append(errs, errors.New("-scoring.max-users-per-account must be positive"))
	}
	if c.FlushInterval <= 0 || c.IndexInterval <= 0 || c.TickInterval <= 0 || c.SnapshotInterval <= 0 {
		errs = append(errs, errors.New("-scoring intervals must be positive"))
	}
	if c.DedupeWindow < time.Hour || c.DedupeMaxIDs < 1 {
		errs = append(errs, errors.New("-scoring.dedupe-window must be at least 1h and -scoring.dedupe-max-ids positive"))
	}
	return errors.Join(errs...)
}

func (c Config) partitions() ([]uint32, error) {
	var out []uint32
	for _, s := range strings.Split(c.Partitions, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("-scoring.partitions: %q is not a partition number", s)
		}
		out = append(out, uint32(p))
	}
	return out, nil
}

// Cache is the hot score cache: pkg/cache's Redis or in-process store.
type Cache interface {
	api.Reader
	pipeline.Store
	Ping(ctx context.Context) error
}

// Deps are the service's dependencies.
type Deps struct {
	JS     jetstream.JetStream
	Cache  Cache
	Limits natsx.Limits
	// Deps' TracerProvider and Propagator continue ingest's traces.
	service.Deps
}

// Service is the scoring service.
type Service struct {
	cfg      Config
	deps     Deps
	api      *api.Server
	pipeline *pipeline.Pipeline
	started  atomic.Bool
	engine   *engine.Engine
	snapName string
	parts    []uint32
}

// New builds the service; Run starts it.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	deps.Deps = deps.Deps.WithDefaults()
	sc, err := scorecard.Default()
	if cfg.ScorecardFile != "" {
		sc, err = scorecard.LoadFile(cfg.ScorecardFile)
	}
	if err != nil {
		return nil, err
	}
	if problems := scorecard.Validate(sc); len(problems) > 0 {
		return nil, fmt.Errorf("scorecard %s: %d problems, first: %s: %s", cfg.ScorecardFile, len(problems), problems[0].GetField(), problems[0].GetDescription())
	}
	eng, err := engine.New(engine.Config{WindowDays: cfg.WindowDays, MaxUsersPerAccount: cfg.MaxUsersPerAccount, Scorecard: sc,
		DedupeWindow: cfg.DedupeWindow, DedupeMaxIDs: cfg.DedupeMaxIDs})
	if err != nil {
		return nil, err
	}
	parts, _ := cfg.partitions()
	name := Target
	if len(parts) > 0 {
		name = Target + "-p" + strings.ReplaceAll(cfg.Partitions, ",", "-")
	}
	return &Service{
		cfg:      cfg,
		deps:     deps,
		api:      api.New(deps.Cache, sc, deps.JS, deps.Logger),
		engine:   eng,
		snapName: name,
		parts:    parts,
	}, nil
}

// Register registers ScoringService. Its scorecard calls need Run to have
// opened the SCORECARDS bucket; until then they answer Unavailable.
func (s *Service) Register(r grpc.ServiceRegistrar) {
	scoringv1.RegisterScoringServiceServer(r, s.api)
}

// Run ensures the streams and buckets, then scores until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	l := s.deps.Limits
	if err := natsx.EnsureStreams(ctx, s.deps.JS, l.EventsStream(), l.AccountChangesStream(), l.ScoresStream(), l.DeadLetterStream()); err != nil {
		return err
	}
	kv, err := natsx.EnsureKeyValue(ctx, s.deps.JS, scorecards.BucketConfig(l.Replicas))
	if err != nil {
		return err
	}
	obj, err := s.deps.JS.CreateOrUpdateObjectStore(ctx, snapshot.BucketConfig(l.Replicas))
	if err != nil {
		return fmt.Errorf("ensure object store %s: %w", snapshot.Bucket, err)
	}
	store := scorecards.New(kv)
	s.api.SetScorecards(store)
	s.pipeline = pipeline.New(pipeline.Config{
		Name:             s.snapName,
		Partitions:       s.parts,
		FlushInterval:    s.cfg.FlushInterval,
		IndexInterval:    s.cfg.IndexInterval,
		TickInterval:     s.cfg.TickInterval,
		SnapshotInterval: s.cfg.SnapshotInterval,
	}, pipeline.Deps{
		JS:         s.deps.JS,
		Engine:     s.engine,
		Store:      s.deps.Cache,
		Snapshots:  snapshot.New(obj),
		Scorecards: store,
		Logger:     s.deps.Logger,
		Meter:      s.deps.MeterProvider.Meter(instrumentation),
		Tracer:     s.deps.TracerProvider.Tracer(instrumentation),
		Propagator: s.deps.Propagator,
	})
	s.started.Store(true)
	return s.pipeline.Run(ctx)
}

// Ready reports whether scores are current and the cache answers.
func (s *Service) Ready() bool {
	if !s.started.Load() || !s.pipeline.Ready() {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return s.deps.Cache.Ping(ctx) == nil
}
