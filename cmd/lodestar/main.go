// Command lodestar runs Lodestar: every service in one process by default
// (-target=all), or the services named by -target (microservice mode runs
// one target per process).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/lodestar-cs/lodestar/app"
	"github.com/lodestar-cs/lodestar/pkg/config"
	"github.com/lodestar-cs/lodestar/pkg/telemetry"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "status" {
		os.Exit(status(os.Args[2:]))
	}
	os.Exit(run(os.Args[1:]))
}

// run parses flags (with their LODESTAR_* twins), runs until SIGINT or
// SIGTERM and returns the exit code.
func run(args []string) int {
	cfg := app.DefaultConfig()
	fs := flag.NewFlagSet("lodestar", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := config.Parse(fs, args, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "lodestar:", err)
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
	if err := app.Run(ctx, cfg, logger, os.Stdout); err != nil {
		logger.Error("lodestar stopped", "err", err)
		return 1
	}
	return 0
}
