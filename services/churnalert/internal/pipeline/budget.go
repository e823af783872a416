package pipeline

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/channel"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/rules"
)

// DailyPages is how many pages one recipient gets at once per day, by the
// tier of the accounts they are about; 0 is no limit. It reads and prints
// as "5" (every tier) or "5,benchmark=20,growth=10" (a default and
// overrides).
type DailyPages struct {
	Default int
	ByTier  map[accountv1.Tier]int
}

// Limit is the budget for a tier.
func (d DailyPages) Limit(t accountv1.Tier) int {
	if n, ok := d.ByTier[t]; ok {
		return n
	}
	return d.Default
}

func tierName(t accountv1.Tier) string {
	return strings.ToLower(strings.TrimPrefix(t.String(), "TIER_"))
}

// String implements flag.Value.
func (d *DailyPages) String() string {
	if d == nil {
		return "0"
	}
	parts := []string{strconv.Itoa(d.Default)}
	for _, t := range slices.Sorted(maps.Keys(d.ByTier)) {
		parts = append(parts, fmt.Sprintf("%s=%d", tierName(t), d.ByTier[t]))
	}
	return strings.Join(parts, ",")
}

// Set implements flag.Value.
func (d *DailyPages) Set(s string) error {
	next := DailyPages{ByTier: map[accountv1.Tier]int{}}
	for i, part := range strings.Split(s, ",") {
		name, num, override := strings.Cut(strings.TrimSpace(part), "=")
		if !override {
			num = name
		}
		n, err := strconv.Atoi(num)
		if err != nil || n < 0 {
			return fmt.Errorf("%q: want a number of pages, 0 or more", part)
		}
		switch {
		case !override && i == 0:
			next.Default = n
		case !override:
			return fmt.Errorf("%q: only the first item may be a bare default", part)
		default:
			t, ok := accountv1.Tier_value["TIER_"+strings.ToUpper(name)]
			if !ok || t == 0 {
				return fmt.Errorf("%q: unknown tier (benchmark, growth, standard)", part)
			}
			next.ByTier[accountv1.Tier(t)] = n
		}
	}
	*d = next
	return nil
}

// Budget spends each recipient's daily pages on their most valuable alerts:
// a page goes out at once when the alert ranks within the budget among the
// recipient's open alerts of the account's tier (by rules.Value) and the
// day's budget is not spent; otherwise it goes to the digest. The pages
// spent are counted in memory, per replica: a restart (or another replica)
// may page up to a budget more that day. One Budget serves every partition
// pipeline of a process: a recipient's accounts lie in many partitions.
type Budget struct {
	pages DailyPages
	view  lister
	mu    sync.Mutex
	spent map[spendKey]int
}

// NewBudget returns a budget of pages, ranking among the alerts view lists.
func NewBudget(pages DailyPages, view lister) *Budget {
	return &Budget{pages: pages, view: view, spent: map[spendKey]int{}}
}

// lister lists a tenant's alerts (view.View).
type lister interface {
	List(tenant string, keep func(*alertv1.Alert) bool) []*alertv1.Alert
}

type spendKey struct {
	tenant, recipient string
	tier              accountv1.Tier
	day               int64
}

func recipientOf(a *alertv1.Alert) string {
	p := a.GetAssignee()
	if p.GetPersonId() != "" {
		return p.GetPersonId()
	}
	return p.GetEmail()
}

func (b *Budget) decide(tenant string, a *alertv1.Alert, now time.Time) (bool, string) {
	limit, who := b.pages.Limit(a.GetTier()), recipientOf(a)
	if limit == 0 || who == "" {
		return true, ""
	}
	value, risk, urgency := rules.Value(a, now)
	rank, of := 1, 1
	for _, o := range b.view.List(tenant, func(o *alertv1.Alert) bool {
		return o.GetAlertId() != a.GetAlertId() && o.GetState() != alertv1.AlertState_ALERT_STATE_RESOLVED &&
			recipientOf(o) == who && o.GetTier() == a.GetTier()
	}) {
		of++
		if v, _, _ := rules.Value(o, now); v > value {
			rank++
		}
	}
	key := spendKey{tenant, who, a.GetTier(), now.Unix() / 86400}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.spent) > 100_000 { // yesterday's keys
		for k := range b.spent {
			if k.day != key.day {
				delete(b.spent, k)
			}
		}
	}
	spent := b.spent[key]
	why := fmt.Sprintf("rank %d of %d open alerts of %s's %s accounts by ARR x risk x renewal urgency (%s x %.2f x %.2f = %.0f)",
		rank, of, who, tierName(a.GetTier()), channel.Money(a.GetArr()), risk, urgency, value)
	switch {
	case spent >= limit:
		return false, why + fmt.Sprintf("; to the digest: the %d pages of today are spent", limit)
	case rank > limit:
		return false, why + fmt.Sprintf("; to the digest: %d more valuable alerts come first (%d pages a day)", rank-1, limit)
	}
	b.spent[key]++
	return true, why + fmt.Sprintf("; paged now, page %d of %d today", spent+1, limit)
}
