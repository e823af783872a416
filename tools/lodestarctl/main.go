// Command lodestarctl reads Lodestar's health scores over gRPC.
//
//	lodestarctl [-addr 127.0.0.1:9090] [-api-key KEY] COMMAND [ARGS]
//
// Commands:
//
//	worst [-n 20] [-band red]   the worst accounts, each with why, and the band counts
//	score ACCOUNT               an account's score with its full explanation
//	history ACCOUNT [-n 20]     an account's score changes, newest first
//	accounts [-n 100]           the accounts and their CRM facts
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
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/lodestar-cs/lodestar/pkg/auth"
	"github.com/lodestar-cs/lodestar/pkg/config"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// clients are the services the commands call.
type clients struct {
	scoring  scoringv1.ScoringServiceClient
	accounts accountv1.AccountServiceClient
}

// command is one subcommand.
type command struct {
	name  string
	usage string
	run   func(ctx context.Context, c clients, args []string, out io.Writer) error
}

func commands() []command {
	return []command{
		{"worst", "worst [-n 20] [-band red|yellow|green]   the worst accounts, each with why, and the band counts", worst},
		{"score", "score ACCOUNT                           an account's score with its full explanation", score},
		{"history", "history ACCOUNT [-n 20]                 an account's score changes, newest first", history},
		{"accounts", "accounts [-n 100]                       the accounts and their CRM facts", accounts},
	}
}

// usageError is a command line that cannot work; it exits with code 2.
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// run runs lodestarctl and returns the exit code: 2 for a bad command
// line, 1 when the command failed.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lodestarctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9090", "Address of Lodestar's gRPC API.")
	apiKey := fs.String("api-key", "", "API key of the tenant (or LODESTAR_API_KEY).")
	timeout := fs.Duration("timeout", 10*time.Second, "Timeout of the command.")
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
	err := dispatch(ctx, fs.Args(), *addr, *apiKey, *timeout, stdout)
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

// dispatch runs the command args[0] with the rest of args.
func dispatch(ctx context.Context, args []string, addr, apiKey string, timeout time.Duration, stdout io.Writer) error {
	for _, c := range commands() {
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
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		cl := clients{scoring: scoringv1.NewScoringServiceClient(conn), accounts: accountv1.NewAccountServiceClient(conn)}
		return c.run(ctx, cl, args[1:], stdout)
	}
	return usagef("unknown command %q (want worst, score, history or accounts)", args[0])
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
