// Package replay scores a tenant's event history with a candidate scorecard,
// in event time, without touching the live scoring state: what the tenant's
// health scores would have been had the candidate been active. The renewal
// forecast's backtest uses it to judge a scorecard change before it goes
// live; the bench to measure the engine's memory.
//
// A replay runs the scoring core itself (internal/scorecore/engine), so a
// replayed score is exactly the score the scoring service would have
// published for the same events, facts and scorecard. It does no I/O: its
// callers read the events (renewal-forecast from the EVENTS stream).
package replay

import (
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lodestar-cs/lodestar/internal/scorecore/engine"
	"github.com/lodestar-cs/lodestar/internal/scorecore/scorecard"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// Validate lists every problem of a scorecard, as ScoringService's
// ValidateScorecard does; none means it can be replayed.
func Validate(sc *scoringv1.Scorecard) []*scoringv1.ScorecardProblem { return scorecard.Validate(sc) }

// Fact is an account's CRM facts as they stood from At on, in event time.
// Replaying a year needs the renewal dates and stages of that year, not the
// ones the CRM holds today.
type Fact struct {
	At      time.Time
	Account *accountv1.Account
}

// Replayer feeds one tenant's events to a private scoring core and collects
// the score changes it would have published. It is not safe for concurrent
// use.
type Replayer struct {
	tenant string
	eng    *engine.Engine
	facts  []Fact
	next   int   // facts[next:] are not applied yet
	day    int64 // event-time day of the events applied last
	wall   time.Time
}

// New returns a replayer for tenant scoring with sc; facts need not be sorted.
func New(tenant string, sc *scoringv1.Scorecard, facts []Fact) (*Replayer, error) {
	if problems := scorecard.Validate(sc); len(problems) > 0 {
		return nil, fmt.Errorf("replay: %w", scorecard.ProblemsError(problems))
	}
	eng, err := engine.New(engine.Config{Scorecard: sc})
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	facts = slices.Clone(facts)
	slices.SortStableFunc(facts, func(a, b Fact) int { return a.At.Compare(b.At) })
	return &Replayer{tenant: tenant, eng: eng, facts: facts}, nil
}

// Apply adds events of the tenant (others are ignored) and returns the score
// changes of the days they closed. Scores are flushed at each day boundary
// of event time, so the history has the scoring service's daily resolution
// however the events were batched.
func (r *Replayer) Apply(events []*eventv1.Event, wall time.Time) []*scoringv1.HealthScore {
	var out []*scoringv1.HealthScore
	r.wall = wall
	for _, ev := range events {
		if ev.GetTenantId() != r.tenant {
			continue
		}
		t := ev.GetEventTime()
		if t == nil {
			t = ev.GetReceivedTime()
		}
		sec := min(t.GetSeconds(), wall.Unix())
		if day := sec / 86400; day > r.day {
			out = append(out, r.flush()...)
			r.day = day
		}
		// The event first: it moves the watermark, so facts dated on a new
		// day are not scored at the end of the day before.
		r.eng.Apply(ev, wall)
		r.applyFacts(sec)
	}
	return out
}

// Finish returns the score changes of the last day replayed, as it ended:
// the scoring core records a replayed day's scores at its end (see
// engine.Engine.Flush). A last day that has not ended on the wall clock
// has none.
func (r *Replayer) Finish() []*scoringv1.HealthScore {
	if r.day > 0 {
		r.eng.Advance(r.tenant, time.Unix((r.day+1)*86400, 0), r.wall)
	}
	return r.flush()
}

// flush returns the changes the scoring service would record in the SCORES
// stream, leaving out scores that only refresh the hot cache.
func (r *Replayer) flush() []*scoringv1.HealthScore {
	var out []*scoringv1.HealthScore
	for _, s := range r.eng.Flush() {
		if s.Change {
			out = append(out, s.Score)
		}
	}
	return out
}

// applyFacts sets the facts due by event time sec. The first event brings in
// every fact from before it: accounts are known before their first event.
func (r *Replayer) applyFacts(sec int64) {
	for r.next < len(r.facts) && r.facts[r.next].At.Unix() <= sec {
		acc := proto.CloneOf(r.facts[r.next].Account)
		acc.TenantId = r.tenant
		r.eng.SetAccount(acc)
		r.next++
	}
}
