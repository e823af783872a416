// Package churnalert is Lodestar's churn-alert service. It follows score
// changes (SCORES) and account changes (ACCOUNT_CHANGES), evaluates each
// tenant's rules, keeps one alert per (account, rule) through its life
// (open, acknowledged, snoozed, resolved) in the KV bucket ALERT_STATE,
// publishes every transition on the ALERTS stream, routes alerts to the
// account owner or the on-call CSM (escalating unacknowledged ones), and
// delivers them through the DELIVERIES work queue to Slack, PagerDuty,
// signed webhooks and e-mail. It serves lodestar.alert.v1.AlertService.
//
// A restart neither loses nor repeats an alert: changes are read in stream
// order from a stored position that only passes a change once the state it
// leads to is stored (see internal/pipeline); that state carries the events
// and deliveries it implies in an outbox published under deterministic
// message ids (see internal/alertstate); and each delivery id is sent once
// (see internal/delivery).
package churnalert

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/pkg/config"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	"github.com/lodestar-cs/lodestar/pkg/ownership"
	"github.com/lodestar-cs/lodestar/pkg/service"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/alertstate"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/api"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/backtest"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/channel"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/delivery"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/egress"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/pipeline"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/rules"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/settings"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/streams"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/view"
)

// Target is the service's name as a -target, NATS durable name and OTel
// service name.
const Target = "churn-alert"

const instrumentation = "github.com/lodestar-cs/lodestar/services/churnalert"

// Config configures the service.
type Config struct {
	// Workers apply score and account changes in parallel.
	Workers int
	// StateCache is how many accounts' alert states are kept in memory, so
	// that applying a change to one of them reads nothing from ALERT_STATE.
	StateCache int
	// DeliveryWorkers send deliveries in parallel.
	DeliveryWorkers int
	// DeliveryAttempts is how often a delivery is tried before it goes to
	// the dead letters.
	DeliveryAttempts int
	// DeliveryBackoff is the first retry's delay; it doubles per retry.
	DeliveryBackoff time.Duration
	// DeliveryTimeout bounds one send.
	DeliveryTimeout time.Duration
	// CheckpointInterval is how often the position in SCORES and
	// ACCOUNT_CHANGES is stored; a restart resumes from it.
	CheckpointInterval time.Duration
	// DigestCheckInterval is how often ended digest windows are sent.
	DigestCheckInterval time.Duration
	// SweepInterval is how often due escalations and snoozes are handled.
	SweepInterval time.Duration
	// RescanInterval is how often every account is read again for
	// conditions that depend on the date.
	RescanInterval time.Duration
	// Freshness: transitions further in the past than this (in the tenant's
	// clock, or changes published longer ago) are recorded as historical and
	// delivered to nobody: a backfill, a replay or a late import builds alert
	// history without paging anyone.
	Freshness time.Duration
	// LiveLag: a tenant whose event-time watermark comes this close to the
	// wall clock is live and runs on the wall clock from then on; before, its
	// rules, cooldowns and escalations run on its watermark.
	LiveLag time.Duration
	// Retention of the ALERTS, DELIVERIES and DELIVERIES_DEAD streams.
	AlertsMaxAge      time.Duration
	DeliveriesMaxAge  time.Duration
	DeadLettersMaxAge time.Duration
	// DailyPages is how many pages a recipient gets at once per day, by
	// the tier of the accounts; the rest go to their digest.
	DailyPages DailyPages
	// AccountURL links an alert to the account, with {tenant} and {account};
	// empty for no link.
	AccountURL string
	// PagerDutyURL is the Events API v2 endpoint.
	PagerDutyURL string
	// SMTP relay for e-mail; e-mail channels need SMTPAddr.
	SMTPAddr     string
	SMTPFrom     string
	SMTPUsername string
	SMTPPassword string
	// AllowHTTPEndpoints accepts plain http webhook URLs (local runs, tests).
	AllowHTTPEndpoints bool
	// EndpointAllowList opens non-public addresses to Slack, webhook and
	// PagerDuty deliveries: CIDRs, addresses or host names (on-premises
	// receivers). Everything else private, loopback, link-local or reserved
	// is refused when connecting (see internal/egress).
	EndpointAllowList config.StringList
}

