package app

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/lodestar-cs/lodestar/pkg/cache"
	"github.com/lodestar-cs/lodestar/pkg/ownership"
	"github.com/lodestar-cs/lodestar/pkg/service"
	"github.com/lodestar-cs/lodestar/services/churnalert"
	"github.com/lodestar-cs/lodestar/services/console"
	"github.com/lodestar-cs/lodestar/services/ingest"
	"github.com/lodestar-cs/lodestar/services/ops"
	"github.com/lodestar-cs/lodestar/services/renewalforecast"
	"github.com/lodestar-cs/lodestar/services/scoring"
)

// TargetAll runs every service.
const TargetAll = "all"

// Names of the modules services depend on; they are no targets.
const (
	moduleServer = "server" // telemetry, tenants, the gRPC server and the HTTP mux
	moduleNATS   = "nats"   // the NATS connection, to an external or an embedded server
	moduleCache  = "cache"  // the hot score cache: Redis or in-process
	moduleOps    = "ops"    // lodestar.ops.v1.OpsService, in every process on NATS
)

// module is one part of the process, as Grafana Tempo's app/modules.go: a
// service (a target) or what services depend on. Modules are initialised
// after their dependencies; only those the targets need are.
type module struct {
	name string
	deps []string
	// target: a service, named by -target and run by -target=all.
	target bool
	// config is the module's part of Config; its flags are -<name>.*.
	config func(c *Config) moduleConfig
	// init builds the module; a service module returns its service, which
	// the runner registers and runs.
	init func(a *App, ctx context.Context) (runnable, error)
}

// moduleConfig is a module's configuration; one with a Validate() error
// method is validated when the module runs.
type moduleConfig interface {
	RegisterFlags(prefix string, fs *flag.FlagSet)
}

// modules is the module table. Adding a service is one entry here and its
// Config's field in Config (with its default in DefaultConfig).
var modules = []module{
	{name: moduleServer, init: (*App).initServer},
	{name: moduleNATS, init: (*App).initNATS,
		config: func(c *Config) moduleConfig { return &c.Limits }},
	{name: moduleCache, init: (*App).initCache,
		config: func(c *Config) moduleConfig { return &c.Cache }},
	{name: moduleOps, deps: []string{moduleServer, moduleNATS}, init: (*App).initOps},
	{name: ingest.Target, target: true, deps: []string{moduleServer, moduleNATS, moduleOps}, init: (*App).initIngest,
		config: func(c *Config) moduleConfig { return &c.Ingest }},
	{name: scoring.Target, target: true, deps: []string{moduleServer, moduleNATS, moduleCache, moduleOps}, init: (*App).initScoring,
		config: func(c *Config) moduleConfig { return &c.Scoring }},
	{name: churnalert.Target, target: true, deps: []string{moduleServer, moduleNATS, moduleOps}, init: (*App).initChurnAlert,
		config: func(c *Config) moduleConfig { return &c.ChurnAlert }},
	{name: renewalforecast.Target, target: true, deps: []string{moduleServer, moduleNATS, moduleOps}, init: (*App).initRenewalForecast,
		config: func(c *Config) moduleConfig { return &c.Forecast }},
	{name: console.Target, target: true, deps: []string{moduleServer}, init: (*App).initConsole,
		config: func(c *Config) moduleConfig { return &c.Console }},
}

// targets lists the names -target accepts besides "all", in table order.
func targets() []string {
	var out []string
	for _, m := range modules {
		if m.target {
			out = append(out, m.name)
		}
	}
	return out
}

func findModule(name string) (module, bool) {
	i := slices.IndexFunc(modules, func(m module) bool { return m.name == name })
	if i < 0 {
		return module{}, false
	}
	return modules[i], true
}

