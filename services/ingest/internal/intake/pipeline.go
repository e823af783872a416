package intake

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/lodestar-cs/lodestar/pkg/auth"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
	"github.com/lodestar-cs/lodestar/services/ingest/internal/attribution"
	"github.com/lodestar-cs/lodestar/services/ingest/internal/publish"
	"github.com/lodestar-cs/lodestar/services/ingest/internal/quota"
)

// Rejection reasons of whole requests, beside the violation codes.
const (
	ReasonRateLimited  = "rate_limited"
	ReasonAccountLimit = "account_limit"
	ReasonUnavailable  = "unavailable"
)

// RateLimitError reports that a tenant exceeded its configured event rate.
type RateLimitError struct {
	// RetryAfter is when the tenant's bucket holds enough tokens again.
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("tenant event rate exceeded; retry after %s", e.RetryAfter)
}

// Pipeline stores prepared events. It is safe for concurrent use.
type Pipeline struct {
	limiters map[string]*rate.Limiter
	// defaultRate limits the tenants without a limiter of their own, each
	// with its limiter made on its first request.
	defaultRate   auth.RateLimit
	mu            sync.Mutex
	defaults      map[string]*rate.Limiter // nil values: no default limit
	resolver      *attribution.Resolver
	accounts      *quota.Accounts
	publisher     *publish.Publisher
	tracer        trace.Tracer
	accepted      metric.Int64Counter
	rejected      metric.Int64Counter
	requestEvents metric.Int64Histogram
}

// NewPipeline returns a pipeline enforcing the rate limits of tenants, or
// defaultRate for those that have none, and the account limits of accounts.
func NewPipeline(tenants *auth.Registry, defaultRate auth.RateLimit, resolver *attribution.Resolver, accounts *quota.Accounts, publisher *publish.Publisher, meter metric.Meter, tracer trace.Tracer) (*Pipeline, error) {
	accepted, err := meter.Int64Counter("lodestar.ingest.events.accepted",
		metric.WithDescription("Events stored in the EVENTS stream."), metric.WithUnit("{event}"))
	if err != nil {
		return nil, fmt.Errorf("accepted counter: %w", err)
	}
	rejected, err := meter.Int64Counter("lodestar.ingest.events.rejected",
		metric.WithDescription("Events refused, by reason."), metric.WithUnit("{event}"))
	if err != nil {
		return nil, fmt.Errorf("rejected counter: %w", err)
	}
	requestEvents, err := meter.Int64Histogram("lodestar.ingest.request.events",
		metric.WithDescription("Valid events per ingest request."), metric.WithUnit("{event}"),
		metric.WithExplicitBucketBoundaries(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000))
	if err != nil {
		return nil, fmt.Errorf("request events histogram: %w", err)
	}
	return &Pipeline{
		limiters:      newLimiters(tenants),
		defaultRate:   defaultRate,
		defaults:      map[string]*rate.Limiter{},
		resolver:      resolver,
		accounts:      accounts,
		publisher:     publisher,
		tracer:        tracer,
		accepted:      accepted,
		rejected:      rejected,
		requestEvents: requestEvents,
	}, nil
}

// newLimiters builds a token bucket, counted in events, for every tenant
// with a rate limit. A tenant without a burst gets one second of its rate.
func newLimiters(tenants *auth.Registry) map[string]*rate.Limiter {
	limiters := map[string]*rate.Limiter{}
	for _, id := range tenants.TenantIDs() {
		t, _ := tenants.Tenant(id)
		if lim := newLimiter(t.RateLimit); lim != nil {
			limiters[id] = lim
		}
	}
	return limiters
}

// newLimiter returns the token bucket of rl, nil for no limit.
func newLimiter(rl auth.RateLimit) *rate.Limiter {
	if rl.EventsPerSecond <= 0 {
		return nil
	}
	burst := rl.Burst
	if burst == 0 {
		burst = max(1, int(math.Ceil(rl.EventsPerSecond)))
	}
	return rate.NewLimiter(rate.Limit(rl.EventsPerSecond), burst)
}

// limiter returns tenant's token bucket, nil for none.
func (p *Pipeline) limiter(tenant string) *rate.Limiter {
	if lim, own := p.limiters[tenant]; own {
		return lim
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	lim, ok := p.defaults[tenant]
	if !ok {
		lim = newLimiter(p.defaultRate)
		p.defaults[tenant] = lim
	}
	return lim
}

// admit takes n events' tokens from tenant's bucket, or reports how long to
// wait. A request is admitted whole or not at all; one larger than the burst
// is charged the whole burst, so it passes when the bucket is full rather
// than never (configure the burst at least the largest batch for exact
// accounting).
func (p *Pipeline) admit(tenant string, n int) error {
	lim := p.limiter(tenant)
	if lim == nil {
		return nil
	}
	now := time.Now()
	r := lim.ReserveN(now, min(n, lim.Burst()))
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return &RateLimitError{RetryAfter: d}
	}
	return nil
}

// Store stores the prepared events of one request of tenant: it enforces
// the tenant's rate, attributes the events to accounts, publishes them and
// then remembers the accounts of the request's group calls. A nil error
// means every event is stored in JetStream. api labels metrics.
func (p *Pipeline) Store(ctx context.Context, api, tenant string, evs []*eventv1.Event) (err error) {
	ctx, span := p.tracer.Start(ctx, "ingest.Store", trace.WithAttributes(
		attribute.String("lodestar.tenant", tenant), attribute.Int("lodestar.events", len(evs))))
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	attrs := metric.WithAttributes(attribute.String("api", api), attribute.String("tenant", tenant))
	if err := p.admit(tenant, len(evs)); err != nil {
		p.Reject(ctx, api, tenant, ReasonRateLimited, len(evs))
		return err
	}
	groups, err := p.resolver.Attribute(ctx, tenant, evs)
	if err == nil {
		ids := make([]string, len(evs))
		for i, ev := range evs {
			ids[i] = ev.AccountId
		}
		err = p.accounts.Admit(ctx, tenant, ids)
		if qe := new(quota.Error); errors.As(err, &qe) {
			p.Reject(ctx, api, tenant, ReasonAccountLimit, len(evs))
			return err
		}
	}
	if err == nil {
		err = p.publisher.Publish(ctx, tenant, evs)
	}
	// Group calls are remembered only once their events are stored, so the
	// bucket never holds an account from a call the client must retry.
	if err == nil {
		err = p.resolver.Remember(ctx, groups)
	}
	if err != nil {
		p.Reject(ctx, api, tenant, ReasonUnavailable, len(evs))
		return fmt.Errorf("store %d events of tenant %s: %w", len(evs), tenant, err)
	}
	p.accepted.Add(ctx, int64(len(evs)), attrs)
	p.requestEvents.Record(ctx, int64(len(evs)), attrs)
	return nil
}

// Reject counts n events of tenant refused for reason (a violation code or
// a Reason*).
func (p *Pipeline) Reject(ctx context.Context, api, tenant, reason string, n int) {
	p.rejected.Add(ctx, int64(n), metric.WithAttributes(
		attribute.String("api", api), attribute.String("tenant", tenant), attribute.String("reason", reason)))
}

// RejectViolations counts the events of tenant refused for vs.
func (p *Pipeline) RejectViolations(ctx context.Context, api, tenant string, vs []Violation) {
	for _, v := range vs {
		p.Reject(ctx, api, tenant, v.Code, 1)
	}
}
