package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"time"

	"github.com/lodestar-cs/lodestar/tools/loadgen/sim"
	"github.com/lodestar-cs/lodestar/tools/predict/internal/retail"
)

// orderEvent is the track event of an invoice.
const orderEvent = "Order Completed"

var retailNames = baselineNames{days: "days since the last invoice", events: "number of invoices (fewer riskier)"}

// invoiceEvent is an invoice as a Segment track call: the customer is the
// account (context.groupId) and its one user.
func invoiceEvent(inv retail.Invoice) sim.SegmentEvent {
	return sim.SegmentEvent{
		Type:      "track",
		MessageID: inv.No,
		UserID:    "c-" + inv.Customer,
		Event:     orderEvent,
		Timestamp: inv.Time.UTC().Format(time.RFC3339),
		Properties: map[string]any{
			"order_id": inv.No,
			"lines":    inv.Lines,
			"items":    inv.Items,
			"total":    math.Round(inv.Amount*100) / 100,
			"currency": "GBP",
			"country":  inv.Country,
		},
		Context: sim.SegmentContext{GroupID: inv.Customer},
	}
}

// splitScores is what was read at one split.
type splitScores struct {
	split   retail.Split
	accts   []account
	events  int
	wm      time.Time // the day of the last event sent
	caught  *caughtUp
	elapsed time.Duration // replay and catch-up
}

func (o *options) runRetail(ctx context.Context, bin, dir string) ([]*DataSet, error) {
	f, err := os.Open(o.dataPath)
	if err != nil {
		return nil, err
	}
	data, err := retail.Read(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.dataPath, err)
	}
	if err := retail.FinalSplit.Baselines(data.Invoices).CheckReadme(); err != nil {
		return nil, fmt.Errorf("%s: the baselines differ from the data set's README:\n%w", o.dataPath, err)
	}
	splits := []*splitScores{{split: retail.EarlySplit}, {split: retail.FinalSplit}}
	var alerts *AlertQuality
	err = withLodestar(ctx, bin, dir, func(l *lodestar, r *scoreReader) error {
		c := &segmentClient{url: "http://" + l.httpAddr, writeKey: l.keys.WriteKey, client: &http.Client{Timeout: 30 * time.Second}, concurrency: o.concurrency}
		next := 0 // the first invoice not sent
		for _, s := range splits {
			start := time.Now()
			var events []sim.SegmentEvent
			for ; next < len(data.Invoices) && data.Invoices[next].Time.Before(s.split.End()); next++ {
				events = append(events, invoiceEvent(data.Invoices[next]))
			}
			if next == 0 {
				return fmt.Errorf("no invoice before %s", s.split.End().Format(time.DateOnly))
			}
			if err := c.send(ctx, events); err != nil {
				return err
			}
			s.wm = data.Invoices[next-1].Time.Truncate(24 * time.Hour)
			customers := s.split.Customers(data.Invoices)
			ids := make([]string, len(customers))
			for i, cu := range customers {
				ids[i] = cu.ID
			}
			logf("retail: sent %d invoices up to %s; waiting for the scores of %d accounts", c.sent, s.split.Last.Format(time.DateOnly), len(ids))
			if s.caught, err = waitScores(ctx, l, r, c.sent, ids, s.wm, o.catchUp); err != nil {
				return fmt.Errorf("at %s: %w", s.split.Last.Format(time.DateOnly), err)
			}
			s.events, s.elapsed = c.sent, time.Since(start)
			for _, cu := range customers {
				s.accts = append(s.accts, account{
					ID: cu.ID, Positive: cu.Churned,
					DaysSinceLast: float64(cu.DaysSinceLast(s.split)), Events: float64(cu.Invoices),
					Score: s.caught.Scores[cu.ID],
				})
			}
		}
		final := splits[len(splits)-1]
		if o.history != "" {
			// Not fatal: a comparison aid, not part of the report.
			if n, err := r.writeHistory(ctx, o.history, splits); err != nil {
				logf("retail: score history not written: %v", err)
			} else {
				logf("retail: wrote %d scores to %s", n, o.history)
			}
		}
		logf("retail: recording %d renewals at %s and evaluating the alert rules", len(final.accts), final.split.End().Format(time.DateOnly))
		if err := recordRenewals(ctx, r, final.accts, final.split.End(), o.concurrency); err != nil {
			return err
		}
		rows, after, err := evaluateAlerts(ctx, r)
		if err != nil {
			return err
		}
		alerts = &AlertQuality{Rows: rows, After: after, Description: fmt.Sprintf(
			"Alert quality on the same Lodestar, in the same run (AlertService.EvaluateRules over the tenant's stored score history, which runs to the end of %s, the day before the last one sent: scoring records a replayed day's scores as the day ends): the data set's churn label mapped onto Lodestar's renewal outcomes. Every customer with history is an account renewing on %s, recorded through the AccountService as CHURNED when it places no invoice in %s .. %s and RENEWED otherwise; each is owned by one of %d CSMs (csm-01..csm-%02d, by an FNV-1a hash of its id), its ARR unknown (zero). A renewal is flagged when an alert opened on its account within the %d days before it (the red band: when the account scored red in them); precision is the churn rate among flagged renewals (no renewal contracts here), lift that rate over the base churn rate. previous = the rule set before the red-only and 30-day-cooldown principles (tools/internal/alertrules), shipped = churnalert.DefaultRules.",
			final.wm.AddDate(0, 0, -1).Format(time.DateOnly), final.split.End().Format(time.DateOnly), final.split.End().Format(time.DateOnly),
			final.split.OutcomeEnd().AddDate(0, 0, -1).Format(time.DateOnly), retailCSMs, retailCSMs, retailLeadDays)}
		return nil
	})
	if err != nil {
		return nil, err
	}
	early, final := splits[0], splits[1]
	model, err := learn(early.accts, o.lambda)
	if err != nil {
		return nil, err
	}
	earlySet := retailSet(early, fmt.Sprintf("Online Retail, early split (training): history to %s, churned = no invoice %s .. %s. The learned scorecard is fitted here.",
		early.split.Last.Format(time.DateOnly), early.split.End().Format(time.DateOnly), early.split.OutcomeEnd().AddDate(0, 0, -1).Format(time.DateOnly)),
		defaultScore)
	finalSet := retailSet(final, fmt.Sprintf("The data set's README split: history to %s, churned = no invoice %s .. %s; each customer an account, each invoice an `%s` track event through the Segment HTTP API in event time. The learned scorecard is the one fitted at %s, applied to this split's sub-scores.",
		final.split.Last.Format(time.DateOnly), final.split.End().Format(time.DateOnly), final.split.OutcomeEnd().AddDate(0, 0, -1).Format(time.DateOnly), orderEvent, early.split.Last.Format(time.DateOnly)),
		defaultScore, model.signal())
	finalSet.Coefficients = model.coefficients()
	finalSet.Alerts = alerts
	finalSet.note("The learned scorecard: L2-regularised logistic regression (lambda %g on standardised sub-scores, Newton's method, %d steps) of churn on the measures' sub-scores of the %d accounts scored at %s, with their outcomes known by %s: no look-ahead.",
		o.lambda, model.model.Iterations, early.caught.scored(), early.split.Last.Format(time.DateOnly), final.split.Last.Format(time.DateOnly))
	finalSet.note(`The data set's "(blank)" customer id (rows without a customer) counts as one customer, as its README's figures do; the tool's baselines reproduce the README's (checked at every run).`)
	return []*DataSet{finalSet, earlySet}, nil
}