// DefaultConfig is the configuration of a local run.
func DefaultConfig() Config {
	return Config{
		Workers:             4,
		StateCache:          32768,
		DeliveryWorkers:     8,
		DeliveryAttempts:    8,
		DeliveryBackoff:     2 * time.Second,
		DeliveryTimeout:     10 * time.Second,
		CheckpointInterval:  time.Second,
		DigestCheckInterval: time.Second,
		SweepInterval:       5 * time.Second,
		RescanInterval:      time.Hour,
		Freshness:           2 * time.Minute,
		DailyPages:          DailyPages{Default: 5, ByTier: map[accountv1.Tier]int{accountv1.Tier_TIER_BENCHMARK: 20, accountv1.Tier_TIER_GROWTH: 10}},
		LiveLag:             time.Hour,
		AlertsMaxAge:        365 * 24 * time.Hour,
		DeliveriesMaxAge:    7 * 24 * time.Hour,
		DeadLettersMaxAge:   30 * 24 * time.Hour,
		PagerDutyURL:        channel.DefaultPagerDutyURL,
		SMTPFrom:            "Lodestar <alerts@localhost>",
	}
}

// RegisterFlags registers the configuration as -<prefix>.* flags (the
// runner's prefix is Target), with c's values as defaults.
func (c *Config) RegisterFlags(prefix string, fs *flag.FlagSet) {
	fs.IntVar(&c.Workers, prefix+".workers", c.Workers, "Workers applying score and account changes (each owns a share of accounts).")
	fs.IntVar(&c.StateCache, prefix+".state-cache", c.StateCache, "Accounts whose alert state is kept in memory (least recently used go first); 0 reads every account's state before each change.")
	fs.IntVar(&c.DeliveryWorkers, prefix+".delivery-workers", c.DeliveryWorkers, "Deliveries sent in parallel.")
	fs.IntVar(&c.DeliveryAttempts, prefix+".delivery-attempts", c.DeliveryAttempts, "Tries of a delivery before it goes to the dead letters (lodestar.deliveries.dead.<channel>).")
	fs.DurationVar(&c.DeliveryBackoff, prefix+".delivery-backoff", c.DeliveryBackoff, "Delay before a failed delivery's first retry; doubles per retry, up to 10m.")
	fs.DurationVar(&c.DeliveryTimeout, prefix+".delivery-timeout", c.DeliveryTimeout, "Time limit of one send to Slack, PagerDuty, a webhook or the SMTP relay.")
	fs.DurationVar(&c.CheckpointInterval, prefix+".checkpoint-interval", c.CheckpointInterval, "How often the position in SCORES and ACCOUNT_CHANGES is stored (a restart re-reads what came after).")
	fs.DurationVar(&c.DigestCheckInterval, prefix+".digest-check-interval", c.DigestCheckInterval, "How often digests whose window ended are sent.")
	fs.DurationVar(&c.SweepInterval, prefix+".sweep-interval", c.SweepInterval, "How often unacknowledged alerts are escalated and snoozes ended.")
	fs.DurationVar(&c.RescanInterval, prefix+".rescan-interval", c.RescanInterval, "How often every account is read again for date-driven conditions (renewal near, onboarding overdue).")
	fs.DurationVar(&c.Freshness, prefix+".freshness", c.Freshness, "Alert transitions older than this (in the tenant's event time, or from changes published longer ago) are recorded as historical and delivered to nobody: backfills and replays page no one.")
	fs.DurationVar(&c.LiveLag, prefix+".live-lag", c.LiveLag, "A tenant whose event-time watermark comes this close to the wall clock runs its rules, cooldowns and escalations on the wall clock from then on (before: on its watermark).")
	fs.DurationVar(&c.AlertsMaxAge, prefix+".alerts-max-age", c.AlertsMaxAge, "How long the ALERTS stream keeps alert history.")
	fs.DurationVar(&c.DeliveriesMaxAge, prefix+".deliveries-max-age", c.DeliveriesMaxAge, "How long an unsent delivery stays in the DELIVERIES queue.")
	fs.DurationVar(&c.DeadLettersMaxAge, prefix+".dead-letters-max-age", c.DeadLettersMaxAge, "How long failed deliveries stay in DELIVERIES_DEAD.")
	fs.Var(&c.DailyPages, prefix+".daily-pages", "Pages one recipient gets at once per day, ranked by ARR x risk x renewal urgency; the rest go to the digest (Slack, e-mail). A number for every tier, then tier=number overrides, for example 5,growth=10,benchmark=20; 0 is no limit.")
	fs.StringVar(&c.AccountURL, prefix+".account-url", c.AccountURL, "Link to an account in alerts, for example https://lodestar.example/accounts/{account}; {tenant} and {account} are replaced. Empty: alerts carry no link.")
	fs.StringVar(&c.PagerDutyURL, prefix+".pagerduty-url", c.PagerDutyURL, "PagerDuty Events API v2 endpoint.")
	fs.StringVar(&c.SMTPAddr, prefix+".smtp-addr", c.SMTPAddr, "SMTP relay host:port for e-mail channels; empty disables e-mail.")
	fs.StringVar(&c.SMTPFrom, prefix+".smtp-from", c.SMTPFrom, "From address of alert e-mails.")
	fs.StringVar(&c.SMTPUsername, prefix+".smtp-username", c.SMTPUsername, "SMTP AUTH PLAIN user; empty sends without AUTH.")
	fs.StringVar(&c.SMTPPassword, prefix+".smtp-password", c.SMTPPassword, "SMTP AUTH PLAIN password (prefer "+config.EnvName(prefix+".smtp-password")+").")
	fs.BoolVar(&c.AllowHTTPEndpoints, prefix+".allow-http-endpoints", c.AllowHTTPEndpoints, "Accept plain http Slack and webhook URLs (local runs only).")
	fs.Var(&c.EndpointAllowList, prefix+".endpoint-allow-list", "Comma-separated CIDRs, addresses and host names that Slack, webhook and PagerDuty deliveries may reach although they are private, loopback or link-local (on-premises receivers); all other such addresses are refused when connecting.")
}

