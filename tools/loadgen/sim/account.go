package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
)

const day = 24 * time.Hour

// days is n days as a duration.
func days(n float64) time.Duration { return time.Duration(n * float64(day)) }

// Account is one customer account: its CRM facts, its users and its fate.
type Account struct {
	ID       string
	Name     string
	Domain   string
	Industry string
	// Segment is smb, mid-market or enterprise, by seats.
	Segment string
	Fate    Fate
	Seats   int
	// ARR is the annual recurring revenue in US dollars.
	ARR           int64
	Tier          accountv1.Tier
	Stage         accountv1.LifecycleStage
	CSM           CSM
	ContractStart time.Time
	Renewal       time.Time
	// Turn is when the fate shows: the decline or the churn begins, the
	// silence falls, or (onboarding) the contract starts; zero for healthy
	// and expanding accounts.
	Turn time.Time
	// Milestones are when an onboarding account reaches each first-value
	// milestone; zero for never.
	Milestones [len(milestones)]time.Time
	// Users are everyone who ever works in the product for the account.
	Users []User

	index uint64
	// tz is the UTC offset of the account's working day, in hours.
	tz int
	// primary is the core event the account bought the product for.
	primary string
	// features are the non-core features its users touch.
	features []string
	// pace scales everyone's activity: expanding accounts use the product
	// more, slow onboarding ones less.
	pace float64
	// span is how long a decline or a churn takes from Turn.
	span time.Duration
	// scheduled are the fate's own events (milestones, escalations, billing),
	// in time order.
	scheduled []scheduled
}

// CSM is a customer success manager owning accounts.
type CSM struct {
	ID   string
	Name string
}

// User is one person of an account.
type User struct {
	ID    string
	Name  string
	Email string
	// Role is the job, sent in identify calls as the "role" trait, or as
	// "title" when UseTitle is set.
	Role     string
	UseTitle bool
	// Level is the stakeholder level: S (executives), A (directors) or B.
	// Identify calls carry it as the stakeholder_level trait only when
	// LevelTrait is set; otherwise the scorecard infers it from the role.
	Level      string
	LevelTrait bool
	// Daily is the chance that the user works in the product on a working
	// day.
	Daily float64
	// From and Until bound the user's activity: from From (zero: from the
	// start) until Until (zero: for ever).
	From, Until time.Time
}

// ActiveAt reports whether the user works in the product at t.
func (u *User) ActiveAt(t time.Time) bool {
	return (u.From.IsZero() || !t.Before(u.From)) && (u.Until.IsZero() || t.Before(u.Until))
}

// scheduled is an event of an account's fate, at a fixed time.
type scheduled struct {
	at    time.Time
	event string
	// user is the index of the acting user, or -1 for a system (billing,
	// support).
	user  int
	props map[string]any
}

