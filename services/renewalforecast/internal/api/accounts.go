package api

import (
	"cmp"
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/pkg/grpcerr"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	forecastv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/forecast/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/history"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/model"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/portfolio"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/retention"
)

// forecast is an account's forecast with what the portfolio needs of it.
type forecast struct {
	*forecastv1.AccountForecast
	// inputs are what the model read of the account.
	inputs     model.Inputs
	renewal    time.Time
	hasRenewal bool
	arr        float64
}

// forecastOf forecasts acc's next renewal as of now.
func (s *Server) forecastOf(acc *accountv1.Account, scores history.Scores, m *model.Model, rates portfolio.Rates, now time.Time) forecast {
	rt, hasRenewal := nextRenewal(acc)
	days := 365.0 // no renewal date: far from any decision
	if hasRenewal {
		days = math.Floor(rt.Sub(now).Hours() / 24)
	}
	in, p, scored := inputsAt(acc, scores, now, days)
	prob := m.Probability(in)
	signal := scored && seatsFull(p)
	arr := retention.Money(acc.GetArr())
	outcomes := rates.Outcomes(arr, prob, signal)
	expected := 0.0
	for _, o := range outcomes {
		expected += o.Prob * o.After
	}
	factors, summary := m.Explain(in)
	f := &forecastv1.AccountForecast{
		AccountId:              acc.GetAccountId(),
		AccountName:            acc.GetName(),
		RenewalProbability:     prob,
		ContractionProbability: outcomes[1].Prob,
		ExpansionProbability:   outcomes[3].Prob,
		Arr:                    acc.GetArr(),
		ExpectedArrAfter:       expected,
		HasScore:               scored,
		LifecycleStage:         in.Stage,
		Tier:                   acc.GetTier(),
		OwnerCsmId:             acc.GetOwner().GetCsmId(),
		Segment:                acc.GetSegment(),
		ExpansionSignal:        signal,
		Factors:                factors,
		Summary:                summary,
		ModelKind:              m.Kind,
		AtRisk:                 prob < s.cfg.AtRiskBelow,
	}
	if hasRenewal {
		f.RenewalTime, f.DaysToRenewal = timestamppb.New(rt), int32(days)
	}
	if scored {
		f.HealthScore, f.Band, f.ScoreTrend_30D = in.Score, in.Band, in.Trend
	}
	return forecast{AccountForecast: f, inputs: in, renewal: rt, hasRenewal: hasRenewal, arr: arr}
}

// GetAccountForecast forecasts one account's next renewal.
func (s *Server) GetAccountForecast(ctx context.Context, req *forecastv1.GetAccountForecastRequest) (*forecastv1.GetAccountForecastResponse, error) {
	tenant, err := grpcerr.Tenant(ctx)
	if err != nil {
		return nil, err
	}
	var bad violations
	if req.GetAccountId() == "" {
		bad.add("account_id", "required")
	}
	if err := bad.err("invalid request"); err != nil {
		return nil, err
	}
	v := s.store.View(tenant)
	acc, ok := v.Account(req.GetAccountId())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "account %q not found", req.GetAccountId())
	}
	if retention.Churned(acc) {
		return nil, status.Errorf(codes.FailedPrecondition, "account %q churned: no renewal to forecast", req.GetAccountId())
	}
	m, rates := s.modelFor(tenant, v)
	f := s.forecastOf(acc, v.Scores(acc.GetAccountId()), m, rates, s.now())
	return &forecastv1.GetAccountForecastResponse{Forecast: f.AccountForecast, Model: m.Proto()}, nil
}

