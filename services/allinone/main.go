package allinone

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/lodestar-cs/lodestar/pkg/config"
	"github.com/lodestar-cs/lodestar/pkg/telemetry"
)

// Main is the whole of a Lodestar binary: it parses flags (with their
// LODESTAR_* twins), runs until SIGINT or SIGTERM and returns the exit code.
// A per-service binary passes its target; the one binary passes "".
func Main(args []string, target string) int {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("lodestar", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if target != "" {
		cfg.Targets = config.StringList{target}
		fs.Lookup("target").DefValue = target
	}
	if err := config.Parse(fs, args, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "lodestar:", err)
		return 2
	}
	if target != "" && (len(cfg.Targets) != 1 || cfg.Targets[0] != target) {
		fmt.Fprintf(os.Stderr, "lodestar: this binary runs only -target=%s\n", target)
		return 2
	}
	level, err := telemetry.ParseLevel(cfg.LogLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lodestar:", err)
		return 2
	}
	logger := telemetry.NewLogger(os.Stderr, level, cfg.LogFormat)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, cfg, logger, os.Stdout); err != nil {
		logger.Error("lodestar stopped", "err", err)
		return 1
	}
	return 0
}
