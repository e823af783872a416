package api

import (
	"context"
	"errors"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/channel"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/oncall"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/rules"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/settings"
)

// testTimeout bounds TestChannel's send.
const testTimeout = 10 * time.Second

// write stores a validated setting: create needs a free id, update an
// existing one.
func (s *Server) write(ctx context.Context, b *Backends, tenant, kind, id string, m proto.Message, create, exists bool,
	ps []*errdetails.BadRequest_FieldViolation) error {
	switch {
	case len(ps) > 0:
		return invalid(kind, ps)
	case create && exists:
		return status.Errorf(codes.AlreadyExists, "%s %q already exists", kind, id)
	case !create && !exists:
		return status.Errorf(codes.NotFound, "no %s %q", kind, id)
	}
	var err error
	if create {
		err = b.Settings.Create(ctx, tenant, kind, id, m)
	} else {
		err = b.Settings.Put(ctx, tenant, kind, id, m)
	}
	if errors.Is(err, settings.ErrExists) {
		return status.Errorf(codes.AlreadyExists, "%s %q already exists", kind, id)
	}
	if err != nil {
		return s.failed(ctx, "store "+kind, err)
	}
	return nil
}

// idOf checks an id in a request naming one setting.
func idOf(field, id string) error {
	if v := rules.ValidID(field, id); v != nil {
		return invalid("request", []*errdetails.BadRequest_FieldViolation{v})
	}
	return nil
}

func (s *Server) remove(ctx context.Context, b *Backends, tenant, kind, id string) error {
	if err := b.Settings.Delete(ctx, tenant, kind, id); err != nil {
		return s.failed(ctx, "delete "+kind, err)
	}
	return nil
}

// shown marks whether a rule is shipped, for answers.
func (s *Server) shown(b *Backends, r *alertv1.Rule) *alertv1.Rule {
	r = proto.CloneOf(r)
	r.Shipped = b.Settings.Shipped(r.GetRuleId())
	return r
}

// ListRules lists the tenant's rules.
func (s *Server) ListRules(ctx context.Context, _ *alertv1.ListRulesRequest) (*alertv1.ListRulesResponse, error) {
	tenant, b, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	resp := &alertv1.ListRulesResponse{}
	for _, r := range b.Settings.Rules(tenant) {
		resp.Rules = append(resp.Rules, s.shown(b, r))
	}
	return resp, nil
}

// GetRule returns one rule.
func (s *Server) GetRule(ctx context.Context, req *alertv1.GetRuleRequest) (*alertv1.GetRuleResponse, error) {
	tenant, b, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	if err := idOf("rule_id", req.GetRuleId()); err != nil {
		return nil, err
	}
	r := b.Settings.Rule(tenant, req.GetRuleId())
	if r == nil {
		return nil, status.Errorf(codes.NotFound, "no rule %q", req.GetRuleId())
	}
	return &alertv1.GetRuleResponse{Rule: s.shown(b, r)}, nil
}

func (s *Server) putRule(ctx context.Context, r *alertv1.Rule, create bool) (*alertv1.Rule, error) {
	tenant, b, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	ps := rules.Validate(r, func(id string) bool { return b.Settings.Schedule(tenant, id) != nil })
	r = proto.CloneOf(r)
	r.Shipped = false // output only
	exists := b.Settings.Rule(tenant, r.GetRuleId()) != nil
	if err := s.write(ctx, b, tenant, settings.KindRule, r.GetRuleId(), r, create, exists, ps); err != nil {
		return nil, err
	}
	return s.shown(b, r), nil
}

// CreateRule adds a rule.
func (s *Server) CreateRule(ctx context.Context, req *alertv1.CreateRuleRequest) (*alertv1.CreateRuleResponse, error) {
	r, err := s.putRule(ctx, req.GetRule(), true)
	if err != nil {
		return nil, err
	}
	return &alertv1.CreateRuleResponse{Rule: r}, nil
}

// UpdateRule replaces a rule, shipped ones included.
func (s *Server) UpdateRule(ctx context.Context, req *alertv1.UpdateRuleRequest) (*alertv1.UpdateRuleResponse, error) {
	r, err := s.putRule(ctx, req.GetRule(), false)
	if err != nil {
		return nil, err
	}
	return &alertv1.UpdateRuleResponse{Rule: r}, nil
}

