package renewalforecast_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/internal/scorecore/scorecard"
	forecastv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/forecast/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// TestSuggestScorecard: on the synthetic history scored with a skewed
// active scorecard (most weight on a noisy short-term trend and on a recency
// measure configured backwards, more points the longer the silence), the
// scorecard learned from the renewals before the median ranks the renewals
// after it at least as well as the active one did, and drops the backwards
// measure, saying why.
func TestSuggestScorecard(t *testing.T) {
	active := loadScorecard(t, "testdata/skewed_scorecard.json")
	// A fixed history, in the past (a replay clamps event times to the wall
	// clock): the same figures on every run, whatever the day.
	client, w := startWith(t, active, time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// A month ahead: the fading churners have gone quiet by then.
	resp, err := client.SuggestScorecard(ctx, &forecastv1.SuggestScorecardRequest{HorizonDays: 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("horizon %d days, split %s: fitted %d renewals (%d churned), tested %d (%d churned)", resp.GetHorizonDays(),
		resp.GetSplitTime().AsTime().Format(time.DateOnly), resp.GetFitRenewals(), resp.GetFitChurned(), resp.GetTestRenewals(), resp.GetTestChurned())
	for _, m := range resp.GetMeasures() {
		t.Logf("  %-12s %+.4f log-odds/point (%+.2f/sd, %d with data): weight %v → %v", m.GetName(), m.GetCoefficient(),
			m.GetStandardizedCoefficient(), m.GetRenewalsWithData(), m.GetBaseWeight(), m.GetWeight())
	}
	for _, n := range resp.GetNotes() {
		t.Logf("  note: %s", n)
	}
	for _, ev := range []struct {
		name string
		e    *forecastv1.ScorecardEvaluation
	}{{"active", resp.GetActive()}, {"base (replayed)", resp.GetBase()}, {"candidate", resp.GetCandidate()}} {
		e := ev.e
		t.Logf("%s held out: %d renewals (%d churned, %d unscored): AUC %.3f, red precision %.2f recall %.2f; median lead time %.1f days (%d flagged, %d never red)",
			ev.name, e.GetRenewals(), e.GetChurned(), e.GetUnscored(), e.GetRocAuc(), e.GetRedPrecision(), e.GetRedRecall(),
			e.GetMedianLeadTimeDays(), e.GetChurnedFlaggedRed(), e.GetChurnedNeverRed())
		for _, l := range e.GetBandLift() {
			t.Logf("  %-11v %2d renewals, %2d churned: lift %.2f", l.GetBand(), l.GetRenewals(), l.GetChurned(), l.GetLift())
		}
	}

	var recorded int
	for _, p := range w.plans {
		if p.outcome != nil {
			recorded++
		}
	}
	if n := resp.GetFitRenewals() + resp.GetTestRenewals(); n != int32(recorded) || resp.GetFitRenewals() < 20 || resp.GetTestRenewals() < 20 {
		t.Errorf("fitted %d and tested %d renewals: want the %d recorded ones split about in half", resp.GetFitRenewals(), resp.GetTestRenewals(), recorded)
	}
	if c := resp.GetCandidate(); c.GetRenewals() != resp.GetTestRenewals() || c.GetChurned() != resp.GetTestChurned() {
		t.Errorf("candidate evaluated on %d renewals (%d churned): want the %d held out (%d churned)", c.GetRenewals(), c.GetChurned(), resp.GetTestRenewals(), resp.GetTestChurned())
	}
	a, c := resp.GetActive().GetRocAuc(), resp.GetCandidate().GetRocAuc()
	if c < a {
		t.Errorf("held-out AUC: candidate %.3f below the active %.3f", c, a)
	}
	if c < 0.8 {
		t.Errorf("held-out AUC of the candidate %.3f: want at least 0.8 on a history where churners' usage decays", c)
	}
	if resp.GetActive().GetRocAuc() != resp.GetBase().GetRocAuc() {
		t.Errorf("active AUC %.3f, base replayed %.3f: the base is the active scorecard, its replay should score as it did", a, resp.GetBase().GetRocAuc())
	}

	sc := resp.GetScorecard()
	if problems := scorecard.Validate(sc); len(problems) > 0 {
		t.Fatalf("candidate invalid: %v", problems)
	}
	var sum float64
	weights := map[string]float64{}
	for _, m := range sc.GetMeasures() {
		sum += m.GetWeight()
		weights[m.GetName()] = m.GetWeight()
	}
	if sum < 99.8 || sum > 100.2 {
		t.Errorf("candidate weights sum to %v, want 100", sum)
	}
	if _, ok := weights["quiet_days"]; ok {
		t.Errorf("candidate weights %v: want quiet_days (more points the longer the silence) dropped", weights)
	}
	if !strings.Contains(strings.Join(resp.GetNotes(), "\n"), "quiet_days dropped: a higher sub-score went with more churn") {
		t.Errorf("notes %q: want quiet_days' drop explained", resp.GetNotes())
	}
	// The cut points move with the weights, to flag as many fitted renewals
	// red and green as the active scorecard did.
	if b := sc.GetBands(); b.GetRedBelow() > b.GetGreenFrom() || !strings.Contains(strings.Join(resp.GetNotes(), "\n"), "bands moved to red below") {
		t.Errorf("candidate bands %v, notes %q", b, resp.GetNotes())
	}

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			req     *forecastv1.SuggestScorecardRequest
			code    codes.Code
			subject string
		}{
			{"horizon too long", &forecastv1.SuggestScorecardRequest{HorizonDays: 400}, codes.InvalidArgument, "horizon_days"},
			{"negative horizon", &forecastv1.SuggestScorecardRequest{HorizonDays: -1}, codes.InvalidArgument, "horizon_days"},
			{"invalid base", &forecastv1.SuggestScorecardRequest{Base: &scoringv1.Scorecard{}}, codes.InvalidArgument, "base.measures"},
			// A split before every renewal but a few leaves nothing to fit.
			{"too few to fit", &forecastv1.SuggestScorecardRequest{SplitTime: timestamppb.New(w.dayTime(170))}, codes.FailedPrecondition, "fit"},
			{"too few to test", &forecastv1.SuggestScorecardRequest{SplitTime: timestamppb.New(w.dayTime(historyDays - 5))}, codes.FailedPrecondition, "test"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := client.SuggestScorecard(ctx, tc.req)
				st := status.Convert(err)
				if st.Code() != tc.code {
					t.Fatalf("code %v (%v), want %v", st.Code(), err, tc.code)
				}
				for _, d := range st.Details() {
					switch d := d.(type) {
					case *errdetails.BadRequest:
						for _, v := range d.GetFieldViolations() {
							if v.GetField() == tc.subject {
								return
							}
						}
					case *errdetails.PreconditionFailure:
						for _, v := range d.GetViolations() {
							if v.GetSubject() == tc.subject {
								t.Logf("%s", st.Message())
								return
							}
						}
					}
				}
				t.Errorf("no violation of %s in %v", tc.subject, st.Details())
			})
		}
	})
}
