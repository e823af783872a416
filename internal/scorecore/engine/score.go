package engine

import (
	"bytes"
	"cmp"
	"math"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/internal/scorecore/scorecard"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// evaluate computes an account's score at its tenant's watermark, timed at (unix
// seconds, in the watermark's day), and says whether it is to be published. With
// commit, it also records the score in the account's history and, when published,
// as the baseline of the next deltas. It returns nil when no measure has data.
func (e *Engine) evaluate(t *tenant, a *account, commit bool, at int64) (*scoringv1.HealthScore, bool) {
	day := t.wmDay()
	sc := t.sc
	stage := stageOf(sc, a.Facts, day)
	in := sc.StageMeasures(stage)

	// One allocation for the results: they live and die with the score.
	block := make([]scoringv1.MeasureResult, len(in))
	results := make([]*scoringv1.MeasureResult, len(in))
	var weightWithData float64
	for i, w := range in {
		m := &sc.Measures[w.Measure]
		r := &block[i]
		e.buf = e.measure(r, e.buf, t, a, m, day)
		r.Detail = string(e.buf)
		r.Name, r.Kind, r.Weight = m.Name, m.Kind, w.Weight
		if r.HasData {
			weightWithData += w.Weight
		}
		results[i] = r
	}
	var notes []string
	if t.CoreNote != "" {
		notes = append(notes, t.CoreNote)
	}
	var score float64
	for i, r := range results {
		if !r.HasData {
			notes = append(notes, r.Name+" left out ("+r.Detail+"): its weight is spread over the other measures")
			continue
		}
		var sub float64
		if m := &sc.Measures[in[i].Measure]; m.TenantScale {
			sub = t.scale(in[i].Measure).Normalise(r.RawValue, m.HigherBetter)
		} else {
			sub = m.Normalise(r.RawValue)
		}
		eff := r.Weight / weightWithData
		score += sub * eff
		r.RawValue = round(r.RawValue, 4)
		r.SubScore = round(sub, 2)
		r.EffectiveWeight = round(eff, 4)
		r.Contribution = round(sub*eff, 2)
	}
	if a.UserOverflow > 0 {
		b := strconv.AppendUint(e.buf[:0], uint64(a.UserOverflow), 10)
		b = append(b, " events came from users beyond the limit of "...)
		b = strconv.AppendInt(b, int64(e.maxUsers), 10)
		b = append(b, " per account and were not counted per user"...)
		notes, e.buf = append(notes, string(b)), b
	}
	score = round(score, 2)
	band := sc.Band(score)
	history := int32(0)
	if a.FirstDay > 0 {
		history = day - a.FirstDay + 1
	}
	switch {
	case stage == accountv1.LifecycleStage_LIFECYCLE_STAGE_CHURNED:
		band = scoringv1.Band_BAND_CHURNED
	case weightWithData == 0 || history < int32(sc.MinHistoryDays):
		// An account is watched before it is judged: a first score from a day of
		// events would be an alarm or an all-clear with nothing behind it.
		band = scoringv1.Band_BAND_INSUFFICIENT_DATA
	}

	f := a.Facts
	hs := &scoringv1.HealthScore{
		TenantId:         t.ID,
		AccountId:        a.ID,
		Score:            score,
		Band:             band,
		ScorecardVersion: sc.Scorecard.GetVersion(),
		LifecycleStage:   stage,
		ScoreTime:        &timestamppb.Timestamp{Seconds: at},
		Measures:         results,
		Notes:            notes,
		AccountName:      f.Name,
		Tier:             f.Tier,
		OwnerCsmId:       f.OwnerCSMID,
		Segment:          f.Segment,
	}
	if f.HasARR {
		hs.Arr = &accountv1.Money{CurrencyCode: f.ARRCurrency, Units: f.ARRUnits, Nanos: f.ARRNanos}
	}
	if f.Renewal != 0 {
		hs.RenewalTime = &timestamppb.Timestamp{Seconds: f.Renewal}
	}

	prev := a.Last
	publish := prev == nil
	if prev != nil {
		hs.PreviousScore = prev.Score
		hs.Delta = round(score-prev.Score, 2)
		hs.Attributions = attributions(prev, results)
		hs.ScorecardChanged = prev.Generation != t.Generation
		publish = hs.ScorecardChanged || hs.Band != prev.Band || stage != prev.Stage ||
			math.Abs(hs.Delta) >= e.threshold
	}
	if band == scoringv1.Band_BAND_INSUFFICIENT_DATA {
		e.buf = appendWatching(e.buf[:0], history, sc.MinHistoryDays)
	} else {
		e.buf = appendSummary(e.buf[:0], sc, hs, prev, f.Seats)
	}
	hs.Summary = string(e.buf)

	if commit {
		a.recordScore(day, score)
		if publish {
			a.Last = baseline(t, hs)
		}
	}
	hs.Drop_7D = drop7d(a.History, day, score)
	return hs, publish
}

// measure computes one measure's raw value and detail into r; HasData false leaves
// it out. The detail is written with appends, not fmt, as scoring every account each
// day makes it hot; buf is scratch space, returned for reuse.
func (e *Engine) measure(r *scoringv1.MeasureResult, buf []byte, t *tenant, a *account, m *scorecard.Measure, day int32) []byte {
	window := int32(m.WindowDays)
	start := day - window + 1
	b := buf[:0]
	hasData, raw := false, 0.0
	set := func(v float64) { hasData, raw = true, v }
	switch m.Kind {
	case scoringv1.MeasureKind_MEASURE_KIND_ACTIVE_SEAT_RATIO:
		active := 0
		for _, s := range a.UserTable.Slots {
			if s.Key != 0 && s.User.Active >= start {
				active++
			}
		}
		seats := a.Facts.Seats
		if seats <= 0 {
			b = append(b, "seats purchased unknown; "...)
			b = appendInt(b, active)
			b = append(b, " users active in "...)
			b = appendDays(b, window)
			break
		}
		set(float64(active) / float64(seats))
		b = appendInt(b, active)
		b = append(b, " of "...)
		b = appendInt(b, seats)
		b = append(b, " seats active in "...)
		b = appendDays(b, window)

	case scoringv1.MeasureKind_MEASURE_KIND_CORE_EVENT_FREQUENCY:
		g := &a.Groups[m.Group]
		var n uint64
		var perWeek float64
		if window <= e.window {
			n = g.sum(start, day)
			perWeek = float64(n) * 7 / float64(window)
		} else {
			// Whole weeks from the weekly counts, over the weeks the account
			// has been seen in: a rate, not a total.
			weeks := (window + 6) / 7
			if a.FirstDay > 0 {
				weeks = max(1, min(weeks, weekOf(day)-weekOf(a.FirstDay)+1))
			}
			n, _ = g.weekly(weekOf(day)-weeks+1, weekOf(day))
			perWeek = float64(n) / float64(weeks)
		}
		set(perWeek)
		b = strconv.AppendFloat(b, perWeek, 'f', 1, 64)
		b = append(b, ' ')
		b = append(b, noun(m, true)...)
		b = append(b, "/wk ("...)
		b = strconv.AppendUint(b, n, 10)
		b = append(b, " in "...)
		b = appendDays(b, window)
		b = append(b, ')')

	case scoringv1.MeasureKind_MEASURE_KIND_USAGE_TREND:
		base := min(int32(m.WindowDays), e.window-scorecard.TrendRecentDays)
		recentStart := day - scorecard.TrendRecentDays + 1
		baseStart := recentStart - base
		g := &a.Groups[m.Group]
		recent, before := g.sum(recentStart, day), g.sum(baseStart, recentStart-1)
		weekly := float64(before) * 7 / float64(base)
		switch {
		case a.FirstDay == 0 || a.FirstDay > baseStart:
			b = append(b, "less than "...)
			b = appendDays(b, base+scorecard.TrendRecentDays)
			b = append(b, " of history"...)
		case before == 0:
			b = append(b, "no "...)
			b = append(b, noun(m, true)...)
			b = append(b, " in the "...)
			b = appendDays(b, base)
			b = append(b, " before the last "...)
			b = appendInt(b, scorecard.TrendRecentDays)
		default:
			ratio := float64(recent) / weekly
			set(ratio)
			b = strconv.AppendUint(b, recent, 10)
			b = append(b, ' ')
			b = append(b, noun(m, true)...)
			b = append(b, " in the last "...)
			b = appendDays(b, scorecard.TrendRecentDays)
			b = append(b, " vs "...)
			b = strconv.AppendFloat(b, weekly, 'f', 1, 64)
			b = append(b, "/wk before (x"...)
			b = strconv.AppendFloat(b, ratio, 'f', 2, 64)
			b = append(b, ')')
		}

	case scoringv1.MeasureKind_MEASURE_KIND_ACTIVE_WEEKS:
		weeks := (window + 6) / 7
		_, active := a.Groups[m.Group].weekly(weekOf(day)-weeks+1, weekOf(day))
		set(float64(active))
		b = appendInt(b, active)
		b = append(b, " of the last "...)
		b = appendInt(b, weeks)
		b = append(b, " weeks with "...)
		b = append(b, noun(m, true)...)

	case scoringv1.MeasureKind_MEASURE_KIND_RECENCY:
		// Silence is counted however long it lasts: 25 and 250 silent days
		// are different accounts. The window plays no part.
		last := a.Groups[m.Group].Last
		switch {
		case last == 0 && a.FirstDay == 0:
			b = append(b, "no events yet"...)
		case last == 0:
			set(float64(day - a.FirstDay + 1))
			b = append(b, "no "...)
			b = append(b, noun(m, false)...)
			b = append(b, " in the "...)
			b = appendDays(b, day-a.FirstDay+1)
			b = append(b, " since the first event"...)
		case last == day:
			set(0)
			b = append(b, "last "...)
			b = append(b, noun(m, false)...)
			b = append(b, " today"...)
		default:
			set(float64(day - last))
			b = append(b, "last "...)
			b = append(b, noun(m, false)...)
			b = append(b, ' ')
			b = appendCount(b, int(day-last), "day")
			b = append(b, " ago"...)
		}

	case scoringv1.MeasureKind_MEASURE_KIND_STAKEHOLDER_ENGAGEMENT:
		known, active := 0, 0
		for _, s := range a.UserTable.Slots {
			if u := s.User; s.Key != 0 && u.Level&m.Levels != 0 {
				known++
				if u.Active >= start {
					active++
				}
			}
		}
		if known == 0 {
			b = append(b, "no "...)
			b = appendLevels(b, m.Levels)
			b = append(b, " stakeholders identified"...)
			break
		}
		set(float64(active) / float64(known))
		b = appendInt(b, active)
		b = append(b, " of "...)
		b = appendInt(b, known)
		b = append(b, ' ')
		b = appendLevels(b, m.Levels)
		b = append(b, " stakeholders active in "...)
		b = appendDays(b, window)

	case scoringv1.MeasureKind_MEASURE_KIND_BREADTH:
		n := 0
		for _, f := range a.Features {
			if f.Last >= start {
				n++
			}
		}
		set(float64(n))
		b = appendInt(b, n)
		b = append(b, " features used in "...)
		b = appendDays(b, window)
		if a.FeatureOverflow > 0 {
			b = append(b, " (more beyond the limit of "...)
			b = appendInt(b, e.maxFeatures)
			b = append(b, ')')
		}

	case scoringv1.MeasureKind_MEASURE_KIND_SURVEY:
		var sum, count uint32
		for _, s := range a.Surveys {
			if s.Day >= start {
				sum, count = sum+s.Sum, count+s.Count
			}
		}
		if count == 0 {
			b = append(b, "no NPS answers in "...)
			b = appendDays(b, window)
			break
		}
		mean := float64(sum) / float64(count)
		set(mean)
		b = append(b, "mean NPS answer "...)
		b = strconv.AppendFloat(b, mean, 'f', 1, 64)
		b = append(b, " from "...)
		b = appendInt(b, count)
		b = append(b, " in "...)
		b = appendDays(b, window)

	case scoringv1.MeasureKind_MEASURE_KIND_SUPPORT_LOAD:
		if !t.used(scorecard.EventTicketOpened, scorecard.EventTicketClosed) {
			b = append(b, "no support tickets from this product"...)
			break
		}
		open, severe := 0, 0
		for _, k := range a.Tickets {
			if k.open() && dayOf(k.Opened) >= start {
				open++
				if k.Severe {
					severe++
				}
			}
		}
		set(float64(open))
		b = appendCount(b, open, "open ticket")
		b = append(b, " ("...)
		b = appendInt(b, severe)
		b = append(b, " severe)"...)

	case scoringv1.MeasureKind_MEASURE_KIND_BILLING:
		if !t.used(scorecard.EventPaymentSucceeded) && !t.used(m.Events...) {
			b = append(b, "no billing events from this product"...)
			break
		}
		var stack [8]int
		counts := billingTrouble(stack[:0], t, a, m, start)
		n := 0
		for _, c := range counts {
			n += c
		}
		set(float64(n))
		if n == 0 {
			b = append(b, "no billing trouble in "...)
			b = appendDays(b, window)
			break
		}
		b = appendCount(b, n, "billing trouble event")
		b = append(b, " in "...)
		b = appendDays(b, window)
		b = append(b, ": "...)
		sep := false
		for k, c := range counts {
			if c > 0 {
				if sep {
					b = append(b, ", "...)
				}
				sep = true
				b = appendInt(b, c)
				b = append(b, ' ')
				b = append(b, m.Events[k]...)
			}
		}

	case scoringv1.MeasureKind_MEASURE_KIND_ONBOARDING_MILESTONES:
		reached := 0
		for _, g := range m.Milestones {
			if a.Groups[g].Last >= start {
				reached++
			}
		}
		set(float64(reached) / float64(len(m.Milestones)))
		b = appendInt(b, reached)
		b = append(b, " of "...)
		b = appendInt(b, len(m.Milestones))
		b = append(b, " milestones reached"...)
		sep := ": "
		for i, g := range m.Milestones {
			if a.Groups[g].Last >= start {
				b = append(b, sep...)
				b = append(b, m.Events[i]...)
				sep = ", "
			}
		}
	}
	r.HasData, r.RawValue = hasData, raw
	return b
}

// billingTrouble counts the measure's trouble events since start by event, into
// counts (appended to), leaving out failed payments that a later successful payment
// cleared.
func billingTrouble(counts []int, t *tenant, a *account, m *scorecard.Measure, start int32) []int {
	for range m.Events {
		counts = append(counts, 0)
	}
	for i, b := range a.Billing {
		if dayOf(b.Time) < start {
			continue
		}
		name := t.Names[b.Name]
		k := slices.Index(m.Events, name)
		if k < 0 {
			continue
		}
		if name == scorecard.EventPaymentFailed && slices.ContainsFunc(a.Billing[i+1:], func(later billingEvent) bool {
			return t.Names[later.Name] == scorecard.EventPaymentSucceeded
		}) {
			continue
		}
		counts[k]++
	}
	return counts
}

// stageOf reads an account's lifecycle stage: the CRM's onboarding, pre-renewal and
// churned stand; otherwise a renewal within preRenewalDays makes it pre-renewal, and
// an account without a CRM stage onboards until onboarding_days after contract start.
func stageOf(sc *scorecard.Compiled, f facts, day int32) accountv1.LifecycleStage {
	switch f.Stage {
	case accountv1.LifecycleStage_LIFECYCLE_STAGE_ONBOARDING,
		accountv1.LifecycleStage_LIFECYCLE_STAGE_PRE_RENEWAL,
		accountv1.LifecycleStage_LIFECYCLE_STAGE_CHURNED:
		return f.Stage
	}
	if f.Renewal != 0 {
		if left := dayOf(f.Renewal) - day; left >= 0 && left <= preRenewalDays {
			return accountv1.LifecycleStage_LIFECYCLE_STAGE_PRE_RENEWAL
		}
	}
	if f.Stage != accountv1.LifecycleStage_LIFECYCLE_STAGE_UNSPECIFIED {
		return f.Stage
	}
	if f.ContractStart != 0 {
		// A contract that starts later is onboarding too: signed, value not yet seen.
		if since := day - dayOf(f.ContractStart); since < int32(sc.OnboardingDays) {
			return accountv1.LifecycleStage_LIFECYCLE_STAGE_ONBOARDING
		}
	}
	return accountv1.LifecycleStage_LIFECYCLE_STAGE_ADOPTION
}

// attributions splits a score change over the measures: each one's change of
// contribution, largest first.
func attributions(prev *published, cur []*scoringv1.MeasureResult) []*scoringv1.Attribution {
	var out []*scoringv1.Attribution
	add := func(name string, points float64) {
		if points = round(points, 2); points != 0 {
			out = append(out, &scoringv1.Attribution{Measure: name, Points: points})
		}
	}
	for _, r := range cur {
		before := 0.0
		if p := prev.measure(r.GetName()); p != nil {
			before = p.Contribution
		}
		add(r.GetName(), r.GetContribution()-before)
	}
	for _, p := range prev.Measures {
		if !slices.ContainsFunc(cur, func(r *scoringv1.MeasureResult) bool { return r.GetName() == p.Name }) {
			add(p.Name, -p.Contribution)
		}
	}
	slices.SortStableFunc(out, func(a, b *scoringv1.Attribution) int {
		return cmp.Or(cmp.Compare(math.Abs(b.Points), math.Abs(a.Points)), strings.Compare(a.Measure, b.Measure))
	})
	return out
}

// appendWatching says why an account is not judged yet.
func appendWatching(b []byte, history int32, need int) []byte {
	if history == 0 {
		return append(b, "no events yet"...)
	}
	b = append(b, "watching: "...)
	b = appendInt(b, history)
	b = append(b, " of the "...)
	b = appendInt(b, need)
	return append(b, " days of history an account needs to be judged"...)
}

// smallMove is the largest score change whose summary also names what holds
// a red or yellow account back.
const smallMove = 5

// appendSummary answers in one line why the score moved or, for a first score or one
// with no change worth telling, what holds it back.
func appendSummary(b []byte, sc *scorecard.Compiled, hs *scoringv1.HealthScore, prev *published, seats int32) []byte {
	const parts = 3
	band := bandName(hs.GetBand())
	if prev == nil {
		b = append(b, "first score "...)
		b = strconv.AppendFloat(b, hs.GetScore(), 'f', 1, 64)
		b = append(b, ' ')
		b = append(b, band...)
		return appendHeldBack(b, hs, seats)
	}
	if hs.GetLifecycleStage() != prev.Stage {
		b = append(b, "now "...)
		b = append(b, stageName(hs.GetLifecycleStage())...)
		b = append(b, ", "...)
	}
	switch {
	case hs.GetScorecardChanged():
		b = append(b, "new scorecard (v"...)
		b = appendInt(b, hs.GetScorecardVersion())
		b = append(b, ", was v"...)
		b = appendInt(b, prev.Version)
		b = append(b, "): "...)
		b = strconv.AppendFloat(b, prev.Score, 'f', 1, 64)
		b = append(b, " → "...)
		b = strconv.AppendFloat(b, hs.GetScore(), 'f', 1, 64)
		b = append(b, ' ')
		b = append(b, band...)
		return appendHeldBack(b, hs, seats)
	case math.Abs(hs.GetDelta()) < 0.05 || len(hs.GetAttributions()) == 0:
		b = strconv.AppendFloat(b, hs.GetScore(), 'f', 1, 64)
		b = append(b, ' ')
		b = append(b, band...)
		return appendHeldBack(b, hs, seats)
	}
	b = appendSigned(b, hs.GetDelta())
	b = append(b, " to "...)
	b = strconv.AppendFloat(b, hs.GetScore(), 'f', 1, 64)
	b = append(b, ' ')
	b = append(b, band...)
	b = append(b, ':')
	// Name the measures that moved the score the way it went, largest first.
	n := 0
	for _, at := range hs.GetAttributions() {
		// A move that rounds to +0.0 explains nothing.
		if n == parts || at.GetPoints()*hs.GetDelta() <= 0 || math.Abs(at.GetPoints()) < 0.05 {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = append(b, ' ')
		b = append(b, at.GetMeasure()...)
		b = append(b, ' ')
		b = appendSigned(b, at.GetPoints())
		cur := result(hs, at.GetMeasure())
		before := prev.measure(at.GetMeasure())
		if cur == nil || before == nil || cur.GetKind() != before.Kind {
			continue
		}
		var wasBuf, nowBuf [24]byte
		was := appendValue(wasBuf[:0], before.Kind, before.HasData, before.Raw, seats)
		now := appendValue(nowBuf[:0], cur.GetKind(), cur.GetHasData(), cur.GetRawValue(), seats)
		if bytes.Equal(was, now) {
			b = append(b, " (still "...)
		} else {
			b = append(b, " ("...)
			b = append(b, was...)
			b = append(b, " → "...)
		}
		b = append(b, now...)
		b = append(b, ' ')
		b = appendUnit(b, cur.GetKind(), seats)
		b = appendWhy(b, sc, cur, before, at.GetPoints(), bytes.Equal(was, now))
		b = append(b, ')')
	}
	// A measure gaining or losing data shifts the weights of all the others: say so,
	// or their moves read as unexplained.
	for _, r := range hs.GetMeasures() {
		p := prev.measure(r.GetName())
		switch {
		case p == nil || p.HasData == r.GetHasData():
		case r.GetHasData():
			b = append(b, "; "...)
			b = append(b, r.GetName()...)
			b = append(b, " has data now"...)
		default:
			b = append(b, "; "...)
			b = append(b, r.GetName()...)
			b = append(b, " has no data now"...)
		}
	}
	// A small move does not say why an account is at risk: what holds it
	// back does.
	if hs.GetBand() != scoringv1.Band_BAND_GREEN && math.Abs(hs.GetDelta()) < smallMove {
		b = appendHeldBack(b, hs, seats)
	}
	return b
}

// appendWhy says why a measure moved the score when its own value does not:
// the value stayed while the points moved, or it moved one way and the points
// the other. Then either its share of the score changed (another measure
// gained or lost data, or the stage changed the weights) or, on the tenant's
// scale, the tenant's other accounts moved.
func appendWhy(b []byte, sc *scorecard.Compiled, cur *scoringv1.MeasureResult, before *publishedMeasure, points float64, still bool) []byte {
	var m *scorecard.Measure
	for i := range sc.Measures {
		if sc.Measures[i].Name == cur.GetName() {
			m = &sc.Measures[i]
		}
	}
	if m == nil {
		return b
	}
	against := false
	if up, ok := scorecard.Direction(m.Kind); ok && !still && before.HasData {
		better := cur.GetRawValue() > before.Raw
		if !up {
			better = cur.GetRawValue() < before.Raw
		}
		against = better != (points > 0)
	}
	if !still && !against {
		return b
	}
	sep := ", "
	if against {
		sep = ", yet "
	}
	switch {
	case before.Weight > 0 && math.Abs(cur.GetEffectiveWeight()-before.Weight) >= 0.0005:
		b = append(b, sep...)
		b = append(b, "its share of the score went from "...)
		b = strconv.AppendFloat(b, 100*before.Weight, 'f', 0, 64)
		b = append(b, "% to "...)
		b = strconv.AppendFloat(b, 100*cur.GetEffectiveWeight(), 'f', 0, 64)
		b = append(b, '%')
	case m.TenantScale && (against || cur.GetRawValue() == before.Raw):
		b = append(b, sep...)
		b = append(b, "ranked against the tenant's other accounts, which moved"...)
	}
	return b
}

// bandNames and stageNames are the names summaries use, by enum value.
var (
	bandNames  = enumNames(scoringv1.Band_name, "BAND_", "_")
	stageNames = enumNames(accountv1.LifecycleStage_name, "LIFECYCLE_STAGE_", "-")
)

// enumNames lowers the names of an enum's values 0 to n-1 (as far as they have
// names), with its prefix cut and underscores replaced by sep.
func enumNames(names map[int32]string, prefix, sep string) []string {
	var out []string
	for v := int32(0); ; v++ {
		name, ok := names[v]
		if !ok {
			return out
		}
		out = append(out, strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, prefix)), "_", sep))
	}
}