// Validate reports every problem of the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.Workers < 1 || c.Workers > 256 || c.DeliveryWorkers < 1 || c.DeliveryWorkers > 256 {
		errs = append(errs, errors.New("-churn-alert.workers and -churn-alert.delivery-workers: want 1 to 256"))
	}
	if c.StateCache < 0 {
		errs = append(errs, fmt.Errorf("-churn-alert.state-cache %d: want 0 or more", c.StateCache))
	}
	if c.DeliveryAttempts < 1 || c.DeliveryAttempts > 100 {
		errs = append(errs, fmt.Errorf("-churn-alert.delivery-attempts %d: want 1 to 100", c.DeliveryAttempts))
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{
		{"delivery-backoff", c.DeliveryBackoff}, {"delivery-timeout", c.DeliveryTimeout}, {"checkpoint-interval", c.CheckpointInterval},
		{"digest-check-interval", c.DigestCheckInterval}, {"sweep-interval", c.SweepInterval}, {"rescan-interval", c.RescanInterval},
		{"freshness", c.Freshness}, {"live-lag", c.LiveLag}, {"alerts-max-age", c.AlertsMaxAge}, {"deliveries-max-age", c.DeliveriesMaxAge},
		{"dead-letters-max-age", c.DeadLettersMaxAge},
	} {
		if d.d <= 0 {
			errs = append(errs, fmt.Errorf("-churn-alert.%s must be positive", d.name))
		}
	}
	if c.AccountURL != "" {
		u, err := url.Parse(strings.NewReplacer("{tenant}", "t", "{account}", "a").Replace(c.AccountURL))
		if err != nil || !(strings.HasPrefix(c.AccountURL, "/") || (u.Scheme == "http" || u.Scheme == "https") && u.Host != "") {
			errs = append(errs, fmt.Errorf("-churn-alert.account-url %q: want empty, a path (/accounts/{account}) or an http(s) URL", c.AccountURL))
		}
	}
	if u, err := url.Parse(c.PagerDutyURL); err != nil || u.Host == "" {
		errs = append(errs, fmt.Errorf("-churn-alert.pagerduty-url %q: not an absolute URL", c.PagerDutyURL))
	}
	if _, err := egress.NewPolicy(c.EndpointAllowList); err != nil {
		errs = append(errs, fmt.Errorf("-churn-alert.endpoint-allow-list: %w", err))
	}
	if c.SMTPAddr != "" {
		if _, _, err := net.SplitHostPort(c.SMTPAddr); err != nil {
			errs = append(errs, fmt.Errorf("-churn-alert.smtp-addr %q: want host:port", c.SMTPAddr))
		}
		if _, err := mail.ParseAddress(c.SMTPFrom); err != nil {
			errs = append(errs, fmt.Errorf("-churn-alert.smtp-from %q: %w", c.SMTPFrom, err))
		}
	}
	return errors.Join(errs...)
}

// Deps are what the service uses but does not own.
type Deps struct {
	JS jetstream.JetStream
	// Limits give the replicas and duplicate window of the streams.
	Limits natsx.Limits
	service.Deps
	// Stopping, closed when the gRPC server begins to stop, ends WatchAlerts
	// streams (grpcserver.Server.Stopping). Optional.
	Stopping <-chan struct{}
	// Now is the wall clock; time.Now when nil. Tests move it.
	Now func() time.Time
}

