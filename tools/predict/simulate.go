package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	"github.com/lodestar-cs/lodestar/tools/loadgen/sim"
)

var simNames = baselineNames{days: "days since the last event", events: "number of events (fewer riskier)"}

// badFate reports the fates ranked first: accounts leaving or gone quiet.
func badFate(f sim.Fate) bool { return f == sim.Declining || f == sim.Silent || f == sim.Churning }

// simWorld is one simulated world replayed into a fresh Lodestar and scored.
type simWorld struct {
	product *sim.Product
	// accts are the accounts ranked (not onboarding), onboarding the others.
	accts, onboarding []account
	caught            *caughtUp
	sent              int
	// elapsed is the time from the first event sent to stable scores.
	elapsed time.Duration
}

func (o *options) runSim(ctx context.Context, bin, dir string, now time.Time) (*DataSet, error) {
	w, err := o.replaySim(ctx, bin, filepath.Join(dir, "test"), o.simSeed, now)
	if err != nil {
		return nil, err
	}
	train, err := o.replaySim(ctx, bin, filepath.Join(dir, "train"), o.simTrainSeed, now)
	if err != nil {
		return nil, fmt.Errorf("training world: %w", err)
	}
	model, err := learn(train.accts, o.lambda)
	if err != nil {
		return nil, fmt.Errorf("training world: %w", err)
	}
	d := &DataSet{
		Name: "Simulation (loadgen fates)",
		Description: fmt.Sprintf("%d accounts of the loadgen simulation (seed %d, default mix), %d days of history to %s replayed through the Segment HTTP API in event time%s. Positive: declining, silent or churning; negative: healthy or expanding; onboarding accounts are left out of the AUC. The learned scorecard is fitted to the fates of another world (seed %d, replayed the same way into its own Lodestar) and applied to this one's sub-scores.",
			o.simAccounts, o.simSeed, o.simDays, now.Format(time.RFC3339), map[bool]string{true: ", their CRM facts upserted first (AccountService), as the demo does", false: ", without CRM facts"}[o.simCRM], o.simTrainSeed),
	}
	d.count("accounts", float64(len(w.product.Accounts())))
	d.count("ranked (not onboarding)", float64(len(w.accts)))
	d.count("positive (declining, silent, churning)", float64(countPositive(w.accts)))
	d.count("scored (a score of the last day)", float64(w.caught.scored()))
	d.count("unscored", float64(len(w.product.Accounts())-w.caught.scored()))
	d.count("of them with a stale score (an earlier day's)", float64(w.caught.Stale))
	d.count("events sent", float64(w.sent))
	d.count("seconds to send the events", seconds(w.elapsed-w.caught.Wait))
	d.count("seconds from the last event sent to stable scores", seconds(w.caught.Wait))
	d.count("seconds to replay the training world and read its scores", seconds(train.elapsed))
	d.Rows = evaluate(w.accts, simNames, defaultScore, model.signal())
	all := append(w.accts, w.onboarding...)
	d.Scores, d.Measures = distribution(all), measureSummaries(all)
	d.Coefficients = model.coefficients()
	d.note("Scores by fate: %s.", byFate(w.product.Accounts(), w.caught))
	d.note("The learned scorecard: L2-regularised logistic regression (lambda %g on standardised sub-scores, %d Newton steps) of a bad fate on the measures' sub-scores of the training world's %d scored accounts (onboarding left out).",
		o.lambda, model.model.Iterations, scoredCount(train.accts))
	d.note("The simulation has no renewal outcomes of its own; the renewal backtest against fates is services/renewalforecast's loadgen backtest (in memory).")
	for _, x := range []*simWorld{w, train} {
		if x.caught.TimedOut {
			d.note("Scoring had not settled when the wait timed out (-catch-up-timeout).")
		}
	}
	return d, nil
}

