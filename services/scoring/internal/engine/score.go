package engine

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/scoring/internal/scorecard"
)

// evaluate computes an account's score at its tenant's watermark and says whether it
// is to be published. With commit, it also records the score in the account's
// history and, when published, as the baseline of the next deltas. It returns nil
// when no measure has data.
func (e *Engine) evaluate(t *tenant, a *account, commit bool) (*scoringv1.HealthScore, bool) {
	day := t.wmDay()
	sc := t.sc
	stage := stageOf(sc, a.Facts, day)
	in := sc.StageMeasures(stage)

	results := make([]*scoringv1.MeasureResult, len(in))
	measures := make([]*scorecard.Measure, len(in))
	var weightWithData float64
	for i, w := range in {
		m := &sc.Measures[w.Measure]
		r := e.measure(t, a, m, day)
		r.Name, r.Kind, r.Weight = m.Name, m.Kind, w.Weight
		if r.HasData {
			weightWithData += w.Weight
		}
		results[i], measures[i] = r, m
	}
	if weightWithData == 0 {
		return nil, false
	}

	var notes []string
	var score float64
	for i, r := range results {
		if !r.HasData {
			notes = append(notes, fmt.Sprintf("%s left out (%s): its weight is spread over the other measures",
				r.Name, r.Detail))
			continue
		}
		sub := measures[i].Normalise(r.RawValue)
		eff := r.Weight / weightWithData
		score += sub * eff
		r.RawValue = round(r.RawValue, 4)
		r.SubScore = round(sub, 2)
		r.EffectiveWeight = round(eff, 4)
		r.Contribution = round(sub*eff, 2)
	}
	if a.UserOverflow > 0 {
		notes = append(notes, fmt.Sprintf("%d events came from users beyond the limit of %d per account and were not counted per user",
			a.UserOverflow, e.maxUsers))
	}
	score = round(score, 2)

	f := a.Facts
	hs := &scoringv1.HealthScore{
		TenantId:         t.ID,
		AccountId:        a.ID,
		Score:            score,
		Band:             sc.Band(score),
		ScorecardVersion: sc.Scorecard.GetVersion(),
		LifecycleStage:   stage,
		ScoreTime:        &timestamppb.Timestamp{Seconds: t.Watermark},
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
	hs.Summary = summary(hs, prev, f.Seats)

	if commit {
		a.recordScore(day, score)
		if publish {
			a.Last = baseline(t, hs)
		}
	}
	hs.Drop_7D = drop7d(a.History, day, score)
	return hs, publish
}

// measure computes one measure's raw value and detail; HasData false leaves it out.
func (e *Engine) measure(t *tenant, a *account, m *scorecard.Measure, day int32) *scoringv1.MeasureResult {
	r := &scoringv1.MeasureResult{}
	window := min(int32(m.WindowDays), e.window)
	start := day - window + 1
	set := func(raw float64, format string, args ...any) {
		r.HasData, r.RawValue, r.Detail = true, raw, fmt.Sprintf(format, args...)
	}
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
			r.Detail = fmt.Sprintf("seats purchased unknown; %d users active in %d days", active, window)
			break
		}
		set(float64(active)/float64(seats), "%d of %d seats active in %d days", active, seats, window)

	case scoringv1.MeasureKind_MEASURE_KIND_CORE_EVENT_FREQUENCY:
		n := a.Groups[m.Group].sum(start, day)
		perWeek := float64(n) * 7 / float64(window)
		set(perWeek, "%.1f %s/wk (%d in %d days)", perWeek, noun(m, true), n, window)

	case scoringv1.MeasureKind_MEASURE_KIND_USAGE_TREND:
		base := min(int32(m.WindowDays), e.window-scorecard.TrendRecentDays)
		recentStart := day - scorecard.TrendRecentDays + 1
		baseStart := recentStart - base
		g := &a.Groups[m.Group]
		recent, before := g.sum(recentStart, day), g.sum(baseStart, recentStart-1)
		weekly := float64(before) * 7 / float64(base)
		switch {
		case a.FirstDay == 0 || a.FirstDay > baseStart:
			r.Detail = fmt.Sprintf("less than %d days of history", base+scorecard.TrendRecentDays)
		case before == 0:
			r.Detail = fmt.Sprintf("no %s in the %d days before the last %d", noun(m, true), base, scorecard.TrendRecentDays)
		default:
			ratio := float64(recent) / weekly
			set(ratio, "%d %s in the last %d days vs %.1f/wk before (x%.2f)",
				recent, noun(m, true), scorecard.TrendRecentDays, weekly, ratio)
		}

	case scoringv1.MeasureKind_MEASURE_KIND_RECENCY:
		last := a.Groups[m.Group].Last
		switch {
		case last < start:
			set(float64(window), "no %s in %d days", noun(m, false), window)
		case last == day:
			set(0, "last %s today", noun(m, false))
		default:
			set(float64(day-last), "last %s %s ago", noun(m, false), count(int(day-last), "day"))
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
			r.Detail = fmt.Sprintf("no %s stakeholders identified", levels(m.Levels))
			break
		}
		set(float64(active)/float64(known), "%d of %d %s stakeholders active in %d days",
			active, known, levels(m.Levels), window)

	case scoringv1.MeasureKind_MEASURE_KIND_BREADTH:
		n := 0
		for _, f := range a.Features {
			if f.Last >= start {
				n++
			}
		}
		if a.FeatureOverflow > 0 {
			set(float64(n), "%d features used in %d days (more beyond the limit of %d)", n, window, e.maxFeatures)
		} else {
			set(float64(n), "%d features used in %d days", n, window)
		}

	case scoringv1.MeasureKind_MEASURE_KIND_SURVEY:
		var sum, count uint32
		for _, s := range a.Surveys {
			if s.Day >= start {
				sum, count = sum+s.Sum, count+s.Count
			}
		}
		if count == 0 {
			r.Detail = fmt.Sprintf("no NPS answers in %d days", window)
			break
		}
		mean := float64(sum) / float64(count)
		set(mean, "mean NPS answer %.1f from %d in %d days", mean, count, window)

	case scoringv1.MeasureKind_MEASURE_KIND_SUPPORT_LOAD:
		open, severe := 0, 0
		for _, k := range a.Tickets {
			if k.open() && dayOf(k.Opened) >= start {
				open++
				if k.Severe {
					severe++
				}
			}
		}
		set(float64(open), "%s (%d severe)", count(open, "open ticket"), severe)

	case scoringv1.MeasureKind_MEASURE_KIND_BILLING:
		n, kinds := billingTrouble(t, a, m, start)
		if n == 0 {
			set(0, "no billing trouble in %d days", window)
		} else {
			set(float64(n), "%s in %d days: %s", count(n, "billing trouble event"), window, kinds)
		}

	case scoringv1.MeasureKind_MEASURE_KIND_ONBOARDING_MILESTONES:
		var reached []string
		for i, g := range m.Milestones {
			if a.Groups[g].Last >= start {
				reached = append(reached, m.Events[i])
			}
		}
		detail := fmt.Sprintf("%d of %d milestones reached", len(reached), len(m.Milestones))
		if len(reached) > 0 {
			detail += ": " + strings.Join(reached, ", ")
		}
		set(float64(len(reached))/float64(len(m.Milestones)), "%s", detail)
	}
	return r
}

