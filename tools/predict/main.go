// Command predict is Lodestar's predictive benchmark: how well health scores
// rank the accounts that leave, on a real purchase log and on the loadgen
// simulation, beside single signals computed in the same run. It writes the
// report docs/predict.md and its JSON twin.
//
//   - retail: the UCI Online Retail invoices (see ../shared/data/README.md),
//     each customer an account and each invoice a Segment track event, sent
//     through the Segment HTTP API in event time into a Lodestar it starts.
//     At 2011-06-09 it reads every account's score and measures, and fits a
//     learned scorecard (a logistic regression on the measures' sub-scores)
//     to who then left; at 2011-09-09 it reads the scores again and reports
//     the ROC AUC against who left in the 91 days after, of the default
//     scorecard (no configuration), the learned one and the single-signal
//     baselines (days since the last invoice, number of invoices). Then it
//     records each customer's renewal at the split's end through the
//     AccountService (CHURNED when it placed no invoice in the 91 days
//     after, RENEWED otherwise; an owner CSM by a hash of its id) and
//     measures the shipped and the previous alert rule sets with
//     AlertService.EvaluateRules (90-day lead window) beside the score's
//     red band: precision, recall, lift, median lead time, alerts per CSM
//     per week.
//   - sim: the loadgen simulation's accounts, whose fates are known, replayed
//     the same way into a fresh Lodestar: the AUC of the default score
//     against the fates (declining, silent and churning against healthy and
//     expanding) beside the same single signals.
//
// It builds the lodestar binary (-lodestar-pkg) unless given one
// (-lodestar-bin) and runs it as a child process with -target=all, a fresh
// temporary data dir, free loopback ports and demo keys from a random seed;
// it stops that child, by its pid, at the end or on failure. Scores are read
// over gRPC (ScoringService.BatchGetHealthScores). It changes no scorecard.
//
// Usage, from the repository root:
//
//	go run ./tools/predict -out docs/predict.md -json docs/predict.json
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Data sets the tool can run.
const (
	setRetail = "retail"
	setSim    = "sim"
)

type options struct {
	dataPath    string
	lodestarPkg string
	lodestarBin string
	out, json   string
	history     string
	sets        string
	lambda      float64
	concurrency int
	catchUp     time.Duration

	simSeed      uint64
	simTrainSeed uint64
	simAccounts  int
	simDays      int
	simNow       string
	simCRM       bool
}

func (o *options) registerFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.dataPath, "data", "../shared/data/online-retail-invoices.csv", "The Online Retail invoices CSV.")
	fs.StringVar(&o.lodestarPkg, "lodestar-pkg", "./cmd/lodestar", "Package of the lodestar binary to build and run.")
	fs.StringVar(&o.lodestarBin, "lodestar-bin", "", "A lodestar binary to run instead of building -lodestar-pkg.")
	fs.StringVar(&o.out, "out", "docs/predict.md", "The Markdown report.")
	fs.StringVar(&o.json, "json", "docs/predict.json", "The JSON report.")
	fs.StringVar(&o.history, "history", "", "If set, the file to write the real data set's current scores at each split and a sample of recorded score histories to, sorted, to compare runs.")
	fs.StringVar(&o.sets, "sets", setRetail+","+setSim, "Comma list of the data sets to run: retail, sim.")
	fs.Float64Var(&o.lambda, "lambda", 0.01, "L2 penalty of the learned scorecard's fit, on standardised sub-scores.")
	fs.IntVar(&o.concurrency, "concurrency", 4, "Segment batch requests in flight.")
	fs.DurationVar(&o.catchUp, "catch-up-timeout", 3*time.Minute, "Longest wait at a split for scoring to catch up.")
	fs.Uint64Var(&o.simSeed, "sim.seed", 1, "Seed of the simulated world scored.")
	fs.Uint64Var(&o.simTrainSeed, "sim.train-seed", 2, "Seed of the simulated world the learned scorecard is fitted to.")
	fs.IntVar(&o.simAccounts, "sim.accounts", 600, "Simulated accounts.")
	fs.IntVar(&o.simDays, "sim.days", 45, "Days of simulated history replayed, up to -sim.now.")
	fs.StringVar(&o.simNow, "sim.now", "2025-11-01T00:00:00Z", "The simulation's present, against which the fates are told (RFC 3339, in the past): fixed, so that runs compare.")
	fs.BoolVar(&o.simCRM, "sim.crm", true, "Upsert the simulated accounts' CRM facts (seats, stage, renewal) first, as the demo does.")
}

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	var o options
	fs := flag.NewFlagSet("predict", flag.ContinueOnError)
	o.registerFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := o.run(ctx, args); err != nil {
		fmt.Fprintln(os.Stderr, "predict:", err)
		return 1
	}
	return 0
}

func (o *options) run(ctx context.Context, args []string) error {
	start := time.Now()
	sets := strings.Split(o.sets, ",")
	for _, s := range sets {
		if s != setRetail && s != setSim {
			return fmt.Errorf("-sets: unknown data set %q (want retail, sim)", s)
		}
	}
	simNow, err := time.Parse(time.RFC3339, o.simNow)
	if err != nil {
		return fmt.Errorf("-sim.now: %w", err)
	}
	if !simNow.Before(start) {
		return fmt.Errorf("-sim.now %s: want a time in the past", o.simNow)
	}
	tmp, err := os.MkdirTemp("", "lodestar-predict-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	bin := o.lodestarBin
	if bin == "" {
		logf("building %s", o.lodestarPkg)
		if bin, err = buildLodestar(ctx, o.lodestarPkg, tmp); err != nil {
			return err
		}
	}
	rep := &report{
		Command:  "go run ./tools/predict " + strings.Join(args, " "),
		Date:     start.UTC().Format(time.RFC3339),
		Lodestar: o.lodestarPkg,
		Revision: revision(ctx),
	}
	if o.lodestarBin != "" {
		rep.Lodestar = o.lodestarBin
	}
	if slices.Contains(sets, setRetail) {
		splits, err := o.runRetail(ctx, bin, filepath.Join(tmp, setRetail))
		if err != nil {
			return fmt.Errorf("retail: %w", err)
		}
		rep.DataSets = append(rep.DataSets, splits...)
	}
	if slices.Contains(sets, setSim) {
		set, err := o.runSim(ctx, bin, filepath.Join(tmp, setSim), simNow)
		if err != nil {
			return fmt.Errorf("sim: %w", err)
		}
		rep.DataSets = append(rep.DataSets, set)
	}
	rep.RunSeconds = time.Since(start).Seconds()
	return rep.write(o.out, o.json)
}

// withLodestar starts a fresh lodestar in dir, runs fn with it and stops it.
func withLodestar(ctx context.Context, bin, dir string, fn func(*lodestar, *scoreReader) error) (err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	l, err := startLodestar(ctx, bin, dir, time.Minute)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, l.stop()) }()
	r, err := newScoreReader(l.grpcAddr, l.keys.APIKey)
	if err != nil {
		return err
	}
	defer r.Close()
	return fn(l, r)
}

// revision is the repository's commit, "+dirty" when the tree has changes;
// empty outside a git checkout.
func revision(ctx context.Context) string {
	head, err := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	rev := strings.TrimSpace(string(head))
	if status, err := exec.CommandContext(ctx, "git", "status", "--porcelain").Output(); err == nil && len(status) > 0 {
		rev += "+dirty"
	}
	return rev
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s predict: %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
}
