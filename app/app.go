// Package app is Lodestar's runner: it runs any set of Lodestar's services
// in one process, as Grafana Tempo and Loki do: -target=all (the default)
// runs every service with an embedded NATS server and an in-process cache
// unless external ones are given; a comma list runs some of them. The
// all-in-one and the microservice deployment share this one code path. The
// modules and their dependencies are in modules.go; nothing under services/
// or pkg/ imports this package.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/test/bufconn"

	"github.com/lodestar-cs/lodestar/pkg/auth"
	"github.com/lodestar-cs/lodestar/pkg/cache"
	"github.com/lodestar-cs/lodestar/pkg/config"
	"github.com/lodestar-cs/lodestar/pkg/grpcserver"
	"github.com/lodestar-cs/lodestar/pkg/natsembed"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	"github.com/lodestar-cs/lodestar/pkg/telemetry"
	"github.com/lodestar-cs/lodestar/services/churnalert"
	"github.com/lodestar-cs/lodestar/services/console"
	"github.com/lodestar-cs/lodestar/services/ingest"
	"github.com/lodestar-cs/lodestar/services/renewalforecast"
	"github.com/lodestar-cs/lodestar/services/scoring"
)

// Config is the runner's configuration; every field has a flag and a
// LODESTAR_* environment twin.
type Config struct {
	Targets        config.StringList
	HTTPListenAddr string
	GRPCListenAddr string
	DataDir        string
	NATSURL        string
	Redis          cache.RedisConfig
	TenantsFile    string
	DemoKeySeed    string
	LogLevel       string
	LogFormat      string
	ShutdownGrace  time.Duration
	HTTP           HTTPConfig

	Limits     natsx.Limits
	Ingest     ingest.Config
	Scoring    scoring.Config
	ChurnAlert churnalert.Config
	Forecast   renewalforecast.Config
	Cache      cache.Config
	Console    console.Config
}

// DefaultConfig is the configuration of a local run.
func DefaultConfig() Config {
	c := Config{
		Targets:        config.StringList{TargetAll},
		HTTPListenAddr: "127.0.0.1:8080",
		GRPCListenAddr: "127.0.0.1:9090",
		DataDir:        "./data",
		LogLevel:       "info",
		LogFormat:      telemetry.FormatText,
		ShutdownGrace:  15 * time.Second,
		HTTP:           DefaultHTTPConfig(),
		Limits:         natsx.DefaultLimits(),
		Ingest:         ingest.DefaultConfig(),
		Scoring:        scoring.DefaultConfig(),
		ChurnAlert:     churnalert.DefaultConfig(),
		Forecast:       renewalforecast.DefaultConfig(),
		Cache:          cache.DefaultConfig(),
		Console:        console.DefaultConfig(),
	}
	// Empty: alerts link to the console this process serves (initChurnAlert).
	c.ChurnAlert.AccountURL = ""
	return c
}

// RegisterFlags registers every flag, the services' included.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.Var(&c.Targets, "target", `Comma-separated services to run: "all", or any of `+strings.Join(targets(), ", ")+".")
	fs.StringVar(&c.HTTPListenAddr, "http.listen-addr", c.HTTPListenAddr, "Address of the public HTTP server: the Segment API and /healthz (/metrics is on -http.admin-listen-addr).")
	fs.StringVar(&c.GRPCListenAddr, "grpc.listen-addr", c.GRPCListenAddr, "Address of the gRPC server.")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "Directory for local state: the embedded NATS store and scoring snapshots.")
	fs.StringVar(&c.NATSURL, "nats.url", c.NATSURL, "NATS server URL; empty runs an embedded NATS server with JetStream in the data dir.")
	c.Redis.RegisterFlags("redis", fs)
	fs.StringVar(&c.TenantsFile, "config.file", c.TenantsFile, "YAML file of tenants and their keys; empty runs one demo tenant whose keys are printed at start-up.")
	fs.StringVar(&c.DemoKeySeed, "auth.demo-key-seed", c.DemoKeySeed, "Without -config.file: derive the demo tenant's keys from this seed instead of random ones, so a restart keeps them.")
	fs.StringVar(&c.LogLevel, "log.level", c.LogLevel, "Log level: debug, info, warn or error.")
	fs.StringVar(&c.LogFormat, "log.format", c.LogFormat, "Log format: text or json.")
	fs.DurationVar(&c.ShutdownGrace, "shutdown.grace", c.ShutdownGrace, "How long a graceful shutdown may take before the process stops anyway.")
	c.HTTP.RegisterFlags(fs)
	for _, m := range modules {
		if m.config != nil {
			m.config(c).RegisterFlags(m.name, fs)
		}
	}
}

