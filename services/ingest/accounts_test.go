package ingest_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/pkg/natsx"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
)

func usd(units int64) *accountv1.Money { return &accountv1.Money{CurrencyCode: "USD", Units: units} }

// testAccounts are three accounts of acme: a and c owned by csm-1 in the smb
// segment, b by csm-2 in enterprise.
func testAccounts(now time.Time) []*accountv1.Account {
	return []*accountv1.Account{
		{AccountId: "acct-a", Name: "Alpha", Arr: usd(120_000), SeatsPurchased: 50, Tier: accountv1.Tier_TIER_BENCHMARK,
			Owner: &accountv1.Owner{CsmId: "csm-1", Email: "ann@vendor.test"}, Segment: "smb", LifecycleStage: accountv1.LifecycleStage_LIFECYCLE_STAGE_PRE_RENEWAL,
			ContractStartTime: timestamppb.New(now.AddDate(-1, 0, 30)), RenewalTime: timestamppb.New(now.AddDate(0, 0, 30))},
		{AccountId: "acct-b", Name: "Beta", Arr: usd(900_000), Tier: accountv1.Tier_TIER_GROWTH,
			Owner: &accountv1.Owner{CsmId: "csm-2"}, Segment: "enterprise", LifecycleStage: accountv1.LifecycleStage_LIFECYCLE_STAGE_ADOPTION,
			RenewalTime: timestamppb.New(now.AddDate(0, 0, 200))},
		{AccountId: "acct-c", Name: "Gamma", Arr: usd(10_000), Tier: accountv1.Tier_TIER_STANDARD,
			Owner: &accountv1.Owner{CsmId: "csm-1"}, Segment: "smb", LifecycleStage: accountv1.LifecycleStage_LIFECYCLE_STAGE_ADOPTION},
	}
}

func ids(accounts []*accountv1.Account) []string {
	out := make([]string, len(accounts))
	for i, a := range accounts {
		out[i] = a.AccountId
	}
	return out
}

