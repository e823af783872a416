package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/lodestar-cs/lodestar/pkg/cache"
)

// CacheCheckInterval is how often the pipeline checks that the cache still
// holds its scores: an account is readable again at most this long, plus
// the time to write every score again, after Redis comes back empty.
const CacheCheckInterval = time.Second

// marked is a Store that can lose what was written to it (Redis) and tells
// so with a marker: see cache.Redis.HasMarker. The in-process cache cannot
// lose its scores while the pipeline runs, and has none.
type marked interface {
	HasMarker(ctx context.Context, name string) (bool, error)
	SetMarker(ctx context.Context, name string) error
}

// checkCache writes every current score to the cache again when its marker
// is gone, and then sets the marker; readiness is false from the moment the
// loss is seen (or the cache does not answer) until the scores are back.
// It runs on the goroutine that flushes, so no flush writes meanwhile; the
// flushes after it write what changed since, as always.
func (p *Pipeline) checkCache(ctx context.Context) error {
	m, ok := p.deps.Store.(marked)
	if !ok {
		p.cacheComplete.Store(true)
		return nil
	}
	has, err := m.HasMarker(ctx, p.cfg.Name)
	if err != nil {
		p.cacheComplete.Store(false)
		return err
	}
	if has {
		p.cacheComplete.Store(true)
		return nil
	}
	p.cacheComplete.Store(false)
	start := time.Now()
	p.mu.Lock()
	scores := p.deps.Engine.Current()
	p.mu.Unlock()
	updates := make([]cache.Update, len(scores))
	for i, hs := range scores {
		updates[i] = cache.Update{Score: hs}
	}
	if err := p.deps.Store.SetScores(ctx, updates); err != nil {
		return fmt.Errorf("refill the cache: %w", err)
	}
	if err := p.deps.Store.IndexScores(ctx, updates); err != nil {
		return fmt.Errorf("refill the cache: %w", err)
	}
	if err := m.SetMarker(ctx, p.cfg.Name); err != nil {
		return err
	}
	p.cacheComplete.Store(true)
	p.refills.Add(ctx, 1)
	p.deps.Logger.Warn("the cache had lost its scores: wrote them again", "scores", len(updates), "took", time.Since(start))
	return nil
}
