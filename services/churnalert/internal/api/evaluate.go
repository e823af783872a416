package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/lodestar-cs/lodestar/pkg/natsx"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/backtest"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/rules"
)

// Limits of EvaluateRules: the history it reads is held in memory.
const (
	maxEvaluateChanges = 2_000_000
	maxEvaluateRules   = 100
	defaultLeadDays    = 90
	maxLeadDays        = 365
)

// EvaluateRules replays the tenant's score and account changes through a
// rule set (the one given, else the current one) and measures the alerts
// against the renewal outcomes the CRM recorded.
func (s *Server) EvaluateRules(ctx context.Context, req *alertv1.EvaluateRulesRequest) (*alertv1.EvaluateRulesResponse, error) {
	tenant, b, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	var ps problems
	lead := req.GetLeadDays()
	if lead == 0 {
		lead = defaultLeadDays
	}
	if lead < 1 || lead > maxLeadDays {
		ps.add("lead_days", "want 1 to %d (0 for %d)", maxLeadDays, defaultLeadDays)
	}
	rs := req.GetRules()
	if len(rs) > maxEvaluateRules {
		ps.add("rules", "at most %d rules", maxEvaluateRules)
	}
	seen := map[string]bool{}
	for i, r := range rs {
		for _, v := range rules.Validate(r, func(id string) bool { return b.Settings.Schedule(tenant, id) != nil }) {
			ps = append(ps, &errdetails.BadRequest_FieldViolation{Field: fmt.Sprintf("rules[%d].%s", i, v.GetField()), Description: v.GetDescription()})
		}
		if seen[r.GetRuleId()] {
			ps.add(fmt.Sprintf("rules[%d].rule_id", i), "rule %q given twice", r.GetRuleId())
		}
		seen[r.GetRuleId()] = true
	}
	if len(ps) > 0 {
		return nil, invalid("request", ps)
	}
	if len(rs) == 0 {
		rs = b.Settings.Rules(tenant)
	}
	h, err := readHistory(ctx, b.JS, tenant)
	if err != nil {
		return nil, err
	}
	return backtest.Evaluate(h, rs, time.Duration(lead)*24*time.Hour), nil
}

// readHistory reads a tenant's score changes and account changes. An
// account's first known facts hold from the start of the history (a CRM
// imported after the events it describes still dates their renewals),
// later versions from their change time; the renewals are the outcomes
// the accounts' latest versions record.
func readHistory(ctx context.Context, js jetstream.JetStream, tenant string) (backtest.History, error) {
	h := backtest.History{Tenant: tenant}
	n := 0
	err := readAll(ctx, js, natsx.StreamScores, natsx.ScoresSubjectPrefix+"."+tenant+".>", &n, func(data []byte) error {
		var ev scoringv1.ScoreChangeEvent
		if err := proto.Unmarshal(data, &ev); err != nil || ev.GetScore() == nil {
			return nil // not a score change: scoring never publishes one
		}
		h.Scores = append(h.Scores, ev.GetScore())
		return nil
	})
	if err != nil {
		return h, err
	}
	latest := map[string]*accountv1.Account{}
	err = readAll(ctx, js, natsx.StreamAccountChanges, natsx.AccountsSubjectPrefix+"."+tenant+".>", &n, func(data []byte) error {
		var ch accountv1.AccountChange
		if err := proto.Unmarshal(data, &ch); err != nil || ch.GetAccount() == nil {
			return nil
		}
		a := ch.GetAccount()
		f := backtest.Fact{At: ch.GetChangeTime().AsTime(), Account: a}
		if latest[a.GetAccountId()] == nil {
			f.At = time.Time{}
		}
		latest[a.GetAccountId()] = a
		h.Facts = append(h.Facts, f)
		return nil
	})
	for id, a := range latest {
		for _, o := range a.GetOutcomes() {
			h.Renewals = append(h.Renewals, backtest.Renewal{AccountID: id, At: o.GetOutcomeTime().AsTime(), Outcome: o.GetType()})
		}
	}
	return h, err
}

// readAll calls fn with every message of a stream on a subject filter that
// was there when it started.
func readAll(ctx context.Context, js jetstream.JetStream, stream, filter string, n *int, fn func([]byte) error) error {
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		return status.Errorf(codes.Unavailable, "read %s: %v", stream, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return status.Errorf(codes.Unavailable, "read %s: %v", stream, err)
	}
	for pending := info.NumPending; pending > 0; {
		batch, err := cons.Fetch(int(min(pending, 1000)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return status.Errorf(codes.Unavailable, "read %s: %v", stream, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			if *n++; *n > maxEvaluateChanges {
				return status.Errorf(codes.ResourceExhausted, "the history holds more than %d changes; EvaluateRules reads at most that many", maxEvaluateChanges)
			}
			if err := fn(m.Data()); err != nil {
				return err
			}
			meta, err := m.Metadata()
			if err != nil {
				return status.Errorf(codes.Internal, "read %s: %v", stream, err)
			}
			pending = meta.NumPending
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return status.Errorf(codes.Unavailable, "read %s: %v", stream, err)
		}
		if ctx.Err() != nil {
			return status.FromContextError(ctx.Err()).Err()
		}
		if got == 0 {
			break // what was pending is gone (retention)
		}
	}
	return nil
}