// DeleteRule deletes a rule, or restores a shipped one.
func (s *Server) DeleteRule(ctx context.Context, req *alertv1.DeleteRuleRequest) (*alertv1.DeleteRuleResponse, error) {
	tenant, b, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	if err := idOf("rule_id", req.GetRuleId()); err != nil {
		return nil, err
	}
	if b.Settings.Rule(tenant, req.GetRuleId()) == nil {
		return nil, status.Errorf(codes.NotFound, "no rule %q", req.GetRuleId())
	}
	if err := s.remove(ctx, b, tenant, settings.KindRule, req.GetRuleId()); err != nil {
		return nil, err
	}
	return &alertv1.DeleteRuleResponse{}, nil
}

// ListOnCallSchedules lists the tenant's schedules.
func (s *Server) ListOnCallSchedules(ctx context.Context, _ *alertv1.ListOnCallSchedulesRequest) (*alertv1.ListOnCallSchedulesResponse, error) {
	tenant, b, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	return &alertv1.ListOnCallSchedulesResponse{Schedules: b.Settings.Schedules(tenant)}, nil
}

// GetOnCallSchedule returns a schedule and who is on call now.
func (s *Server) GetOnCallSchedule(ctx context.Context, req *alertv1.GetOnCallScheduleRequest) (*alertv1.GetOnCallScheduleResponse, error) {
	tenant, b, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	if err := idOf("schedule_id", req.GetScheduleId()); err != nil {
		return nil, err
	}
	sc := b.Settings.Schedule(tenant, req.GetScheduleId())
	if sc == nil {
		return nil, status.Errorf(codes.NotFound, "no schedule %q", req.GetScheduleId())
	}
	return &alertv1.GetOnCallScheduleResponse{Schedule: sc, OnCall: oncall.OnCall(sc, s.opts.Now())}, nil
}

func (s *Server) putSchedule(ctx context.Context, sc *alertv1.OnCallSchedule, create bool) error {
	tenant, b, err := s.begin(ctx)
	if err != nil {
		return err
	}
	exists := b.Settings.Schedule(tenant, sc.GetScheduleId()) != nil
	return s.write(ctx, b, tenant, settings.KindSchedule, sc.GetScheduleId(), sc, create, exists, oncall.Validate(sc, s.opts.Now()))
}

// CreateOnCallSchedule adds a schedule.
func (s *Server) CreateOnCallSchedule(ctx context.Context, req *alertv1.CreateOnCallScheduleRequest) (*alertv1.CreateOnCallScheduleResponse, error) {
	if err := s.putSchedule(ctx, req.GetSchedule(), true); err != nil {
		return nil, err
	}
	return &alertv1.CreateOnCallScheduleResponse{Schedule: req.GetSchedule()}, nil
}

// UpdateOnCallSchedule replaces a schedule.
func (s *Server) UpdateOnCallSchedule(ctx context.Context, req *alertv1.UpdateOnCallScheduleRequest) (*alertv1.UpdateOnCallScheduleResponse, error) {
	if err := s.putSchedule(ctx, req.GetSchedule(), false); err != nil {
		return nil, err
	}
	return &alertv1.UpdateOnCallScheduleResponse{Schedule: req.GetSchedule()}, nil
}

// DeleteOnCallSchedule deletes a schedule no rule names.
func (s *Server) DeleteOnCallSchedule(ctx context.Context, req *alertv1.DeleteOnCallScheduleRequest) (*alertv1.DeleteOnCallScheduleResponse, error) {
	tenant, b, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	id := req.GetScheduleId()
	if err := idOf("schedule_id", id); err != nil {
		return nil, err
	}
	if b.Settings.Schedule(tenant, id) == nil {
		return nil, status.Errorf(codes.NotFound, "no schedule %q", id)
	}
	for _, r := range b.Settings.Rules(tenant) {
		if r.GetEscalationScheduleId() == id {
			return nil, status.Errorf(codes.FailedPrecondition, "rule %q escalates to schedule %q", r.GetRuleId(), id)
		}
	}
	if err := s.remove(ctx, b, tenant, settings.KindSchedule, id); err != nil {
		return nil, err
	}
	return &alertv1.DeleteOnCallScheduleResponse{}, nil
}

