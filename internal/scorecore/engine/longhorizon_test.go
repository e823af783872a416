package engine

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/internal/scorecore/scorecard"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// yearOfEvents is a product the default scorecard has never heard of (its own
// event names), over a year: accounts acct-00..: the even ones use it a few
// times a week all year, the odd ones fall silent after two months.
func yearOfEvents(accounts int) (start time.Time, days int, byDay [][]*eventv1.Event) {
	start = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	days = 365
	byDay = make([][]*eventv1.Event, days)
	r := rand.New(rand.NewPCG(1, 2))
	names := []string{"Order Placed", "Menu Updated", "Ticket Printed"}
	n := 0
	for d := range days {
		for i := range accounts {
			if i%2 == 1 && d >= 60 {
				continue
			}
			for u := range 3 {
				if r.Float64() > 0.4 {
					continue
				}
				n++
				byDay[d] = append(byDay[d], &eventv1.Event{
					TenantId: "t", AccountId: fmt.Sprintf("acct-%02d", i), UserId: fmt.Sprintf("u%d-%d", i, u),
					MessageId: fmt.Sprint(n), Type: eventv1.EventType_EVENT_TYPE_TRACK, Event: names[r.IntN(len(names))],
					EventTime: timestamppb.New(start.Add(time.Duration(d)*24*time.Hour + time.Duration(r.IntN(86400))*time.Second)),
				})
			}
		}
	}
	return start, days, byDay
}

// replayYear is an engine with the default scorecard that replayed
// yearOfEvents day by day.
func replayYear(t *testing.T, accounts int) *Engine {
	t.Helper()
	e := newEngine(t, Config{})
	_, _, byDay := yearOfEvents(accounts)
	for _, evs := range byDay {
		for _, ev := range evs {
			e.Apply(ev, replayWall)
		}
		e.Flush()
	}
	return e
}

// TestSilentAccountsKeepAScore replays a year in which half the accounts fall
// silent after two months: at the end every account has a score with its
// explanation, the silent ones red and the active ones not, with no scorecard
// configured.
func TestSilentAccountsKeepAScore(t *testing.T) {
	const accounts = 20
	e := replayYear(t, accounts)
	for i := range accounts {
		id := fmt.Sprintf("acct-%02d", i)
		hs, ok := e.Score("t", id)
		if !ok {
			t.Fatalf("%s has no score", id)
		}
		silent := i%2 == 1
		if silent && hs.GetBand() != scoringv1.Band_BAND_RED || !silent && hs.GetBand() == scoringv1.Band_BAND_RED {
			t.Errorf("%s (silent %v): %.1f %v: %s", id, silent, hs.GetScore(), hs.GetBand(), hs.GetSummary())
		}
		if hs.GetSummary() == "" || len(hs.GetMeasures()) == 0 {
			t.Errorf("%s: no explanation", id)
		}
		if !strings.Contains(strings.Join(hs.GetNotes(), "\n"), "any product event") {
			t.Errorf("%s: the score does not say what core use was read as: %q", id, hs.GetNotes())
		}
		if r := measureOf(hs, "recency"); silent && !strings.Contains(r.GetDetail(), "days ago") {
			t.Errorf("%s: recency detail %q", id, r.GetDetail())
		}
	}
}

// TestLongSilencesStayApart checks that the default scorecard tells 25 silent
// days from 250: recency is counted however long, on the tenant's scale.
func TestLongSilencesStayApart(t *testing.T) {
	e := newEngine(t, Config{})
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	ev := func(acct string, d int) *eventv1.Event {
		return &eventv1.Event{TenantId: "t", AccountId: acct, UserId: acct + "-u", Type: eventv1.EventType_EVENT_TYPE_TRACK,
			Event: "Order Placed", EventTime: timestamppb.New(start.Add(time.Duration(d) * 24 * time.Hour))}
	}
	for d := range 300 {
		for i := range 10 {
			acct := fmt.Sprintf("busy-%d", i)
			if d%(i+1) == 0 {
				e.Apply(ev(acct, d), replayWall)
			}
		}
		if d < 50 || d == 275 {
			e.Apply(ev("silent-25", d), replayWall)
		}
		if d < 50 {
			e.Apply(ev("silent-250", d), replayWall)
		}
		e.Flush()
	}
	short, ok1 := e.Score("t", "silent-25")
	long, ok2 := e.Score("t", "silent-250")
	if !ok1 || !ok2 {
		t.Fatal("silent accounts have no score")
	}
	rs, rl := measureOf(short, "recency"), measureOf(long, "recency")
	if rs.GetRawValue() != 24 || rl.GetRawValue() != 250 {
		t.Fatalf("recency raw values %v and %v, want 24 and 250", rs.GetRawValue(), rl.GetRawValue())
	}
	if !(rs.GetSubScore() > rl.GetSubScore()+1) {
		t.Errorf("recency sub-scores %v (24 days) and %v (250 days) are not apart", rs.GetSubScore(), rl.GetSubScore())
	}
}