// replaySim replays a simulated world of the given seed into a fresh Lodestar
// in dir and reads every account's score at the end.
func (o *options) replaySim(ctx context.Context, bin, dir string, seed uint64, now time.Time) (*simWorld, error) {
	p, err := sim.New(sim.Config{Seed: seed, Accounts: o.simAccounts, Now: now, Mix: sim.DefaultMix()})
	if err != nil {
		return nil, err
	}
	w := &simWorld{product: p}
	from := now.AddDate(0, 0, -o.simDays)
	type tally struct {
		last   time.Time
		events int
	}
	seen := map[string]*tally{}
	var lastDay time.Time
	err = withLodestar(ctx, bin, dir, func(l *lodestar, r *scoreReader) error {
		if o.simCRM {
			if err := upsertCRM(ctx, r, p.Accounts()); err != nil {
				return err
			}
		}
		start := time.Now()
		c := &segmentClient{url: "http://" + l.httpAddr, writeKey: l.keys.WriteKey, client: &http.Client{Timeout: 30 * time.Second}, concurrency: o.concurrency}
		var buf []sim.Event
		var day []sim.SegmentEvent
		for d := from; d.Before(now); d = d.AddDate(0, 0, 1) {
			day = day[:0]
			for h := d; h.Before(d.AddDate(0, 0, 1)) && h.Before(now); h = h.Add(time.Hour) {
				buf = p.AppendHour(buf[:0], h)
				for _, ev := range buf {
					t := seen[ev.AccountID]
					if t == nil {
						t = &tally{}
						seen[ev.AccountID] = t
					}
					t.last, t.events = ev.Time, t.events+1
					if ev.Time.After(lastDay) {
						lastDay = ev.Time
					}
					day = append(day, ev.Segment())
				}
			}
			if err := c.send(ctx, day); err != nil {
				return err
			}
		}
		lastDay = lastDay.Truncate(24 * time.Hour)
		ids := make([]string, 0, len(p.Accounts()))
		for _, a := range p.Accounts() {
			ids = append(ids, a.ID)
		}
		logf("sim (seed %d): sent %d events of %d accounts over %d days; waiting for the scores", seed, c.sent, len(ids), o.simDays)
		w.sent = c.sent
		w.caught, err = waitScores(ctx, l, r, c.sent, ids, lastDay, o.catchUp)
		w.elapsed = time.Since(start)
		return err
	})
	if err != nil {
		return nil, err
	}
	for _, a := range p.Accounts() {
		acct := account{ID: a.ID, Positive: badFate(a.Fate), Score: w.caught.Scores[a.ID]}
		if t := seen[a.ID]; t != nil {
			acct.DaysSinceLast = float64(lastDay.Sub(t.last.Truncate(24*time.Hour)) / (24 * time.Hour))
			acct.Events = float64(t.events)
		} else {
			acct.DaysSinceLast = math.Inf(1) // no event at all: the most silent
		}
		if a.Fate == sim.Onboarding {
			w.onboarding = append(w.onboarding, acct)
		} else {
			w.accts = append(w.accts, acct)
		}
	}
	return w, nil
}

// byFate summarises the scores of each fate: count scored and mean score.
func byFate(accts []*sim.Account, caught *caughtUp) string {
	var parts []string
	for _, f := range sim.Fates() {
		var n, scored int
		var sum float64
		for _, a := range accts {
			if a.Fate != f {
				continue
			}
			n++
			if s := caught.Scores[a.ID]; s != nil {
				scored++
				sum += s.GetScore()
			}
		}
		if n == 0 {
			continue
		}
		mean := "n/a"
		if scored > 0 {
			mean = fmt.Sprintf("%.1f", sum/float64(scored))
		}
		parts = append(parts, fmt.Sprintf("%s %d (scored %d, mean %s)", f, n, scored, mean))
	}
	return strings.Join(parts, "; ")
}

// upsertCRM sends the accounts' CRM facts, as a CRM integration would.
func upsertCRM(ctx context.Context, r *scoreReader, accts []*sim.Account) error {
	client := accountv1.NewAccountServiceClient(r.conn)
	const maxUpsert = 1000 // accounts in one UpsertAccounts call, at most
	for start := 0; start < len(accts); start += maxUpsert {
		req := &accountv1.UpsertAccountsRequest{}
		for _, a := range accts[start:min(start+maxUpsert, len(accts))] {
			req.Accounts = append(req.Accounts, a.CRM())
		}
		if _, err := client.UpsertAccounts(r.auth(ctx), req); err != nil {
			return fmt.Errorf("UpsertAccounts: %w", err)
		}
	}
	return nil
}