// newAccount builds account i with fate f. Its randomness comes from its own
// stream, so an account does not change with the number of accounts.
func newAccount(seed, i uint64, f Fate, name [2]string, now time.Time) *Account {
	r := newRand(seed, tagAccount, i)
	a := &Account{
		ID:       fmt.Sprintf("acct-%05d", i+1),
		Name:     name[0],
		Industry: name[1],
		Domain:   domainOf(name[0]),
		Fate:     f,
		index:    i,
		tz:       pick(r, utcOffsets),
		primary:  pick(r, coreEvents),
		pace:     1,
	}
	a.features = make([]string, 2+r.IntN(len(features)-2))
	for k, j := range r.Perm(len(features))[:len(a.features)] {
		a.features[k] = features[j]
	}
	// Users per account: log-normal with a median of 8, so that most
	// accounts are small and a few have hundreds of users.
	n := int(math.Round(min(max(logNormal(r, 8, 0.9), 3), 400)))
	total, spare := n, uniform(r, 1, 1.35)
	if f == Expanding {
		// Bought a few seats more than their first users; more users join
		// later, well beyond the seats.
		spare = uniform(r, 1.05, 1.2)
		total = int(math.Ceil(float64(n) * spare * uniform(r, 1.4, 1.7)))
	}
	a.Seats = int(math.Ceil(float64(n) * spare))
	a.ContractStart = now.Add(-days(uniform(r, 60, 3*365)))
	a.Users = makeUsers(r, a.ID, a.Domain, total)

	switch f {
	case Expanding:
		// The new users join every few days: by Now about two thirds of
		// them, the rest over the next weeks.
		a.pace = 1.15
		for j := n; j < total; j++ {
			a.Users[j].From = now.Add(-days(40) + days(60*float64(j-n+1)/float64(total-n)))
		}
	case Onboarding:
		a.onboard(r, now)
	case Declining:
		a.Turn = now.Add(-days(uniform(r, 20, 42)))
		a.span = days(uniform(r, 25, 40))
		a.leave(r, 0.25)
		if r.Float64() < 0.4 {
			a.schedule(a.Turn.Add(a.span*8/10), "Subscription Downgraded", -1, a.downgrade())
		}
	case Silent:
		a.Turn = now.Add(-days(uniform(r, 13, 20)))
		for j := range a.Users {
			a.Users[j].Until = a.Turn
		}
	case Churning:
		a.Turn = now.Add(-days(uniform(r, 14, 30)))
		a.span = days(uniform(r, 4, 7))
		a.leave(r, 0)
		last := len(a.Users) - 1
		a.schedule(a.Turn.Add(a.span/5), "Ticket Opened", -1, map[string]any{"ticket_id": a.ID + "-ESC", "severity": "urgent"})
		a.schedule(a.Turn.Add(a.span*35/100), "NPS Submitted", last, map[string]any{"score": float64(r.IntN(4))})
		a.schedule(a.Turn.Add(a.span/2), "Payment Failed", -1, map[string]any{"amount": float64(a.ARR / 12), "currency": "USD"})
		a.schedule(a.Turn.Add(a.span*8/10), "Subscription Downgraded", -1, a.downgrade())
	}
	a.commercials(r, now)
	slices.SortFunc(a.scheduled, func(x, y scheduled) int { return x.at.Compare(y.at) })
	return a
}

// onboard makes the account a new customer: signed in the last four weeks,
// its users joining one after another, and its milestones reached fast (all
// three within days), slowly (the last one weeks later) or not at all (it
// stalls after configuring the account, with two users trying it).
func (a *Account) onboard(r *rand.Rand, now time.Time) {
	a.ContractStart = now.Add(-days(uniform(r, 3, 27)))
	a.Turn = a.ContractStart
	cs := a.ContractStart
	gap, joining := 0.6, len(a.Users)
	a.Milestones[0] = cs.Add(time.Duration(uniform(r, 2, 30) * float64(time.Hour)))
	switch speed := r.Float64(); {
	case speed < 0.45:
		a.Milestones[1] = cs.Add(days(uniform(r, 1, 3)))
		a.Milestones[2] = cs.Add(days(uniform(r, 4, 9)))
	case speed < 0.8:
		gap, a.pace = 2, 0.6
		a.Milestones[1] = cs.Add(days(uniform(r, 6, 12)))
		a.Milestones[2] = cs.Add(days(uniform(r, 16, 32)))
	default:
		gap, a.pace, joining = 3, 0.3, min(2, len(a.Users))
	}
	for j := range a.Users {
		a.Users[j].From = cs.Add(days(gap*float64(j) + uniform(r, 0, 0.5)))
		if j >= joining {
			a.Users[j].Until = a.Users[j].From // never active
		}
	}
	props := []map[string]any{nil, {"invitee_email": a.Users[len(a.Users)-1].Email}, {"report_type": "pipeline"}}
	for k, at := range a.Milestones {
		if !at.IsZero() {
			a.schedule(at, milestones[k], min(k, len(a.Users)-1), props[k])
		}
	}
}

// leave makes the users stop one after another over the account's span from
// Turn, executives and directors first; the keep share never leaves.
func (a *Account) leave(r *rand.Rand, keep float64) {
	order := r.Perm(len(a.Users))
	slices.SortStableFunc(order, func(x, y int) int { return strings.Compare(a.Users[x].Level, a.Users[y].Level) })
	leaving := int(math.Ceil(float64(len(order)) * (1 - keep)))
	for k, j := range order[:leaving] {
		a.Users[j].Until = a.Turn.Add(a.span * time.Duration(k+1) / time.Duration(leaving+1))
	}
}

