package cache

import (
	"context"
	"errors"
	"testing"
)

// FuzzPageToken feeds page tokens to ListScores and History of the
// in-process cache: any token is either used or refused with
// ErrBadPageToken, never a panic or another error. The seeds include real
// tokens, so mutations reach the cursor decoders behind the fingerprint.
func FuzzPageToken(f *testing.F) {
	const tenant = "fuzz"
	ctx := context.Background()
	c := NewMemory(Config{HistoryLength: 5})
	updates := recorded(fixture(tenant, 12)...)
	for i := range 8 {
		updates = append(updates, recorded(changeAt(tenant, i, float64(10*i)))...)
	}
	if err := c.PutScores(ctx, updates); err != nil {
		f.Fatal(err)
	}
	_, list, err := c.ListScores(ctx, tenant, ListQuery{PageSize: 3})
	if err != nil || list == "" {
		f.Fatalf("list page: %q %v", list, err)
	}
	_, hist, err := c.History(ctx, tenant, "acct", HistoryQuery{PageSize: 2})
	if err != nil || hist == "" {
		f.Fatalf("history page: %q %v", hist, err)
	}
	for _, tok := range []string{list, hist, "", "!!!", "AAAA", list[:len(list)-3]} {
		f.Add(tok)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		if _, _, err := c.ListScores(ctx, tenant, ListQuery{PageSize: 3, PageToken: tok}); err != nil && !errors.Is(err, ErrBadPageToken) {
			t.Fatalf("list with token %q: %v", tok, err)
		}
		if _, _, err := c.History(ctx, tenant, "acct", HistoryQuery{PageSize: 2, PageToken: tok}); err != nil && !errors.Is(err, ErrBadPageToken) {
			t.Fatalf("history with token %q: %v", tok, err)
		}
	})
}
