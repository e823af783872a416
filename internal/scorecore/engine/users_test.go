package engine

import (
	"math/rand/v2"
	"testing"
)

// TestUserTable checks the table against a map through growth and sweeps.
func TestUserTable(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var tab userTable
	want := map[uint64]user{}
	for i := range 5000 {
		key := max(rng.Uint64N(3000), 1)
		if u := tab.get(key); u != nil {
			u.Touch++
		} else {
			tab.add(key).Touch = 1
		}
		u := want[key]
		u.Touch++
		want[key] = u
		if i%1000 == 999 {
			tab.removeIf(func(u user) bool { return u.Touch < 2 })
			for k, u := range want {
				if u.Touch < 2 {
					delete(want, k)
				}
			}
		}
		if tab.N != len(want) || !tab.valid() {
			t.Fatalf("step %d: %d users, want %d (valid %t)", i, tab.N, len(want), tab.valid())
		}
	}
	for k, u := range want {
		if got := tab.get(k); got == nil || *got != u {
			t.Fatalf("user %d: %+v, want %+v", k, got, u)
		}
	}
	if tab.get(4000) != nil {
		t.Error("found a user never added")
	}
	if n := len(tab.Slots); tab.N*16 < n*7 {
		t.Errorf("%d users in %d slots: below 7/16 full", tab.N, n)
	}
}