// Service is the churn-alert service.
type Service struct {
	cfg    Config
	deps   Deps
	sender *channel.Sender
	api    *api.Server
	ready  atomic.Pointer[func() bool]
}

// New builds the service; Run starts it.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.JS == nil {
		return nil, errors.New("Deps.JS is required")
	}
	// The limits also configure SCORES and ACCOUNT_CHANGES, which Run
	// ensures: zero values would change those streams.
	if err := deps.Limits.Validate(); err != nil {
		return nil, fmt.Errorf("Deps.Limits: %w", err)
	}
	deps.Deps = deps.Deps.WithDefaults()
	if deps.Now == nil {
		deps.Now = time.Now
	}
	policy, err := egress.NewPolicy(cfg.EndpointAllowList)
	if err != nil {
		return nil, err // Validate has reported it
	}
	sender := &channel.Sender{
		Client:       channel.NewHTTPClient(cfg.DeliveryTimeout, policy),
		PagerDutyURL: cfg.PagerDutyURL,
		SMTP:         channel.SMTP{Addr: cfg.SMTPAddr, From: cfg.SMTPFrom, Username: cfg.SMTPUsername, Password: cfg.SMTPPassword},
		Now:          deps.Now,
	}
	return &Service{
		cfg:    cfg,
		deps:   deps,
		sender: sender,
		api: api.New(api.Options{
			Sender:   sender,
			Channels: channel.ValidateOptions{AllowHTTP: cfg.AllowHTTPEndpoints, SMTPConfigured: cfg.SMTPAddr != "", Egress: policy},
			Now:      deps.Now,
			Stopping: deps.Stopping,
			Logger:   deps.Logger,
		}),
	}, nil
}

// Register registers AlertService; it answers UNAVAILABLE until Run has
// loaded the settings and alerts.
func (s *Service) Register(r grpc.ServiceRegistrar) { alertv1.RegisterAlertServiceServer(r, s.api) }

// Ready reports whether the service consumes changes, sends deliveries and
// serves.
func (s *Service) Ready() bool {
	ready := s.ready.Load()
	return ready != nil && (*ready)()
}

// Run ensures the streams and buckets, loads settings and alerts, then
// evaluates and delivers until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	l := streams.Limits{
		AlertsMaxAge:      s.cfg.AlertsMaxAge,
		DeliveriesMaxAge:  s.cfg.DeliveriesMaxAge,
		DeadLettersMaxAge: s.cfg.DeadLettersMaxAge,
		DuplicateWindow:   s.deps.Limits.DuplicateWindow,
		Replicas:          s.deps.Limits.Replicas,
	}
	js := s.deps.JS
	// SCORES and ACCOUNT_CHANGES belong to scoring and ingest; ensuring them
	// (with the same configuration) lets this service start first.
	if err := natsx.EnsureStreams(ctx, js, s.deps.Limits.AccountChangesStream(), s.deps.Limits.ScoresStream(),
		l.AlertsStream(), l.DeliveriesStream(), l.DeadLettersStream()); err != nil {
		return err
	}
	var kvs [3]jetstream.KeyValue
	for i, cfg := range []jetstream.KeyValueConfig{l.StateBucket(), l.SettingsBucket(), l.DeliveriesBucket()} {
		kv, err := natsx.EnsureKeyValue(ctx, js, cfg)
		if err != nil {
			return err
		}
		kvs[i] = kv
	}
	meter := s.deps.MeterProvider.Meter(instrumentation)
	tracer := s.deps.TracerProvider.Tracer(instrumentation)
	logger := s.deps.Logger
	set := settings.New(kvs[1])
	alerts := view.New(logger)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return set.Run(gctx) })
	g.Go(func() error { return alerts.Run(gctx, js) })
	// Rules must be known before any change is judged, and open alerts
	// before any is escalated.
	for !set.Ready() || !alerts.Ready() {
		select {
		case <-gctx.Done():
			return g.Wait()
		case <-time.After(20 * time.Millisecond):
		}
	}
	state := alertstate.New(js, kvs[0], s.cfg.StateCache)
	budget := pipeline.NewBudget(s.cfg.DailyPages, alerts)
	newPipeline := func(partition, partitions uint32) *pipeline.Pipeline {
		return pipeline.New(pipeline.Config{
			Workers:            s.cfg.Workers,
			Partition:          partition,
			Partitions:         partitions,
			CheckpointInterval: s.cfg.CheckpointInterval,
			SweepInterval:      s.cfg.SweepInterval,
			RescanInterval:     s.cfg.RescanInterval,
			Freshness:          s.cfg.Freshness,
			LiveLag:            s.cfg.LiveLag,
			AccountURL:         s.cfg.AccountURL,
			AlertsMaxAge:       s.cfg.AlertsMaxAge,
		}, pipeline.Deps{
			JS: js, State: state, Settings: set, View: alerts, Budget: budget, Now: s.deps.Now,
			Logger: logger, Meter: meter, Tracer: tracer, Propagator: s.deps.Propagator,
		})
	}
	// People's actions reach any replica, for any account: the API's
	// pipeline runs no consumers, the partitions' pipelines do.
	p := newPipeline(0, 0)
	owner, err := ownership.Start(ctx, js, s.deps.Limits, Target, logger)
	if err != nil {
		return err
	}
	consumers := ownership.NewRunning[pipeline.Pipeline]()
	w := delivery.New(delivery.Config{
		Workers:     s.cfg.DeliveryWorkers,
		MaxAttempts: s.cfg.DeliveryAttempts,
		Backoff:     s.cfg.DeliveryBackoff,
		Timeout:     s.cfg.DeliveryTimeout,
		AckWait:     2 * s.cfg.DeliveryTimeout,
		DigestCheck: s.cfg.DigestCheckInterval,
	}, delivery.Deps{
		JS: js, KV: kvs[2], Settings: set, Sender: s.sender, Now: s.deps.Now,
		Logger: logger, Meter: meter, Tracer: tracer, Propagator: s.deps.Propagator,
	})
	s.api.Start(&api.Backends{JS: js, Settings: set, View: alerts, Pipeline: p})
	ready := func() bool {
		return set.Ready() && alerts.Ready() && w.Ready() && consumers.Ready(owner, (*pipeline.Pipeline).Ready)
	}
	s.ready.Store(&ready)
	g.Go(func() error {
		return owner.Run(gctx, func(ctx context.Context, l ownership.Lease) error {
			return consumers.Run(ctx, l.Partition, newPipeline(l.Partition, uint32(s.deps.Limits.Partitions)), (*pipeline.Pipeline).Run)
		})
	})
	g.Go(func() error { return w.Run(gctx) })
	return g.Wait()
}

