// Package retention computes the numbers a CS leader is judged by, exactly as
// DOMAIN.md defines them, over calendar periods:
//
//	GRR  = (starting ARR - churned ARR - contraction) / starting ARR
//	NRR  = (starting ARR - churned ARR - contraction + expansion) / starting ARR
//	logo retention = accounts kept / accounts present at the start
//
// for the accounts present at the period start only: an account whose
// contract started within the period is excluded, its ARR counts nowhere.
//
// Each account's movement is netted over the period: an account that churned
// loses its starting ARR (whatever happened to it before within the period),
// one that stayed contracted by how much its ending ARR is below its starting
// ARR, or expanded by how much it is above. So no account loses more than it
// started with and GRR never exceeds 1 by construction.
//
// An account's ARR at a time follows its recorded renewal outcomes (the
// commercial facts in event time, not the time the CRM pushed them): the ARR
// after the last outcome before that time, else the ARR before its first
// outcome, else its current ARR. ARR changes the CRM pushes between renewals
// without recording an outcome are not movements of any period.
package retention

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"time"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	forecastv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/forecast/v1"
)

// SettleWindow is how long before its renewal date an outcome may be recorded
// and still settle that renewal: renewal talks start in the pre-renewal
// stage, 90-120 days before.
const SettleWindow = 120 * 24 * time.Hour

// termBefore is the contract term a renewal proves: an account that renewed
// at t was a customer for the year before t, whatever its contract start
// says (CRMs often move contract_start_time to the new term's start).
const termBefore = 365 * 24 * time.Hour

// Money turns an amount into whole units.
func Money(m *accountv1.Money) float64 {
	return float64(m.GetUnits()) + float64(m.GetNanos())/1e9
}

// Change is what happened to one account over one period.
type Change struct {
	// Start and End are its ARR at the period's start and end.
	Start, End float64
	// Lost is set when its last outcome in the period was a churn.
	Lost bool
	// Renewals counts its outcomes in the period; Before sums their ARR
	// before, Kept their ARR after capped at before, After their ARR after.
	Renewals            int
	Before, Kept, After float64
	// Pending counts renewal dates that passed in the period with no outcome
	// recorded.
	Pending int
}

// Renew returns c with one more renewal, from before to after: how a
// forecast adds a pending renewal's simulated outcome.
func (c Change) Renew(before, after float64, churned bool) Change {
	c.addRenewal(before, after, churned)
	c.End = after
	return c
}

func (c *Change) addRenewal(before, after float64, churned bool) {
	c.Renewals++
	c.Before += before
	c.Kept += min(after, before)
	c.After += after
	c.Lost = churned
}

// Status says whether an account counts in a period.
type Status int

const (
	// Present: a customer at the period start; its Change counts.
	Present Status = iota
	// New: its contract started within the period; excluded.
	New
	// Absent: not a customer at the period start (churned before it, or
	// starting after it).
	Absent
)

// Actual returns what the recorded outcomes say happened to acc over p,
// given the time now (renewal dates after now are not pending yet).
func Actual(acc *accountv1.Account, p Period, now time.Time) (Change, Status) {
	outcomes := sortedOutcomes(acc)
	since := customerSince(acc, outcomes)
	switch {
	case !since.IsZero() && !since.Before(p.End):
		return Change{}, Absent
	case !since.IsZero() && !since.Before(p.Start):
		return Change{}, New
	}
	if lastBefore(outcomes, p.Start).GetType() == accountv1.OutcomeType_OUTCOME_TYPE_CHURNED {
		return Change{}, Absent
	}
	c := Change{Start: arrAt(acc, outcomes, p.Start), End: arrAt(acc, outcomes, p.End)}
	for _, o := range outcomes {
		if t := o.GetOutcomeTime().AsTime(); t.Before(p.Start) || !t.Before(p.End) {
			continue
		}
		c.addRenewal(Money(o.GetArrBefore()), outcomeAfter(o), o.GetType() == accountv1.OutcomeType_OUTCOME_TYPE_CHURNED)
	}
	if r := acc.GetRenewalTime(); r != nil && !c.Lost {
		rt := r.AsTime()
		if !rt.Before(p.Start) && rt.Before(p.End) && rt.Before(now) && !Settled(outcomes, rt) {
			c.Pending++
		}
	}
	return c, Present
}

// Settled reports whether an outcome recorded at or after rt - SettleWindow
// settles the renewal due at rt.
func Settled(outcomes []*accountv1.RenewalOutcome, rt time.Time) bool {
	from := rt.Add(-SettleWindow)
	return slices.ContainsFunc(outcomes, func(o *accountv1.RenewalOutcome) bool {
		return !o.GetOutcomeTime().AsTime().Before(from)
	})
}

