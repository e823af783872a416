// Package accounts serves lodestar.account.v1.AccountService: the commercial
// facts CRM integrations push about customer accounts. Accounts are stored
// in the ACCOUNTS KV bucket (key tenant.<account token>, protobuf binary),
// and every change is published as an AccountChange on ACCOUNT_CHANGES
// (subject natsx.AccountChangeSubject) so that other services can follow.
//
// Every successful write publishes its change; a call that fails after
// storing (the publish failed) is safe to retry: the retry stores and
// publishes again, and RecordOutcome recognises an outcome it already
// recorded.
package accounts

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/pkg/grpcerr"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
)

// Request bounds.
const (
	// MaxUpsert is the most accounts one UpsertAccounts call may carry.
	MaxUpsert       = 1000
	defaultPageSize = 100
	maxPageSize     = 1000
)

// Server implements AccountService.
type Server struct {
	accountv1.UnimplementedAccountServiceServer
	store  func() *Store
	logger *slog.Logger
}

// NewServer returns the server. store returns nil until the ACCOUNTS bucket
// is ready; until then every call fails with Unavailable.
func NewServer(store func() *Store, logger *slog.Logger) *Server {
	return &Server{store: store, logger: logger}
}

// begin returns the caller's tenant and the store.
func (s *Server) begin(ctx context.Context) (string, *Store, error) {
	tenant, err := grpcerr.Tenant(ctx)
	if err != nil {
		return "", nil, err
	}
	st := s.store()
	if st == nil {
		return "", nil, grpcerr.Error(codes.Unavailable, "accounts are starting")
	}
	return tenant, st, nil
}

// failed turns a storage error into a status: the caller's own deadline or
// cancellation as such, anything else as Unavailable (retry).
func (s *Server) failed(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	s.logger.WarnContext(ctx, what+" failed", "err", err)
	return grpcerr.Error(codes.Unavailable, what+" failed; retry")
}

// UpsertAccounts creates or replaces up to MaxUpsert accounts. Every account
// is validated first, and nothing is stored unless all are valid. The
// server owns tenant_id, create_time (kept from the stored record),
// update_time, revision and outcomes (kept from the stored record: record
// them with RecordOutcome). An account sent without a lifecycle stage keeps
// its stored one, which RecordOutcome may have set.
func (s *Server) UpsertAccounts(ctx context.Context, req *accountv1.UpsertAccountsRequest) (*accountv1.UpsertAccountsResponse, error) {
	tenant, st, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	if n := len(req.Accounts); n == 0 || n > MaxUpsert {
		return nil, grpcerr.Error(codes.InvalidArgument, "bad account count", grpcerr.Violation("accounts", fmt.Sprintf("%d accounts: want 1 to %d", n, MaxUpsert)))
	}
	var bad, denied violations
	seen := make(map[string]int, len(req.Accounts))
	for i, a := range req.Accounts {
		field := fmt.Sprintf("accounts[%d]", i)
		bad.account(field, a)
		if a == nil {
			continue
		}
		if a.TenantId != "" && a.TenantId != tenant {
			denied.add(field+".tenant_id", "%q is not the tenant of the API key; leave it empty", a.TenantId)
		}
		if j, dup := seen[a.AccountId]; dup {
			bad.add(field+".account_id", "repeats accounts[%d]", j)
		}
		seen[a.AccountId] = i
	}
	if len(denied) > 0 {
		return nil, grpcerr.Error(codes.PermissionDenied, "accounts name another tenant than the API key's", denied...)
	}
	if len(bad) > 0 {
		return nil, grpcerr.Error(codes.InvalidArgument, "invalid accounts", bad...)
	}
	now := time.Now()
	resp := &accountv1.UpsertAccountsResponse{Accounts: make([]*accountv1.Account, len(req.Accounts))}
	changes := make([]change, len(req.Accounts))
	for i, a := range req.Accounts {
		stored, err := st.update(ctx, tenant, a.AccountId, func(old *accountv1.Account) (*accountv1.Account, error) {
			next := proto.Clone(a).(*accountv1.Account)
			next.Outcomes = old.GetOutcomes()
			if next.LifecycleStage == accountv1.LifecycleStage_LIFECYCLE_STAGE_UNSPECIFIED {
				next.LifecycleStage = old.GetLifecycleStage()
			}
			next.CreateTime = old.GetCreateTime()
			if next.CreateTime == nil {
				next.CreateTime = timestamppb.New(now)
			}
			next.UpdateTime = timestamppb.New(now)
			return next, nil
		})
		if err != nil {
			return nil, s.failed(ctx, "upsert accounts", err)
		}
		resp.Accounts[i], changes[i] = stored, revisionChange(stored, now)
	}
	if err := st.publish(ctx, changes); err != nil {
		return nil, s.failed(ctx, "publish account changes", err)
	}
	return resp, nil
}

