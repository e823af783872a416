package history

import (
	"math"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

var t0 = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)

func score(account string, at time.Time, s float64, band scoringv1.Band) *scoringv1.HealthScore {
	return &scoringv1.HealthScore{
		TenantId: "acme", AccountId: account, Score: s, Band: band, ScoreTime: timestamppb.New(at),
		Measures: []*scoringv1.MeasureResult{
			{Kind: scoringv1.MeasureKind_MEASURE_KIND_ACTIVE_SEAT_RATIO, HasData: true, RawValue: 0.95},
			{Kind: scoringv1.MeasureKind_MEASURE_KIND_STAKEHOLDER_ENGAGEMENT, HasData: false},
		},
	}
}

func TestTimeline(t *testing.T) {
	const red, green = scoringv1.Band_BAND_RED, scoringv1.Band_BAND_GREEN
	ts := Timelines{}
	for _, hs := range []*scoringv1.HealthScore{
		score("a", t0.Add(10*time.Hour), 80, green),
		score("a", t0.Add(20*time.Hour), 75, green), // same day, later: replaces
		score("a", t0.Add(3*24*time.Hour), 30, red),
		score("a", t0.Add(5*24*time.Hour), 60, green),
		score("a", t0.Add(24*time.Hour+time.Hour), 50, green), // late: inserted
		score("a", t0.Add(15*time.Hour), 99, green),           // late and older than its day's point: ignored
	} {
		ts.Add(hs)
	}
	s := ts.Scores("a")
	if s.Len() != 4 {
		t.Fatalf("%d days, want 4", s.Len())
	}
	for _, tc := range []struct {
		at    time.Time
		ok    bool
		score float32
	}{
		{t0, false, 0},
		{t0.Add(12 * time.Hour), false, 0}, // the day's point is its last score, at 20h
		{t0.Add(22 * time.Hour), true, 75},
		{t0.Add(2 * 24 * time.Hour), true, 50},
		{t0.Add(4 * 24 * time.Hour), true, 30},
		{t0.Add(90 * 24 * time.Hour), true, 60},
	} {
		p, ok := s.At(tc.at)
		if ok != tc.ok || p.Score != tc.score {
			t.Errorf("At(%v) = %v %v, want %v %v", tc.at, p.Score, ok, tc.ok, tc.score)
		}
	}
	if red, ok := s.FirstRed(t0, t0.Add(10*24*time.Hour)); !ok || !red.Equal(t0.Add(3*24*time.Hour)) {
		t.Errorf("FirstRed = %v %v", red, ok)
	}
	if _, ok := s.FirstRed(t0.Add(4*24*time.Hour), t0.Add(10*24*time.Hour)); ok {
		t.Error("FirstRed found a red outside its window")
	}
	p, _ := s.Latest()
	if p.Seats != 0.95 || !math.IsNaN(float64(p.Stakeholders)) {
		t.Errorf("measures condensed to seats %v, stakeholders %v", p.Seats, p.Stakeholders)
	}
	if ts.Scores("nobody").Len() != 0 {
		t.Error("an unknown account has scores")
	}
}

// TestViewsAreStable reads views while scores keep arriving, late ones
// included: run with -race, and a view must not change under its reader.
func TestViewsAreStable(t *testing.T) {
	st := NewStore()
	st.PutAccount("acme", &accountv1.Account{AccountId: "a"})
	var wg sync.WaitGroup
	wg.Go(func() {
		for d := range 400 {
			st.AddScore(score("a", t0.Add(time.Duration(d)*24*time.Hour), float64(d%100), scoringv1.Band_BAND_GREEN))
			if d%7 == 0 { // a republished older change
				st.AddScore(score("a", t0.Add(time.Duration(d/2)*24*time.Hour+time.Hour), 1, scoringv1.Band_BAND_RED))
			}
		}
	})
	for range 200 {
		v := st.View("acme")
		s := v.Scores("a")
		n := s.Len()
		before := make([]Point, n)
		for i := range n {
			before[i] = s.point(i)
		}
		for i := range n {
			if p := s.point(i); p.Time != before[i].Time || p.Score != before[i].Score {
				t.Fatal("a view changed under its reader")
			}
		}
	}
	wg.Wait()
}

func TestOutcomeVersion(t *testing.T) {
	st := NewStore()
	acc := &accountv1.Account{AccountId: "a", Name: "A"}
	st.PutAccount("acme", acc)
	v0 := st.View("acme").Outcomes
	st.PutAccount("acme", &accountv1.Account{AccountId: "a", Name: "A renamed"})
	if st.View("acme").Outcomes != v0 {
		t.Error("a change without outcomes made the model stale")
	}
	st.PutAccount("acme", &accountv1.Account{AccountId: "a", Outcomes: []*accountv1.RenewalOutcome{{AccountId: "a"}}})
	v := st.View("acme")
	if v.Outcomes == v0 {
		t.Error("a recorded outcome did not make the model stale")
	}
	if a, ok := v.Account("a"); !ok || len(a.GetOutcomes()) != 1 {
		t.Errorf("Account(a) = %v, %v", a, ok)
	}
}
