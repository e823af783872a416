package natsx

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream and bucket names.
const (
	StreamEvents         = "EVENTS"
	StreamAccountChanges = "ACCOUNT_CHANGES"
	StreamScores         = "SCORES"
	StreamDeadLetter     = "DEADLETTER"
	BucketAccounts       = "ACCOUNTS"
	BucketUserAccounts   = "USER_ACCOUNTS"
	BucketTenantAccounts = "TENANT_ACCOUNTS"
)

// Limits are the explicit retention limits of Lodestar's streams and buckets.
type Limits struct {
	// EventsMaxAge is how long usage events are kept: at least the scoring
	// window plus the time replays and backtests look back.
	EventsMaxAge   time.Duration
	EventsMaxBytes int64
	// DuplicateWindow is how long a message id is remembered for publish
	// deduplication. The server keeps every id of the window in memory
	// (roughly 100 bytes per message id: at 10k msgs/s, 2 minutes ≈ 120 MB).
	DuplicateWindow time.Duration
	// AccountsMaxAge bounds account change events (the KV keeps the state).
	AccountsMaxAge time.Duration
	// ScoresMaxAge is how long score history is kept.
	ScoresMaxAge   time.Duration
	ScoresMaxBytes int64
	// Replicas for every stream and bucket (1 for a single server).
	Replicas int
	// Partitions is the fixed number of logical partitions of EVENTS and
	// of every per-account stream: set once per deployment (EnsurePartitions
	// refuses another), far above any replica count.
	Partitions int
	// LeaseTTL is how long a replica that stopped renewing keeps its
	// partitions (pkg/ownership): the failover time's main part.
	LeaseTTL time.Duration
	// Member names this process among a service's replicas; empty:
	// hostname-pid. A stable name (a StatefulSet pod's) lets a restarted
	// replica take its partitions back without waiting for LeaseTTL.
	Member string
}

// DefaultLimits are the limits of a local run.
func DefaultLimits() Limits {
	return Limits{
		EventsMaxAge:    400 * 24 * time.Hour,
		EventsMaxBytes:  20 << 30,
		DuplicateWindow: 2 * time.Minute,
		AccountsMaxAge:  400 * 24 * time.Hour,
		ScoresMaxAge:    365 * 24 * time.Hour,
		ScoresMaxBytes:  10 << 30,
		Replicas:        1,
		Partitions:      DefaultPartitions,
		LeaseTTL:        4 * time.Second,
	}
}

// Validate reports limits that cannot work.
func (l Limits) Validate() error {
	var errs []error
	if l.EventsMaxAge <= 0 || l.AccountsMaxAge <= 0 || l.ScoresMaxAge <= 0 {
		errs = append(errs, errors.New("stream max ages must be positive"))
	}
	if l.DuplicateWindow <= 0 || l.DuplicateWindow > l.EventsMaxAge {
		errs = append(errs, errors.New("duplicate window must be positive and within the events max age"))
	}
	if l.EventsMaxBytes <= 0 || l.ScoresMaxBytes <= 0 {
		errs = append(errs, errors.New("stream max bytes must be positive"))
	}
	if l.Replicas < 1 || l.Replicas > 5 {
		errs = append(errs, errors.New("replicas must be 1 to 5"))
	}
	if l.Partitions < 1 || l.Partitions > MaxPartitions {
		errs = append(errs, fmt.Errorf("-nats.partitions %d: want 1 to %d", l.Partitions, MaxPartitions))
	}
	if l.LeaseTTL < time.Second {
		errs = append(errs, fmt.Errorf("-nats.lease-ttl %s: want at least 1s", l.LeaseTTL))
	}
	return errors.Join(errs...)
}

// EventsStream holds usage events, one EventBatch per message.
func (l Limits) EventsStream() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamEvents,
		Description: "Usage events by tenant and partition (lodestar.event.v1.EventBatch)",
		Subjects:    []string{EventsSubjectPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      l.EventsMaxAge,
		MaxBytes:    l.EventsMaxBytes,
		MaxMsgSize:  4 << 20,
		Duplicates:  l.DuplicateWindow,
		Replicas:    l.Replicas,
	}
}

// AccountChangesStream holds every account change (lodestar.account.v1.AccountChange).
func (l Limits) AccountChangesStream() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamAccountChanges,
		Description: "Account changes (lodestar.account.v1.AccountChange)",
		Subjects:    []string{AccountsSubjectPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		MaxAge:      l.AccountsMaxAge,
		Duplicates:  l.DuplicateWindow,
		Replicas:    l.Replicas,
	}
}

// ScoresStream holds score changes (lodestar.scoring.v1.ScoreChangeEvent).
func (l Limits) ScoresStream() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamScores,
		Description: "Health score changes (lodestar.scoring.v1.ScoreChangeEvent)",
		Subjects:    []string{ScoresSubjectPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		MaxAge:      l.ScoresMaxAge,
		MaxBytes:    l.ScoresMaxBytes,
		Duplicates:  l.DuplicateWindow,
		Replicas:    l.Replicas,
	}
}

// AccountsBucket holds the current account records, key tenant.<account token>.
func (l Limits) AccountsBucket() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      BucketAccounts,
		Description: "Accounts by tenant.<account> (lodestar.account.v1.Account)",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    l.Replicas,
	}
}

// deadLetterMaxBytes bounds the DEADLETTER stream: dead letters are rare,
// and a flood of them is a bug to fix, not data to keep without end.
const deadLetterMaxBytes = 1 << 30