// retailSet is the data set of one split.
func retailSet(s *splitScores, description string, signals ...scoreSignal) *DataSet {
	d := &DataSet{Name: "Online Retail at " + s.split.Last.Format(time.DateOnly), Description: description}
	scored := s.caught.scored()
	d.count("customers with history", float64(len(s.accts)))
	d.count("churned", float64(countPositive(s.accts)))
	d.count("scored (a score of the split's last day)", float64(scored))
	d.count("unscored", float64(len(s.accts)-scored))
	d.count("of them with a stale score (an earlier day's)", float64(s.caught.Stale))
	d.count("invoices sent (cumulative)", float64(s.events))
	d.count("seconds to send the invoices", seconds(s.elapsed-s.caught.Wait))
	d.count("seconds from the last invoice sent to stable scores", seconds(s.caught.Wait))
	d.Rows = evaluate(s.accts, retailNames, signals...)
	d.Scores = distribution(s.accts)
	d.Measures = measureSummaries(s.accts)
	if !s.wm.Equal(s.split.Last) {
		d.note("The last invoice sent is of %s, not the split's last day: scores are of that day.", s.wm.Format(time.DateOnly))
	}
	if s.caught.TimedOut {
		d.note("Scoring had not settled when the wait timed out (-catch-up-timeout).")
	}
	return d
}

func (c *caughtUp) scored() int { return len(c.Scores) }

// seconds rounds d to tenths of a second.
func seconds(d time.Duration) float64 { return d.Round(100 * time.Millisecond).Seconds() }

func scoredCount(accts []account) int {
	n := 0
	for _, a := range accts {
		if a.Score != nil {
			n++
		}
	}
	return n
}

func countPositive(accts []account) int {
	n := 0
	for _, a := range accts {
		if a.Positive {
			n++
		}
	}
	return n
}