func bandName(b scoringv1.Band) string {
	if b >= 0 && int(b) < len(bandNames) {
		return bandNames[b]
	}
	return strings.ToLower(strings.TrimPrefix(b.String(), "BAND_"))
}

func stageName(s accountv1.LifecycleStage) string {
	if s >= 0 && int(s) < len(stageNames) {
		return stageNames[s]
	}
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s.String(), "LIFECYCLE_STAGE_")), "_", "-")
}

// appendHeldBack names the two measures costing the score most points, if any costs
// one.
func appendHeldBack(b []byte, hs *scoringv1.HealthScore, seats int32) []byte {
	type loss struct {
		r      *scoringv1.MeasureResult
		points float64
	}
	var stack [16]loss
	losses := stack[:0]
	for _, r := range hs.GetMeasures() {
		if p := r.GetEffectiveWeight() * (100 - r.GetSubScore()); r.GetHasData() && p >= 1 {
			losses = append(losses, loss{r, p})
		}
	}
	if len(losses) == 0 {
		return b
	}
	slices.SortStableFunc(losses, func(a, b loss) int {
		return cmp.Or(cmp.Compare(b.points, a.points), strings.Compare(a.r.GetName(), b.r.GetName()))
	})
	b = append(b, "; held back by "...)
	for i, l := range losses[:min(2, len(losses))] {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, l.r.GetName()...)
		b = append(b, " -"...)
		b = strconv.AppendFloat(b, l.points, 'f', 1, 64)
		b = append(b, " ("...)
		b = appendValue(b, l.r.GetKind(), true, l.r.GetRawValue(), seats)
		b = append(b, ' ')
		b = appendUnit(b, l.r.GetKind(), seats)
		b = append(b, ')')
	}
	return b
}