// Churned reports whether acc's last recorded outcome is a churn.
func Churned(acc *accountv1.Account) bool {
	o := sortedOutcomes(acc)
	return len(o) > 0 && o[len(o)-1].GetType() == accountv1.OutcomeType_OUTCOME_TYPE_CHURNED
}

// Outcomes returns acc's outcomes in time order.
func Outcomes(acc *accountv1.Account) []*accountv1.RenewalOutcome { return sortedOutcomes(acc) }

func sortedOutcomes(acc *accountv1.Account) []*accountv1.RenewalOutcome {
	out := slices.Clone(acc.GetOutcomes())
	slices.SortStableFunc(out, func(a, b *accountv1.RenewalOutcome) int {
		return a.GetOutcomeTime().AsTime().Compare(b.GetOutcomeTime().AsTime())
	})
	return out
}

func outcomeAfter(o *accountv1.RenewalOutcome) float64 {
	if o.GetType() == accountv1.OutcomeType_OUTCOME_TYPE_CHURNED {
		return 0
	}
	return Money(o.GetArrAfter())
}

// lastBefore is the last outcome before t, or nil.
func lastBefore(outcomes []*accountv1.RenewalOutcome, t time.Time) *accountv1.RenewalOutcome {
	var last *accountv1.RenewalOutcome
	for _, o := range outcomes {
		if o.GetOutcomeTime().AsTime().Before(t) {
			last = o
		}
	}
	return last
}

// arrAt is acc's ARR at t by its outcome chain; see the package comment.
func arrAt(acc *accountv1.Account, outcomes []*accountv1.RenewalOutcome, t time.Time) float64 {
	if o := lastBefore(outcomes, t); o != nil {
		return outcomeAfter(o)
	}
	if len(outcomes) > 0 {
		return Money(outcomes[0].GetArrBefore())
	}
	return Money(acc.GetArr())
}

// customerSince is when acc became a customer: its contract start (else the
// record's creation), or a year before its first renewal when that is
// earlier. Zero when nothing tells.
func customerSince(acc *accountv1.Account, outcomes []*accountv1.RenewalOutcome) time.Time {
	var since time.Time
	switch {
	case acc.GetContractStartTime() != nil:
		since = acc.GetContractStartTime().AsTime()
	case acc.GetCreateTime() != nil:
		since = acc.GetCreateTime().AsTime()
	}
	if len(outcomes) > 0 {
		if first := outcomes[0].GetOutcomeTime().AsTime().Add(-termBefore); since.IsZero() || first.Before(since) {
			since = first
		}
	}
	return since
}

// Currency is the currency an account's amounts are in; empty when unknown.
func Currency(acc *accountv1.Account) string {
	if c := acc.GetArr().GetCurrencyCode(); c != "" {
		return c
	}
	for _, o := range acc.GetOutcomes() {
		if c := o.GetArrBefore().GetCurrencyCode(); c != "" {
			return c
		}
	}
	return ""
}

// MainCurrency is the currency most of the accounts' ARR is in: the one a
// report uses unless asked for another.
func MainCurrency(accounts []*accountv1.Account) string {
	arr := map[string]float64{}
	for _, a := range accounts {
		if c := Currency(a); c != "" {
			arr[c] += Money(a.GetArr()) + 1e-9 // an account counts even at zero ARR
		}
	}
	best := ""
	for c, v := range arr {
		if best == "" || v > arr[best] || (v == arr[best] && c < best) {
			best = c
		}
	}
	return best
}

// Totals add up Changes. Each is added with a weight: 1 for what happened,
// an outcome's probability for an expectation; so a forecast's expected
// values and its simulated draws use the very formulas of the actuals.
type Totals struct {
	Accounts, NewAccounts                  float64
	Lost                                   float64
	Start, End                             float64
	Churned, Contraction, Expansion        float64
	Renewals, Before, Kept, After, Pending float64
}

// Add adds c with weight w.
func (t *Totals) Add(c Change, w float64) {
	t.Accounts += w
	t.Start += w * c.Start
	t.End += w * c.End
	switch {
	case c.Lost:
		t.Lost += w
		t.Churned += w * c.Start
	case c.End < c.Start:
		t.Contraction += w * (c.Start - c.End)
	default:
		t.Expansion += w * (c.End - c.Start)
	}
	t.Renewals += w * float64(c.Renewals)
	t.Before += w * c.Before
	t.Kept += w * c.Kept
	t.After += w * c.After
	t.Pending += w * float64(c.Pending)
}

// GRR is gross revenue retention; 0 without starting ARR.
func (t *Totals) GRR() float64 { return ratio(t.Start-t.Churned-t.Contraction, t.Start) }

