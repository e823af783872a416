// Package ingest is Lodestar's front door. Product backends send usage
// events with Segment's HTTP Tracking API (Handler) or IngestService over
// gRPC; CRM integrations send account facts with AccountService. Events are
// validated, attributed to customer accounts, packed by partition and stored
// in the JetStream stream EVENTS; accounts are stored in the KV bucket
// ACCOUNTS and every change is published on ACCOUNT_CHANGES.
//
// A success answer, on either API, means every accepted event is stored
// (its PubAck received); a retried request is stored once within the
// duplicate window (see internal/publish for exactly what is deduplicated).
// The tenant always comes from the credential.
package ingest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/lodestar-cs/lodestar/pkg/auth"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	"github.com/lodestar-cs/lodestar/pkg/service"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	ingestv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/ingest/v1"
	"github.com/lodestar-cs/lodestar/services/ingest/internal/accounts"
	"github.com/lodestar-cs/lodestar/services/ingest/internal/attribution"
	"github.com/lodestar-cs/lodestar/services/ingest/internal/ingestrpc"
	"github.com/lodestar-cs/lodestar/services/ingest/internal/intake"
	"github.com/lodestar-cs/lodestar/services/ingest/internal/publish"
	"github.com/lodestar-cs/lodestar/services/ingest/internal/quota"
	"github.com/lodestar-cs/lodestar/services/ingest/internal/segment"
)

// Target is the service's name as a -target, NATS name and OTel service.
const Target = "ingest"

// instrumentation names the meter and tracer of the service.
const instrumentation = "github.com/lodestar-cs/lodestar/services/ingest"

// Bounds of the configuration.
const (
	minEventBytes = 1 << 10
	// maxBatchBytes keeps the packed events of one request (protobuf, up to
	// ~1.5x their JSON for small fields) below NATS's default 1 MB max_payload.
	maxBatchBytes = 640 << 10
)

// Config configures the ingest service.
type Config struct {
	// MaxEventBytes bounds one event: the body of a single Segment call, one
	// element of a batch, or one gRPC event. Segment's limit is 32 KB.
	MaxEventBytes int
	// MaxBatchBytes bounds a batch request, compressed and decompressed.
	// Segment's limit is 500 KB; 500 KiB leaves room for the envelope around
	// the 500,000 bytes of events Segment's libraries put in one batch.
	MaxBatchBytes int
	// PublishTimeout bounds the wait for the PubAcks of one request. Keep it
	// below the clients' own timeout (10 s in Segment's libraries), so a slow
	// store answers 503 rather than a client giving up unanswered.
	PublishTimeout time.Duration
	// AttributionCacheSize bounds the users whose last known account is held
	// in memory (about 200 bytes each).
	AttributionCacheSize int
	// EventTimes bound an event's time against when it was sent: older than
	// MaxAge or later than MaxFuture is rejected (see intake.EventTime).
	EventTimes intake.TimeBounds
	// Accounts bound the accounts each tenant's events may name, in all and
	// new ones an hour: scoring keeps every account for good (see package
	// quota). A request over a limit is refused whole (429).
	Accounts quota.Limits
	// DefaultRate is the event rate limit of tenants that configure none.
	DefaultRate auth.RateLimit
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		MaxEventBytes:        32 << 10,
		MaxBatchBytes:        500 << 10,
		PublishTimeout:       5 * time.Second,
		AttributionCacheSize: 100_000,
		EventTimes:           intake.DefaultTimeBounds(),
		// 100k accounts is a large B2B customer base; 10k new ones an hour
		// onboards it in 10 hours, and stops a runaway id generator at 10%.
		Accounts: quota.Limits{MaxAccounts: 100_000, NewAccountsPerHour: 10_000},
		// 2000 events a second per tenant, bursts of 20,000 (many full
		// Segment batches at once): far above a product's normal traffic.
		DefaultRate: auth.RateLimit{EventsPerSecond: 2000, Burst: 20_000},
	}
}