// initOrder lists the modules the given targets need, each after its
// dependencies, otherwise in table order.
func initOrder(targets []string) ([]module, error) {
	var order []module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string) error
	visit = func(name string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("module %q depends on itself", name)
		case 2:
			return nil
		}
		m, ok := findModule(name)
		if !ok {
			return fmt.Errorf("unknown module %q", name)
		}
		state[name] = 1
		for _, d := range m.deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, m)
		return nil
	}
	for _, t := range targets {
		if err := visit(t); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// initOps serves lodestar.ops.v1.OpsService: every process on the
// deployment's NATS answers which replica owns which partition, so the
// console's -console.api-addr may point at any of them.
func (a *App) initOps(context.Context) (runnable, error) {
	return ops.New(ops.Deps{JS: a.js, Lag: LagSources()}), nil
}

// LagSources computes the partition lag of the partitioned services whose
// owners do not report it in their leases (scoring does): `lodestar
// status` and OpsService read the same.
func LagSources() map[string]ownership.LagSource {
	return map[string]ownership.LagSource{churnalert.Target: churnalert.PartitionLag}
}

func (a *App) initIngest(context.Context) (runnable, error) {
	s, err := ingest.New(a.cfg.Ingest, ingest.Deps{
		JS:      a.js,
		Tenants: a.tenants,
		Limits:  a.cfg.Limits,
		Deps:    a.serviceDeps(ingest.Target),
	})
	if err != nil {
		return nil, err
	}
	a.mux.Handle("/v1/", s.Handler())
	return s, nil
}

func (a *App) initScoring(context.Context) (runnable, error) {
	return scoring.New(a.cfg.Scoring, scoring.Deps{
		JS:     a.js,
		Cache:  a.cache,
		Limits: a.cfg.Limits,
		Deps:   a.serviceDeps(scoring.Target),
	})
}

func (a *App) initChurnAlert(context.Context) (runnable, error) {
	if a.cfg.ChurnAlert.AccountURL == "" && a.servesConsole() {
		a.cfg.ChurnAlert.AccountURL = console.AccountURL(a.consoleURL())
	}
	return churnalert.New(a.cfg.ChurnAlert, churnalert.Deps{
		JS:       a.js,
		Limits:   a.cfg.Limits,
		Deps:     a.serviceDeps(churnalert.Target),
		Stopping: a.grpc.Stopping(),
	})
}

func (a *App) initRenewalForecast(context.Context) (runnable, error) {
	return renewalforecast.New(a.cfg.Forecast, renewalforecast.Deps{
		JS:     a.js,
		Limits: a.cfg.Limits,
		Deps:   a.serviceDeps(renewalforecast.Target),
	})
}

// initConsole serves the console at / of the HTTP server. It reaches the
// services through -console.api-addr, or this process's own gRPC server
// over an in-memory connection.
func (a *App) initConsole(context.Context) (runnable, error) {
	var err error
	if a.cfg.Console.APIAddr != "" {
		a.consoleConn, err = grpc.NewClient(a.cfg.Console.APIAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	} else {
		a.inproc = bufconn.Listen(1 << 20)
		a.consoleConn, err = grpc.NewClient("passthrough:///lodestar",
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return a.inproc.DialContext(ctx) }),
			grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if err != nil {
		return nil, fmt.Errorf("console api connection: %w", err)
	}
	s, err := console.New(a.cfg.Console, console.Deps{
		Conn:     a.consoleConn,
		Tenants:  a.tenants,
		Logger:   a.logger.With("service", console.Target),
		Stopping: a.grpc.Stopping(),
	})
	if err != nil {
		return nil, err
	}
	a.mux.Handle("/", s.Handler())
	return s, nil
}

// servesConsole reports whether this process serves the console.
func (a *App) servesConsole() bool {
	return slices.Contains(a.cfg.Targets, TargetAll) || slices.Contains(a.cfg.Targets, console.Target)
}

// consoleURL is where browsers reach the console: -console.public-url, or
// the address the HTTP server listens on (this host's name when it listens
// on every interface).
func (a *App) consoleURL() string {
	if a.cfg.Console.PublicURL != "" {
		return strings.TrimSuffix(a.cfg.Console.PublicURL, "/")
	}
	host, port, _ := net.SplitHostPort(a.httpLis.Addr().String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}

// serviceDeps is the telemetry of a service, its logs marked with its name.
func (a *App) serviceDeps(name string) service.Deps {
	return service.Deps{
		Logger:         a.logger.With("service", name),
		MeterProvider:  a.tel.MeterProvider(),
		TracerProvider: a.tel.TracerProvider(),
		Propagator:     a.tel.Propagator(),
	}
}

// initCache connects to Redis or Redis Cluster when one is given, else uses
// the in-process cache.
func (a *App) initCache(context.Context) (runnable, error) {
	if !a.cfg.Redis.Enabled() {
		a.cache = cache.NewMemory(a.cfg.Cache)
		return nil, nil
	}
	rc, err := a.cfg.Redis.NewClient()
	if err != nil {
		return nil, err
	}
	a.redis = rc
	a.cache = cache.NewRedis(a.redis, a.cfg.Cache)
	return nil, nil
}
