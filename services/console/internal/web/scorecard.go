package web

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"

	"github.com/lodestar-cs/lodestar/internal/scorecore/scorecard"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// The scorecard is edited as the YAML the scorecard files use.

func marshalScorecard(sc *scoringv1.Scorecard) (string, error) {
	// The version and update time are the service's to set.
	sc = &scoringv1.Scorecard{Name: sc.GetName(), CoreEvents: sc.GetCoreEvents(), ActiveEvents: sc.GetActiveEvents(),
		Measures: sc.GetMeasures(), Bands: sc.GetBands(), StageOverrides: sc.GetStageOverrides(), LevelTrait: sc.GetLevelTrait(),
		RoleLevels: sc.GetRoleLevels(), OnboardingDays: sc.GetOnboardingDays(), MinHistoryDays: sc.GetMinHistoryDays()}
	b, err := scorecard.Marshal(sc)
	return string(b), err
}

func parseScorecard(y string) (*scoringv1.Scorecard, error) { return scorecard.Parse([]byte(y)) }

// problemsOf lists the field violations of an InvalidArgument status.
func problemsOf(st *status.Status) []*scoringv1.ScorecardProblem {
	var out []*scoringv1.ScorecardProblem
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				out = append(out, &scoringv1.ScorecardProblem{Field: v.GetField(), Description: v.GetDescription()})
			}
		}
	}
	if len(out) == 0 {
		out = append(out, &scoringv1.ScorecardProblem{Field: "scorecard", Description: st.Message()})
	}
	return out
}