// DeadLetterStream keeps what a consumer could not process, kept as long as
// the events, with why (see DeadLetterSubject).
func (l Limits) DeadLetterStream() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamDeadLetter,
		Description: "Messages or events a consumer could not process, with the reason in headers",
		Subjects:    []string{DeadLetterSubjectPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      l.EventsMaxAge,
		MaxBytes:    deadLetterMaxBytes,
		MaxMsgSize:  4 << 20,
		Duplicates:  l.DuplicateWindow,
		Replicas:    l.Replicas,
	}
}

// UserAccountsBucket remembers each user's last known account from group
// calls, key tenant.<user token>, for attributing later events.
func (l Limits) UserAccountsBucket() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      BucketUserAccounts,
		Description: "Last known account of each user, by tenant.<user>",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    l.Replicas,
	}
}

// TenantAccountsBucket holds every account id a tenant's events named, key
// tenant.<hash of the account id> (hex), value the unix second it was first
// seen: what ingest's per-tenant account limits count.
func (l Limits) TenantAccountsBucket() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      BucketTenantAccounts,
		Description: "Accounts named by each tenant's events, by tenant.<account hash>",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    l.Replicas,
	}
}

// EnsureStreams creates or updates streams idempotently.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfgs ...jetstream.StreamConfig) error {
	for _, cfg := range cfgs {
		if _, err := Ensure(ctx, "stream "+cfg.Name, func(ctx context.Context) (jetstream.Stream, error) {
			return js.CreateOrUpdateStream(ctx, cfg)
		}); err != nil {
			return err
		}
	}
	return nil
}

// EnsureKeyValue creates or updates a KV bucket idempotently.
func EnsureKeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return Ensure(ctx, "kv bucket "+cfg.Bucket, func(ctx context.Context) (jetstream.KeyValue, error) {
		return js.CreateOrUpdateKeyValue(ctx, cfg)
	})
}

// EnsureObjectStore creates or updates an object store idempotently.
func EnsureObjectStore(ctx context.Context, js jetstream.JetStream, cfg jetstream.ObjectStoreConfig) (jetstream.ObjectStore, error) {
	return Ensure(ctx, "object store "+cfg.Bucket, func(ctx context.Context) (jetstream.ObjectStore, error) {
		return js.CreateOrUpdateObjectStore(ctx, cfg)
	})
}

// finalError ends Ensure's tries: no retry can mend it.
type finalError struct{ err error }

func (e *finalError) Error() string { return e.err.Error() }

// EnsureTimeout bounds how long Ensure keeps trying.
const EnsureTimeout = 2 * time.Minute

// Ensure runs create, an idempotent create-or-update, until it succeeds,
// ctx ends or EnsureTimeout passes, each try bounded to 5 s. A fresh
// cluster answers "no suitable peers", times out or reports a stream
// created meanwhile by another replica ("already in use") while its meta
// leader is elected and its peers join; three replicas starting together
// on a fresh cluster then all succeed a moment later instead of one dying.
func Ensure[T any](ctx context.Context, what string, create func(context.Context) (T, error)) (T, error) {
	deadline := time.Now().Add(EnsureTimeout)
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		v, err := create(tctx)
		cancel()
		if err == nil {
			return v, nil
		}
		var final *finalError
		if errors.As(err, &final) {
			var zero T
			return zero, final.err
		}
		if ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			var zero T
			return zero, fmt.Errorf("ensure %s: %w", what, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// RegisterFlags registers the limits as -<prefix>.* flags (the runner's
// prefix is "nats"), with l's values as defaults.
func (l *Limits) RegisterFlags(prefix string, fs *flag.FlagSet) {
	fs.DurationVar(&l.EventsMaxAge, prefix+".events-max-age", l.EventsMaxAge, "How long the EVENTS stream keeps usage events.")
	fs.Int64Var(&l.EventsMaxBytes, prefix+".events-max-bytes", l.EventsMaxBytes, "Size bound of the EVENTS stream; the oldest events go first.")
	fs.DurationVar(&l.DuplicateWindow, prefix+".duplicate-window", l.DuplicateWindow, "How long message ids are remembered for publish deduplication (held in server memory).")
	fs.DurationVar(&l.AccountsMaxAge, prefix+".accounts-max-age", l.AccountsMaxAge, "How long the ACCOUNT_CHANGES stream keeps account changes.")
	fs.DurationVar(&l.ScoresMaxAge, prefix+".scores-max-age", l.ScoresMaxAge, "How long the SCORES stream keeps score history.")
	fs.Int64Var(&l.ScoresMaxBytes, prefix+".scores-max-bytes", l.ScoresMaxBytes, "Size bound of the SCORES stream.")
	fs.IntVar(&l.Replicas, prefix+".replicas", l.Replicas, "Replicas of every stream and bucket (a NATS cluster wants 3).")
	fs.IntVar(&l.Partitions, prefix+".partitions", l.Partitions, "Logical partitions of EVENTS and the per-account streams (hash of tenant and account mod this): set once per deployment, never changed; the most replicas a partitioned service can use.")
	fs.DurationVar(&l.LeaseTTL, prefix+".lease-ttl", l.LeaseTTL, "How long a replica that stopped renewing keeps its partitions: bounds failover time; too short and a GC pause or a NATS leader election moves partitions.")
	fs.StringVar(&l.Member, prefix+".member", l.Member, "This process's name among a service's replicas (unique); empty: hostname-pid. A stable name takes its partitions back at once after a restart.")
}