// NRR is net revenue retention; 0 without starting ARR.
func (t *Totals) NRR() float64 {
	return ratio(t.Start-t.Churned-t.Contraction+t.Expansion, t.Start)
}

// LogoRetention is the share of accounts kept; 0 without accounts.
func (t *Totals) LogoRetention() float64 { return ratio(t.Accounts-t.Lost, t.Accounts) }

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// monthly is the monthly rate compounding to retention r over months.
func monthly(r float64, months int, defined bool) float64 {
	if !defined {
		return 0
	}
	return 1 - math.Pow(max(r, 0), 1/float64(months))
}

// Metrics are the totals as the API reports them, over a period of months.
func (t *Totals) Metrics(months int) *forecastv1.RetentionMetrics {
	return &forecastv1.RetentionMetrics{
		Accounts:                 int32(math.Round(t.Accounts)),
		NewAccounts:              int32(math.Round(t.NewAccounts)),
		StartingArr:              t.Start,
		ChurnedArr:               t.Churned,
		ContractionArr:           t.Contraction,
		ExpansionArr:             t.Expansion,
		EndingArr:                t.End,
		ChurnedAccounts:          t.Lost,
		Grr:                      t.GRR(),
		Nrr:                      t.NRR(),
		LogoRetention:            t.LogoRetention(),
		MonthlyLogoChurnRate:     monthly(t.LogoRetention(), months, t.Accounts > 0),
		MonthlyRevenueChurnRate:  monthly(t.GRR(), months, t.Start > 0),
		Renewals:                 int32(math.Round(t.Renewals)),
		RenewalsArr:              t.Before,
		RenewedArr:               t.After,
		PureRenewalRate:          ratio(t.Kept, t.Before),
		RenewalRateWithExpansion: ratio(t.After, t.Before),
		PendingRenewals:          int32(math.Round(t.Pending)),
	}
}

// Keys are an account's breakdown keys: by band, tier, owner and segment,
// the order of the Dimension enum.
type Keys [4]string

// Slices are the breakdown slices an account with keys k falls in.
func (k Keys) Slices() [len(Keys{})]Key {
	var out [len(Keys{})]Key
	for i, v := range k {
		out[i] = Key{Dim: forecastv1.Dimension(i + 1), Value: v}
	}
	return out
}

// None is the key of an account with no value for a dimension.
const None = "none"

// Key is one slice of a breakdown; the zero Key stands for the whole book.
type Key struct {
	Dim   forecastv1.Dimension
	Value string
}

// Report is a total and its breakdowns.
type Report struct {
	Total  Totals
	Slices map[Key]*Totals
}

// NewReport returns an empty report.
func NewReport() *Report { return &Report{Slices: map[Key]*Totals{}} }

// slice returns the totals of one key, creating them.
func (r *Report) slice(k Key) *Totals {
	t, ok := r.Slices[k]
	if !ok {
		t = &Totals{}
		r.Slices[k] = t
	}
	return t
}

// Add adds c with weight w to the total and to each of keys' slices.
func (r *Report) Add(keys Keys, c Change, w float64) {
	r.Total.Add(c, w)
	for _, k := range keys.Slices() {
		r.slice(k).Add(c, w)
	}
}

// AddNew counts an excluded mid-period account.
func (r *Report) AddNew(keys Keys) {
	r.Total.NewAccounts++
	for _, k := range keys.Slices() {
		r.slice(k).NewAccounts++
	}
}

// SortedKeys lists the report's slices by dimension, then value.
func (r *Report) SortedKeys() []Key {
	keys := make([]Key, 0, len(r.Slices))
	for k := range r.Slices {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b Key) int { return cmp.Or(cmp.Compare(a.Dim, b.Dim), strings.Compare(a.Value, b.Value)) })
	return keys
}

// Breakdown is the report's slices as the API reports them.
func (r *Report) Breakdown(months int) []*forecastv1.RetentionSlice {
	keys := r.SortedKeys()
	out := make([]*forecastv1.RetentionSlice, len(keys))
	for i, k := range keys {
		out[i] = &forecastv1.RetentionSlice{Dimension: k.Dim, Key: k.Value, Metrics: r.Slices[k].Metrics(months)}
	}
	return out
}

// KeysOf are an account's breakdown keys given its band's name.
func KeysOf(acc *accountv1.Account, band string) Keys {
	orNone := func(s string) string {
		if s == "" {
			return None
		}
		return s
	}
	tier := None
	if acc.GetTier() != accountv1.Tier_TIER_UNSPECIFIED {
		tier = strings.ToLower(strings.TrimPrefix(acc.GetTier().String(), "TIER_"))
	}
	return Keys{orNone(band), tier, orNone(acc.GetOwner().GetCsmId()), orNone(acc.GetSegment())}
}
