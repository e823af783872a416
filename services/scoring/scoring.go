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
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lodestar-cs/lodestar/internal/scorecards"
	"github.com/lodestar-cs/lodestar/internal/scorecore/engine"
	"github.com/lodestar-cs/lodestar/internal/scorecore/scorecard"
	"github.com/lodestar-cs/lodestar/pkg/cache"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	"github.com/lodestar-cs/lodestar/pkg/ownership"
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

// Cache is the hot score cache: pkg/cache's Redis or in-process store.
type Cache interface {
	api.Reader
	pipeline.Store
	Ping(ctx context.Context) error
}

// fencer is a cache whose writes can be fenced by a partition owner's
// epoch (Redis: a Lua check on every write). The in-process cache is not:
// it lives and dies with the one process that writes it.
type fencer interface {
	Fenced(cache.Fence) *cache.Redis
}

// Deps are the service's dependencies.
type Deps struct {
	JS     jetstream.JetStream
	Cache  Cache
	Limits natsx.Limits
	// Deps' TracerProvider and Propagator continue ingest's traces.
	service.Deps
}

// Service is the scoring service. Its replicas divide the partitions
// among themselves (pkg/ownership); each partition it owns runs a pipeline
// of its own: an engine, a consumer of the partition's events, a snapshot.
type Service struct {
	cfg     Config
	deps    Deps
	api     *api.Server
	engine  engine.Config
	started atomic.Bool
	owner   *ownership.Manager

	// Run's, for the partitions' pipelines.
	snapshots  *snapshot.Store
	scorecards *scorecards.Store

	running *ownership.Running[pipeline.Pipeline]
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
	ecfg := engine.Config{WindowDays: cfg.WindowDays, MaxUsersPerAccount: cfg.MaxUsersPerAccount, Scorecard: sc,
		DedupeWindow: cfg.DedupeWindow, DedupeMaxIDs: cfg.DedupeMaxIDs}
	// Each owned partition gets an engine of its own; building one here
	// reports a bad configuration at start.
	if _, err := engine.New(ecfg); err != nil {
		return nil, err
	}
	return &Service{
		cfg:     cfg,
		deps:    deps,
		api:     api.New(deps.Cache, sc, deps.JS, deps.Limits.Partitions, deps.Logger),
		engine:  ecfg,
		running: ownership.NewRunning[pipeline.Pipeline](),
	}, nil
}

// Register registers ScoringService. Its scorecard calls need Run to have
// opened the SCORECARDS bucket; until then they answer Unavailable.
func (s *Service) Register(r grpc.ServiceRegistrar) {
	scoringv1.RegisterScoringServiceServer(r, s.api)
}

// Run ensures the streams and buckets, then scores the partitions this
// replica owns until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	l := s.deps.Limits
	if err := natsx.EnsureStreams(ctx, s.deps.JS, l.EventsStream(), l.AccountChangesStream(), l.ScoresStream(), l.DeadLetterStream()); err != nil {
		return err
	}
	kv, err := natsx.EnsureKeyValue(ctx, s.deps.JS, scorecards.BucketConfig(l.Replicas))
	if err != nil {
		return err
	}
	obj, err := natsx.EnsureObjectStore(ctx, s.deps.JS, snapshot.BucketConfig(l.Replicas))
	if err != nil {
		return err
	}
	s.owner, err = ownership.Start(ctx, s.deps.JS, l, Target, s.deps.Logger)
	if err != nil {
		return err
	}
	// The lag is in this replica's memory only: the leases carry it to
	// lodestar status and lodestar.ops.v1.OpsService in any process.
	s.owner.ReportLag(func(p uint32) (uint64, bool) {
		if pl, ok := s.running.Get(p); ok {
			return pl.Lag()
		}
		return 0, false
	})
	s.scorecards, s.snapshots = scorecards.New(kv), snapshot.New(obj)
	s.api.SetScorecards(s.scorecards)
	s.api.SetActivity(s.activity)
	s.started.Store(true)
	return s.owner.Run(ctx, s.runPartition)
}

// runPartition scores one partition while this replica owns it: a new
// engine restores the partition's snapshot and replays EVENTS from its
// sequence.
func (s *Service) runPartition(ctx context.Context, lease ownership.Lease) error {
	eng, err := engine.New(s.engine)
	if err != nil {
		return err
	}
	var store pipeline.Store = s.deps.Cache
	if f, ok := store.(fencer); ok {
		store = f.Fenced(cache.Fence{Partition: lease.Partition, Epoch: lease.Epoch})
	}
	pl := pipeline.New(pipeline.Config{
		Name:             Target + "-p" + strconv.FormatUint(uint64(lease.Partition), 10),
		Partition:        lease.Partition,
		Partitions:       uint32(s.deps.Limits.Partitions),
		FlushInterval:    s.cfg.FlushInterval,
		IndexInterval:    s.cfg.IndexInterval,
		TickInterval:     s.cfg.TickInterval,
		SnapshotInterval: s.cfg.SnapshotInterval,
		Epoch:            lease.Epoch,
		Held:             lease.Held,
	}, pipeline.Deps{
		JS:         s.deps.JS,
		Engine:     eng,
		Store:      store,
		Snapshots:  s.snapshots,
		Scorecards: s.scorecards,
		Logger:     s.deps.Logger.With("partition", lease.Partition, "epoch", lease.Epoch),
		Meter:      s.deps.MeterProvider.Meter(instrumentation),
		Tracer:     s.deps.TracerProvider.Tracer(instrumentation),
		Propagator: s.deps.Propagator,
	})
	return s.running.Run(ctx, lease.Partition, pl, (*pipeline.Pipeline).Run)
}

// activity reads an account's activity from the engine of its partition.
// Only the replica owning the partition holds that engine: with several
// replicas, a call reaching another one answers Unavailable (the console of
// the all-in-one and single-replica deployments always reach the owner).
func (s *Service) activity(tenant, account string, days int) (*scoringv1.GetAccountActivityResponse, bool, error) {
	p := natsx.Partition(tenant, account, uint32(s.deps.Limits.Partitions))
	pl, ok := s.running.Get(p)
	if !ok {
		return nil, false, status.Errorf(codes.Unavailable, "partition %d is scored by another replica", p)
	}
	resp, found, err := pl.Activity(tenant, account, days)
	if err != nil {
		return nil, false, status.Errorf(codes.Unavailable, "partition %d: %v", p, err)
	}
	return resp, found, nil
}

// Ready reports whether this replica holds the partitions assigned to it,
// their scores are current and the cache answers.
func (s *Service) Ready() bool {
	if !s.started.Load() || !s.running.Ready(s.owner, (*pipeline.Pipeline).Ready) {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return s.deps.Cache.Ping(ctx) == nil
}
