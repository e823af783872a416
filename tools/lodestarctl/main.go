// Command lodestarctl is Lodestar's command line: health scores, alerts,
// renewals and forecasts, scorecards and alert rules, over gRPC.
//
//	lodestarctl [-addr 127.0.0.1:9090] [-api-key KEY] [-json] [-tz ZONE] COMMAND [ARGS]
//
// Commands:
//
//	worst [-n 20] [-band red]        the worst accounts, each with why, and the band counts
//	score ACCOUNT                    an account's score with its full explanation
//	history ACCOUNT [-n 20]          an account's score changes, newest first
//	accounts [-n 100]                the accounts and their CRM facts
//	alerts list|get|ack|snooze|resolve|watch   the churn alerts, and acting on them
//	renewals [-days 90] [-at-risk]   upcoming renewals with their probabilities
//	forecast [-unit quarter]         GRR, NRR and logo retention forecast, with ranges
//	scorecard get|validate|apply|backtest      the tenant's scorecard (YAML)
//	rules list|get|evaluate          the tenant's alert rules, and their backtest
//
// Tables are for people: money, percentages and dates as the console shows
// them (package humanize), dates in -tz. -json (anywhere on the line) prints
// the API's responses in the proto3 JSON mapping instead, for scripts. A
// failed call prints its gRPC code and message and exits 1; a bad command
// line exits 2.
//
// The API key may come from LODESTAR_API_KEY and the address from
// LODESTAR_ADDR, as every flag has a LODESTAR_* environment twin.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/lodestar-cs/lodestar/pkg/auth"
	"github.com/lodestar-cs/lodestar/pkg/config"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	forecastv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/forecast/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, time.Now)
	stop()
	os.Exit(code)
}

// clients are the services the commands call.
type clients struct {
	scoring  scoringv1.ScoringServiceClient
	accounts accountv1.AccountServiceClient
	alerts   alertv1.AlertServiceClient
	forecast forecastv1.ForecastServiceClient
}

// env is what a command works with.
type env struct {
	clients
	out io.Writer
	// json asks for the API's responses in protojson instead of tables.
	json bool
	// loc is the zone dates are shown in.
	loc *time.Location
	now func() time.Time
}

// command is one subcommand.
type command struct {
	name  string
	usage string
	run   func(ctx context.Context, e *env, args []string) error
}

func commands() []command {
	return []command{
		{"worst", "worst [-n 20] [-band red|yellow|green]   the worst accounts, each with why, and the band counts", worst},
		{"score", "score ACCOUNT                           an account's score with its full explanation", score},
		{"history", "history ACCOUNT [-n 20]                 an account's score changes, newest first", history},
		{"activity", "activity ACCOUNT [-days 30]             an account's core events per day and its key events", activity},
		{"accounts", "accounts [-n 100]                       the accounts and their CRM facts", accounts},
		{"alerts", "alerts list [-state open,acknowledged,snoozed,resolved] [-severity high] [-owner CSM] [-account ID] [-n 50]\n" +
			"  alerts get ALERT | ack ALERT [-note N] | resolve ALERT [-note N]\n" +
			"  alerts snooze ALERT -until 2026-12-24|72h -reason R\n" +
			"  alerts watch [-owner CSM] [-severity high] [-cursor C]   alert events as they happen, until Ctrl-C", alertsCmd},
		{"renewals", "renewals [-days 90] [-at-risk] [-band red] [-owner CSM] [-order risk|arr|date] [-n 50]   upcoming renewals with probabilities", renewals},
		{"forecast", "forecast [-unit month|quarter|year] [-by band|tier|owner|segment] [-account ID]   GRR, NRR and logo retention with p10-p90 ranges", forecast},
		{"scorecard", "scorecard get [-version N] | validate FILE | apply FILE | backtest [FILE] [-horizon 90]   the scorecard, as YAML", scorecardCmd},
		{"rules", "rules list | get RULE | evaluate [FILE] [-lead-days 90]   the alert rules; evaluate backtests them (or a candidate set, as rules list -json prints) on recorded renewals", rulesCmd},
	}
}