// GetAccount returns one account, or NotFound.
func (s *Server) GetAccount(ctx context.Context, req *accountv1.GetAccountRequest) (*accountv1.GetAccountResponse, error) {
	tenant, st, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	var bad violations
	if bad.id("account_id", req.AccountId); len(bad) > 0 {
		return nil, grpcerr.Error(codes.InvalidArgument, "invalid account id", bad...)
	}
	a, _, err := st.get(ctx, tenant, req.AccountId)
	if errors.Is(err, errNotFound) {
		return nil, status.Errorf(codes.NotFound, "account %q not found", req.AccountId)
	}
	if err != nil {
		return nil, s.failed(ctx, "get account", err)
	}
	return &accountv1.GetAccountResponse{Account: a}, nil
}

// ListAccounts lists the accounts matching every filter given, ordered by
// account id. The page token is the last account id of the previous page
// (base64url, to be treated as opaque), so paging is stable while accounts
// are added or removed. Each page reads all the tenant's accounts (see
// Store.list): fine for thousands of accounts per tenant; an index is due
// before hundreds of thousands.
func (s *Server) ListAccounts(ctx context.Context, req *accountv1.ListAccountsRequest) (*accountv1.ListAccountsResponse, error) {
	tenant, st, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	var bad violations
	size := int(req.PageSize)
	switch {
	case size < 0:
		bad.add("page_size", "must not be negative")
	case size == 0:
		size = defaultPageSize
	}
	size = min(size, maxPageSize)
	after, err := base64.RawURLEncoding.DecodeString(req.PageToken)
	if err != nil {
		bad.add("page_token", "not a token from a previous page")
	}
	if _, ok := accountv1.Tier_name[int32(req.Tier)]; !ok {
		bad.add("tier", "unknown tier %d", req.Tier)
	}
	if _, ok := accountv1.LifecycleStage_name[int32(req.LifecycleStage)]; !ok {
		bad.add("lifecycle_stage", "unknown lifecycle stage %d", req.LifecycleStage)
	}
	bad.time("renewal_start_time", req.RenewalStartTime)
	bad.time("renewal_end_time", req.RenewalEndTime)
	if req.RenewalStartTime != nil && req.RenewalEndTime != nil && !req.RenewalStartTime.AsTime().Before(req.RenewalEndTime.AsTime()) {
		bad.add("renewal_end_time", "must be after renewal_start_time")
	}
	if len(bad) > 0 {
		return nil, grpcerr.Error(codes.InvalidArgument, "invalid list request", bad...)
	}
	all, err := st.list(ctx, tenant)
	if err != nil {
		return nil, s.failed(ctx, "list accounts", err)
	}
	page := slices.DeleteFunc(all, func(a *accountv1.Account) bool { return a.AccountId <= string(after) || !matches(req, a) })
	slices.SortFunc(page, func(a, b *accountv1.Account) int { return cmp.Compare(a.AccountId, b.AccountId) })
	resp := &accountv1.ListAccountsResponse{Accounts: page}
	if len(page) > size {
		resp.Accounts = page[:size]
		resp.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(page[size-1].AccountId))
	}
	return resp, nil
}

