package pipeline

import (
	"flag"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
)

func TestDailyPagesFlag(t *testing.T) {
	var d DailyPages
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Var(&d, "daily-pages", "")
	if err := fs.Parse([]string{"-daily-pages=3,benchmark=20,growth=0"}); err != nil {
		t.Fatal(err)
	}
	if d.Limit(accountv1.Tier_TIER_STANDARD) != 3 || d.Limit(accountv1.Tier_TIER_BENCHMARK) != 20 || d.Limit(accountv1.Tier_TIER_GROWTH) != 0 {
		t.Fatalf("parsed %+v", d)
	}
	if d.String() != "3,benchmark=20,growth=0" {
		t.Errorf("String %q", d.String())
	}
	for _, bad := range []string{"x", "-1", "3,gold=2", "3,4", "benchmark=x"} {
		if err := d.Set(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

type alerts []*alertv1.Alert

func (as alerts) List(_ string, keep func(*alertv1.Alert) bool) []*alertv1.Alert {
	var out []*alertv1.Alert
	for _, a := range as {
		if keep(a) {
			out = append(out, a)
		}
	}
	return out
}

// TestBudget: a recipient's pages go to the most valuable alerts (ARR x
// risk x renewal urgency) within the day's budget; the rest go to the
// digest, and every alert says why.
func TestBudget(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	dana := &alertv1.Person{PersonId: "dana"}
	alert := func(id string, arr int64, score float64, renewsInDays int) *alertv1.Alert {
		return &alertv1.Alert{AlertId: id, Assignee: dana, Tier: accountv1.Tier_TIER_STANDARD, State: alertv1.AlertState_ALERT_STATE_OPEN,
			Arr: &accountv1.Money{CurrencyCode: "USD", Units: arr}, Score: score,
			RenewalTime: timestamppb.New(now.Add(time.Duration(renewsInDays) * 24 * time.Hour))}
	}
	open := alerts{
		alert("big-soon", 200_000, 20, 20), // 200k x 0.8 x 1 = 160k
		alert("big-late", 200_000, 20, 300),
		alert("small-soon", 10_000, 20, 20),
	}
	b := NewBudget(DailyPages{Default: 2}, open)
	cases := []struct {
		a      *alertv1.Alert
		paged  bool
		reason string
	}{
		// Ranks first among the open ones: paged.
		{alert("huge", 500_000, 10, 10), true, "rank 1 of 4 open alerts of dana's standard accounts by ARR x risk x renewal urgency (USD 500,000 x 0.90 x 1.00 = 450000); paged now, page 1 of 2 today"},
		// Outranked by two more valuable open alerts: the digest.
		{alert("small-late", 10_000, 30, 200), false, "rank 4 of 4"},
		// Second most valuable: the day's second page.
		{alert("big-soon-2", 300_000, 40, 25), true, "page 2 of 2 today"},
		// The budget is spent.
		{alert("huge-2", 900_000, 10, 5), false, "the 2 pages of today are spent"},
	}
	for _, c := range cases {
		paged, why := b.decide("acme", c.a, now)
		if paged != c.paged || !strings.Contains(why, c.reason) {
			t.Errorf("%s: paged %v (%s), want %v (%s)", c.a.GetAlertId(), paged, why, c.paged, c.reason)
		}
	}
	// A new day, a new budget; another tier has its own.
	if paged, _ := b.decide("acme", alert("huge-2", 900_000, 10, 5), now.Add(24*time.Hour)); !paged {
		t.Error("the next day's budget was spent")
	}
	unlimited := NewBudget(DailyPages{}, open)
	if paged, why := unlimited.decide("acme", alert("x", 1, 90, 300), now); !paged || why != "" {
		t.Errorf("no budget: paged %v, %q", paged, why)
	}
}