// billingTrouble counts the measure's trouble events since start, leaving out failed
// payments that a later successful payment cleared.
func billingTrouble(t *tenant, a *account, m *scorecard.Measure, start int32) (int, string) {
	n := 0
	counts := make([]int, len(m.Events))
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
		n++
		counts[k]++
	}
	var parts []string
	for k, c := range counts {
		if c > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c, m.Events[k]))
		}
	}
	return n, strings.Join(parts, ", ")
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

// summary answers in one line why the score moved or, for a first score or one with
// no change worth telling, what holds it back.
// smallMove is the largest score change whose summary also names what holds
// a red or yellow account back.
const smallMove = 5

func summary(hs *scoringv1.HealthScore, prev *published, seats int32) string {
	const parts = 3
	band := strings.ToLower(strings.TrimPrefix(hs.GetBand().String(), "BAND_"))
	if prev == nil {
		return fmt.Sprintf("first score %.1f %s%s", hs.GetScore(), band, heldBack(hs, seats))
	}
	var b strings.Builder
	if hs.GetLifecycleStage() != prev.Stage {
		fmt.Fprintf(&b, "now %s, ", stageName(hs.GetLifecycleStage()))
	}
	switch {
	case hs.GetScorecardChanged():
		fmt.Fprintf(&b, "new scorecard (v%d, was v%d): %.1f → %.1f %s%s",
			hs.GetScorecardVersion(), prev.Version, prev.Score, hs.GetScore(), band, heldBack(hs, seats))
		return b.String()
	case math.Abs(hs.GetDelta()) < 0.05 || len(hs.GetAttributions()) == 0:
		fmt.Fprintf(&b, "%.1f %s%s", hs.GetScore(), band, heldBack(hs, seats))
		return b.String()
	}
	fmt.Fprintf(&b, "%+.1f to %.1f %s:", hs.GetDelta(), hs.GetScore(), band)
	// Name the measures that moved the score the way it went, largest first.
	n := 0
	for _, at := range hs.GetAttributions() {
		if n == parts || at.GetPoints()*hs.GetDelta() <= 0 {
			continue
		}
		if n > 0 {
			b.WriteByte(',')
		}
		n++
		fmt.Fprintf(&b, " %s %+.1f", at.GetMeasure(), at.GetPoints())
		cur := result(hs, at.GetMeasure())
		before := prev.measure(at.GetMeasure())
		if cur == nil || before == nil || cur.GetKind() != before.Kind {
			continue
		}
		was, unit := valueText(before.Kind, before.HasData, before.Raw, seats)
		now, _ := valueText(cur.GetKind(), cur.GetHasData(), cur.GetRawValue(), seats)
		if was == now {
			fmt.Fprintf(&b, " (still %s %s)", now, unit)
		} else {
			fmt.Fprintf(&b, " (%s → %s %s)", was, now, unit)
		}
	}
	// A measure gaining or losing data shifts the weights of all the others: say so,
	// or their moves read as unexplained.
	for _, r := range hs.GetMeasures() {
		p := prev.measure(r.GetName())
		switch {
		case p == nil || p.HasData == r.GetHasData():
		case r.GetHasData():
			fmt.Fprintf(&b, "; %s has data now", r.GetName())
		default:
			fmt.Fprintf(&b, "; %s has no data now", r.GetName())
		}
	}
	// A small move does not say why an account is at risk: what holds it
	// back does.
	if hs.GetBand() != scoringv1.Band_BAND_GREEN && math.Abs(hs.GetDelta()) < smallMove {
		b.WriteString(heldBack(hs, seats))
	}
	return b.String()
}

