// Package scorecards keeps every tenant's scorecard versions durably in a
// JetStream KV bucket (the scorecard itself, its parsing and validation, is
// internal/scorecore/scorecard). Versions are immutable; the active one is a pointer
// updated with compare-and-set, so two concurrent updates never get the same
// version.
package scorecards

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/pkg/natsx"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// Bucket is the KV bucket of scorecards: keys "<tenant>.v<version>" hold a
// version, "<tenant>.active" the active version number.
const Bucket = "SCORECARDS"

// ErrNotFound means the tenant has no such scorecard version.
var ErrNotFound = errors.New("scorecard not found")

// BucketConfig is the bucket's configuration.
func BucketConfig(replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "Scorecard versions by tenant (lodestar.scoring.v1.Scorecard)",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}
}

// Store reads and writes scorecard versions.
type Store struct {
	kv jetstream.KeyValue
}

// New returns a store over the bucket.
func New(kv jetstream.KeyValue) *Store { return &Store{kv: kv} }

func activeKey(tenant string) string           { return tenant + ".active" }
func versionKey(tenant string, v int32) string { return tenant + ".v" + strconv.Itoa(int(v)) }

// Active returns the tenant's active scorecard, or ErrNotFound.
func (s *Store) Active(ctx context.Context, tenant string) (*scoringv1.Scorecard, error) {
	v, _, err := s.activeVersion(ctx, tenant)
	if err != nil {
		return nil, err
	}
	return s.Get(ctx, tenant, v)
}

// Get returns one version, or ErrNotFound.
func (s *Store) Get(ctx context.Context, tenant string, version int32) (*scoringv1.Scorecard, error) {
	e, err := s.kv.Get(ctx, versionKey(tenant, version))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get scorecard %s v%d: %w", tenant, version, err)
	}
	sc := &scoringv1.Scorecard{}
	if err := proto.Unmarshal(e.Value(), sc); err != nil {
		return nil, fmt.Errorf("decode scorecard %s v%d: %w", tenant, version, err)
	}
	return sc, nil
}

func (s *Store) activeVersion(ctx context.Context, tenant string) (int32, uint64, error) {
	e, err := s.kv.Get(ctx, activeKey(tenant))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, 0, ErrNotFound
	}
	if err != nil {
		return 0, 0, fmt.Errorf("get active scorecard of %s: %w", tenant, err)
	}
	v, err := strconv.Atoi(string(e.Value()))
	if err != nil {
		return 0, 0, fmt.Errorf("active scorecard of %s: bad version %q", tenant, e.Value())
	}
	return int32(v), e.Revision(), nil
}

// Put stores sc as the tenant's next version and makes it active. base is
// the version to count from when the tenant has none stored yet (the
// version of the default scorecard it was using). sc must be valid.
func (s *Store) Put(ctx context.Context, tenant string, sc *scoringv1.Scorecard, base int32, now time.Time) (*scoringv1.Scorecard, error) {
	for {
		cur, rev, err := s.activeVersion(ctx, tenant)
		if errors.Is(err, ErrNotFound) {
			cur, rev = base, 0
		} else if err != nil {
			return nil, err
		}
		next := proto.CloneOf(sc)
		next.Version = cur + 1
		next.UpdateTime = timestamppb.New(now)
		b, err := proto.Marshal(next)
		if err != nil {
			return nil, fmt.Errorf("encode scorecard: %w", err)
		}
		// Create fails when a concurrent update took this version: retry.
		if _, err := s.kv.Create(ctx, versionKey(tenant, next.Version), b); errors.Is(err, jetstream.ErrKeyExists) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("store scorecard %s v%d: %w", tenant, next.Version, err)
		}
		val := []byte(strconv.Itoa(int(next.Version)))
		if rev == 0 {
			_, err = s.kv.Create(ctx, activeKey(tenant), val)
		} else {
			_, err = s.kv.Update(ctx, activeKey(tenant), val, rev)
		}
		if err != nil {
			return nil, fmt.Errorf("activate scorecard %s v%d: %w", tenant, next.Version, err)
		}
		return next, nil
	}
}

// Watch calls fn with every tenant's active scorecard, first those stored,
// then each new activation, until ctx is done (it then returns nil).
// initialDone is called once the stored ones have been delivered. A watch
// that closes before ctx is done is an error (natsx.ErrWatchClosed): new
// activations would no longer reach fn.
func (s *Store) Watch(ctx context.Context, fn func(tenant string, sc *scoringv1.Scorecard), initialDone func()) error {
	w, err := s.kv.Watch(ctx, "*.active")
	if err != nil {
		return fmt.Errorf("watch scorecards: %w", err)
	}
	loaded := func() error { initialDone(); return nil }
	err = natsx.WatchKV(ctx, w, loaded, func(e jetstream.KeyValueEntry) error {
		if e.Operation() != jetstream.KeyValuePut {
			return nil
		}
		tenant, _ := strings.CutSuffix(e.Key(), ".active")
		v, err := strconv.Atoi(string(e.Value()))
		if err != nil {
			return nil
		}
		sc, err := s.Get(ctx, tenant, int32(v))
		if err != nil {
			return err
		}
		fn(tenant, sc)
		return nil
	})
	if errors.Is(err, natsx.ErrWatchClosed) {
		return fmt.Errorf("watch scorecards: %w", err)
	}
	return err
}