// matches reports whether a passes every filter of req.
func matches(req *accountv1.ListAccountsRequest, a *accountv1.Account) bool {
	switch {
	case req.Tier != accountv1.Tier_TIER_UNSPECIFIED && a.Tier != req.Tier,
		req.LifecycleStage != accountv1.LifecycleStage_LIFECYCLE_STAGE_UNSPECIFIED && a.LifecycleStage != req.LifecycleStage,
		req.OwnerCsmId != "" && a.GetOwner().GetCsmId() != req.OwnerCsmId,
		req.Segment != "" && a.Segment != req.Segment:
		return false
	}
	if req.RenewalStartTime == nil && req.RenewalEndTime == nil {
		return true
	}
	if a.RenewalTime == nil {
		return false
	}
	r := a.RenewalTime.AsTime()
	return (req.RenewalStartTime == nil || !r.Before(req.RenewalStartTime.AsTime())) &&
		(req.RenewalEndTime == nil || r.Before(req.RenewalEndTime.AsTime()))
}

// RecordOutcome appends a renewal outcome to its account, moves the account
// to RENEWED (renewed, expanded, contracted) or CHURNED, sets its ARR to the
// ARR after the renewal (zero after a churn), and publishes the change with
// the outcome. Recording an outcome identical to one already recorded
// changes nothing and publishes the change again under the same message id,
// so a retry after a failed publish completes the first call.
func (s *Server) RecordOutcome(ctx context.Context, req *accountv1.RecordOutcomeRequest) (*accountv1.RecordOutcomeResponse, error) {
	tenant, st, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	var bad violations
	if bad.outcome("outcome", req.Outcome); len(bad) > 0 {
		return nil, grpcerr.Error(codes.InvalidArgument, "invalid outcome", bad...)
	}
	o := req.Outcome
	now := time.Now()
	stored, err := st.update(ctx, tenant, o.AccountId, func(old *accountv1.Account) (*accountv1.Account, error) {
		if old == nil {
			return nil, errNotFound
		}
		if slices.ContainsFunc(old.Outcomes, func(x *accountv1.RenewalOutcome) bool { return proto.Equal(x, o) }) {
			return nil, nil
		}
		next := proto.Clone(old).(*accountv1.Account)
		next.Outcomes = append(next.Outcomes, o)
		next.LifecycleStage = accountv1.LifecycleStage_LIFECYCLE_STAGE_RENEWED
		next.Arr = o.ArrAfter
		if o.Type == accountv1.OutcomeType_OUTCOME_TYPE_CHURNED {
			next.LifecycleStage = accountv1.LifecycleStage_LIFECYCLE_STAGE_CHURNED
			next.Arr = &accountv1.Money{CurrencyCode: o.ArrBefore.CurrencyCode}
		}
		next.UpdateTime = timestamppb.New(now)
		return next, nil
	})
	if errors.Is(err, errNotFound) {
		return nil, status.Errorf(codes.NotFound, "account %q not found", o.AccountId)
	}
	if err != nil {
		return nil, s.failed(ctx, "record outcome", err)
	}
	id, err := proto.MarshalOptions{Deterministic: true}.Marshal(o)
	if err != nil {
		return nil, grpcerr.Error(codes.InvalidArgument, fmt.Sprintf("marshal outcome: %v", err))
	}
	c := change{
		msg:   &accountv1.AccountChange{TenantId: tenant, Account: stored, Outcome: o, ChangeTime: timestamppb.New(now)},
		msgID: natsx.MsgID(tenant, "outcome", o.AccountId, string(id)),
	}
	if err := st.publish(ctx, []change{c}); err != nil {
		return nil, s.failed(ctx, "publish account change", err)
	}
	return &accountv1.RecordOutcomeResponse{Account: stored}, nil
}