// TestNotJudgedBeforeHistory checks that a new account is watched, not
// judged, until it has the scorecard's min_history_days.
func TestNotJudgedBeforeHistory(t *testing.T) {
	e := newEngine(t, Config{})
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for d := range 20 {
		e.Apply(&eventv1.Event{TenantId: "t", AccountId: "a", UserId: "u", Type: eventv1.EventType_EVENT_TYPE_TRACK,
			Event: "Order Placed", EventTime: timestamppb.New(start.Add(time.Duration(d) * 24 * time.Hour))}, replayWall)
		// A flush returns the score of the day before too, as it ended.
		for _, s := range e.Flush() {
			band, day := s.Score.GetBand(), int(s.Score.GetScoreTime().AsTime().Sub(start)/(24*time.Hour))
			if judged := day+1 >= 14; judged != (band != scoringv1.Band_BAND_INSUFFICIENT_DATA) {
				t.Fatalf("day %d (history %d days): band %v: %s", day, day+1, band, s.Score.GetSummary())
			}
		}
	}
}

// TestSilentAccountsShrink checks that accounts silent for the daily window
// give back their daily counts and that nothing read changes: the score
// computed from the compact account equals the one from zero-filled counts.
func TestSilentAccountsShrink(t *testing.T) {
	const accounts = 10
	e := replayYear(t, accounts)
	if e.Stats().Compacted == 0 {
		t.Fatal("no account was compacted")
	}
	tn := e.tenants["t"]
	for i := range accounts {
		id := fmt.Sprintf("acct-%02d", i)
		a := tn.Accounts[id]
		silent := i%2 == 1
		for _, g := range a.Groups {
			if silent != (g.Counts == nil) {
				t.Fatalf("%s (silent %v): daily counts kept %v", id, silent, g.Counts != nil)
			}
		}
		if !silent {
			continue
		}
		before, _ := e.Score("t", id)
		for gi := range a.Groups {
			a.Groups[gi].Counts = make([]uint32, e.window)
		}
		after, _ := e.Score("t", id)
		if !proto.Equal(before, after) {
			t.Fatalf("%s: compact score %v, with zero daily counts %v", id, before.GetScore(), after.GetScore())
		}
	}
}

// TestScorecardChangeRefitsScales checks that a new scorecard's scales are
// its own at once: scales are by measure, and a scorecard that removes or
// reorders measures must not read another measure's.
func TestScorecardChangeRefitsScales(t *testing.T) {
	e := replayYear(t, 6)
	sc, err := scorecard.Default()
	if err != nil {
		t.Fatal(err)
	}
	sc.Measures = sc.Measures[1:2] // regularity alone
	if err := e.SetScorecard("t", sc); err != nil {
		t.Fatal(err)
	}
	tn := e.tenants["t"]
	if len(tn.Scales) != len(tn.sc.Measures) || tn.Scales[0].N() == 0 {
		t.Fatalf("%d scales for %d measures, the first fitted on %d values", len(tn.Scales), len(tn.sc.Measures), tn.Scales[0].N())
	}
	hs, _ := e.Score("t", "acct-00")
	if m := measureOf(hs, "regularity"); m.GetSubScore() < 50 {
		t.Fatalf("an account active all year: regularity %v", m)
	}
}
