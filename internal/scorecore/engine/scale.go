package engine

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	"github.com/lodestar-cs/lodestar/internal/scorecore/scorecard"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// coreNoteEvents is how many of the most used events a core note names.
const coreNoteEvents = 3

// fitScales takes the tenant's scales for the new day from its accounts' raw values
// at the watermark, which is still the end of the day before: every account
// that is judged (enough history, not churned) and has data for the
// measure. It also writes the core note.
func (e *Engine) fitScales(t *tenant) {
	sc := t.sc
	t.CoreNote = coreNote(t)
	scaled := 0
	for i := range sc.Measures {
		if sc.Measures[i].TenantScale {
			scaled++
		}
	}
	if scaled == 0 {
		t.Scales = nil
		return
	}
	builders := make([]scorecard.ScaleBuilder, len(sc.Measures))
	wm := t.wmDay()
	var r scoringv1.MeasureResult
	for _, a := range t.Accounts {
		if !judged(sc, a, wm) {
			continue
		}
		for i := range sc.Measures {
			m := &sc.Measures[i]
			if !m.TenantScale {
				continue
			}
			e.buf = e.measure(&r, e.buf, t, a, m, wm)
			if r.HasData {
				builders[i].Add(r.RawValue)
			}
		}
	}
	t.Scales = make([]scorecard.Scale, len(sc.Measures))
	for i := range builders {
		t.Scales[i] = builders[i].Scale()
	}
}

// judged reports whether an account has history enough to be judged at day,
// and is not churned.
func judged(sc *scorecard.Compiled, a *account, day int32) bool {
	return a.FirstDay > 0 && day-a.FirstDay+1 >= int32(sc.MinHistoryDays) &&
		a.Facts.Stage != accountv1.LifecycleStage_LIFECYCLE_STAGE_CHURNED
}

// scale is measure i's scale for the tenant now; the zero Scale (every
// value scores 50) before the tenant's first day ended.
func (t *tenant) scale(i int) scorecard.Scale {
	if i < len(t.Scales) {
		return t.Scales[i]
	}
	return scorecard.Scale{}
}

// coreNote says what core use is read as when the scorecard names no core
// events: every product event, with the most used ones named.
func coreNote(t *tenant) string {
	if t.sc.AnyGroups == 0 {
		return ""
	}
	ids := make([]int, 0, len(t.Uses))
	for id, n := range t.Uses {
		if n > 0 && t.info[id].special == specialNone {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b int) int {
		return cmp.Or(cmp.Compare(t.Uses[b], t.Uses[a]), strings.Compare(t.Names[a], t.Names[b]))
	})
	var b strings.Builder
	b.WriteString("core use: any product event (the scorecard names no core events)")
	for i, id := range ids[:min(coreNoteEvents, len(ids))] {
		if i == 0 {
			b.WriteString("; most used: ")
		} else {
			b.WriteString(", ")
		}
		b.WriteString(t.Names[id])
	}
	if len(ids) > coreNoteEvents {
		b.WriteString(" and ")
		b.WriteString(strconv.Itoa(len(ids) - coreNoteEvents))
		b.WriteString(" more")
	}
	return b.String()
}

// used reports whether the tenant ever sent one of the events: a product that
// sends no support tickets has no support load to read, rather than none.
func (t *tenant) used(names ...string) bool {
	for _, n := range names {
		if id, ok := t.nameIDs[n]; ok && t.Uses[id] > 0 {
			return true
		}
	}
	return false
}
