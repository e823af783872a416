package renewalforecast_test

import (
	"context"
	"log/slog"
	"math"
	"net"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/internal/scorecards"
	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/pkg/auth"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	"github.com/lodestar-cs/lodestar/pkg/service"
	forecastv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/forecast/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/renewalforecast"
)

// start runs the service over a fresh embedded NATS holding a generated
// history scored with the fixture's active scorecard, and returns a client
// of its gRPC API authenticated as the tenant.
func start(t *testing.T) (forecastv1.ForecastServiceClient, *world) {
	t.Helper()
	return startWith(t, loadScorecard(t, "testdata/active_scorecard.json"), time.Now())
}

// startWith is start with the tenant's active scorecard and the history's
// end: the history is scored with the scorecard, and the scorecard is
// stored as the tenant's active version in the scorecards bucket, as the
// scoring service keeps it.
func startWith(t *testing.T, active *scoringv1.Scorecard, now time.Time) (forecastv1.ForecastServiceClient, *world) {
	t.Helper()
	_, nc := testenv.NATS(t)
	js, err := natsx.NewJetStream(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	limits := natsx.DefaultLimits()
	if err := natsx.EnsureStreams(ctx, js, limits.EventsStream(), limits.AccountChangesStream(), limits.ScoresStream()); err != nil {
		t.Fatal(err)
	}
	w := generate(testenv.Tenant(t), now)
	w.publish(t, js, active)
	kv, err := natsx.EnsureKeyValue(ctx, js, scorecards.BucketConfig(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := scorecards.New(kv).Put(ctx, w.tenant, active, 0, time.Now()); err != nil {
		t.Fatal(err)
	}

	cfg := renewalforecast.DefaultConfig()
	cfg.MinOutcomes = 20
	svc, err := renewalforecast.New(cfg, renewalforecast.Deps{
		JS: js, Limits: limits, Deps: service.Deps{Logger: slog.New(slog.DiscardHandler), MeterProvider: noop.NewMeterProvider()},
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	for deadline := time.Now().Add(20 * time.Second); !svc.Ready(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("service not ready after 20s")
		}
	}

	// The tenant comes from the credential: here an interceptor stands in
	// for the API key check.
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		return h(auth.WithTenant(ctx, w.tenant), req)
	}))
	svc.Register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return forecastv1.NewForecastServiceClient(conn), w
}

func TestService(t *testing.T) {
	client, w := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	t.Run("backtest on replayed history", func(t *testing.T) {
		resp, err := client.EvaluateScorecard(ctx, &forecastv1.EvaluateScorecardRequest{
			HorizonDays: 30,
			Candidate:   loadScorecard(t, "testdata/support_only_scorecard.json"),
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range []struct {
			name string
			e    *forecastv1.ScorecardEvaluation
		}{{"active", resp.GetActive()}, {"candidate (support load only)", resp.GetCandidate()}} {
			e := ev.e
			t.Logf("%s: %d renewals (%d churned, %d unscored) 30 days ahead: AUC %.3f, red precision %.2f recall %.2f; median lead time first red → churn %.1f days (%d flagged, %d never red)",
				ev.name, e.GetRenewals(), e.GetChurned(), e.GetUnscored(), e.GetRocAuc(), e.GetRedPrecision(), e.GetRedRecall(),
				e.GetMedianLeadTimeDays(), e.GetChurnedFlaggedRed(), e.GetChurnedNeverRed())
			for _, l := range e.GetBandLift() {
				t.Logf("  %-11v %2d renewals, %2d churned: churn rate %.2f, lift %.2f", l.GetBand(), l.GetRenewals(), l.GetChurned(), l.GetChurnRate(), l.GetLift())
			}
		}
		a, c := resp.GetActive(), resp.GetCandidate()
		if a.GetRenewals() < 40 || a.GetChurned() < 10 {
			t.Fatalf("active evaluation covers %d renewals, %d churned: the history is not being read", a.GetRenewals(), a.GetChurned())
		}
		if a.GetRocAuc() < 0.85 {
			t.Errorf("behavioural scorecard AUC %.3f: want at least 0.85 on a history where churners' usage decays", a.GetRocAuc())
		}
		if a.GetMedianLeadTimeDays() < 14 {
			t.Errorf("median lead time %.1f days: churners decay for 30 to 120 days, red should come weeks ahead", a.GetMedianLeadTimeDays())
		}
		if c.GetRenewals() != a.GetRenewals() || c.GetRocAuc() != 0.5 {
			t.Errorf("candidate: %d renewals, AUC %v; want the same renewals and 0.5 (support load never varies here)", c.GetRenewals(), c.GetRocAuc())
		}
		// Without a candidate, the active scorecard alone over every scored renewal.
		alone, err := client.EvaluateScorecard(ctx, &forecastv1.EvaluateScorecardRequest{HorizonDays: 30})
		if err != nil || alone.GetCandidate() != nil || alone.GetActive().GetRocAuc() < 0.85 {
			t.Errorf("active alone: %v, %v", alone, err)
		}
	})

	t.Run("retention actuals", func(t *testing.T) {
		resp, err := client.GetRetentionMetrics(ctx, &forecastv1.GetRetentionMetricsRequest{
			Unit:      forecastv1.PeriodUnit_PERIOD_UNIT_MONTH,
			StartTime: timestamppb.New(w.start),
		})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetCurrencyCode() != "EUR" || len(resp.GetPeriods()) < 10 {
			t.Fatalf("currency %q, %d periods", resp.GetCurrencyCode(), len(resp.GetPeriods()))
		}
		var churnedAccounts float64
		var churnOutcomes int
		for _, p := range w.plans {
			if p.churn {
				churnOutcomes++
			}
		}
		for _, p := range resp.GetPeriods() {
			m := p.GetTotal()
			churnedAccounts += m.GetChurnedAccounts()
			if m.GetGrr() > 1 || m.GetGrr() > m.GetNrr()+1e-12 {
				t.Errorf("%v: GRR %v, NRR %v", p.GetPeriod().GetStartTime().AsTime(), m.GetGrr(), m.GetNrr())
			}
		}
		if int(churnedAccounts) != churnOutcomes {
			t.Errorf("periods count %v churned accounts; the history has %d churns", churnedAccounts, churnOutcomes)
		}
		last := resp.GetPeriods()[len(resp.GetPeriods())-1].GetTotal()
		if last.GetNewAccounts() != 1 {
			t.Errorf("this month's new accounts: %d, want 1 (excluded)", last.GetNewAccounts())
		}
	})

	t.Run("portfolio forecast", func(t *testing.T) {
		req := &forecastv1.GetPortfolioForecastRequest{
			Unit: forecastv1.PeriodUnit_PERIOD_UNIT_YEAR,
			Time: timestamppb.New(time.Now().AddDate(0, 0, 30)),
		}
		a, err := client.GetPortfolioForecast(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := client.GetPortfolioForecast(ctx, req)
		if err != nil || !proto.Equal(a, b) {
			t.Fatalf("a second call differs: %v", err)
		}
		if a.GetModel().GetKind() != forecastv1.ModelKind_MODEL_KIND_FITTED {
			t.Errorf("model %v, want a fit to the %d recorded outcomes", a.GetModel().GetKind(), a.GetModel().GetOutcomes())
		}
		tot := a.GetTotal()
		e, r := tot.GetExpected(), tot.GetRanges()
		t.Logf("%v: %d renewals pending (%.0f EUR, %.0f at risk); expected GRR %.3f [%.3f, %.3f], NRR %.3f [%.3f, %.3f], logo retention %.3f [%.3f, %.3f]; model %v on %d outcomes, Brier %.3f",
			a.GetPeriod().GetStartTime().AsTime().Format("2006"), tot.GetPendingRenewals(), tot.GetPendingArr(), tot.GetAtRiskArr(),
			e.GetGrr(), r.GetGrr().GetP10(), r.GetGrr().GetP90(), e.GetNrr(), r.GetNrr().GetP10(), r.GetNrr().GetP90(),
			e.GetLogoRetention(), r.GetLogoRetention().GetP10(), r.GetLogoRetention().GetP90(),
			a.GetModel().GetKind(), a.GetModel().GetOutcomes(), a.GetModel().GetBrierScore())
		for _, q := range []struct {
			name string
			v    float64
			r    *forecastv1.Range
		}{{"GRR", e.GetGrr(), r.GetGrr()}, {"NRR", e.GetNrr(), r.GetNrr()}, {"churned ARR", e.GetChurnedArr(), r.GetChurnedArr()}} {
			if q.r.GetP10() > q.v || q.v > q.r.GetP90() || q.r.GetP10() == q.r.GetP90() {
				t.Errorf("%s: expected %v outside or at a point range %v", q.name, q.v, q.r)
			}
		}
		// Due in the period: upcoming renewals, and a year after each
		// recorded renewal that was not a churn.
		period := a.GetPeriod()
		due := 0
		for _, p := range w.plans {
			next := w.dayTime(p.renewalDay)
			if p.outcome != nil {
				next = next.AddDate(1, 0, 0)
			}
			if !p.churn && !next.Before(period.GetStartTime().AsTime()) && next.Before(period.GetEndTime().AsTime()) {
				due++
			}
		}
		if int(tot.GetPendingRenewals()) != due || due == 0 || e.GetGrr() > 1 {
			t.Errorf("pending %d, want %d; GRR %v", tot.GetPendingRenewals(), due, e.GetGrr())
		}
		var tierStart float64
		for _, s := range a.GetBreakdown() {
			if s.GetDimension() == forecastv1.Dimension_DIMENSION_TIER {
				tierStart += s.GetForecast().GetExpected().GetStartingArr()
			}
		}
		if math.Abs(tierStart-e.GetStartingArr()) > 1e-6 {
			t.Errorf("tier slices start with %v, the total with %v", tierStart, e.GetStartingArr())
		}
	})

	t.Run("renewals, riskiest first, paged", func(t *testing.T) {
		var all []*forecastv1.AccountForecast
		req := &forecastv1.ListRenewalsRequest{PageSize: 6}
		for {
			resp, err := client.ListRenewals(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, resp.GetRenewals()...)
			if resp.GetNextPageToken() == "" {
				if int(resp.GetTotalSize()) != len(all) {
					t.Errorf("total_size %d, pages held %d", resp.GetTotalSize(), len(all))
				}
				break
			}
			req.PageToken = resp.GetNextPageToken()
		}
		if len(all) != 20 {
			t.Fatalf("%d renewals in the next 90 days, want the 20 upcoming", len(all))
		}
		seen := map[string]bool{}
		for i, f := range all {
			if seen[f.GetAccountId()] || (i > 0 && f.GetRenewalProbability() < all[i-1].GetRenewalProbability()) {
				t.Fatalf("renewal %d (%s) repeats or breaks the order", i, f.GetAccountId())
			}
			seen[f.GetAccountId()] = true
		}
		riskiest, safest := all[0], all[len(all)-1]
		t.Logf("riskiest: %s", riskiest.GetSummary())
		t.Logf("safest:   %s", safest.GetSummary())
		if !riskiest.GetAtRisk() || safest.GetRenewalProbability()-riskiest.GetRenewalProbability() < 0.3 ||
			len(riskiest.GetFactors()) == 0 || riskiest.GetFactors()[0].GetPoints() >= 0 {
			t.Errorf("riskiest %v should be at risk, well below the safest, and lowered most by its first factor", riskiest)
		}
	})

	t.Run("account forecast and errors", func(t *testing.T) {
		resp, err := client.GetAccountForecast(ctx, &forecastv1.GetAccountForecastRequest{AccountId: w.plans[60].acc.GetAccountId()})
		if err != nil || resp.GetForecast().GetSummary() == "" || resp.GetForecast().GetDaysToRenewal() <= 0 {
			t.Fatalf("GetAccountForecast: %v, %v", resp, err)
		}
		for _, tc := range []struct {
			name  string
			call  func() error
			code  codes.Code
			field string
		}{
			{"unknown account", func() error {
				_, err := client.GetAccountForecast(ctx, &forecastv1.GetAccountForecastRequest{AccountId: "nope"})
				return err
			}, codes.NotFound, ""},
			{"missing account id", func() error {
				_, err := client.GetAccountForecast(ctx, &forecastv1.GetAccountForecastRequest{})
				return err
			}, codes.InvalidArgument, "account_id"},
			{"bad page token", func() error {
				_, err := client.ListRenewals(ctx, &forecastv1.ListRenewalsRequest{PageToken: "%%%"})
				return err
			}, codes.InvalidArgument, "page_token"},
			{"window backwards", func() error {
				_, err := client.GetRetentionMetrics(ctx, &forecastv1.GetRetentionMetricsRequest{
					StartTime: timestamppb.New(time.Now()), EndTime: timestamppb.New(time.Now().Add(-time.Hour)),
				})
				return err
			}, codes.InvalidArgument, "end_time"},
			{"too many simulations", func() error {
				_, err := client.GetPortfolioForecast(ctx, &forecastv1.GetPortfolioForecastRequest{Simulations: 1e6})
				return err
			}, codes.InvalidArgument, "simulations"},
			{"invalid candidate", func() error {
				_, err := client.EvaluateScorecard(ctx, &forecastv1.EvaluateScorecardRequest{Candidate: &scoringv1.Scorecard{}})
				return err
			}, codes.InvalidArgument, "candidate.measures"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				err := tc.call()
				st := status.Convert(err)
				if st.Code() != tc.code {
					t.Fatalf("code %v (%v), want %v", st.Code(), err, tc.code)
				}
				if tc.field == "" {
					return
				}
				for _, d := range st.Details() {
					if br, ok := d.(*errdetails.BadRequest); ok {
						for _, v := range br.GetFieldViolations() {
							if v.GetField() == tc.field {
								return
							}
						}
					}
				}
				t.Errorf("no BadRequest violation of %s in %v", tc.field, st.Details())
			})
		}
	})
}
