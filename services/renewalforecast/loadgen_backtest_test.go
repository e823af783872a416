package renewalforecast_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/internal/scorecore/replay"
	"github.com/lodestar-cs/lodestar/internal/scorecore/scorecard"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/backtest"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/history"
	"github.com/lodestar-cs/lodestar/tools/loadgen/sim"
)

// The loadgen backtest: the demo product of tools/loadgen (package sim, its
// default fate mix, the demo scenario's 300 accounts and 45 days of
// backfill, seed 1) played hour by hour, converted to events as loadgen
// sends them, scored in event time with the scoring service's default
// scorecard through internal/scorecore/replay, and backtested
// (internal/backtest) against renewal outcomes told by the accounts' fates.
//
// The replay is in memory. Storing the same history in an embedded EVENTS
// stream and replaying it with eventreplay.Stream gave the same score changes,
// one for one, but the NATS server under the race detector more than
// doubled the run; eventreplay's TestStream covers that path.
const (
	lgSeed     = 1
	lgAccounts = 300
	// The history runs from lgBeforeDays before the sim's Now (the demo's
	// backfill, which holds every fate's turn: declining accounts turn 20 to
	// 42 days before Now) to lgAfterDays after it, where the renewals fall.
	lgBeforeDays = 45
	lgAfterDays  = 14
	// lgWarmUpDays: a replay starts with no usage before it, so its first
	// scores rest on a day or two of 14- and 28-day windows and come out red
	// for healthy accounts too. A red score in the warm-up is the replay
	// starting, not a warning.
	lgWarmUpDays = 7
	// lgHorizonDays is the horizon asserted on; lgHorizons are logged.
	lgHorizonDays = 14
	lgTenant      = "tloadgen"
)

var lgHorizons = []int{7, 14, 21, 28}

// lgNow is the sim's Now: fixed, so that the history and the figures are the
// same on every run, and in the past, since a replay clamps event times to
// the wall clock.
var lgNow = time.Date(2025, 3, 3, 0, 0, 0, 0, time.UTC)

// lgRenewal is one account's renewal in the backtest.
type lgRenewal struct {
	acc     *sim.Account
	at      time.Time
	outcome accountv1.OutcomeType
}

func (r lgRenewal) churned() bool { return r.outcome == accountv1.OutcomeType_OUTCOME_TYPE_CHURNED }

// lgRenewals gives every account of the product that has a term to renew a
// renewal date inside the history, and its outcome from its fate.
//
// The outcome rule: churning accounts (users gone within days, a severe
// ticket left open, a failed payment and a downgrade) and silent accounts
// (all use stopped two to three weeks before Now) churn at their renewal;
// declining accounts renew contracted (a quarter of their users stay, so
// the logo is kept: their red scores count as false alarms); healthy ones
// renew, expanding ones renew expanded. Onboarding accounts signed in the
// four weeks before Now and have no renewal in the history: they are left
// out of the renewals.
//
// The sim dates renewals up to a year after Now; here each renewal is
// instead drawn uniformly in the lgAfterDays after Now, independently of the
// fate, so that every fate has shown by then and the score lgHorizonDays
// before it lies inside the history.
func lgRenewals(p *sim.Product) []lgRenewal {
	r := rand.New(rand.NewPCG(lgSeed, 2))
	var out []lgRenewal
	for _, a := range p.Accounts() {
		at := lgNow.Add(time.Duration(r.Int64N(int64(lgAfterDays * day))))
		var o accountv1.OutcomeType
		switch a.Fate {
		case sim.Onboarding:
			continue
		case sim.Churning, sim.Silent:
			o = accountv1.OutcomeType_OUTCOME_TYPE_CHURNED
		case sim.Declining:
			o = accountv1.OutcomeType_OUTCOME_TYPE_CONTRACTED
		case sim.Expanding:
			o = accountv1.OutcomeType_OUTCOME_TYPE_EXPANDED
		default:
			o = accountv1.OutcomeType_OUTCOME_TYPE_RENEWED
		}
		out = append(out, lgRenewal{acc: a, at: at, outcome: o})
	}
	return out
}

// lgFacts are the CRM facts the scoring core knew through the history, as
// the forecast service rebuilds them for a replay: the account as loadgen
// upserts it, renewing on the backtest's date, and from that date on its
// outcome's stage.
func lgFacts(p *sim.Product, renewals []lgRenewal) []replay.Fact {
	var facts []replay.Fact
	byID := map[string]lgRenewal{}
	for _, r := range renewals {
		byID[r.acc.ID] = r
	}
	for _, a := range p.Accounts() {
		acc := a.CRM()
		r, ok := byID[a.ID]
		if !ok {
			facts = append(facts, replay.Fact{Account: acc})
			continue
		}
		// The stage is left to the scoring core to derive from the dates,
		// as it was then (pre-renewal here).
		acc.LifecycleStage = accountv1.LifecycleStage_LIFECYCLE_STAGE_UNSPECIFIED
		acc.RenewalTime = timestamppb.New(r.at)
		after := proto.CloneOf(acc) // ARR left as it was: the score does not read it
		after.RenewalTime = timestamppb.New(r.at.AddDate(1, 0, 0))
		after.LifecycleStage = accountv1.LifecycleStage_LIFECYCLE_STAGE_RENEWED
		if r.churned() {
			after.LifecycleStage = accountv1.LifecycleStage_LIFECYCLE_STAGE_CHURNED
		}
		facts = append(facts, replay.Fact{Account: acc}, replay.Fact{At: r.at, Account: after})
	}
	return facts
}

