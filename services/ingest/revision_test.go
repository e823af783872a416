package ingest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
)

// TestAccountRevisionsAreTheAccounts: an account's revision counts its own
// versions; another tenant's writes in between do not show in it (issue
// 13, item 8: revisions were the bucket's, shared by every tenant).
func TestAccountRevisionsAreTheAccounts(t *testing.T) {
	e := start(t, nil)
	acme := accountv1.NewAccountServiceClient(e.dial(t, acmeAPIKey))
	globex := accountv1.NewAccountServiceClient(e.dial(t, globexAPIKey))
	ctx := context.Background()
	mine := testAccounts(time.Now())[0]
	var revs []uint64
	for round := range 3 {
		up, err := acme.UpsertAccounts(ctx, &accountv1.UpsertAccountsRequest{Accounts: []*accountv1.Account{mine}})
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, up.GetAccounts()[0].GetRevision())
		var theirs []*accountv1.Account
		for i := range 5 {
			a := testAccounts(time.Now())[1]
			a.AccountId = fmt.Sprintf("globex-%d-%d", round, i)
			theirs = append(theirs, a)
		}
		if _, err := globex.UpsertAccounts(ctx, &accountv1.UpsertAccountsRequest{Accounts: theirs}); err != nil {
			t.Fatal(err)
		}
	}
	if revs[0] != 1 || revs[1] != 2 || revs[2] != 3 {
		t.Fatalf("revisions of one account with another tenant writing between: %v, want [1 2 3]", revs)
	}
	got, err := acme.GetAccount(ctx, &accountv1.GetAccountRequest{AccountId: mine.GetAccountId()})
	if err != nil || got.GetAccount().GetRevision() != 3 {
		t.Fatalf("get: revision %d (%v), want 3", got.GetAccount().GetRevision(), err)
	}
}