// DailyPages budgets each recipient's pages per day, by tier.
type DailyPages = pipeline.DailyPages

// The history EvaluateRules replays, for tools that build one themselves
// (tools/alertcheck replays the simulated product).
type (
	History = backtest.History
	Fact    = backtest.Fact
	Renewal = backtest.Renewal
)

// EvaluateRules replays a history through a rule set in event time and
// measures the alerts against the renewals, as the EvaluateRules RPC does
// for a tenant's stored history: an alert warns of a renewal when it opens
// within lead before it.
func EvaluateRules(h History, rs []*alertv1.Rule, lead time.Duration) *alertv1.EvaluateRulesResponse {
	return backtest.Evaluate(h, rs, lead)
}

// DefaultRules returns the rules Lodestar ships.
func DefaultRules() []*alertv1.Rule { return rules.Defaults() }

// Risk reports whether a rule kind warns of churn (expansion and win-back
// point at opportunities).
func Risk(k alertv1.RuleKind) bool { return rules.Risk(k) }

// ConditionHolds reports whether an open alert's condition holds at the
// account's current score, as far as the score and the alert's facts tell:
// kinds that read the score's history (score drop) or the contract
// (onboarding) are judged by whether their rule may read the account at
// all (its band). A stale alert is one for which it does not.
func ConditionHolds(r *alertv1.Rule, a *alertv1.Alert, hs *scoringv1.HealthScore, at time.Time) bool {
	f := rules.Facts{At: at, Score: hs, Account: &accountv1.Account{RenewalTime: a.GetRenewalTime(), LifecycleStage: a.GetLifecycleStage()}}
	switch r.GetKind() {
	case alertv1.RuleKind_RULE_KIND_SCORE_DROP, alertv1.RuleKind_RULE_KIND_ONBOARDING_STALLED:
		return rules.Judged(r, f)
	}
	return rules.Evaluate(r, f, &alertv1.RuleState{ConditionTime: timestamppb.New(time.Time{})}).Firing
}

// VerifyWebhook checks a generic webhook's Lodestar-Signature header against
// the raw request body, for receivers written in Go: the HMAC-SHA256 must
// match and the signed timestamp lie within tolerance of now (five minutes
// is usual). Deduplicate on Lodestar-Delivery-Id as well.
func VerifyWebhook(secret []byte, signature string, body []byte, now time.Time, tolerance time.Duration) error {
	return channel.Verify(secret, signature, body, now, tolerance)
}
