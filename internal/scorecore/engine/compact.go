package engine

// compact shrinks the accounts that fell silent to what they still need: an
// event set with no event in the daily window as of day gives back its daily
// counts (every slot reads zero within the window, so nothing any measure
// reads changes), keeping its last day and weekly counts. An account silent
// for good is then its facts, users, last days and a year of weekly counts;
// it is never dropped, and its next event starts its daily counts afresh.
// It runs when a tenant's watermark enters a new day, in event order.
func (e *Engine) compact(t *tenant, day int32) {
	windowStart := day - e.window + 1
	for _, a := range t.Accounts {
		for i := range a.Groups {
			if g := &a.Groups[i]; g.Counts != nil && g.Last < windowStart {
				g.Counts = nil
				e.stats.Compacted++
			}
		}
	}
}