// Validate reports every problem of the configuration: the runner's own and
// that of every module the targets need.
func (c *Config) Validate() error {
	var errs []error
	names, err := c.services()
	if err != nil {
		errs = append(errs, err)
	}
	if _, err := telemetry.ParseLevel(c.LogLevel); err != nil {
		errs = append(errs, fmt.Errorf("-log.level: %w", err))
	}
	if c.LogFormat != telemetry.FormatText && c.LogFormat != telemetry.FormatJSON {
		errs = append(errs, fmt.Errorf("-log.format %q: want text or json", c.LogFormat))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("-data-dir is required"))
	}
	order, err := initOrder(names)
	if err != nil {
		errs = append(errs, err)
	}
	if slices.Contains(names, console.Target) && c.Console.APIAddr == "" {
		for _, s := range []string{ingest.Target, scoring.Target, churnalert.Target, renewalforecast.Target} {
			if !slices.Contains(names, s) {
				errs = append(errs, fmt.Errorf("-target %s without %s needs -console.api-addr: the console shows every service", console.Target, s))
			}
		}
	}
	if err := c.HTTP.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Redis.Validate(); err != nil {
		errs = append(errs, err)
	}
	for _, m := range order {
		if m.config == nil {
			continue
		}
		if v, ok := m.config(c).(interface{ Validate() error }); ok {
			if err := v.Validate(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// services expands the targets into the services to run, in start order.
func (c *Config) services() ([]string, error) {
	all := targets()
	want := map[string]bool{}
	for _, t := range c.Targets {
		switch {
		case t == TargetAll:
			for _, s := range all {
				want[s] = true
			}
		case slices.Contains(all, t):
			want[t] = true
		default:
			return nil, fmt.Errorf("-target: unknown target %q (want all or %s)", t, strings.Join(all, ", "))
		}
	}
	if len(want) == 0 {
		return nil, errors.New("-target: no target")
	}
	var out []string
	for _, s := range all {
		if want[s] {
			out = append(out, s)
		}
	}
	return out, nil
}

// runnable is what every target runs.
type runnable interface {
	// Register registers the service's gRPC services.
	Register(grpc.ServiceRegistrar)
	// Run works until ctx is done, then drains and returns.
	Run(ctx context.Context) error
	// Ready reports whether the service's dependencies are up and it serves.
	Ready() bool
}

type runningService struct {
	name     string
	svc      runnable
	grpcSvcs []string // the gRPC services it registered, for health
}

// App is a running Lodestar process.
type App struct {
	cfg    Config
	logger *slog.Logger
	stdout io.Writer
	tel    *telemetry.Telemetry

	embedded *natsembed.Server
	redis    redis.UniversalClient
	cache    scoring.Cache
	nc       *nats.Conn
	js       jetstream.JetStream
	tenants  *auth.Registry
	grpc     *grpcserver.Server
	mux      *http.ServeMux
	admin    *http.ServeMux // /metrics, on -http.admin-listen-addr
	services []runningService
	// The listeners exist before the modules, which may need their
	// addresses (the console's URL in alert links).
	grpcLis, httpLis, adminLis net.Listener
	// inproc is the in-memory listener of the console's connection to
	// this process's gRPC server; nil without it.
	inproc      *bufconn.Listener
	consoleConn *grpc.ClientConn
	// notReady lists the services not ready at the last readiness check, so
	// /healthz and gRPC health always agree; nil before the first check.
	notReady atomic.Pointer[[]string]
}

// Run starts the configured services and blocks until ctx is done or one of
// them fails; then it shuts everything down in order: health NOT_SERVING,
// servers stopped, consumers drained, NATS drained, the embedded server
// stopped, telemetry flushed last.
func Run(ctx context.Context, cfg Config, logger *slog.Logger, stdout io.Writer) (err error) {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	a := &App{cfg: cfg, logger: logger, stdout: stdout, mux: http.NewServeMux(), admin: http.NewServeMux()}
	defer func() { err = errors.Join(err, a.close()) }()
	if err := a.listen(); err != nil {
		return err
	}
	if err := a.init(ctx); err != nil {
		return err
	}
	return a.run(ctx)
}

// init initialises the modules the targets need, each after its
// dependencies.
func (a *App) init(ctx context.Context) error {
	names, _ := a.cfg.services()
	order, err := initOrder(names)
	if err != nil {
		return err
	}
	for _, m := range order {
		svc, err := m.init(a, ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		if svc == nil {
			continue
		}
		rec := &recordingRegistrar{r: a.grpc.GRPC()}
		svc.Register(rec)
		a.services = append(a.services, runningService{name: m.name, svc: svc, grpcSvcs: rec.names})
	}
	return nil
}

// initServer sets up telemetry, the tenants and the gRPC and HTTP servers.
func (a *App) initServer(ctx context.Context) (runnable, error) {
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: a.otelServiceName(), Logger: a.logger})
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	a.tel = tel
	if err := a.initTenants(); err != nil {
		return nil, err
	}
	a.grpc = grpcserver.New(grpcserver.Config{
		Logger:         a.logger,
		TracerProvider: tel.TracerProvider(),
		MeterProvider:  tel.MeterProvider(),
		Propagator:     tel.Propagator(),
	},
		grpcserver.WithUnaryInterceptors(a.tenants.UnaryServerInterceptor(grpcserver.IsInfraMethod)),
		grpcserver.WithStreamInterceptors(a.tenants.StreamServerInterceptor(grpcserver.IsInfraMethod)),
	)
	a.admin.Handle("GET /metrics", tel.MetricsHandler())
	a.admin.HandleFunc("GET /healthz", a.healthz)
	a.mux.HandleFunc("GET /healthz", a.healthz)
	return nil, nil
}

func (a *App) otelServiceName() string {
	if len(a.cfg.Targets) == 1 && a.cfg.Targets[0] != TargetAll {
		return a.cfg.Targets[0]
	}
	return "lodestar"
}

func (a *App) initTenants() error {
	if a.cfg.TenantsFile != "" {
		r, err := auth.Load(a.cfg.TenantsFile)
		if err != nil {
			return err
		}
		a.tenants = r
		return nil
	}
	r, keys, err := auth.Demo(a.cfg.DemoKeySeed)
	if err != nil {
		return fmt.Errorf("demo tenant: %w", err)
	}
	a.tenants = r
	fmt.Fprintf(a.stdout, "No -config.file: running one demo tenant %q.\n  write key (Segment HTTP API): %s\n  API key (gRPC, authorization: Bearer): %s\n",
		auth.DemoTenant, keys.WriteKey, keys.APIKey)
	return nil
}

// initNATS connects to the external NATS server, or starts an embedded one.
func (a *App) initNATS(ctx context.Context) (runnable, error) {
	var err error
	if a.cfg.NATSURL == "" {
		a.embedded, err = natsembed.Start(natsembed.Config{
			StoreDir: filepath.Join(a.cfg.DataDir, "nats"),
			Logger:   a.logger.With("component", "nats"),
		})
		if err != nil {
			return nil, err
		}
		a.nc, err = a.embedded.Connect("lodestar")
	} else {
		a.nc, err = natsx.Connect(ctx, a.cfg.NATSURL, "lodestar-"+a.otelServiceName(), a.logger)
	}
	if err != nil {
		return nil, err
	}
	a.js, err = natsx.NewJetStream(a.nc)
	return nil, err
}

// listen opens the servers' listeners; close closes those left unserved.
func (a *App) listen() error {
	var err error
	if a.grpcLis, err = net.Listen("tcp", a.cfg.GRPCListenAddr); err != nil {
		return fmt.Errorf("grpc listen: %w", err)
	}
	if a.httpLis, err = net.Listen("tcp", a.cfg.HTTPListenAddr); err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	if a.cfg.HTTP.AdminListenAddr != "" {
		if a.adminLis, err = net.Listen("tcp", a.cfg.HTTP.AdminListenAddr); err != nil {
			return fmt.Errorf("admin http listen: %w", err)
		}
	}
	return nil
}

func (a *App) run(ctx context.Context) error {
	grpcLis, httpLis, adminLis := a.grpcLis, a.httpLis, a.adminLis
	a.logger.Info("lodestar started", "targets", a.cfg.Targets.String(), "grpc", grpcLis.Addr().String(), "http", httpLis.Addr().String(), "admin", a.cfg.HTTP.AdminListenAddr, "nats", a.natsDescription())

	// One service failing stops the process: cancel everything.
	svcCtx, cancelSvcs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSvcs()
	g, gctx := errgroup.WithContext(svcCtx)
	for _, rs := range a.services {
		g.Go(func() error {
			if err := rs.svc.Run(gctx); err != nil {
				return fmt.Errorf("%s: %w", rs.name, err)
			}
			return nil
		})
	}
	httpSrv, adminSrv := a.cfg.HTTP.server(a.mux), a.cfg.HTTP.server(a.admin)
	serveErr := make(chan error, 3)
	go func() {
		if err := a.grpc.Serve(context.WithoutCancel(ctx), grpcLis); err != nil {
			serveErr <- fmt.Errorf("grpc server: %w", err)
		}
	}()
	if a.inproc != nil {
		// The same gRPC server, so the console's calls pass the same
		// authentication and interceptors as any client's.
		go func() {
			if err := a.grpc.Serve(context.WithoutCancel(ctx), a.inproc); err != nil {
				serveErr <- fmt.Errorf("in-process grpc server: %w", err)
			}
		}()
	}
	go func() {
		if err := httpSrv.Serve(httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr <- fmt.Errorf("http server: %w", err)
		}
	}()
	if adminLis != nil {
		go func() {
			if err := adminSrv.Serve(adminLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("admin http server: %w", err)
			}
		}()
	}
	var wg sync.WaitGroup
	wg.Go(func() { a.watchReadiness(gctx) })

	var runErr error
	select {
	case <-ctx.Done():
		a.logger.Info("shutting down")
	case <-gctx.Done():
		runErr = errors.New("a service stopped")
	case runErr = <-serveErr:
	}
	// Stop taking requests first, then let the services drain.
	a.grpc.Shutdown()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownGrace)
	defer cancel()
	if err := httpSrv.Shutdown(shutdownCtx); err != nil {
		a.logger.Warn("http shutdown", "err", err)
	}
	// Metrics stay up while the services drain; the admin server stops
	// last, at once.
	defer adminSrv.Close()
	cancelSvcs()
	if err := g.Wait(); err != nil {
		return err
	}
	wg.Wait()
	return runErr
}

// watchReadiness keeps gRPC health in step with the services' readiness.
func (a *App) watchReadiness(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	announced := false
	for {
		notReady := []string{}
		for _, rs := range a.services {
			r := rs.svc.Ready()
			if !r {
				notReady = append(notReady, rs.name)
			}
			for _, name := range rs.grpcSvcs {
				a.grpc.SetServing(name, r)
			}
		}
		a.notReady.Store(&notReady)
		if len(notReady) == 0 && !announced {
			a.logger.Info("lodestar ready", "http", a.cfg.HTTPListenAddr, "grpc", a.cfg.GRPCListenAddr)
			announced = true
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// healthz answers 200 only when every started service is ready.
func (a *App) healthz(w http.ResponseWriter, _ *http.Request) {
	var notReady []string
	if p := a.notReady.Load(); p != nil {
		notReady = *p
	} else {
		for _, rs := range a.services {
			notReady = append(notReady, rs.name)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if len(notReady) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, `{"status":"starting","not_ready":["%s"]}`+"\n", strings.Join(notReady, `","`))
		return
	}
	fmt.Fprintln(w, `{"status":"ok"}`)
}

func (a *App) natsDescription() string {
	if a.embedded != nil {
		return "embedded (" + filepath.Join(a.cfg.DataDir, "nats") + ")"
	}
	return a.cfg.NATSURL
}

// close releases what init acquired, in reverse: NATS drained (flushing
// acks), the embedded server stopped, telemetry flushed last.
func (a *App) close() error {
	var errs []error
	for _, l := range []net.Listener{a.grpcLis, a.httpLis, a.adminLis} {
		if l != nil {
			l.Close() // already closed once served
		}
	}
	if a.consoleConn != nil {
		a.consoleConn.Close()
	}
	if a.redis != nil {
		if err := a.redis.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close redis: %w", err))
		}
	}
	if a.nc != nil {
		if err := drain(a.nc, a.cfg.ShutdownGrace); err != nil {
			errs = append(errs, err)
		}
	}
	if a.embedded != nil {
		a.embedded.Shutdown()
	}
	if a.tel != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.tel.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("telemetry shutdown: %w", err))
		}
	}
	return errors.Join(errs...)
}

func drain(nc *nats.Conn, timeout time.Duration) error {
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return nil // already closed
	}
	select {
	case <-closed:
	case <-time.After(timeout):
		nc.Close()
		return errors.New("nats drain timed out")
	}
	return nil
}

// recordingRegistrar notes the gRPC services a target registers, so health
// can follow the target's readiness.
type recordingRegistrar struct {
	r     grpc.ServiceRegistrar
	names []string
}

func (r *recordingRegistrar) RegisterService(desc *grpc.ServiceDesc, impl any) {
	r.names = append(r.names, desc.ServiceName)
	r.r.RegisterService(desc, impl)
}
