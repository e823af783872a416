// Command chaos runs Lodestar's scale-out under failures and measures it
// (make chaos; not part of make test). On an embedded 3-node NATS cluster
// (in this process, loopback only) it runs three scoring and two
// churn-alert processes (bin/lodestar, child processes) while a tenant's
// events for 5,000 accounts stream in, day by day; it SIGKILLs one scoring
// and one churn-alert process mid-stream, pauses (SIGSTOP) another scoring
// process past its lease TTL and lets it resume, and starts a fourth
// scoring process later. At the end it checks that every account's score
// equals a single-process run over the same events (on its own NATS
// server), that no alert was lost or repeated, and that no SCORES message
// of a partition's former owner follows one of its new owner. Then it
// measures failover (SIGKILL to the new owner's first score, over -kills
// kills while live events arrive) and replay throughput with 1, 2 and 3
// scoring processes.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

type options struct {
	lodestar    string
	accounts    int
	days        int
	dayInterval time.Duration
	leaseTTL    time.Duration
	replayTTL   time.Duration
	kills       int
	redis       string
	workDir     string
	skip        string
}

func main() {
	var o options
	flag.StringVar(&o.lodestar, "lodestar", "bin/lodestar", "The lodestar binary to run as child processes.")
	flag.IntVar(&o.accounts, "accounts", 5000, "Accounts of the tenant.")
	flag.IntVar(&o.days, "days", 30, "Days of history streamed, one message per partition a day.")
	flag.DurationVar(&o.dayInterval, "day-interval", 1500*time.Millisecond, "Time between two days' events in the chaos run.")
	flag.DurationVar(&o.leaseTTL, "lease-ttl", 4*time.Second, "-nats.lease-ttl of the child processes (the deployment default).")
	flag.DurationVar(&o.replayTTL, "replay-lease-ttl", 8*time.Second, "-nats.lease-ttl in the throughput phase: a replay from scratch saturates this machine, and leases renewed late move partitions, whose replay then starts over.")
	flag.IntVar(&o.kills, "kills", 10, "SIGKILLs measured for the failover time.")
	flag.StringVar(&o.redis, "redis", "127.0.0.1:6379", "Redis address.")
	flag.StringVar(&o.workDir, "dir", "", "Working directory (NATS stores, logs); a temporary one when empty.")
	flag.StringVar(&o.skip, "skip", "", "Comma list of phases to skip: failover, throughput.")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, o, logger); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
}