func stageName(s accountv1.LifecycleStage) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s.String(), "LIFECYCLE_STAGE_")), "_", "-")
}

// heldBack names the two measures costing the score most points, if any costs one.
func heldBack(hs *scoringv1.HealthScore, seats int32) string {
	type loss struct {
		r      *scoringv1.MeasureResult
		points float64
	}
	var losses []loss
	for _, r := range hs.GetMeasures() {
		if p := r.GetEffectiveWeight() * (100 - r.GetSubScore()); r.GetHasData() && p >= 1 {
			losses = append(losses, loss{r, p})
		}
	}
	if len(losses) == 0 {
		return ""
	}
	slices.SortStableFunc(losses, func(a, b loss) int {
		return cmp.Or(cmp.Compare(b.points, a.points), strings.Compare(a.r.GetName(), b.r.GetName()))
	})
	var parts []string
	for _, l := range losses[:min(2, len(losses))] {
		v, unit := valueText(l.r.GetKind(), true, l.r.GetRawValue(), seats)
		parts = append(parts, fmt.Sprintf("%s -%.1f (%s %s)", l.r.GetName(), l.points, v, unit))
	}
	return "; held back by " + strings.Join(parts, ", ")
}

// valueText renders a raw value briefly, as a value and its unit, for summaries.
func valueText(kind scoringv1.MeasureKind, hasData bool, raw float64, seats int32) (string, string) {
	unit := ""
	switch kind {
	case scoringv1.MeasureKind_MEASURE_KIND_ACTIVE_SEAT_RATIO:
		unit = fmt.Sprintf("of %d seats active", seats)
	case scoringv1.MeasureKind_MEASURE_KIND_CORE_EVENT_FREQUENCY:
		unit = "events/wk"
	case scoringv1.MeasureKind_MEASURE_KIND_USAGE_TREND:
		unit = "of the usual week"
	case scoringv1.MeasureKind_MEASURE_KIND_RECENCY:
		unit = "days since the last event"
	case scoringv1.MeasureKind_MEASURE_KIND_STAKEHOLDER_ENGAGEMENT:
		unit = "of stakeholders active"
	case scoringv1.MeasureKind_MEASURE_KIND_BREADTH:
		unit = "features"
	case scoringv1.MeasureKind_MEASURE_KIND_SURVEY:
		unit = "mean NPS"
	case scoringv1.MeasureKind_MEASURE_KIND_SUPPORT_LOAD:
		unit = "open tickets"
	case scoringv1.MeasureKind_MEASURE_KIND_BILLING:
		unit = "billing issues"
	case scoringv1.MeasureKind_MEASURE_KIND_ONBOARDING_MILESTONES:
		unit = "of milestones"
	}
	if !hasData {
		return "no data", unit
	}
	switch kind {
	case scoringv1.MeasureKind_MEASURE_KIND_ACTIVE_SEAT_RATIO:
		return fmt.Sprintf("%.0f", raw*float64(seats)), unit
	case scoringv1.MeasureKind_MEASURE_KIND_USAGE_TREND:
		return fmt.Sprintf("%.0f%%", raw*100), unit
	case scoringv1.MeasureKind_MEASURE_KIND_STAKEHOLDER_ENGAGEMENT, scoringv1.MeasureKind_MEASURE_KIND_ONBOARDING_MILESTONES:
		return fmt.Sprintf("%.0f%%", raw*100), unit
	case scoringv1.MeasureKind_MEASURE_KIND_SURVEY:
		return fmt.Sprintf("%.1f", raw), unit
	}
	if raw != math.Trunc(raw) && raw < 10 {
		return fmt.Sprintf("%.1f", raw), unit
	}
	return fmt.Sprintf("%.0f", raw), unit
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
	s := "event"
	if m.CoreEvents {
		s = "core event"
	}
	if plural {
		s += "s"
	}
	return s
}

func levels(l scorecard.Level) string {
	var parts []string
	for _, x := range []struct {
		level scorecard.Level
		name  string
	}{{scorecard.LevelS, "S"}, {scorecard.LevelA, "A"}, {scorecard.LevelB, "B"}} {
		if l&x.level != 0 {
			parts = append(parts, x.name)
		}
	}
	return strings.Join(parts, "/")
}

// count writes "1 day" or "3 days".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
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