// RegisterFlags registers the configuration as -<prefix>.* flags (the
// runner's prefix is Target), with c's values as defaults.
func (c *Config) RegisterFlags(prefix string, fs *flag.FlagSet) {
	fs.IntVar(&c.MaxEventBytes, prefix+".max-event-bytes", c.MaxEventBytes, "Largest event accepted: a single Segment call's body, a batch element or a gRPC event (Segment's limit is 32 KB).")
	fs.IntVar(&c.MaxBatchBytes, prefix+".max-batch-bytes", c.MaxBatchBytes, fmt.Sprintf("Largest batch request, compressed and decompressed (Segment's limit is 500 KB; at most %d).", maxBatchBytes))
	fs.DurationVar(&c.PublishTimeout, prefix+".publish-timeout", c.PublishTimeout, "How long a request waits for JetStream to acknowledge its events before it answers 503.")
	fs.IntVar(&c.AttributionCacheSize, prefix+".attribution-cache-size", c.AttributionCacheSize, "Users whose last known account is cached in memory (about 200 bytes each).")
	fs.DurationVar(&c.EventTimes.MaxAge, prefix+".max-event-age", c.EventTimes.MaxAge, "Oldest event accepted, measured from when it was sent (its sentAt, else its receipt); older events are rejected. At most the EVENTS retention.")
	fs.DurationVar(&c.EventTimes.MaxFuture, prefix+".max-event-future", c.EventTimes.MaxFuture, "How far after its sentAt an event's timestamp may be: it is then taken as received now; later ones are rejected.")
	fs.IntVar(&c.Accounts.MaxAccounts, prefix+".max-accounts-per-tenant", c.Accounts.MaxAccounts, "Distinct accounts a tenant's events may name (0: no limit); requests adding more answer 429.")
	fs.IntVar(&c.Accounts.NewAccountsPerHour, prefix+".max-new-accounts-per-hour", c.Accounts.NewAccountsPerHour, "New accounts a tenant's events may name in any hour (0: no limit); requests adding more answer 429 with Retry-After.")
	fs.Float64Var(&c.DefaultRate.EventsPerSecond, prefix+".default-events-per-second", c.DefaultRate.EventsPerSecond, "Event rate limit of tenants without a rate_limit of their own (0: none); over it requests answer 429 with Retry-After.")
	fs.IntVar(&c.DefaultRate.Burst, prefix+".default-events-burst", c.DefaultRate.Burst, "Burst of the default event rate limit, in events (0: one second's worth).")
}

// Validate reports every setting that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.MaxEventBytes < minEventBytes || c.MaxEventBytes > c.MaxBatchBytes {
		errs = append(errs, fmt.Errorf("-ingest.max-event-bytes %d: want %d to -ingest.max-batch-bytes", c.MaxEventBytes, minEventBytes))
	}
	if c.MaxBatchBytes > maxBatchBytes {
		errs = append(errs, fmt.Errorf("-ingest.max-batch-bytes %d: want at most %d", c.MaxBatchBytes, maxBatchBytes))
	}
	if c.PublishTimeout <= 0 {
		errs = append(errs, errors.New("-ingest.publish-timeout must be positive"))
	}
	if c.AttributionCacheSize < 1 {
		errs = append(errs, errors.New("-ingest.attribution-cache-size must be positive"))
	}
	if c.Accounts.MaxAccounts < 0 || c.Accounts.NewAccountsPerHour < 0 || c.DefaultRate.EventsPerSecond < 0 || c.DefaultRate.Burst < 0 {
		errs = append(errs, errors.New("-ingest account and rate limits must not be negative"))
	}
	if c.EventTimes.MaxAge <= 0 || c.EventTimes.MaxFuture < 0 {
		errs = append(errs, errors.New("-ingest.max-event-age must be positive and -ingest.max-event-future not negative"))
	}
	return errors.Join(errs...)
}

// Deps are what the service uses but does not own.
type Deps struct {
	// JS must come from natsx.NewJetStream: its bounded async publish window
	// is what keeps a burst of requests from overrunning the server.
	JS      jetstream.JetStream
	Tenants *auth.Registry
	Limits  natsx.Limits
	service.Deps
}

// Service is the ingest service.
type Service struct {
	cfg      Config
	deps     Deps
	meter    metric.Meter
	tracer   trace.Tracer
	segment  *segment.API
	ingest   *ingestrpc.Server
	accounts *accounts.Server
	// backends is set by Run once the streams and buckets exist.
	backends atomic.Pointer[backends]
	ready    atomic.Bool
}

// backends are the parts that need the streams and buckets.
type backends struct {
	pipeline *intake.Pipeline
	accounts *accounts.Store
}

// New returns the service; it does no I/O (Run does).
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if deps.JS == nil || deps.Tenants == nil {
		return nil, errors.New("Deps.JS and Deps.Tenants are required")
	}
	if err := deps.Limits.Validate(); err != nil {
		return nil, fmt.Errorf("nats limits: %w", err)
	}
	deps.Deps = deps.Deps.WithDefaults()
	s := &Service{
		cfg:    cfg,
		deps:   deps,
		meter:  deps.MeterProvider.Meter(instrumentation),
		tracer: deps.TracerProvider.Tracer(instrumentation),
	}
	pipeline := func() *intake.Pipeline {
		if b := s.backends.Load(); b != nil {
			return b.pipeline
		}
		return nil
	}
	var err error
	s.segment, err = segment.New(segment.Config{MaxEventBytes: cfg.MaxEventBytes, MaxBatchBytes: cfg.MaxBatchBytes, EventTimes: cfg.EventTimes},
		deps.Tenants, pipeline, deps.Logger, s.meter, s.tracer, deps.Propagator)
	if err != nil {
		return nil, fmt.Errorf("segment API: %w", err)
	}
	s.ingest = ingestrpc.New(ingestrpc.Config{MaxEventBytes: cfg.MaxEventBytes, MaxBatchBytes: cfg.MaxBatchBytes, EventTimes: cfg.EventTimes}, pipeline, deps.Logger)
	s.accounts = accounts.NewServer(func() *accounts.Store {
		if b := s.backends.Load(); b != nil {
			return b.accounts
		}
		return nil
	}, deps.Logger)
	return s, nil
}