// commercials sets what the CRM knows: segment, ARR, tier, owner, renewal
// and lifecycle stage.
func (a *Account) commercials(r *rand.Rand, now time.Time) {
	// A CSM carries a dozen large accounts or a few hundred small ones: two
	// CSMs per segment.
	pricePerSeat, book := int64(480), 4
	switch {
	case a.Seats >= 100:
		a.Segment, pricePerSeat, book = "enterprise", 960, 0
	case a.Seats >= 20:
		a.Segment, pricePerSeat, book = "mid-market", 720, 2
	default:
		a.Segment = "smb"
	}
	a.ARR = int64(a.Seats) * pricePerSeat
	switch {
	case a.Segment == "enterprise" && r.Float64() < 0.5:
		a.Tier = accountv1.Tier_TIER_BENCHMARK
	case a.Fate == Expanding && r.Float64() < 0.7, r.Float64() < 0.2:
		a.Tier = accountv1.Tier_TIER_GROWTH
	default:
		a.Tier = accountv1.Tier_TIER_STANDARD
	}
	a.CSM = csms[book+r.IntN(2)]
	a.Renewal = a.ContractStart.AddDate(1, 0, 0)
	for !a.Renewal.After(now) {
		a.Renewal = a.Renewal.AddDate(1, 0, 0)
	}
	switch {
	case a.Fate == Onboarding:
		a.Stage = accountv1.LifecycleStage_LIFECYCLE_STAGE_ONBOARDING
	case a.Renewal.Sub(now) <= days(120):
		a.Stage = accountv1.LifecycleStage_LIFECYCLE_STAGE_PRE_RENEWAL
	default:
		a.Stage = accountv1.LifecycleStage_LIFECYCLE_STAGE_ADOPTION
	}
}

func (a *Account) schedule(at time.Time, event string, user int, props map[string]any) {
	a.scheduled = append(a.scheduled, scheduled{at: at, event: event, user: user, props: props})
}

func (a *Account) downgrade() map[string]any {
	return map[string]any{"from_seats": float64(a.Seats), "to_seats": float64(max(1, a.Seats*6/10))}
}

// makeUsers makes n users: the first an executive, then mostly staff with a
// few directors and executives. Executives and directors look in less often
// than the staff who do the daily work.
func makeUsers(r *rand.Rand, accountID, domain string, n int) []User {
	users := make([]User, n)
	for j := range users {
		u := &users[j]
		first, last := pick(r, firstNames), pick(r, lastNames)
		u.ID = fmt.Sprintf("%s-u%03d", accountID, j+1)
		u.Name = first + " " + last
		u.Email = fmt.Sprintf("%s.%s%d@%s", strings.ToLower(first), strings.ToLower(last), j+1, domain)
		switch level := r.Float64(); {
		case j == 0 || level < 0.05:
			u.Level, u.Role, u.Daily = "S", pick(r, rolesS), uniform(r, 0.2, 0.45)
		case level < 0.2:
			u.Level, u.Role, u.Daily = "A", pick(r, rolesA), uniform(r, 0.35, 0.65)
		default:
			u.Level, u.Role, u.Daily = "B", pick(r, rolesB), uniform(r, 0.45, 0.95)
		}
		u.UseTitle = r.Float64() < 0.3
		u.LevelTrait = r.Float64() < 0.6
	}
	return users
}

// CRM returns the account as a CRM integration pushes it to AccountService.
func (a *Account) CRM() *accountv1.Account {
	return &accountv1.Account{
		AccountId:         a.ID,
		Name:              a.Name,
		Arr:               &accountv1.Money{CurrencyCode: "USD", Units: a.ARR},
		SeatsPurchased:    int32(a.Seats),
		ContractStartTime: timestamppb.New(a.ContractStart),
		RenewalTime:       timestamppb.New(a.Renewal),
		Owner: &accountv1.Owner{
			CsmId: a.CSM.ID,
			Name:  a.CSM.Name,
			Email: strings.ToLower(strings.ReplaceAll(a.CSM.Name, " ", ".")) + "@vendor.example",
		},
		Tier:           a.Tier,
		Segment:        a.Segment,
		Industry:       a.Industry,
		LifecycleStage: a.Stage,
	}
}
