package engine

import scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"

// Current returns the current score of every account that has one, by
// tenant: what the last Flush reported for it or a Flush would report now
// (a score depends on the events and the watermark's day alone). It is for
// writing a lost cache again; it changes nothing.
func (e *Engine) Current() []*scoringv1.HealthScore {
	var out []*scoringv1.HealthScore
	for _, id := range e.order {
		t := e.tenants[id]
		if t.Watermark == 0 {
			continue
		}
		for _, a := range t.Accounts {
			if hs, _ := e.evaluate(t, a, false, t.Watermark); hs != nil {
				out = append(out, hs)
			}
		}
	}
	return out
}
