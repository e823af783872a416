// Command loadgen plays the customers of a synthetic B2B SaaS product (see
// package sim) against Lodestar: usage events in Segment's protocol, as
// HTTP batches (POST /v1/batch) or gRPC IngestService.Batch calls, and the
// accounts' CRM facts with AccountService.UpsertAccounts.
//
// A run has up to two phases. The backfill (-backfill D) plays the last D
// days of history as fast as -concurrency allows: timestamps in the past and
// sentAt the send time, so that Segment's clock-skew correction keeps the
// event times. The live phase then sends at -rate: a fixed number of events
// per second, scheduled open loop (latency counts from each batch's intended
// send time, so a slow server cannot hide its queueing), "max" (as fast as
// -concurrency allows) or "natural" (when the simulated events happen). At
// the natural pace, -live.speed plays the simulation faster than the wall
// clock and -live.busy skips its quiet hours (nights, weekends): the demo
// scenario plays the busy hours at 60x, so that it looks alive whenever it
// starts. Live events are stamped with the time they are sent; the backfill
// always keeps the simulated times and pace.
// -duration and -events bound the run; progress goes to stderr.
//
//	loadgen -scenario demo -write-key wk_demo_x -api-key ak_demo_x
//	loadgen -keys-file keys.txt -accounts 10000 -rate 20000 -duration 5m
//
// The same -seed gives the same accounts and, for the same start time, the
// same events. Every flag has a LODESTAR_* environment twin (-api-key:
// LODESTAR_API_KEY).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/lodestar-cs/lodestar/pkg/auth"
	"github.com/lodestar-cs/lodestar/pkg/config"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	ingestv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/ingest/v1"
	"github.com/lodestar-cs/lodestar/tools/loadgen/sim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

// options are the command line.
type options struct {
	scenario    string
	seed        uint64
	accounts    int
	mix         sim.Mix
	writeKey    string
	apiKey      string
	keysFile    string
	transport   string
	httpURL     string
	grpcAddr    string
	gzip        bool
	batchSize   int
	batchWait   time.Duration
	batchBytes  int
	concurrency int
	rate        pace
	liveSpeed   float64
	liveBusy    bool
	backfill    int
	duration    time.Duration
	events      int64
	crm         bool
	retries     int
	timeout     time.Duration
	progress    time.Duration
}