// usageError is a command line that cannot work; it exits with code 2.
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// run runs lodestarctl and returns the exit code: 2 for a bad command
// line, 1 when the command failed. Relative times ("in 76 days") count
// from now().
func run(ctx context.Context, args []string, stdout, stderr io.Writer, now func() time.Time) int {
	fs := flag.NewFlagSet("lodestarctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9090", "Address of Lodestar's gRPC API.")
	apiKey := fs.String("api-key", "", "API key of the tenant (or LODESTAR_API_KEY).")
	timeout := fs.Duration("timeout", 10*time.Second, "Timeout of the command (alerts watch runs until interrupted).")
	asJSON := fs.Bool("json", false, "Print the API's responses as JSON (proto3 JSON mapping) instead of tables; also accepted after the command.")
	tz := fs.String("tz", "Local", "IANA time zone dates are shown in, for example Europe/Berlin.")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: lodestarctl [flags] COMMAND [ARGS]\n\nCommands:")
		for _, c := range commands() {
			fmt.Fprintln(stderr, "  "+c.usage)
		}
		fmt.Fprintln(stderr, "\nFlags:")
		fs.PrintDefaults()
	}
	if err := config.Parse(fs, args, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "lodestarctl:", err)
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	loc, err := time.LoadLocation(*tz)
	if err != nil {
		fmt.Fprintf(stderr, "lodestarctl: -tz %q: %v\n", *tz, err)
		return 2
	}
	cmdArgs, jsonAfter := takeJSONFlag(fs.Args())
	e := &env{out: stdout, json: *asJSON || jsonAfter, loc: loc, now: now}
	err = dispatch(ctx, e, cmdArgs, *addr, *apiKey, *timeout)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		fs.Usage()
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintln(stderr, "lodestarctl:", err)
		return 2
	}
	fmt.Fprintln(stderr, "lodestarctl:", err)
	return 1
}

// takeJSONFlag removes -json (or --json) from a command's arguments, so
// that it works after the command as before it.
func takeJSONFlag(args []string) ([]string, bool) {
	var rest []string
	on := false
	for _, a := range args {
		switch a {
		case "-json", "--json", "-json=true", "--json=true":
			on = true
		case "-json=false", "--json=false":
		default:
			rest = append(rest, a)
		}
	}
	return rest, on
}

// dispatch runs the command args[0] with the rest of args.
func dispatch(ctx context.Context, e *env, args []string, addr, apiKey string, timeout time.Duration) error {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
		if c.name != args[0] {
			continue
		}
		if apiKey == "" {
			return usagef("no API key: give -api-key or set LODESTAR_API_KEY")
		}
		conn, err := grpc.NewClient(addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(auth.BearerCredentials{Key: apiKey, Insecure: true}))
		if err != nil {
			return fmt.Errorf("connect to %s: %w", addr, err)
		}
		defer conn.Close()
		// A watch runs until interrupted; everything else has the timeout.
		if !(c.name == "alerts" && len(args) > 1 && args[1] == "watch") {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		e.clients = clients{
			scoring:  scoringv1.NewScoringServiceClient(conn),
			accounts: accountv1.NewAccountServiceClient(conn),
			alerts:   alertv1.NewAlertServiceClient(conn),
			forecast: forecastv1.NewForecastServiceClient(conn),
		}
		return c.run(ctx, e, args[1:])
	}
	return usagef("unknown command %q (want %s)", args[0], strings.Join(names, ", "))
}

// subcommand runs the subcommand args[0] of group from subs.
func subcommand(ctx context.Context, e *env, group string, args []string, subs map[string]func(context.Context, *env, []string) error) error {
	names := make([]string, 0, len(subs))
	for name := range subs {
		names = append(names, name)
	}
	slices.Sort(names)
	if len(args) == 0 {
		return usagef("%s: want a subcommand: %s", group, strings.Join(names, ", "))
	}
	sub, ok := subs[args[0]]
	if !ok {
		return usagef("%s: unknown subcommand %q (want %s)", group, args[0], strings.Join(names, ", "))
	}
	return sub(ctx, e, args[1:])
}

// parseArgs parses a command's flags, which may come before or after its
// positional arguments (history ACCOUNT -n 5), and checks their number.
func parseArgs(fs *flag.FlagSet, args []string, positional ...string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{fmt.Errorf("%s: %w", fs.Name(), err)}
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != len(positional) {
		want := "no arguments"
		if len(positional) > 0 {
			want = strings.Join(positional, " ")
		}
		return nil, usagef("%s: want %s, got %d arguments", fs.Name(), want, len(pos))
	}
	return pos, nil
}