func TestAccounts(t *testing.T) {
	e := start(t, nil)
	c := accountv1.NewAccountServiceClient(e.dial(t, acmeAPIKey))
	ctx := context.Background()
	now := time.Now()

	// Upsert, then get.
	up, err := c.UpsertAccounts(ctx, &accountv1.UpsertAccountsRequest{Accounts: testAccounts(now)})
	if err != nil {
		t.Fatalf("upsert: %v", err)
	}
	for _, a := range up.Accounts {
		if a.TenantId != "acme" || a.Revision == 0 || a.CreateTime == nil || !proto.Equal(a.CreateTime, a.UpdateTime) {
			t.Errorf("upserted %s: tenant %q revision %d create %v update %v", a.AccountId, a.TenantId, a.Revision, a.CreateTime, a.UpdateTime)
		}
	}
	got, err := c.GetAccount(ctx, &accountv1.GetAccountRequest{AccountId: "acct-a"})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if !proto.Equal(got.Account, up.Accounts[0]) {
		t.Errorf("get = %v, want the upserted %v", got.Account, up.Accounts[0])
	}
	if _, err := c.GetAccount(ctx, &accountv1.GetAccountRequest{AccountId: "acct-missing"}); status.Code(err) != codes.NotFound {
		t.Errorf("get missing: %v, want NotFound", err)
	}

	// Record a churn, twice: the second is the same outcome and changes nothing.
	churn := &accountv1.RenewalOutcome{AccountId: "acct-c", Type: accountv1.OutcomeType_OUTCOME_TYPE_CHURNED,
		ArrBefore: usd(10_000), OutcomeTime: timestamppb.New(now), Note: "budget cut"}
	var churned []*accountv1.Account
	for range 2 {
		r, err := c.RecordOutcome(ctx, &accountv1.RecordOutcomeRequest{Outcome: churn})
		if err != nil {
			t.Fatalf("record outcome: %v", err)
		}
		churned = append(churned, r.Account)
	}
	if a := churned[0]; a.LifecycleStage != accountv1.LifecycleStage_LIFECYCLE_STAGE_CHURNED || a.Arr.Units != 0 || len(a.Outcomes) != 1 || !proto.Equal(a.Outcomes[0], churn) {
		t.Errorf("after churn: %v", a)
	}
	if !proto.Equal(churned[0], churned[1]) {
		t.Errorf("recording the same outcome again changed the account: %v", churned[1])
	}

	// A later upsert keeps create_time, the recorded outcomes and, sent
	// without one, the lifecycle stage.
	time.Sleep(2 * time.Millisecond)
	update := testAccounts(now)[2]
	update.Name = "Gamma Inc"
	update.LifecycleStage = accountv1.LifecycleStage_LIFECYCLE_STAGE_UNSPECIFIED
	up2, err := c.UpsertAccounts(ctx, &accountv1.UpsertAccountsRequest{Accounts: []*accountv1.Account{update}})
	if err != nil {
		t.Fatalf("upsert again: %v", err)
	}
	a := up2.Accounts[0]
	if a.Name != "Gamma Inc" || !proto.Equal(a.CreateTime, up.Accounts[2].CreateTime) || !a.UpdateTime.AsTime().After(a.CreateTime.AsTime()) ||
		a.Revision <= churned[0].Revision || len(a.Outcomes) != 1 || a.LifecycleStage != accountv1.LifecycleStage_LIFECYCLE_STAGE_CHURNED {
		t.Errorf("upsert again: %v", a)
	}

	// List with filters and pages.
	in := func(days int) *timestamppb.Timestamp { return timestamppb.New(now.AddDate(0, 0, days)) }
	for _, tc := range []struct {
		name string
		req  *accountv1.ListAccountsRequest
		want []string
	}{
		{"all", &accountv1.ListAccountsRequest{}, []string{"acct-a", "acct-b", "acct-c"}},
		{"tier", &accountv1.ListAccountsRequest{Tier: accountv1.Tier_TIER_GROWTH}, []string{"acct-b"}},
		{"owner", &accountv1.ListAccountsRequest{OwnerCsmId: "csm-1"}, []string{"acct-a", "acct-c"}},
		{"segment", &accountv1.ListAccountsRequest{Segment: "enterprise"}, []string{"acct-b"}},
		{"stage", &accountv1.ListAccountsRequest{LifecycleStage: accountv1.LifecycleStage_LIFECYCLE_STAGE_CHURNED}, []string{"acct-c"}},
		{"renewal in 90 days", &accountv1.ListAccountsRequest{RenewalStartTime: in(0), RenewalEndTime: in(90)}, []string{"acct-a"}},
		{"renewal after 90 days", &accountv1.ListAccountsRequest{RenewalStartTime: in(90)}, []string{"acct-b"}},
		{"owner and segment", &accountv1.ListAccountsRequest{OwnerCsmId: "csm-1", Segment: "enterprise"}, nil},
	} {
		t.Run("list "+tc.name, func(t *testing.T) {
			resp, err := c.ListAccounts(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(resp.Accounts); !slices.Equal(got, tc.want) || resp.NextPageToken != "" {
				t.Errorf("list = %q (next %q), want %q", got, resp.NextPageToken, tc.want)
			}
		})
	}
	var paged []string
	token := ""
	for page := 0; ; page++ {
		resp, err := c.ListAccounts(ctx, &accountv1.ListAccountsRequest{PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Accounts) > 2 || page > 2 {
			t.Fatalf("page %d: %d accounts", page, len(resp.Accounts))
		}
		paged = append(paged, ids(resp.Accounts)...)
		if token = resp.NextPageToken; token == "" {
			break
		}
	}
	if !slices.Equal(paged, []string{"acct-a", "acct-b", "acct-c"}) {
		t.Errorf("paged through %q", paged)
	}

	// Another tenant sees none of it.
	globex := accountv1.NewAccountServiceClient(e.dial(t, globexAPIKey))
	if resp, err := globex.ListAccounts(ctx, &accountv1.ListAccountsRequest{}); err != nil || len(resp.Accounts) != 0 {
		t.Errorf("globex lists %v, %v; want nothing", resp.GetAccounts(), err)
	}
	if _, err := globex.GetAccount(ctx, &accountv1.GetAccountRequest{AccountId: "acct-a"}); status.Code(err) != codes.NotFound {
		t.Errorf("globex gets acme's account: %v", err)
	}

	// Every change is published once: three creations, one churn (its
	// repetition deduplicated), one update.
	var changes []string
	for _, m := range e.messages(t, natsx.StreamAccountChanges) {
		var ch accountv1.AccountChange
		if err := proto.Unmarshal(m.Data, &ch); err != nil {
			t.Fatal(err)
		}
		if m.Subject != natsx.AccountChangeSubject("acme", ch.Account.AccountId, natsx.DefaultPartitions) || m.Header.Get(jetstream.MsgIDHeader) == "" || m.Header.Get("Lodestar-Tenant") != "acme" {
			t.Errorf("change on %s with headers %v", m.Subject, m.Header)
		}
		changes = append(changes, fmt.Sprintf("%s@%d/%v", ch.Account.AccountId, ch.Account.Revision, ch.Outcome.GetType()))
	}
	want := []string{
		fmt.Sprintf("acct-a@%d/OUTCOME_TYPE_UNSPECIFIED", up.Accounts[0].Revision),
		fmt.Sprintf("acct-b@%d/OUTCOME_TYPE_UNSPECIFIED", up.Accounts[1].Revision),
		fmt.Sprintf("acct-c@%d/OUTCOME_TYPE_UNSPECIFIED", up.Accounts[2].Revision),
		fmt.Sprintf("acct-c@%d/OUTCOME_TYPE_CHURNED", churned[0].Revision),
		fmt.Sprintf("acct-c@%d/OUTCOME_TYPE_UNSPECIFIED", a.Revision),
	}
	if !slices.Equal(changes, want) {
		t.Errorf("changes %q, want %q", changes, want)
	}
}

func TestAccountsBadInput(t *testing.T) {
	e := start(t, nil)
	c := accountv1.NewAccountServiceClient(e.dial(t, acmeAPIKey))
	ctx := context.Background()
	now := time.Now()
	if _, err := c.UpsertAccounts(ctx, &accountv1.UpsertAccountsRequest{Accounts: testAccounts(now)}); err != nil {
		t.Fatal(err)
	}
	valid := func(mod func(*accountv1.Account)) []*accountv1.Account {
		a := testAccounts(now)[0]
		mod(a)
		return []*accountv1.Account{a}
	}
	many := make([]*accountv1.Account, 1001)
	for i := range many {
		many[i] = &accountv1.Account{AccountId: fmt.Sprint("acct-", i)}
	}
	outcome := func(mod func(*accountv1.RenewalOutcome)) *accountv1.RecordOutcomeRequest {
		o := &accountv1.RenewalOutcome{AccountId: "acct-b", Type: accountv1.OutcomeType_OUTCOME_TYPE_EXPANDED,
			ArrBefore: usd(900_000), ArrAfter: usd(1_000_000), OutcomeTime: timestamppb.New(now)}
		mod(o)
		return &accountv1.RecordOutcomeRequest{Outcome: o}
	}
	for _, tc := range []struct {
		name   string
		call   func() error
		code   codes.Code
		fields []string
	}{
		{"no accounts", func() error { _, err := c.UpsertAccounts(ctx, &accountv1.UpsertAccountsRequest{}); return err },
			codes.InvalidArgument, []string{"accounts"}},
		{"too many accounts", func() error {
			_, err := c.UpsertAccounts(ctx, &accountv1.UpsertAccountsRequest{Accounts: many})
			return err
		}, codes.InvalidArgument, []string{"accounts"}},
		{"account invalid in many ways", func() error {
			_, err := c.UpsertAccounts(ctx, &accountv1.UpsertAccountsRequest{Accounts: valid(func(a *accountv1.Account) {
				a.Arr = &accountv1.Money{CurrencyCode: "usd", Units: -1}
				a.SeatsPurchased = -3
				a.Tier = 9
				a.LifecycleStage = 42
				a.RenewalTime = a.ContractStartTime
				a.ParentAccountId = a.AccountId
				a.Owner.Email = "not an address"
			})})
			return err
		}, codes.InvalidArgument, []string{"accounts[0].arr.currency_code", "accounts[0].arr", "accounts[0].seats_purchased",
			"accounts[0].renewal_time", "accounts[0].tier", "accounts[0].lifecycle_stage", "accounts[0].parent_account_id", "accounts[0].owner.email"}},
		{"no id, long id, repeated id", func() error {
			_, err := c.UpsertAccounts(ctx, &accountv1.UpsertAccountsRequest{Accounts: []*accountv1.Account{
				{}, {AccountId: strings.Repeat("x", 257)}, {AccountId: "dup"}, {AccountId: "dup"}}})
			return err
		}, codes.InvalidArgument, []string{"accounts[0].account_id", "accounts[1].account_id", "accounts[3].account_id"}},
		{"another tenant", func() error {
			_, err := c.UpsertAccounts(ctx, &accountv1.UpsertAccountsRequest{Accounts: valid(func(a *accountv1.Account) { a.TenantId = "globex" })})
			return err
		}, codes.PermissionDenied, []string{"accounts[0].tenant_id"}},
		{"get without id", func() error { _, err := c.GetAccount(ctx, &accountv1.GetAccountRequest{}); return err },
			codes.InvalidArgument, []string{"account_id"}},
		{"list with bad page", func() error {
			_, err := c.ListAccounts(ctx, &accountv1.ListAccountsRequest{PageSize: -1, PageToken: "%%"})
			return err
		}, codes.InvalidArgument, []string{"page_size", "page_token"}},
		{"list with an empty renewal range", func() error {
			_, err := c.ListAccounts(ctx, &accountv1.ListAccountsRequest{RenewalStartTime: timestamppb.New(now), RenewalEndTime: timestamppb.New(now)})
			return err
		}, codes.InvalidArgument, []string{"renewal_end_time"}},
		{"expansion that shrinks", func() error {
			_, err := c.RecordOutcome(ctx, outcome(func(o *accountv1.RenewalOutcome) { o.ArrAfter = usd(800_000) }))
			return err
		}, codes.InvalidArgument, []string{"outcome.arr_after"}},
		{"churn keeping ARR", func() error {
			_, err := c.RecordOutcome(ctx, outcome(func(o *accountv1.RenewalOutcome) { o.Type = accountv1.OutcomeType_OUTCOME_TYPE_CHURNED }))
			return err
		}, codes.InvalidArgument, []string{"outcome.arr_after"}},
		{"outcome without type, time or amounts", func() error {
			_, err := c.RecordOutcome(ctx, &accountv1.RecordOutcomeRequest{Outcome: &accountv1.RenewalOutcome{AccountId: "acct-b"}})
			return err
		}, codes.InvalidArgument, []string{"outcome.type", "outcome.outcome_time", "outcome.arr_before"}},
		{"currency change", func() error {
			_, err := c.RecordOutcome(ctx, outcome(func(o *accountv1.RenewalOutcome) { o.ArrAfter.CurrencyCode = "EUR" }))
			return err
		}, codes.InvalidArgument, []string{"outcome.arr_after.currency_code"}},
		{"outcome of an unknown account", func() error {
			_, err := c.RecordOutcome(ctx, outcome(func(o *accountv1.RenewalOutcome) { o.AccountId = "acct-missing" }))
			return err
		}, codes.NotFound, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if status.Code(err) != tc.code {
				t.Fatalf("code %v (%v), want %v", status.Code(err), err, tc.code)
			}
			if got := fieldViolations(err); !slices.Equal(got, tc.fields) {
				t.Errorf("field violations %q, want %q", got, tc.fields)
			}
		})
	}
	// Nothing invalid was stored or published: only the first three accounts.
	if n := len(e.messages(t, natsx.StreamAccountChanges)); n != 3 {
		t.Errorf("%d account changes, want 3", n)
	}
}