func (c *options) registerFlags(fs *flag.FlagSet) {
	c.mix = sim.DefaultMix()
	c.rate = pace{kind: paceFixed, perSecond: 1000}
	fs.StringVar(&c.scenario, "scenario", "", `A preset of other flags, which flags given explicitly override: "demo" is 300 accounts, 45 days of backfill, then the natural pace's busy hours at 60x for up to 24h.`)
	fs.Uint64Var(&c.seed, "seed", 1, "Seed of the simulation: the same seed gives the same accounts and events.")
	fs.IntVar(&c.accounts, "accounts", 1000, "Customer accounts per tenant.")
	fs.Var(&c.mix, "mix", "Share of accounts of each fate, as fate=weight pairs.")
	fs.StringVar(&c.writeKey, "write-key", "", "Segment write key of the one tenant (HTTP transport).")
	fs.StringVar(&c.apiKey, "api-key", "", "API key of the one tenant (gRPC transport and CRM data).")
	fs.StringVar(&c.keysFile, "keys-file", "", `File of tenants, one a line: "WRITE_KEY API_KEY", "-" for a key a tenant does not have; instead of -write-key and -api-key.`)
	fs.StringVar(&c.transport, "transport", "http", "How events are sent: http (Segment batches) or grpc (IngestService.Batch).")
	fs.StringVar(&c.httpURL, "http.url", "http://127.0.0.1:8080", "Base URL of the Segment HTTP API.")
	fs.StringVar(&c.grpcAddr, "grpc.addr", "127.0.0.1:9090", "Address of the gRPC API.")
	fs.BoolVar(&c.gzip, "gzip", false, "Compress HTTP batches with gzip.")
	fs.IntVar(&c.batchSize, "batch.size", 100, "Events per batch, at most.")
	fs.DurationVar(&c.batchWait, "batch.wait", 200*time.Millisecond, "Longest a paced event waits for its batch to fill.")
	fs.IntVar(&c.batchBytes, "batch.max-bytes", 500_000, "Largest request body (uncompressed JSON, or protobuf); a batch over it is split. Segment's limit is 500 KB.")
	fs.IntVar(&c.concurrency, "concurrency", 8, "Requests in flight, at most.")
	fs.Var(&c.rate, "rate", "Pace of the live phase: events per second (open loop), max, or natural (when the simulated events happen).")
	fs.Float64Var(&c.liveSpeed, "live.speed", 1, "At the natural pace: simulated seconds played per wall-clock second in the live phase (1 to 3600); events are stamped with the time they are sent.")
	fs.BoolVar(&c.liveBusy, "live.busy", false, "At the natural pace: skip the simulation's quiet hours (nights, weekends: hours with fewer events than an average hour of the week before) in the live phase, so that it looks alive at any hour.")
	fs.IntVar(&c.backfill, "backfill", 0, "Days of history to play first, as fast as -concurrency allows.")
	fs.DurationVar(&c.duration, "duration", time.Minute, "Stop after this long, backfill included; 0 for no limit (then -events is required).")
	fs.Int64Var(&c.events, "events", 0, "Stop after this many events, backfill included; 0 for no limit.")
	fs.BoolVar(&c.crm, "crm", true, "Upsert the accounts' CRM facts over gRPC first (needs the API key).")
	fs.IntVar(&c.retries, "retries", 5, "Retries of a request answered 429 or 5xx (after Retry-After), or not answered.")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "Timeout of one request.")
	fs.DurationVar(&c.progress, "progress", 5*time.Second, "Interval of the progress lines.")
}

// scenarioFlags returns the flag values of a scenario.
func scenarioFlags(name string) (map[string]string, error) {
	switch name {
	case "":
		return nil, nil
	case "demo":
		// Every fate on a few hundred accounts and enough history for the
		// trend measures: a newcomer sees scores spread across the bands
		// within a minute, then a gentle live stream keeps them moving.
		// The live phase runs the simulation's clock through its busy hours
		// at 60x (an hour of the working day a minute), so that it looks
		// alive at any hour of the week.
		return map[string]string{"accounts": "300", "backfill": "45", "rate": "natural", "live.busy": "true", "live.speed": "60", "duration": "24h"}, nil
	}
	return nil, fmt.Errorf("-scenario %q: want demo", name)
}

// parse reads the command line (and the LODESTAR_* environment), then the
// scenario's presets for the flags given neither way.
func (c *options) parse(fs *flag.FlagSet, args []string) error {
	c.registerFlags(fs)
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	preset, err := scenarioFlags(c.scenario)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, v := range preset {
		if !set[name] {
			if err := fs.Set(name, v); err != nil {
				return fmt.Errorf("scenario %s: -%s=%s: %w", c.scenario, name, v, err)
			}
		}
	}
	return c.validate()
}

func (c *options) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.accounts >= 1, "-accounts %d: want at least 1", c.accounts)
	check(c.transport == "http" || c.transport == "grpc", "-transport %q: want http or grpc", c.transport)
	check(c.batchSize >= 1, "-batch.size %d: want at least 1", c.batchSize)
	check(c.batchWait > 0, "-batch.wait must be positive")
	check(c.batchBytes >= 1<<10, "-batch.max-bytes %d: want at least 1024", c.batchBytes)
	check(c.concurrency >= 1, "-concurrency %d: want at least 1", c.concurrency)
	check(c.liveSpeed >= 1 && c.liveSpeed <= 3600, "-live.speed %g: want 1 to 3600", c.liveSpeed)
	check(c.rate.kind == paceNatural || (c.liveSpeed == 1 && !c.liveBusy), "-live.speed and -live.busy need -rate natural")
	check(c.backfill >= 0, "-backfill %d: want 0 or more days", c.backfill)
	check(c.duration >= 0 && c.events >= 0, "-duration and -events must not be negative")
	check(c.duration > 0 || c.events > 0, "-duration 0 needs -events: the run must end")
	check(c.retries >= 0, "-retries %d: want 0 or more", c.retries)
	check(c.timeout > 0 && c.progress > 0, "-timeout and -progress must be positive")
	check(c.keysFile == "" || c.writeKey+c.apiKey == "", "-keys-file excludes -write-key and -api-key")
	return errors.Join(errs...)
}