// appendUnit writes the unit of a measure's raw value, for summaries.
func appendUnit(b []byte, kind scoringv1.MeasureKind, seats int32) []byte {
	switch kind {
	case scoringv1.MeasureKind_MEASURE_KIND_ACTIVE_SEAT_RATIO:
		b = append(b, "of "...)
		b = appendInt(b, seats)
		return append(b, " seats active"...)
	case scoringv1.MeasureKind_MEASURE_KIND_CORE_EVENT_FREQUENCY:
		return append(b, "events/wk"...)
	case scoringv1.MeasureKind_MEASURE_KIND_USAGE_TREND:
		return append(b, "of the usual week"...)
	case scoringv1.MeasureKind_MEASURE_KIND_RECENCY:
		return append(b, "days since the last event"...)
	case scoringv1.MeasureKind_MEASURE_KIND_STAKEHOLDER_ENGAGEMENT:
		return append(b, "of stakeholders active"...)
	case scoringv1.MeasureKind_MEASURE_KIND_BREADTH:
		return append(b, "features"...)
	case scoringv1.MeasureKind_MEASURE_KIND_SURVEY:
		return append(b, "mean NPS"...)
	case scoringv1.MeasureKind_MEASURE_KIND_SUPPORT_LOAD:
		return append(b, "open tickets"...)
	case scoringv1.MeasureKind_MEASURE_KIND_BILLING:
		return append(b, "billing issues"...)
	case scoringv1.MeasureKind_MEASURE_KIND_ONBOARDING_MILESTONES:
		return append(b, "of milestones"...)
	case scoringv1.MeasureKind_MEASURE_KIND_ACTIVE_WEEKS:
		return append(b, "active weeks"...)
	}
	return b
}

