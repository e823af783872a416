package pipeline

import (
	"context"
	"sync"
	"time"

	"github.com/lodestar-cs/lodestar/services/churnalert/internal/alertstate"
)

// clocks keeps each tenant's clock. A tenant's rules, cooldowns, escalations
// and snoozes run on its event-time watermark (the latest score time seen)
// while it catches up with the wall clock: a backfill, a replay or a
// catch-up after an outage then decides as live running did. Once the
// watermark comes within liveLag of the wall clock the tenant is live, and
// its clock is the wall clock from then on: a live tenant's quiet hours must
// still let escalations fall due and renewals come nearer, although no score
// moves its watermark.
//
// A tenant that caught up from behind (a backfill, a replay) is live since
// then: what its last changes do within the freshness window after is the
// catch-up's result, not news (see lifecycle.Env.LiveSince). A new tenant
// whose first score is recent is live at once, from long ago.
//
// A tenant has a clock per partition, as scoring has a watermark per
// partition: the replica that owns a partition keeps its clocks, and no two
// replicas write one. The clocks are stored with the consumer positions, so a
// restart (or the partition's next owner) resumes
// with them; a tenant without one has sent no score yet, so no rule can fire
// on its accounts, and its clock is the wall clock until its first score.
type clocks struct {
	liveLag time.Duration
	scope   string // the partition, in the stored keys
	mu      sync.Mutex
	m       map[string]*alertstate.Clock
	dirty   map[string]bool
}

func newClocks(liveLag time.Duration, scope string, stored map[string]alertstate.Clock) *clocks {
	c := &clocks{liveLag: liveLag, scope: scope, m: map[string]*alertstate.Clock{}, dirty: map[string]bool{}}
	for tenant, tc := range stored {
		c.m[tenant] = &tc
	}
	return c
}

// observe advances a tenant's watermark to a score time.
func (c *clocks) observe(tenant string, at, wall time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	tc := c.m[tenant]
	if tc == nil {
		tc = &alertstate.Clock{}
		c.m[tenant] = tc
	}
	behind := !tc.Watermark.IsZero() // caught up from behind, not new
	if at.After(tc.Watermark) {
		tc.Watermark = at
		c.dirty[tenant] = true
	}
	if !tc.Live && wall.Sub(tc.Watermark) <= c.liveLag {
		tc.Live = true
		if behind {
			tc.LiveSince = wall
		}
		c.dirty[tenant] = true
	}
}

// now is a tenant's clock at a wall-clock time, whether the tenant is live
// (its clock is the wall clock), and since when (zero: long ago). at is the
// time of the score change being applied, zero for anything else: the
// clock moves only once a change is applied (see tracker), so the change
// itself decides as the clock will be after it.
func (c *clocks) now(tenant string, wall, at time.Time) (time.Time, bool, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	tc := c.m[tenant]
	switch {
	case tc != nil && (tc.Live || tc.Watermark.After(wall)):
		return wall, true, tc.LiveSince
	case !at.IsZero() && wall.Sub(at) > c.liveLag:
		if tc != nil && tc.Watermark.After(at) {
			return tc.Watermark, false, time.Time{}
		}
		return at, false, time.Time{}
	case !at.IsZero() && tc != nil:
		return wall, true, wall // the change that makes a catching-up tenant live
	case tc == nil:
		return wall, true, time.Time{}
	}
	return tc.Watermark, false, time.Time{}
}

// save stores the clocks that moved since the last save.
func (c *clocks) save(ctx context.Context, s *alertstate.Store) error {
	c.mu.Lock()
	changed := make(map[string]alertstate.Clock, len(c.dirty))
	for tenant := range c.dirty {
		changed[tenant] = *c.m[tenant]
	}
	clear(c.dirty)
	c.mu.Unlock()
	for tenant, tc := range changed {
		if err := s.SetClock(ctx, c.scope, tenant, tc); err != nil {
			c.mu.Lock()
			c.dirty[tenant] = true
			c.mu.Unlock()
			return err
		}
	}
	return nil
}