// tenant is one tenant of the run, with its own product.
type tenant struct {
	name     string
	writeKey string
	apiKey   string
	creds    grpc.CallOption
	product  *sim.Product
}

// keys returns the tenants' [write key, API key] pairs.
func (c *options) keys() ([][2]string, error) {
	if c.keysFile == "" {
		if c.writeKey+c.apiKey == "" {
			return nil, errors.New("no keys: give -write-key (HTTP) and -api-key (gRPC, CRM data), or -keys-file")
		}
		return [][2]string{{c.writeKey, c.apiKey}}, nil
	}
	f, err := os.Open(c.keysFile)
	if err != nil {
		return nil, fmt.Errorf("keys file: %w", err)
	}
	defer f.Close()
	var out [][2]string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 {
			return nil, fmt.Errorf("%s:%d: want WRITE_KEY API_KEY", c.keysFile, n)
		}
		for i, k := range fields {
			if k == "-" {
				fields[i] = ""
			}
		}
		out = append(out, [2]string{fields[0], fields[1]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("keys file: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no tenants", c.keysFile)
	}
	return out, nil
}

// tenants builds the tenants, each with a product of its own seed.
func (c *options) tenants(now time.Time) ([]*tenant, error) {
	keys, err := c.keys()
	if err != nil {
		return nil, err
	}
	out := make([]*tenant, len(keys))
	for i, k := range keys {
		t := &tenant{name: fmt.Sprintf("tenant %d", i+1), writeKey: k[0], apiKey: k[1]}
		switch {
		case c.transport == "http" && t.writeKey == "":
			return nil, fmt.Errorf("%s: the http transport needs a write key", t.name)
		case c.transport == "grpc" && t.apiKey == "":
			return nil, fmt.Errorf("%s: the grpc transport needs an API key", t.name)
		}
		t.creds = grpc.PerRPCCredentials(auth.BearerCredentials{Key: t.apiKey, Insecure: true})
		if t.product, err = sim.New(sim.Config{Seed: c.seed + uint64(i), Accounts: c.accounts, Now: now, Mix: c.mix}); err != nil {
			return nil, err
		}
		out[i] = t
	}
	return out, nil
}

// run runs loadgen and returns the exit code: 2 for a bad command line, 1
// when the run failed.
func run(ctx context.Context, args []string, stderr io.Writer) int {
	log := &syncWriter{w: stderr}
	var cfg options
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(log)
	if err := cfg.parse(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(log, "loadgen:", err)
		return 2
	}
	start := time.Now()
	tenants, err := cfg.tenants(start)
	if err != nil {
		fmt.Fprintln(log, "loadgen:", err)
		return 2
	}
	if err := generate(ctx, &cfg, tenants, start, log); err != nil {
		fmt.Fprintln(log, "loadgen:", err)
		return 1
	}
	return 0
}

// generate does the run: CRM data, backfill, live phase.
func generate(ctx context.Context, cfg *options, tenants []*tenant, start time.Time, log io.Writer) error {
	if cfg.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, start.Add(cfg.duration))
		defer cancel()
	}
	ctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)

	var conn *grpc.ClientConn
	withAPIKey := slices.ContainsFunc(tenants, func(t *tenant) bool { return t.apiKey != "" })
	if cfg.transport == "grpc" || (cfg.crm && withAPIKey) {
		var err error
		if conn, err = grpc.NewClient(cfg.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
			return fmt.Errorf("grpc client: %w", err)
		}
		defer conn.Close()
	}
	var trans transport
	switch cfg.transport {
	case "http":
		ht := http.DefaultTransport.(*http.Transport).Clone()
		ht.MaxIdleConnsPerHost = cfg.concurrency
		trans = &httpTransport{client: &http.Client{Transport: ht}, url: strings.TrimSuffix(cfg.httpURL, "/") + "/v1/batch", gzip: cfg.gzip, maxBytes: cfg.batchBytes}
	case "grpc":
		trans = &grpcTransport{client: ingestv1.NewIngestServiceClient(conn), maxBytes: cfg.batchBytes}
	}
	describe(log, cfg, tenants)

	for _, t := range tenants {
		switch {
		case !cfg.crm:
		case t.apiKey == "":
			fmt.Fprintf(log, "loadgen: %s has no API key: its CRM facts (seats, ARR, renewal) are not sent\n", t.name)
		default:
			if err := pushAccounts(ctx, accountv1.NewAccountServiceClient(conn), t, cfg.retries, cfg.timeout); err != nil {
				return fmt.Errorf("CRM data: %w", err)
			}
			fmt.Fprintf(log, "loadgen: %s: %d accounts upserted\n", t.name, cfg.accounts)
		}
	}

	d := newDriver(cfg, tenants, trans, log, fail)
	d.start(ctx)
	progressDone := make(chan struct{})
	var progress sync.WaitGroup
	progress.Go(func() {
		tick := time.NewTicker(cfg.progress)
		defer tick.Stop()
		for {
			select {
			case <-progressDone:
				return
			case now := <-tick.C:
				d.stats.progress(log, now)
			}
		}
	})
	phases := []phase{
		{name: "backfill", from: start.AddDate(0, 0, -cfg.backfill), to: start, pace: pace{kind: paceMax}},
		{name: "live", pace: cfg.rate, live: true},
	}
	if cfg.backfill == 0 {
		phases = phases[1:]
	}
	var err error
	for _, ph := range phases {
		if ph.live {
			ph.from = time.Now() // the history up to here is played
		}
		err = d.play(ctx, ph)
		d.inflight.Wait()
		d.stats.summary(log, time.Now())
		if err != nil {
			break
		}
	}
	close(progressDone)
	progress.Wait()
	d.stop()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) && !errors.Is(cause, context.DeadlineExceeded) {
		return cause
	}
	if err != nil && !errors.Is(err, errLimit) && ctx.Err() == nil {
		return err
	}
	return nil
}

// describe says what the run will do.
func describe(w io.Writer, cfg *options, tenants []*tenant) {
	fates := map[sim.Fate]int{}
	for _, a := range tenants[0].product.Accounts() {
		fates[a.Fate]++
	}
	var mix []string
	for _, f := range sim.Fates() {
		mix = append(mix, fmt.Sprintf("%d %s", fates[f], f))
	}
	target := cfg.httpURL
	if cfg.transport == "grpc" {
		target = cfg.grpcAddr
	}
	rate := cfg.rate.String()
	switch {
	case cfg.rate.kind != paceNatural:
	case cfg.liveBusy:
		rate += fmt.Sprintf(" (the simulation's busy hours at %gx)", cfg.liveSpeed)
	case cfg.liveSpeed != 1:
		rate += fmt.Sprintf(" (at %gx)", cfg.liveSpeed)
	}
	fmt.Fprintf(w, "loadgen: %d tenant(s) of %d accounts (%s), seed %d; %d days of backfill, then live at rate %s; %s to %s\n",
		len(tenants), cfg.accounts, strings.Join(mix, ", "), cfg.seed, cfg.backfill, rate, cfg.transport, target)
}

// syncWriter serialises the writes of the workers and the progress
// reporter.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