// ListChannels lists the tenant's channels without secrets.
func (s *Server) ListChannels(ctx context.Context, _ *alertv1.ListChannelsRequest) (*alertv1.ListChannelsResponse, error) {
	tenant, b, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	resp := &alertv1.ListChannelsResponse{}
	for _, c := range b.Settings.Channels(tenant) {
		resp.Channels = append(resp.Channels, channel.Redact(c))
	}
	return resp, nil
}

// channel returns the caller's tenant, the backends and a channel of theirs.
func (s *Server) channel(ctx context.Context, id string) (string, *Backends, *alertv1.Channel, error) {
	tenant, b, err := s.begin(ctx)
	if err != nil {
		return "", nil, nil, err
	}
	if err := idOf("channel_id", id); err != nil {
		return "", nil, nil, err
	}
	c := b.Settings.Channel(tenant, id)
	if c == nil {
		return "", nil, nil, status.Errorf(codes.NotFound, "no channel %q", id)
	}
	return tenant, b, c, nil
}

// GetChannel returns a channel without secrets.
func (s *Server) GetChannel(ctx context.Context, req *alertv1.GetChannelRequest) (*alertv1.GetChannelResponse, error) {
	_, _, c, err := s.channel(ctx, req.GetChannelId())
	if err != nil {
		return nil, err
	}
	return &alertv1.GetChannelResponse{Channel: channel.Redact(c)}, nil
}

func (s *Server) putChannel(ctx context.Context, c *alertv1.Channel, create bool) (*alertv1.Channel, error) {
	tenant, b, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	c = proto.CloneOf(c)
	stored := b.Settings.Channel(tenant, c.GetChannelId())
	if stored != nil && !create {
		channel.KeepSecrets(c, stored)
	}
	if err := s.write(ctx, b, tenant, settings.KindChannel, c.GetChannelId(), c, create, stored != nil, channel.Validate(c, s.opts.Channels)); err != nil {
		return nil, err
	}
	return channel.Redact(c), nil
}

// CreateChannel adds a channel.
func (s *Server) CreateChannel(ctx context.Context, req *alertv1.CreateChannelRequest) (*alertv1.CreateChannelResponse, error) {
	c, err := s.putChannel(ctx, req.GetChannel(), true)
	if err != nil {
		return nil, err
	}
	return &alertv1.CreateChannelResponse{Channel: c}, nil
}

// UpdateChannel replaces a channel, keeping secrets left empty.
func (s *Server) UpdateChannel(ctx context.Context, req *alertv1.UpdateChannelRequest) (*alertv1.UpdateChannelResponse, error) {
	c, err := s.putChannel(ctx, req.GetChannel(), false)
	if err != nil {
		return nil, err
	}
	return &alertv1.UpdateChannelResponse{Channel: c}, nil
}

// DeleteChannel deletes a channel; its queued deliveries are dropped.
func (s *Server) DeleteChannel(ctx context.Context, req *alertv1.DeleteChannelRequest) (*alertv1.DeleteChannelResponse, error) {
	tenant, b, _, err := s.channel(ctx, req.GetChannelId())
	if err != nil {
		return nil, err
	}
	if err := s.remove(ctx, b, tenant, settings.KindChannel, req.GetChannelId()); err != nil {
		return nil, err
	}
	return &alertv1.DeleteChannelResponse{}, nil
}

// TestChannel sends a test message at once.
func (s *Server) TestChannel(ctx context.Context, req *alertv1.TestChannelRequest) (*alertv1.TestChannelResponse, error) {
	tenant, _, c, err := s.channel(ctx, req.GetChannelId())
	if err != nil {
		return nil, err
	}
	if r := req.GetRecipient(); r != nil {
		if ps := oncall.ValidatePerson("recipient", r); len(ps) > 0 {
			return nil, invalid("request", ps)
		}
	}
	tctx, cancel := context.WithTimeout(ctx, testTimeout)
	defer cancel()
	if err := s.opts.Sender.Test(tctx, tenant, c, req.GetRecipient()); err != nil {
		return &alertv1.TestChannelResponse{Detail: err.Error()}, nil
	}
	return &alertv1.TestChannelResponse{Ok: true, Detail: "accepted"}, nil
}
