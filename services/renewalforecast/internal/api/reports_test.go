package api

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/pkg/auth"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	forecastv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/forecast/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/history"
)

// TestPortfolioForecastTakesTheTenantsLevel: a tenant with 40 recorded
// renewals (too few to fit), 29 of them renewed (72%), every account at a
// steady score of 50, where the default alone predicts 0.85. The forecast
// of the 29 renewals due this quarter takes the tenant's level, with a range
// wide enough to hold its own renewal rate.
func TestPortfolioForecastTakesTheTenantsLevel(t *testing.T) {
	const tenant, recorded, churned = "t1", 40, 11
	now := date(2025, 7, 1)
	last := date(2024, 8, 1)
	store := history.NewStore()
	for i := range recorded {
		id := fmt.Sprintf("a%02d", i)
		acc := &accountv1.Account{
			AccountId: id, Arr: &accountv1.Money{CurrencyCode: "USD", Units: 100},
			RenewalTime:    timestamppb.New(last),
			LifecycleStage: accountv1.LifecycleStage_LIFECYCLE_STAGE_ADOPTION,
			Outcomes:       []*accountv1.RenewalOutcome{outcome(accountv1.OutcomeType_OUTCOME_TYPE_RENEWED, last, 100, 100)},
		}
		if i < churned {
			acc.LifecycleStage = accountv1.LifecycleStage_LIFECYCLE_STAGE_CHURNED
			acc.Outcomes = []*accountv1.RenewalOutcome{outcome(accountv1.OutcomeType_OUTCOME_TYPE_CHURNED, last, 100, 0)}
		}
		store.PutAccount(tenant, acc)
		store.AddScore(&scoringv1.HealthScore{
			TenantId: tenant, AccountId: id, Score: 50, Band: scoringv1.Band_BAND_YELLOW,
			LifecycleStage: accountv1.LifecycleStage_LIFECYCLE_STAGE_ADOPTION, ScoreTime: timestamppb.New(last.AddDate(-1, 0, 0)),
		})
	}
	s := New(Config{MinOutcomes: 50, Simulations: 2000, Seed: 1, AtRiskBelow: 0.7}, store, nil, slog.New(slog.DiscardHandler))
	s.now = func() time.Time { return now }
	resp, err := s.GetPortfolioForecast(auth.WithTenant(context.Background(), tenant), &forecastv1.GetPortfolioForecastRequest{})
	if err != nil {
		t.Fatal(err)
	}
	m, tot := resp.GetModel(), resp.GetTotal()
	logo, rg := tot.GetExpected().GetLogoRetention(), tot.GetRanges().GetLogoRetention()
	t.Logf("model %v on %d outcomes (%d churned), intercept %.2f; %d renewals pending: expected logo retention %.3f [%.3f, %.3f]",
		m.GetKind(), m.GetOutcomes(), m.GetChurned(), m.GetCoefficients()[0].GetValue(), tot.GetPendingRenewals(), logo, rg.GetP10(), rg.GetP90())
	if m.GetKind() != forecastv1.ModelKind_MODEL_KIND_DEFAULT || m.GetOutcomes() != recorded || m.GetChurned() != churned {
		t.Fatalf("model %v on %d outcomes (%d churned), want the default on %d (%d)", m.GetKind(), m.GetOutcomes(), m.GetChurned(), recorded, churned)
	}
	if tot.GetPendingRenewals() != recorded-churned {
		t.Fatalf("%d renewals pending, want %d", tot.GetPendingRenewals(), recorded-churned)
	}
	// 29 of 40 with a prior worth about 8 renewals at 0.85: about 0.745.
	if own := float64(recorded-churned) / recorded; logo < own || logo > own+0.05 || rg.GetP10() > own || rg.GetP90() < own {
		t.Errorf("expected logo retention %.3f [%.3f, %.3f]: want just above the tenant's %.3f, within the range", logo, rg.GetP10(), rg.GetP90(), own)
	}
}