// Register registers IngestService and AccountService. Their callers are
// authenticated by the auth interceptors the server must install; a call
// without a tenant in its context fails with Unauthenticated.
func (s *Service) Register(r grpc.ServiceRegistrar) {
	ingestv1.RegisterIngestServiceServer(r, s.ingest)
	accountv1.RegisterAccountServiceServer(r, s.accounts)
}

// Handler serves Segment's HTTP Tracking API under /v1/. It answers 503
// until Run has made the service ready.
func (s *Service) Handler() http.Handler { return s.segment.Handler() }

// Ready reports whether the service stores events and accounts.
func (s *Service) Ready() bool { return s.ready.Load() }

// Run creates or updates the streams EVENTS and ACCOUNT_CHANGES and the
// buckets ACCOUNTS and USER_ACCOUNTS with the configured limits, waiting for
// JetStream while it does not answer, then serves until ctx is done. It
// returns nil on a clean stop.
func (s *Service) Run(ctx context.Context) error {
	users, accountsKV, tenantAccounts, err := s.ensure(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resolver := attribution.New(users, s.cfg.AttributionCacheSize)
	publisher, err := publish.New(s.deps.JS, s.deps.Limits.Partitions, s.cfg.PublishTimeout, s.deps.Propagator, s.meter)
	if err != nil {
		return fmt.Errorf("publisher: %w", err)
	}
	accountQuota := quota.New(tenantAccounts, s.cfg.Accounts)
	pipeline, err := intake.NewPipeline(s.deps.Tenants, s.cfg.DefaultRate, resolver, accountQuota, publisher, s.meter, s.tracer)
	if err != nil {
		return fmt.Errorf("intake: %w", err)
	}
	followChanges, err := resolver.Watch(ctx)
	if err != nil {
		return err
	}
	followAccounts, err := accountQuota.Follow(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	s.backends.Store(&backends{pipeline: pipeline, accounts: accounts.NewStore(accountsKV, s.deps.JS, s.deps.Propagator, s.deps.Limits.Partitions)})
	s.ready.Store(true)
	defer s.ready.Store(false)
	s.deps.Logger.InfoContext(ctx, "ingest ready", "partitions", s.deps.Limits.Partitions)
	// Both loops run until ctx is done; the failure of one stops the other.
	errc := make(chan error, 2)
	go func() { errc <- followChanges() }()
	go func() { errc <- followAccounts() }()
	err = <-errc
	cancel()
	if err = errors.Join(err, <-errc); err != nil {
		return err
	}
	return nil
}

// ensure creates the streams and buckets, retrying while JetStream does not
// answer. A refusal from JetStream (an incompatible existing stream, say)
// is returned at once: waiting will not fix it.
func (s *Service) ensure(ctx context.Context) (users, accountsKV, tenantAccounts jetstream.KeyValue, err error) {
	l := s.deps.Limits
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err = natsx.EnsurePartitions(ctx, s.deps.JS, l.Partitions, l.Replicas)
		if err == nil {
			err = natsx.EnsureStreams(ctx, s.deps.JS, l.EventsStream(), l.AccountChangesStream())
		}
		if err == nil {
			users, err = natsx.EnsureKeyValue(ctx, s.deps.JS, l.UserAccountsBucket())
		}
		if err == nil {
			accountsKV, err = natsx.EnsureKeyValue(ctx, s.deps.JS, l.AccountsBucket())
		}
		if err == nil {
			tenantAccounts, err = natsx.EnsureKeyValue(ctx, s.deps.JS, l.TenantAccountsBucket())
		}
		if err == nil {
			return users, accountsKV, tenantAccounts, nil
		}
		if apiErr, mismatch := new(jetstream.APIError), new(natsx.PartitionsMismatch); errors.As(err, &apiErr) || errors.As(err, &mismatch) {
			return nil, nil, nil, err
		}
		s.deps.Logger.WarnContext(ctx, "JetStream not ready; retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil, nil, nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}
