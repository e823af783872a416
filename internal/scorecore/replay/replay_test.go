package replay_test

import (
	"testing"

	"github.com/lodestar-cs/lodestar/internal/scorecore/replay"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

func TestInvalidScorecard(t *testing.T) {
	bad := &scoringv1.Scorecard{Name: "no measures"}
	if len(replay.Validate(bad)) == 0 {
		t.Fatal("Validate found no problem")
	}
	if _, err := replay.New("acme", bad, nil); err == nil {
		t.Fatal("New accepted an invalid scorecard")
	}
}