// appendValue renders a raw value briefly, for summaries; its unit is appendUnit's.
func appendValue(b []byte, kind scoringv1.MeasureKind, hasData bool, raw float64, seats int32) []byte {
	if !hasData {
		return append(b, "no data"...)
	}
	switch kind {
	case scoringv1.MeasureKind_MEASURE_KIND_ACTIVE_SEAT_RATIO:
		return strconv.AppendFloat(b, raw*float64(seats), 'f', 0, 64)
	case scoringv1.MeasureKind_MEASURE_KIND_USAGE_TREND,
		scoringv1.MeasureKind_MEASURE_KIND_STAKEHOLDER_ENGAGEMENT, scoringv1.MeasureKind_MEASURE_KIND_ONBOARDING_MILESTONES:
		return append(strconv.AppendFloat(b, raw*100, 'f', 0, 64), '%')
	case scoringv1.MeasureKind_MEASURE_KIND_SURVEY:
		return strconv.AppendFloat(b, raw, 'f', 1, 64)
	}
	if raw != math.Trunc(raw) && raw < 10 {
		return strconv.AppendFloat(b, raw, 'f', 1, 64)
	}
	return strconv.AppendFloat(b, raw, 'f', 0, 64)
}

// baseline keeps what the next deltas and summaries need of a published score.
func baseline(t *tenant, hs *scoringv1.HealthScore) *published {
	p := &published{
		Generation: t.Generation,
		Version:    hs.GetScorecardVersion(),
		Score:      hs.GetScore(),
		Band:       hs.GetBand(),
		Stage:      hs.GetLifecycleStage(),
		Measures:   make([]publishedMeasure, len(hs.GetMeasures())),
	}
	for i, r := range hs.GetMeasures() {
		p.Measures[i] = publishedMeasure{
			Name:         r.GetName(),
			Kind:         r.GetKind(),
			HasData:      r.GetHasData(),
			Raw:          r.GetRawValue(),
			Weight:       r.GetEffectiveWeight(),
			Contribution: r.GetContribution(),
		}
	}
	return p
}

