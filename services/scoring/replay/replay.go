// Package replay scores a tenant's stored event history with a candidate
// scorecard, in event time, without touching the live scoring state: what the
// tenant's health scores would have been had the candidate been active. The
// renewal forecast's backtest uses it to judge a scorecard change before it
// goes live.
//
// A replay runs the scoring core itself (services/scoring/internal/engine),
// so a replayed score is exactly the score the scoring service would have
// published for the same events, facts and scorecard.
package replay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/lodestar-cs/lodestar/pkg/natsx"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/scoring/internal/engine"
	"github.com/lodestar-cs/lodestar/services/scoring/internal/scorecard"
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

// Finish returns the score changes of the last day replayed.
func (r *Replayer) Finish() []*scoringv1.HealthScore { return r.flush() }

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

// fetchWait bounds the wait for a batch of stored events; the stream's end
// shows as an empty fetch.
const fetchWait = 500 * time.Millisecond

// Stream replays every event of tenant stored in the EVENTS stream when it
// is called (later events are not waited for) and passes each score change
// to emit, oldest day first.
func Stream(ctx context.Context, js jetstream.JetStream, tenant string, sc *scoringv1.Scorecard, facts []Fact, emit func(*scoringv1.HealthScore)) error {
	r, err := New(tenant, sc, facts)
	if err != nil {
		return err
	}
	cons, err := js.OrderedConsumer(ctx, natsx.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{natsx.EventsSubjectPrefix + "." + tenant + ".*"},
	})
	if err != nil {
		return fmt.Errorf("replay %s: events consumer: %w", tenant, err)
	}
	var batch eventv1.EventBatch
	for {
		msgs, err := cons.Fetch(1000, jetstream.FetchMaxWait(fetchWait))
		if err != nil {
			return fmt.Errorf("replay %s: fetch events: %w", tenant, err)
		}
		got, pending := 0, uint64(1)
		for msg := range msgs.Messages() {
			got++
			if meta, err := msg.Metadata(); err == nil {
				pending = meta.NumPending
			}
			if err := proto.Unmarshal(msg.Data(), &batch); err != nil {
				// Ingest only stores what it encoded; the scoring service skips
				// such a message too.
				continue
			}
			for _, hs := range r.Apply(batch.GetEvents(), time.Now()) {
				emit(hs)
			}
		}
		if err := msgs.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("replay %s: fetch events: %w", tenant, err)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("replay %s: %w", tenant, err)
		}
		if got == 0 || pending == 0 {
			break
		}
	}
	for _, hs := range r.Finish() {
		emit(hs)
	}
	return nil
}
