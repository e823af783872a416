package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/lodestar-cs/lodestar/app"
	"github.com/lodestar-cs/lodestar/pkg/config"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	"github.com/lodestar-cs/lodestar/pkg/ownership"
)

// status prints which replica owns which partition, with its lease and lag
// (lodestar status).
func status(args []string) int {
	fs := flag.NewFlagSet("lodestar status", flag.ContinueOnError)
	url := fs.String("nats.url", nats.DefaultURL, "NATS server URL(s) of the deployment.")
	if err := config.Parse(fs, args, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "lodestar status:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := nats.Connect(*url, nats.Name("lodestar-status"))
	if err == nil {
		defer nc.Close()
		err = printStatus(ctx, nc)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lodestar status:", err)
		return 1
	}
	return 0
}

// printStatus prints what lodestar.ops.v1.OpsService's GetOwnership
// answers, read the same way (app.LagSources).
func printStatus(ctx context.Context, nc *nats.Conn) error {
	js, err := natsx.NewJetStream(nc)
	if err != nil {
		return err
	}
	st, err := ownership.ReadStatus(ctx, js, app.LagSources())
	if err != nil {
		return err
	}
	return ownership.WriteStatus(os.Stdout, st)
}
