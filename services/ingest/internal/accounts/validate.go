package accounts

import (
	"cmp"
	"fmt"
	"net/mail"
	"regexp"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/pkg/grpcerr"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
)

// maxIDBytes bounds account ids: they become KV keys and subject tokens.
const maxIDBytes = 256

var currencyCode = regexp.MustCompile(`^[A-Z]{3}$`)

// violations collects the invalid fields of a request.
type violations []*errdetails.BadRequest_FieldViolation

func (v *violations) add(field, format string, args ...any) {
	*v = append(*v, grpcerr.Violation(field, fmt.Sprintf(format, args...)))
}

func (v *violations) id(field, id string) {
	switch {
	case id == "":
		v.add(field, "required")
	case len(id) > maxIDBytes:
		v.add(field, "%d bytes, over the %d-byte limit", len(id), maxIDBytes)
	}
}

// money checks an amount: an ISO 4217 code, and units and nanos that are
// non-negative (ARR is never negative) and in range.
func (v *violations) money(field string, m *accountv1.Money) {
	if !currencyCode.MatchString(m.CurrencyCode) {
		v.add(field+".currency_code", "%q is not an ISO 4217 code such as USD", m.CurrencyCode)
	}
	if m.Units < 0 || m.Nanos < 0 {
		v.add(field, "must not be negative")
	}
	if m.Nanos > 999_999_999 {
		v.add(field+".nanos", "must be below 10^9")
	}
}

func (v *violations) time(field string, t *timestamppb.Timestamp) {
	if t != nil && t.CheckValid() != nil {
		v.add(field, "invalid timestamp: %v", t.CheckValid())
	}
}

// account checks one account of an upsert.
func (v *violations) account(field string, a *accountv1.Account) {
	if a == nil {
		v.add(field, "required")
		return
	}
	v.id(field+".account_id", a.AccountId)
	if a.Arr != nil {
		v.money(field+".arr", a.Arr)
	}
	if a.SeatsPurchased < 0 {
		v.add(field+".seats_purchased", "must not be negative")
	}
	v.time(field+".contract_start_time", a.ContractStartTime)
	v.time(field+".renewal_time", a.RenewalTime)
	if a.ContractStartTime != nil && a.RenewalTime != nil && !a.RenewalTime.AsTime().After(a.ContractStartTime.AsTime()) {
		v.add(field+".renewal_time", "must be after contract_start_time")
	}
	if _, ok := accountv1.Tier_name[int32(a.Tier)]; !ok {
		v.add(field+".tier", "unknown tier %d", a.Tier)
	}
	if _, ok := accountv1.LifecycleStage_name[int32(a.LifecycleStage)]; !ok {
		v.add(field+".lifecycle_stage", "unknown lifecycle stage %d", a.LifecycleStage)
	}
	if a.ParentAccountId != "" {
		if a.ParentAccountId == a.AccountId {
			v.add(field+".parent_account_id", "an account cannot be its own parent")
		}
		v.id(field+".parent_account_id", a.ParentAccountId)
	}
	if e := a.GetOwner().GetEmail(); e != "" {
		if _, err := mail.ParseAddress(e); err != nil {
			v.add(field+".owner.email", "%q is not an e-mail address", e)
		}
	}
}

// outcome checks a renewal outcome: amounts before and after in one
// currency, consistent with the outcome's type.
func (v *violations) outcome(field string, o *accountv1.RenewalOutcome) {
	if o == nil {
		v.add(field, "required")
		return
	}
	v.id(field+".account_id", o.AccountId)
	if _, ok := accountv1.OutcomeType_name[int32(o.Type)]; !ok || o.Type == accountv1.OutcomeType_OUTCOME_TYPE_UNSPECIFIED {
		v.add(field+".type", "want RENEWED, EXPANDED, CONTRACTED or CHURNED")
	}
	if o.OutcomeTime == nil {
		v.add(field+".outcome_time", "required")
	}
	v.time(field+".outcome_time", o.OutcomeTime)
	if o.ArrBefore == nil {
		v.add(field+".arr_before", "required")
		return
	}
	v.money(field+".arr_before", o.ArrBefore)
	after := o.ArrAfter
	if after == nil {
		if o.Type != accountv1.OutcomeType_OUTCOME_TYPE_CHURNED {
			v.add(field+".arr_after", "required unless the account churned")
		}
		return
	}
	v.money(field+".arr_after", after)
	if after.CurrencyCode != o.ArrBefore.CurrencyCode {
		v.add(field+".arr_after.currency_code", "must be arr_before's, %q", o.ArrBefore.CurrencyCode)
		return
	}
	order := compare(after, o.ArrBefore)
	switch o.Type {
	case accountv1.OutcomeType_OUTCOME_TYPE_CHURNED:
		if after.Units != 0 || after.Nanos != 0 {
			v.add(field+".arr_after", "must be zero for a churn")
		}
	case accountv1.OutcomeType_OUTCOME_TYPE_EXPANDED:
		if order <= 0 {
			v.add(field+".arr_after", "must exceed arr_before for an expansion")
		}
	case accountv1.OutcomeType_OUTCOME_TYPE_CONTRACTED:
		if order >= 0 {
			v.add(field+".arr_after", "must be below arr_before for a contraction")
		}
	}
}

// compare orders two amounts of one currency.
func compare(a, b *accountv1.Money) int {
	if c := cmp.Compare(a.Units, b.Units); c != 0 {
		return c
	}
	return cmp.Compare(a.Nanos, b.Nanos)
}
