// Package sim simulates the customers of a B2B SaaS product, for load tests
// and demos of Lodestar. A Product is a set of accounts of heavy-tailed sizes
// (users per account are log-normal) with commercial facts a CRM would hold,
// each with a Fate that shapes what its users do: healthy, expanding,
// onboarding, declining, silent or churning. Their usage comes out as the
// calls of Segment's tracking vocabulary (track, identify, group, page), with
// diurnal activity in each account's time zone, core and non-core events,
// first-value milestones, NPS answers, support tickets and billing trouble,
// following the event conventions of the default scorecard.
//
// Everything is deterministic: the same Config gives the same accounts and,
// hour by hour, the same events with the same message ids. An hour's events
// depend only on the seed, the account and the hour, never on which hours
// were generated before, so a caller may start anywhere in time.
package sim

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Config describes a product.
type Config struct {
	// Seed selects the product: the same seed and Now give the same accounts
	// and events.
	Seed uint64
	// Accounts is the number of customer accounts.
	Accounts int
	// Now is the moment the fates are told against: silent accounts went
	// silent about two weeks before it, onboarding accounts signed in the four
	// weeks before it, declining ones began to decline up to six weeks before.
	Now time.Time
	// Mix is the share of accounts of each fate.
	Mix Mix
}

// Type is the Segment call an event is.
type Type uint8

// The Segment calls the simulator makes.
const (
	Track Type = iota
	Identify
	Group
	Page
)

// String returns the Segment type name.
func (t Type) String() string {
	switch t {
	case Track:
		return "track"
	case Identify:
		return "identify"
	case Group:
		return "group"
	case Page:
		return "page"
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// Event is one Segment call. Every event names its account (the Segment
// group id); a user's events carry UserID, those of the support and billing
// tools an AnonymousID.
type Event struct {
	Type        Type
	MessageID   string
	UserID      string
	AnonymousID string
	AccountID   string
	// Event is the action of a track call.
	Event string
	// Name is the page of a page call.
	Name string
	// Time is when the event happened.
	Time       time.Time
	Properties map[string]any
	Traits     map[string]any
}

// Product is a simulated product and its customers.
type Product struct {
	seed     uint64
	accounts []*Account
}

// New builds the product's accounts.
func New(cfg Config) (*Product, error) {
	if cfg.Accounts < 1 {
		return nil, fmt.Errorf("accounts %d: want at least 1", cfg.Accounts)
	}
	if cfg.Now.IsZero() {
		return nil, errors.New("now is required")
	}
	fates, err := cfg.Mix.assign(cfg.Accounts, newRand(cfg.Seed, tagFates))
	if err != nil {
		return nil, err
	}
	p := &Product{seed: cfg.Seed, accounts: make([]*Account, cfg.Accounts)}
	names := newNamer(cfg.Seed)
	for i, f := range fates {
		p.accounts[i] = newAccount(cfg.Seed, uint64(i), f, names.name(i), cfg.Now)
	}
	return p, nil
}

// Accounts returns the product's accounts, in id order. They are shared:
// do not modify them.
func (p *Product) Accounts() []*Account { return p.accounts }

// AppendHour appends the events of the UTC hour holding t to dst, in time
// order, and returns the extended slice.
func (p *Product) AppendHour(dst []Event, t time.Time) []Event {
	h := t.Unix() / 3600
	start := len(dst)
	for _, a := range p.accounts {
		dst = a.appendHour(dst, p.seed, h)
	}
	// Stable, so that events at the same instant keep account order.
	slices.SortStableFunc(dst[start:], func(x, y Event) int { return x.Time.Compare(y.Time) })
	return dst
}