// ListRenewals lists the renewals due in a window with their forecasts.
func (s *Server) ListRenewals(ctx context.Context, req *forecastv1.ListRenewalsRequest) (*forecastv1.ListRenewalsResponse, error) {
	tenant, err := grpcerr.Tenant(ctx)
	if err != nil {
		return nil, err
	}
	var bad violations
	bad.window(req.GetStartTime(), req.GetEndTime())
	if n := req.GetPageSize(); n < 0 || n > maxPageSize {
		bad.add("page_size", "must be 0 to %d", maxPageSize)
	}
	if _, ok := forecastv1.ListRenewalsOrder_name[int32(req.GetOrderBy())]; !ok {
		bad.add("order_by", "unknown order %d", req.GetOrderBy())
	}
	order := req.GetOrderBy()
	if order == forecastv1.ListRenewalsOrder_LIST_RENEWALS_ORDER_UNSPECIFIED {
		order = forecastv1.ListRenewalsOrder_LIST_RENEWALS_ORDER_RISK
	}
	after, err := parseToken(req.GetPageToken(), order)
	if err != nil {
		bad.add("page_token", "%v", err)
	}
	if err := bad.err("invalid list request"); err != nil {
		return nil, err
	}
	now := s.now()
	start, end := now, now.Add(defaultRenewalWindow)
	if req.GetStartTime() != nil {
		start = req.GetStartTime().AsTime()
	}
	if req.GetEndTime() != nil {
		end = req.GetEndTime().AsTime()
	}

	v := s.store.View(tenant)
	m, rates := s.modelFor(tenant, v)
	var matched []sortable
	for _, acc := range v.Accounts {
		if retention.Churned(acc) || !matches(req, acc) {
			continue
		}
		f := s.forecastOf(acc, v.Scores(acc.GetAccountId()), m, rates, now)
		if !f.hasRenewal || f.renewal.Before(start) || !f.renewal.Before(end) ||
			(req.GetBand() != scoringv1.Band_BAND_UNSPECIFIED && f.GetBand() != req.GetBand()) ||
			(req.GetAtRiskOnly() && !f.GetAtRisk()) {
			continue
		}
		matched = append(matched, sortable{f.AccountForecast, sortKey(order, f)})
	}
	slices.SortFunc(matched, func(a, b sortable) int { return a.compare(b.key, b.f.GetAccountId()) })
	resp := &forecastv1.ListRenewalsResponse{TotalSize: int32(len(matched))}
	if after != nil {
		i := sort.Search(len(matched), func(i int) bool { return matched[i].compare(after.key, after.id) > 0 })
		matched = matched[i:]
	}
	size := int(req.GetPageSize())
	if size == 0 {
		size = defaultPageSize
	}
	if len(matched) > size {
		last := matched[size-1]
		resp.NextPageToken = pageToken{order: order, key: last.key, id: last.f.GetAccountId()}.String()
		matched = matched[:size]
	}
	for _, x := range matched {
		resp.Renewals = append(resp.Renewals, x.f)
	}
	return resp, nil
}

func matches(req *forecastv1.ListRenewalsRequest, acc *accountv1.Account) bool {
	return (req.GetTier() == accountv1.Tier_TIER_UNSPECIFIED || acc.GetTier() == req.GetTier()) &&
		(req.GetOwnerCsmId() == "" || acc.GetOwner().GetCsmId() == req.GetOwnerCsmId()) &&
		(req.GetSegment() == "" || acc.GetSegment() == req.GetSegment())
}

type sortable struct {
	f   *forecastv1.AccountForecast
	key float64
}

// compare orders by key, then account id.
func (x sortable) compare(key float64, id string) int {
	return cmp.Or(cmp.Compare(x.key, key), strings.Compare(x.f.GetAccountId(), id))
}

// sortKey orders renewals ascending: riskiest, largest or soonest first.
func sortKey(order forecastv1.ListRenewalsOrder, f forecast) float64 {
	switch order {
	case forecastv1.ListRenewalsOrder_LIST_RENEWALS_ORDER_ARR:
		return -f.arr
	case forecastv1.ListRenewalsOrder_LIST_RENEWALS_ORDER_RENEWAL_TIME:
		return float64(f.renewal.Unix())
	}
	return f.GetRenewalProbability()
}

// pageToken is the position after which the next page starts: the last
// renewal's sort key and account id, so that pages neither repeat nor skip
// while forecasts stand still.
type pageToken struct {
	order forecastv1.ListRenewalsOrder
	key   float64
	id    string
}

func (t pageToken) String() string {
	s := fmt.Sprintf("%d:%s:%s", t.order, strconv.FormatFloat(t.key, 'g', -1, 64), t.id)
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

func parseToken(s string, order forecastv1.ListRenewalsOrder) (*pageToken, error) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	parts := strings.SplitN(string(b), ":", 3)
	if err != nil || len(parts) != 3 {
		return nil, fmt.Errorf("not a token of this call")
	}
	o, err1 := strconv.Atoi(parts[0])
	key, err2 := strconv.ParseFloat(parts[1], 64)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("not a token of this call")
	}
	if forecastv1.ListRenewalsOrder(o) != order {
		return nil, fmt.Errorf("the token is of another order_by")
	}
	return &pageToken{order: order, key: key, id: parts[2]}, nil
}
