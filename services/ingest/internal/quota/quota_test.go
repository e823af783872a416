package quota

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
)

// clock is a settable time.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// replicas returns a function starting an Accounts on one bucket (on a
// fresh NATS server), following it until the test ends: a new ingest
// replica, or one restarted.
func replicas(t *testing.T, limits Limits, c *clock) func() *Accounts {
	t.Helper()
	_, nc := testenv.NATS(t)
	js, _ := natsx.NewJetStream(nc)
	kv, err := natsx.EnsureKeyValue(context.Background(), js, natsx.DefaultLimits().TenantAccountsBucket())
	if err != nil {
		t.Fatal(err)
	}
	return func() *Accounts {
		a := New(kv, limits)
		a.now = c.now
		ctx, cancel := context.WithCancel(context.Background())
		follow, err := a.Follow(ctx)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- follow() }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
		return a
	}
}

func accounts(from, to int) []string {
	var ids []string
	for i := from; i < to; i++ {
		ids = append(ids, fmt.Sprint("acct-", i))
	}
	return ids
}

// TestLimits checks both limits, that known accounts always pass, and that
// a restarted replica knows the accounts from the bucket.
func TestLimits(t *testing.T) {
	c := &clock{t: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
	start := replicas(t, Limits{MaxAccounts: 8, NewAccountsPerHour: 5}, c)
	a := start()
	ctx := context.Background()
	admit := func(ids []string) *Error {
		t.Helper()
		err := a.Admit(ctx, "acme", ids)
		var qe *Error
		if err != nil && !errors.As(err, &qe) {
			t.Fatal(err)
		}
		return qe
	}
	if err := admit(accounts(0, 3)); err != nil {
		t.Fatalf("3 new accounts: %v", err)
	}
	c.t = c.t.Add(30 * time.Minute)
	if err := admit(append(accounts(0, 3), "acct-3", "acct-3")); err != nil { // 1 new
		t.Fatalf("1 new account: %v", err)
	}
	err := admit(accounts(2, 6)) // 2 new: 6 in the hour
	if err == nil || err.Max != 5 || err.New != 2 || err.RetryAfter != 30*time.Minute {
		t.Fatalf("over the hourly limit: %+v, want 2 new over 5 an hour, retry in 30m", err)
	}
	if err := admit(accounts(0, 4)); err != nil {
		t.Fatalf("known accounts refused: %v", err)
	}
	if err := admit(accounts(4, 5)); err != nil {
		t.Fatalf("the 5th account of the hour: %v", err)
	}
	c.t = c.t.Add(31 * time.Minute) // the first 3 are out of the hour
	if err := admit(accounts(5, 8)); err != nil {
		t.Fatalf("3 new accounts an hour later: %v", err)
	}
	c.t = c.t.Add(2 * time.Hour)
	if err := admit(accounts(8, 10)); err == nil || err.Max != 8 || err.RetryAfter != 0 {
		t.Fatalf("over the total: %+v, want over 8 in all, no retry", err)
	}
	if err := admit(accounts(0, 8)); err != nil {
		t.Fatalf("known accounts refused at the limit: %v", err)
	}
	if err := a.Admit(ctx, "globex", accounts(0, 5)); err != nil {
		t.Fatalf("another tenant: %v", err)
	}

	// A restarted replica loads the 8 accounts: the 9th is still refused,
	// the known ones pass.
	a = start()
	if err := admit(accounts(0, 8)); err != nil {
		t.Fatalf("after a restart, known accounts refused: %v", err)
	}
	if err := admit(accounts(8, 9)); err == nil || err.Max != 8 {
		t.Fatalf("after a restart, over the total: %+v", err)
	}
}