// lgDefaultScorecard is the simulated product's scorecard, the one the demo
// scores it with.
func lgDefaultScorecard(t *testing.T) *scoringv1.Scorecard {
	t.Helper()
	sc, err := scorecard.Parse(sim.ScorecardYAML)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// lgHour is an hour of the history: its events, or why they could not be
// converted.
type lgHour struct {
	events []*eventv1.Event
	err    error
}

// lgPlay generates the history hour by hour, each hour's events converted
// and in time order as loadgen sends them, on a goroutine of its own:
// under the race detector generating costs more than scoring.
func lgPlay(ctx context.Context, p *sim.Product, from, to time.Time) <-chan lgHour {
	out := make(chan lgHour, 64)
	go func() {
		defer close(out)
		var buf []sim.Event
		for h := from; h.Before(to); h = h.Add(time.Hour) {
			buf = p.AppendHour(buf[:0], h)
			hour := lgHour{events: make([]*eventv1.Event, 0, len(buf))}
			for _, ev := range buf {
				pe, err := ev.Proto()
				if err != nil {
					hour.err = err
					break
				}
				pe.TenantId = lgTenant // as ingest stamps it
				hour.events = append(hour.events, pe)
			}
			select {
			case out <- hour:
			case <-ctx.Done():
				return
			}
			if hour.err != nil {
				return
			}
		}
	}()
	return out
}

// lgSample is a renewal with the score read at the horizon and, for a
// churn, the first red score after the warm-up.
type lgSample struct {
	renewal lgRenewal
	sample  backtest.Sample
	scored  bool
}

// lgSamples reads, for every renewal, the score the account had horizon
// days before it, as EvaluateScorecard does; a churned account's lead time
// runs from its first red score after the warm-up to the churn.
func lgSamples(tl history.Timelines, renewals []lgRenewal, redFrom time.Time, horizon int) []lgSample {
	out := make([]lgSample, 0, len(renewals))
	for _, r := range renewals {
		scores := tl.Scores(r.acc.ID)
		p, ok := scores.At(r.at.Add(-time.Duration(horizon) * day))
		s := lgSample{renewal: r, scored: ok, sample: backtest.Sample{Score: float64(p.Score), Band: p.Band, Churned: r.churned()}}
		if s.sample.Churned {
			if red, ok := scores.FirstRed(redFrom, r.at); ok {
				s.sample.FlaggedRed, s.sample.LeadDays = true, r.at.Sub(red).Hours()/24
			}
		}
		out = append(out, s)
	}
	return out
}

func lgMedian(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	xs = slices.Sorted(slices.Values(xs))
	return (xs[(len(xs)-1)/2] + xs[len(xs)/2]) / 2
}

func TestBacktestOnLoadgenHistory(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	product, err := sim.New(sim.Config{Seed: lgSeed, Accounts: lgAccounts, Now: lgNow, Mix: sim.DefaultMix()})
	if err != nil {
		t.Fatal(err)
	}
	renewals := lgRenewals(product)
	r, err := replay.New(lgTenant, lgDefaultScorecard(t), lgFacts(product, renewals))
	if err != nil {
		t.Fatal(err)
	}
	from, to := lgNow.Add(-lgBeforeDays*day), lgNow.Add(lgAfterDays*day)
	tl := history.Timelines{}
	var events, changes int
	wall := time.Now() // after the whole history: no event time is clamped
	for hour := range lgPlay(ctx, product, from, to) {
		if hour.err != nil {
			t.Fatal(hour.err)
		}
		events += len(hour.events)
		for _, hs := range r.Apply(hour.events, wall) {
			tl.Add(hs)
			changes++
		}
	}
	for _, hs := range r.Finish() {
		tl.Add(hs)
		changes++
	}

	fates := map[sim.Fate]int{}
	for _, a := range product.Accounts() {
		fates[a.Fate]++
	}
	var mix []string
	for _, f := range sim.Fates() {
		mix = append(mix, fmt.Sprintf("%d %s", fates[f], f))
	}
	t.Logf("loadgen history: seed %d, %d accounts (%s); %s to %s (%d days, Now %s), %d events, %d score changes",
		lgSeed, lgAccounts, strings.Join(mix, ", "), from.Format(time.DateOnly), to.Format(time.DateOnly),
		lgBeforeDays+lgAfterDays, lgNow.Format(time.DateOnly), events, changes)
	t.Logf("renewals: %d in %s to %s (onboarding accounts have none); churned: the %d silent and churning accounts; renewed: healthy, expanding, declining (contracted)",
		len(renewals), lgNow.Format(time.DateOnly), to.Format(time.DateOnly), fates[sim.Silent]+fates[sim.Churning])

	redFrom := from.Add(lgWarmUpDays * day)
	for _, horizon := range lgHorizons {
		samples := lgSamples(tl, renewals, redFrom, horizon)
		var kept []backtest.Sample
		type fateStats struct {
			n, red int
			sum    float64
		}
		byFate := map[sim.Fate]*fateStats{}
		for _, s := range samples {
			if !s.scored {
				continue
			}
			kept = append(kept, s.sample)
			fs := byFate[s.renewal.acc.Fate]
			if fs == nil {
				fs = &fateStats{}
				byFate[s.renewal.acc.Fate] = fs
			}
			fs.n++
			fs.sum += s.sample.Score
			if s.sample.Band == scoringv1.Band_BAND_RED {
				fs.red++
			}
		}
		ev := backtest.Evaluate(kept, len(samples)-len(kept))
		t.Logf("horizon %d days: %d renewals (%d churned, %d unscored): ROC AUC %.3f, red precision %.2f, recall %.2f; median lead time first red → churn %.1f days (%d churned flagged red, %d never red)",
			horizon, ev.GetRenewals(), ev.GetChurned(), ev.GetUnscored(), ev.GetRocAuc(), ev.GetRedPrecision(), ev.GetRedRecall(),
			ev.GetMedianLeadTimeDays(), ev.GetChurnedFlaggedRed(), ev.GetChurnedNeverRed())
		for _, l := range ev.GetBandLift() {
			t.Logf("  lift %-11v %3d renewals, %2d churned: churn rate %.2f, lift %.2f", l.GetBand(), l.GetRenewals(), l.GetChurned(), l.GetChurnRate(), l.GetLift())
		}
		var parts []string
		for _, f := range sim.Fates() {
			if fs := byFate[f]; fs != nil {
				parts = append(parts, fmt.Sprintf("%s %.0f (%d/%d red)", f, fs.sum/float64(fs.n), fs.red, fs.n))
			}
		}
		t.Logf("  mean score by fate: %s", strings.Join(parts, ", "))
		if horizon != lgHorizonDays {
			continue
		}

		// The lead time depends on where the renewal falls; how soon the
		// score saw the fate does not: first red after the fate turned.
		delays := map[sim.Fate][]float64{}
		var neverRed []string
		for _, s := range samples {
			if s.sample.Churned && !s.sample.FlaggedRed {
				neverRed = append(neverRed, fmt.Sprintf("%s (%s from %s, renewal %s)", s.renewal.acc.ID, s.renewal.acc.Fate,
					s.renewal.acc.Turn.Format(time.DateOnly), s.renewal.at.Format(time.DateOnly)))
			}
			if s.sample.FlaggedRed {
				red := s.renewal.at.Add(-time.Duration(s.sample.LeadDays * float64(day)))
				delays[s.renewal.acc.Fate] = append(delays[s.renewal.acc.Fate], red.Sub(s.renewal.acc.Turn).Hours()/24)
			}
		}
		t.Logf("  first red a median %.1f days after a churning account's fall began, %.1f days after a silent one went quiet; churned never red: %v",
			lgMedian(delays[sim.Churning]), lgMedian(delays[sim.Silent]), neverRed)

		// Robust properties only: the exact figures move with the sim and
		// the default scorecard.
		if int(ev.GetRenewals()) != len(renewals) || ev.GetUnscored() != 0 {
			t.Errorf("%d of %d renewals scored %d days ahead: the history should cover every one", ev.GetRenewals(), len(renewals), horizon)
		}
		if want := fates[sim.Silent] + fates[sim.Churning]; int(ev.GetChurned()) != want {
			t.Errorf("%d churned, want the %d silent and churning accounts", ev.GetChurned(), want)
		}
		if ev.GetRocAuc() < 0.75 {
			t.Errorf("ROC AUC %.3f %d days ahead: want well above chance (0.75) on a history whose churners stop using the product", ev.GetRocAuc(), horizon)
		}
		if ev.GetMedianLeadTimeDays() <= 0 || ev.GetChurnedFlaggedRed() <= ev.GetChurnedNeverRed() {
			t.Errorf("median lead time %.1f days, %d churned flagged red, %d never: most churns should turn red before they happen",
				ev.GetMedianLeadTimeDays(), ev.GetChurnedFlaggedRed(), ev.GetChurnedNeverRed())
		}
		for _, l := range ev.GetBandLift() {
			if (l.GetBand() == scoringv1.Band_BAND_RED && l.GetLift() <= 1) || (l.GetBand() == scoringv1.Band_BAND_GREEN && l.GetLift() >= 1) {
				t.Errorf("%v: lift %.2f; want red above 1, green below", l.GetBand(), l.GetLift())
			}
		}
		if ev.GetRedRecall() == 0 {
			t.Errorf("no churned account red %d days ahead", horizon)
		}
	}
}
