package engine

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/internal/scorecore/scorecard"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/tools/loadgen/sim"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func newEngine(t testing.TB, cfg Config) *Engine {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// run feeds scenario days [from, to) into e as they happen (each event at its
// own time on the wall clock: a live tenant, whose changes are recorded as
// they come), flushing after each day, and returns one line per published
// score.
func run(e *Engine, from, to int) []string {
	var log []string
	for d := from; d < to; d++ {
		for _, ev := range scenarioEvents(d) {
			e.Apply(ev, ev.GetEventTime().AsTime())
		}
		for _, hs := range changes(e.Flush()) {
			log = append(log, fmt.Sprintf("day %02d %-10s %6.2f %-6s %-11s %s", d, hs.GetAccountId(), hs.GetScore(),
				strings.TrimPrefix(hs.GetBand().String(), "BAND_"),
				strings.TrimPrefix(hs.GetLifecycleStage().String(), "LIFECYCLE_STAGE_"), hs.GetSummary()))
		}
	}
	return log
}

// demoScorecard is the simulated product's scorecard, whose measures the
// scenario's accounts exercise one by one.
func demoScorecard(t testing.TB) *scoringv1.Scorecard {
	t.Helper()
	sc, err := scorecard.Parse(sim.ScorecardYAML)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func scenarioEngine(t testing.TB) *Engine {
	e := newEngine(t, Config{Scorecard: demoScorecard(t)})
	for _, a := range scenarioAccounts() {
		e.SetAccount(a)
	}
	return e
}

func TestGolden(t *testing.T) {
	e := scenarioEngine(t)
	log := run(e, 0, scenarioDays)
	golden(t, "timeline.txt", []byte(strings.Join(log, "\n")+"\n"))
	for _, a := range scenarioAccounts() {
		hs, ok := e.Score(tenantID, a.GetAccountId())
		if !ok {
			t.Fatalf("no score for %s", a.GetAccountId())
		}
		golden(t, a.GetAccountId()+".json", canonicalJSON(t, hs))
	}
}

var stillMove = regexp.MustCompile(`([+-][0-9.]+) \(still [^)]*\)`)

// TestSummariesSayWhy checks the timeline's explanations: no measure is
// named for a move that rounds to nothing, and a measure whose value stayed
// while its points moved says why.
func TestSummariesSayWhy(t *testing.T) {
	for _, line := range run(scenarioEngine(t), 0, scenarioDays) {
		if strings.Contains(line, " +0.0 (") || strings.Contains(line, " -0.0 (") {
			t.Errorf("a move of nothing named: %s", line)
		}
		// A value that reads the same may still have moved a little below
		// the rounding; a point or more is the weights' doing.
		for _, m := range stillMove.FindAllStringSubmatch(line, -1) {
			if p, _ := strconv.ParseFloat(m[1], 64); math.Abs(p) >= 1 && !strings.Contains(m[0], "share of the score") {
				t.Errorf("a measure moved the score %v with its value unchanged, unexplained: %s", p, line)
			}
		}
	}
}

func TestScenarioBehaviour(t *testing.T) {
	e := scenarioEngine(t)
	run(e, 0, scenarioDays)
	score := func(id string) *scoringv1.HealthScore {
		hs, ok := e.Score(tenantID, id)
		if !ok {
			t.Fatalf("no score for %s", id)
		}
		return hs
	}
	tests := []struct {
		account string
		band    scoringv1.Band
		stage   accountv1.LifecycleStage
	}{
		{"healthy", scoringv1.Band_BAND_GREEN, accountv1.LifecycleStage_LIFECYCLE_STAGE_ADOPTION},
		{"expanding", scoringv1.Band_BAND_GREEN, accountv1.LifecycleStage_LIFECYCLE_STAGE_ADOPTION},
		{"declining", scoringv1.Band_BAND_RED, accountv1.LifecycleStage_LIFECYCLE_STAGE_PRE_RENEWAL},
		{"silent", scoringv1.Band_BAND_RED, accountv1.LifecycleStage_LIFECYCLE_STAGE_ADOPTION},
		{"dead", scoringv1.Band_BAND_RED, accountv1.LifecycleStage_LIFECYCLE_STAGE_ADOPTION},
		// Signed late in the scenario: watched, not judged yet.
		{"onboarding", scoringv1.Band_BAND_INSUFFICIENT_DATA, accountv1.LifecycleStage_LIFECYCLE_STAGE_ONBOARDING},
	}
	for _, tt := range tests {
		hs := score(tt.account)
		if hs.GetBand() != tt.band || hs.GetLifecycleStage() != tt.stage {
			t.Errorf("%s: %.1f %s %s, want %s %s", tt.account, hs.GetScore(), hs.GetBand(), hs.GetLifecycleStage(), tt.band, tt.stage)
		}
		var sum, weights float64
		for _, m := range hs.GetMeasures() {
			sum += m.GetContribution()
			weights += m.GetEffectiveWeight()
		}
		if math.Abs(sum-hs.GetScore()) > 0.05 || math.Abs(weights-1) > 0.001 {
			t.Errorf("%s: contributions add to %v (score %v), effective weights to %v", tt.account, sum, hs.GetScore(), weights)
		}
	}
	if got := measureOf(score("onboarding"), "milestones"); got.GetDetail() != "2 of 3 milestones reached: Account Configured, Teammate Invited" {
		t.Errorf("onboarding milestones: %q", got.GetDetail())
	}
	if got := measureOf(score("healthy"), "billing"); got.GetRawValue() != 0 {
		t.Errorf("a cleared failed payment still counts: %v", got)
	}
	if got := measureOf(score("declining"), "support_load"); got.GetDetail() != "2 open tickets (1 severe)" {
		t.Errorf("declining support: %q", got.GetDetail())
	}
	if hs := score("silent"); hs.GetDrop_7D() >= 0 && hs.GetScore() > 20 {
		t.Errorf("silent: score %v drop %v", hs.GetScore(), hs.GetDrop_7D())
	}
}

// The declining account's drops are explained by the measures that moved.
func TestDeclineSummary(t *testing.T) {
	e := scenarioEngine(t)
	var drops []*scoringv1.HealthScore
	for d := range scenarioDays {
		for _, ev := range scenarioEvents(d) {
			e.Apply(ev, replayWall)
		}
		for _, hs := range changes(e.Flush()) {
			if hs.GetAccountId() == "declining" && hs.GetDelta() <= -1 && !hs.GetScorecardChanged() {
				drops = append(drops, hs)
			}
		}
	}
	if len(drops) == 0 {
		t.Fatal("the declining account never dropped")
	}
	usage := 0
	for _, hs := range drops {
		var sum float64
		worst := hs.GetAttributions()[0]
		for _, a := range hs.GetAttributions() {
			sum += a.GetPoints()
			if a.GetPoints() < worst.GetPoints() {
				worst = a
			}
		}
		if math.Abs(sum-hs.GetDelta()) > 0.1 {
			t.Errorf("attributions add to %v, delta %v", sum, hs.GetDelta())
		}
		summary := hs.GetSummary()
		if !strings.Contains(summary, fmt.Sprintf("%+.1f to", hs.GetDelta())) ||
			!strings.Contains(summary, fmt.Sprintf("%s %+.1f (", worst.GetMeasure(), worst.GetPoints())) {
			t.Errorf("summary %q does not explain %v by %s", summary, hs.GetDelta(), worst.GetMeasure())
		}
		if strings.Contains(summary, "active_seats -") || strings.Contains(summary, "core_usage -") ||
			strings.Contains(summary, "usage_trend -") || strings.Contains(summary, "stakeholders -") {
			usage++
		}
		t.Log(summary)
	}
	if usage < len(drops)/2 {
		t.Errorf("only %d of %d drops are put down to usage", usage, len(drops))
	}
}

// A live tenant's silent account decays as Tick moves time on; a replay far behind
// the wall clock is not moved.
func TestTickDecay(t *testing.T) {
	e := newEngine(t, Config{Scorecard: demoScorecard(t)})
	e.SetAccount(scenarioAccounts()[0])
	for d := range 40 {
		for _, ev := range scenarioEvents(d) {
			if ev.GetAccountId() == "healthy" {
				e.Apply(ev, dayTime(d, 23, 59))
			}
		}
	}
	e.Flush()
	before, _ := e.Score(tenantID, "healthy")
	if before.GetBand() != scoringv1.Band_BAND_GREEN {
		t.Fatalf("healthy before the silence: %v", before.GetSummary())
	}

	e.Tick(dayTime(60, 0, 0)) // far ahead of the watermark: a replay, not moved
	if got, _ := e.Score(tenantID, "healthy"); !proto.Equal(got.GetScoreTime(), before.GetScoreTime()) {
		t.Fatalf("Tick moved a lagging watermark to %v", got.GetScoreTime().AsTime())
	}

	wm := before.GetScoreTime().AsTime()
	var red *scoringv1.HealthScore
	for wall := wm.Add(30 * time.Minute); wall.Before(wm.AddDate(0, 0, 30)); wall = wall.Add(30 * time.Minute) {
		e.Tick(wall)
		for _, hs := range changes(e.Flush()) {
			if hs.GetBand() == scoringv1.Band_BAND_RED && red == nil {
				red = hs
			}
		}
	}
	if red == nil {
		t.Fatal("a silent account never turned red")
	}
	days := red.GetScoreTime().AsTime().Sub(wm).Hours() / 24
	if days < 7 || days > 25 {
		t.Errorf("turned red after %.1f days of silence", days)
	}
	t.Logf("red after %.1f days: %s", days, red.GetSummary())
}

func TestDeterministic(t *testing.T) {
	a, b := scenarioEngine(t), scenarioEngine(t)
	la, lb := run(a, 0, scenarioDays), run(b, 0, scenarioDays)
	if strings.Join(la, "\n") != strings.Join(lb, "\n") {
		t.Fatal("two runs of the same events differ")
	}
}

func TestSnapshotRestore(t *testing.T) {
	whole := scenarioEngine(t)
	run(whole, 0, 45)
	var buf bytes.Buffer
	if err := whole.Snapshot(&buf); err != nil {
		t.Fatal(err)
	}
	size := buf.Len()
	restored := newEngine(t, Config{Scorecard: demoScorecard(t)})
	if err := restored.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if err := restored.Snapshot(&again); err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot of %d accounts: %d bytes", len(scenarioAccounts()), size)

	for d := 45; d < scenarioDays; d++ {
		for _, ev := range scenarioEvents(d) {
			whole.Apply(ev, replayWall)
			restored.Apply(ev, replayWall)
		}
		want, got := changes(whole.Flush()), changes(restored.Flush())
		if !bytes.Equal(wire(t, want...), wire(t, got...)) {
			t.Fatalf("day %d: the restored engine published different scores", d)
		}
	}
	for _, a := range scenarioAccounts() {
		want, _ := whole.Score(tenantID, a.GetAccountId())
		got, _ := restored.Score(tenantID, a.GetAccountId())
		if !bytes.Equal(wire(t, want), wire(t, got)) {
			t.Errorf("%s: restored score differs", a.GetAccountId())
		}
	}
	if whole.Stats() != restored.Stats() {
		t.Errorf("stats: %+v vs %+v", whole.Stats(), restored.Stats())
	}
	if err := newEngine(t, Config{WindowDays: 60}).Restore(bytes.NewReader(again.Bytes())); err == nil {
		t.Error("a snapshot restored into an engine with another window")
	}
}

func TestScorecardChange(t *testing.T) {
	e := scenarioEngine(t)
	run(e, 0, 50)
	sc := demoScorecard(t)
	if err := e.SetScorecard(tenantID, sc); err != nil {
		t.Fatal(err)
	}
	if got := changes(e.Flush()); len(got) != 0 {
		t.Fatalf("the same scorecard again re-published %d scores", len(got))
	}
	sc.Version = 2
	sc.Measures[0].Weight = 40 // active_seats
	sc.CoreEvents = append(sc.CoreEvents, "Feature 1 Used")
	if err := e.SetScorecard(tenantID, sc); err != nil {
		t.Fatal(err)
	}
	got := changes(e.Flush())
	if len(got) != len(scenarioAccounts()) {
		t.Fatalf("published %d scores, want one per account", len(got))
	}
	for _, hs := range got {
		if !hs.GetScorecardChanged() || hs.GetScorecardVersion() != 2 {
			t.Errorf("%s: scorecard_changed %v, version %d", hs.GetAccountId(), hs.GetScorecardChanged(), hs.GetScorecardVersion())
		}
	}
	next := run(e, 50, 52)
	for _, line := range next {
		if strings.Contains(line, "new scorecard") {
			t.Errorf("scorecard change reported twice: %s", line)
		}
	}
	bad := &scoringv1.Scorecard{}
	if err := e.SetScorecard(tenantID, bad); err == nil {
		t.Error("an invalid scorecard was accepted")
	}
}

func TestNoDataRedistributes(t *testing.T) {
	e := newEngine(t, Config{Scorecard: demoScorecard(t)})
	var b eventBuilder
	for d := range 3 {
		b.usage("noseats", d, 0, 4, 1)
	}
	for _, ev := range b.events {
		e.Apply(ev, replayWall)
	}
	// A replay: the first two days recorded when they ended, the third
	// current but not recorded, as its day has not ended.
	out := e.Flush()
	if got := changes(out); len(got) != 2 {
		t.Fatalf("recorded %d scores, want one a day that ended", len(got))
	}
	if len(out) != 3 || out[2].Change {
		t.Fatalf("flushed %d scores, the last recorded %v: want 3, the last not", len(out), out[len(out)-1].Change)
	}
	hs := out[2].Score
	var weights float64
	for _, m := range hs.GetMeasures() {
		weights += m.GetEffectiveWeight()
		switch m.GetName() {
		case "active_seats", "usage_trend", "stakeholders", "nps", "support_load", "billing":
			// No seats on record, too little history, no levels, no surveys,
			// and a product that sends no tickets or billing events.
			if m.GetHasData() || m.GetEffectiveWeight() != 0 {
				t.Errorf("%s has data: %v", m.GetName(), m)
			}
		default:
			if !m.GetHasData() {
				t.Errorf("%s has no data: %v", m.GetName(), m)
			}
		}
	}
	if math.Abs(weights-1) > 0.001 {
		t.Errorf("effective weights add to %v", weights)
	}
	if len(hs.GetNotes()) != 6 || !strings.Contains(hs.GetNotes()[0], "active_seats left out (seats purchased unknown") ||
		!strings.Contains(hs.GetNotes()[4], "support_load left out (no support tickets from this product)") {
		t.Errorf("notes: %q", hs.GetNotes())
	}
	if want := 20.0 / 38; math.Abs(measureOf(hs, "core_usage").GetEffectiveWeight()-want) > 0.0001 {
		t.Errorf("core_usage effective weight %v, want %v", measureOf(hs, "core_usage").GetEffectiveWeight(), want)
	}
}

func TestLateAndFutureEvents(t *testing.T) {
	e := scenarioEngine(t)
	run(e, 0, scenarioDays)
	before, _ := e.Score(tenantID, "healthy")
	stats := e.Stats()

	// Older than the long horizon (53 weeks): ignored.
	late := &eventv1.Event{TenantId: tenantID, Type: eventv1.EventType_EVENT_TYPE_TRACK, AccountId: "healthy",
		UserId: "healthy-user-99", Event: "Report Created", EventTime: timestamppb.New(dayTime(scenarioDays-375, 12, 0))}
	e.Apply(late, replayWall)
	if got := e.Stats().Late; got != stats.Late+1 {
		t.Errorf("late events: %d, want %d", got, stats.Late+1)
	}
	if out := changes(e.Flush()); len(out) != 0 {
		t.Errorf("a late event changed %d scores", len(out))
	}
	if after, _ := e.Score(tenantID, "healthy"); !proto.Equal(before, after) {
		t.Error("a late event changed the score")
	}

	// Late but within the window: counted on its own day.
	inWindow := proto.Clone(late).(*eventv1.Event)
	inWindow.EventTime = timestamppb.New(dayTime(scenarioDays-10, 12, 0))
	e.Apply(inWindow, replayWall)
	if got := measureOf(mustScore(t, e, "healthy"), "active_seats").GetDetail(); !strings.HasPrefix(got, "31 of 40") {
		t.Errorf("an event late within the window was not counted: %s", got)
	}

	wall := dayTime(scenarioDays+1, 9, 0)
	future := proto.Clone(late).(*eventv1.Event)
	future.EventTime = timestamppb.New(wall.AddDate(1, 0, 0))
	e.Apply(future, wall)
	if got := e.Stats().Future; got != stats.Future+1 {
		t.Errorf("future events: %d", got)
	}
	if got := mustScore(t, e, "healthy").GetScoreTime().AsTime(); !got.Equal(wall) {
		t.Errorf("watermark %v, want the wall clock %v", got, wall)
	}

	e.Apply(&eventv1.Event{TenantId: tenantID, Type: eventv1.EventType_EVENT_TYPE_TRACK, Event: "x",
		EventTime: timestamppb.New(wall)}, wall)
	e.Apply(&eventv1.Event{TenantId: tenantID, Type: eventv1.EventType_EVENT_TYPE_TRACK, AccountId: "healthy"}, wall)
	if s := e.Stats(); s.Unattributed != stats.Unattributed+1 || s.Invalid != stats.Invalid+1 {
		t.Errorf("stats %+v", s)
	}
}

func TestUserLimit(t *testing.T) {
	e := newEngine(t, Config{MaxUsersPerAccount: 10, Scorecard: demoScorecard(t)})
	var b eventBuilder
	b.usage("big", 0, 0, 30, 1)
	for _, ev := range b.events {
		e.Apply(ev, replayWall)
	}
	hs := e.Flush()[0].Score
	if got := measureOf(hs, "active_seats").GetDetail(); !strings.Contains(got, "10 users active") {
		t.Errorf("active seats: %s", got)
	}
	if e.Stats().UserOverflow == 0 || !strings.Contains(strings.Join(hs.GetNotes(), " "), "beyond the limit of 10") {
		t.Errorf("overflow not reported: %+v %q", e.Stats(), hs.GetNotes())
	}
}

func TestConfig(t *testing.T) {
	for _, cfg := range []Config{{WindowDays: 20}, {WindowDays: 91}, {MaxUsersPerAccount: -1}, {Scorecard: &scoringv1.Scorecard{}}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

func measureOf(hs *scoringv1.HealthScore, name string) *scoringv1.MeasureResult {
	return result(hs, name)
}

func mustScore(t *testing.T, e *Engine, account string) *scoringv1.HealthScore {
	t.Helper()
	hs, ok := e.Score(tenantID, account)
	if !ok {
		t.Fatalf("no score for %s", account)
	}
	return hs
}

func wire(t *testing.T, scores ...*scoringv1.HealthScore) []byte {
	t.Helper()
	var out []byte
	for _, hs := range scores {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(hs)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

// canonicalJSON formats a message stably: protojson varies its whitespace on purpose.
func canonicalJSON(t *testing.T, m proto.Message) []byte {
	t.Helper()
	js, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var compact, out bytes.Buffer
	if err := json.Compact(&compact, js); err != nil {
		t.Fatal(err)
	}
	if err := json.Indent(&out, compact.Bytes(), "", "  "); err != nil {
		t.Fatal(err)
	}
	out.WriteByte('\n')
	return out.Bytes()
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run with -update to accept):\n%s", name, got)
	}
}

// changes keeps the scores of a Flush that are changes for history.
func changes(out []Scored) []*scoringv1.HealthScore {
	var hs []*scoringv1.HealthScore
	for _, s := range out {
		if s.Change {
			hs = append(hs, s.Score)
		}
	}
	return hs
}

// TestCurrentScoreIgnoresFlushTiming checks what crash recovery relies on:
// the current score of every account depends on its events and the
// watermark only, not on when flushes happened.
func TestCurrentScoreIgnoresFlushTiming(t *testing.T) {
	current := func(flushEvery int) map[string]string {
		e := scenarioEngine(t)
		cur := map[string]string{}
		keep := func() {
			for _, s := range e.Flush() {
				b, _ := protojson.Marshal(&scoringv1.HealthScore{
					Score: s.Score.GetScore(), Band: s.Score.GetBand(), Measures: s.Score.GetMeasures(),
				})
				cur[s.Score.GetAccountId()] = string(b)
			}
		}
		n := 0
		for d := 0; d < 60; d++ {
			for _, ev := range scenarioEvents(d) {
				e.Apply(ev, replayWall)
				if n++; n%flushEvery == 0 {
					keep()
				}
			}
		}
		keep()
		return cur
	}
	want := current(1 << 30)
	for _, every := range []int{1, 7, 100} {
		got := current(every)
		if len(got) != len(want) {
			t.Fatalf("flush every %d events: %d accounts scored, want %d", every, len(got), len(want))
		}
		for id, w := range want {
			if got[id] != w {
				t.Errorf("flush every %d events: %s = %s, want %s", every, id, got[id], w)
			}
		}
	}
}

// TestReadsCoversApply checks that Apply gives the same scores and state when every
// Struct field Reads does not name is left out, as the pipeline's decoder does: the
// scenario (NPS answers, tickets, billing, identify calls) plus calls whose
// properties or traits would be misread if Reads missed them.
func TestReadsCoversApply(t *testing.T) {
	tricky := func(d int) []*eventv1.Event {
		at := timestamppb.New(dayTime(d, 12, 0))
		ctx := mustStruct(map[string]any{"groupId": "acme", "library": map[string]any{"name": "analytics-go"}})
		return []*eventv1.Event{
			// A page or screen filed under a convention's name reads its properties too.
			{TenantId: tenantID, Type: eventv1.EventType_EVENT_TYPE_PAGE, UserId: userID("acme", 1), AccountId: "acme",
				Name: scorecard.EventNPSSubmitted, Properties: mustStruct(map[string]any{"score": 2}), EventTime: at, Context: ctx},
			{TenantId: tenantID, Type: eventv1.EventType_EVENT_TYPE_SCREEN, AnonymousId: "support", AccountId: "acme",
				Name: scorecard.EventTicketOpened, Properties: mustStruct(map[string]any{"ticket_id": d, "severity": "urgent"}), EventTime: at},
			// Traits of calls other than identify, and properties of other events, are never read.
			{TenantId: tenantID, Type: eventv1.EventType_EVENT_TYPE_GROUP, UserId: userID("acme", 2), AccountId: "acme",
				Traits: mustStruct(map[string]any{"role": "CEO", "stakeholder_level": "S"}), EventTime: at, Context: ctx},
			{TenantId: tenantID, Type: eventv1.EventType_EVENT_TYPE_TRACK, UserId: userID("acme", 3), AccountId: "acme",
				Event: coreEvents[0], Properties: mustStruct(map[string]any{"score": 9, "ticket_id": "x"}), EventTime: at, Context: ctx},
		}
	}
	lean := func(ev *eventv1.Event) *eventv1.Event {
		ev = proto.CloneOf(ev)
		props, traits := Reads(ev.GetType(), ev.GetEvent(), ev.GetName())
		if !props {
			ev.Properties = nil
		}
		if !traits {
			ev.Traits = nil
		}
		ev.Context = nil
		return ev
	}
	full, trimmed := scenarioEngine(t), scenarioEngine(t)
	for d := range scenarioDays {
		for _, ev := range append(scenarioEvents(d), tricky(d)...) {
			full.Apply(ev, replayWall)
			trimmed.Apply(lean(ev), replayWall)
		}
		if !bytes.Equal(wire(t, changes(full.Flush())...), wire(t, changes(trimmed.Flush())...)) {
			t.Fatalf("day %d: scores differ without the Structs Reads leaves out", d)
		}
	}
	state := func(e *Engine) []byte {
		var scores []*scoringv1.HealthScore
		for _, a := range append(scenarioAccounts(), &accountv1.Account{AccountId: "acme"}) {
			hs, _ := e.Score(tenantID, a.GetAccountId())
			scores = append(scores, hs)
		}
		return append(wire(t, scores...), fmt.Sprintf("%+v", e.Stats())...)
	}
	if !bytes.Equal(state(full), state(trimmed)) {
		t.Error("state differs without the Structs Reads leaves out")
	}
	// And the test has teeth: without any properties the tickets and NPS answers go.
	bare := scenarioEngine(t)
	for d := range scenarioDays {
		for _, ev := range append(scenarioEvents(d), tricky(d)...) {
			ev = proto.CloneOf(ev)
			ev.Properties = nil
			bare.Apply(ev, replayWall)
		}
		bare.Flush()
	}
	if bytes.Equal(state(full), state(bare)) {
		t.Error("the scenario reads no properties: the test proves nothing")
	}
}

// TestRestoreFormat1 restores a snapshot of format 1, which kept each account's
// users in a map, and checks that scoring carries on as without the restart.
func TestRestoreFormat1(t *testing.T) {
	old := scenarioEngine(t)
	run(old, 0, 45)
	s := snapshot{Format: 1, WindowDays: old.window, Stats: old.stats}
	for _, id := range old.order {
		tn := old.tenants[id]
		for _, a := range tn.Accounts {
			a.Users = map[uint64]user{}
			for _, slot := range a.UserTable.Slots {
				if slot.Key != 0 {
					a.Users[slot.Key] = slot.User
				}
			}
			a.UserTable = userTable{}
		}
		s.Tenants = append(s.Tenants, tn)
	}
	carriesOn(t, s)
}