func (p *published) measure(name string) *publishedMeasure {
	for i := range p.Measures {
		if p.Measures[i].Name == name {
			return &p.Measures[i]
		}
	}
	return nil
}

func result(hs *scoringv1.HealthScore, name string) *scoringv1.MeasureResult {
	for _, r := range hs.GetMeasures() {
		if r.GetName() == name {
			return r
		}
	}
	return nil
}

// drop7d is the score against the highest of the last dropWindowDays days, when
// lower.
func drop7d(history []dayScore, day int32, score float64) float64 {
	high := score
	for _, h := range history {
		if h.Day >= day-dropWindowDays {
			high = max(high, h.Max)
		}
	}
	return round(score-high, 2)
}

// noun names what a measure counts, for details.
func noun(m *scorecard.Measure, plural bool) string {
	switch {
	case m.CoreEvents && plural:
		return "core events"
	case m.CoreEvents:
		return "core event"
	case plural:
		return "events"
	}
	return "event"
}

// appendLevels writes stakeholder levels as "S/A".
func appendLevels(b []byte, l scorecard.Level) []byte {
	sep := false
	for _, x := range [...]struct {
		level scorecard.Level
		name  byte
	}{{scorecard.LevelS, 'S'}, {scorecard.LevelA, 'A'}, {scorecard.LevelB, 'B'}} {
		if l&x.level != 0 {
			if sep {
				b = append(b, '/')
			}
			b = append(b, x.name)
			sep = true
		}
	}
	return b
}

// appendCount writes "1 day" or "3 days".
func appendCount(b []byte, n int, noun string) []byte {
	b = appendInt(b, n)
	b = append(b, ' ')
	b = append(b, noun...)
	if n != 1 {
		b = append(b, 's')
	}
	return b
}

// appendDays writes "n days", plural whatever n.
func appendDays[T int | int32](b []byte, n T) []byte {
	return append(appendInt(b, n), " days"...)
}

func appendInt[T int | int32 | uint32](b []byte, n T) []byte {
	return strconv.AppendInt(b, int64(n), 10)
}

// appendSigned writes x as fmt's %+.1f does: with its sign, + included.
func appendSigned(b []byte, x float64) []byte {
	n := len(b)
	b = strconv.AppendFloat(append(b, '+'), x, 'f', 1, 64)
	if b[n+1] == '-' || b[n+1] == '+' {
		b = append(b[:n], b[n+1:]...)
	}
	return b
}

// round keeps scores and explanations free of float noise, so that they compare
// and read cleanly.
func round(x float64, decimals int) float64 {
	p := math.Pow10(decimals)
	if r := math.Round(x*p) / p; r != 0 {
		return r
	}
	return 0 // not -0

}
