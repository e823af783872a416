// Package api serves lodestar.alert.v1.AlertService: alerts from the view of
// the ALERTS stream, people's actions as updates of the account's state, and
// the tenant's rules, schedules and channels. The tenant always comes from
// the credential.
package api

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/pkg/grpcerr"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/channel"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/lifecycle"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/pipeline"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/settings"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/view"
)

// Request bounds.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
	maxSnooze       = 90 * 24 * time.Hour
	maxText         = 1000
	// readYourWrites bounds the wait for the view to show an action's event.
	readYourWrites = 5 * time.Second
)

// Backends are the parts Run opens; until they are set every call answers
// UNAVAILABLE.
type Backends struct {
	JS       jetstream.JetStream
	Settings *settings.Store
	View     *view.View
	Pipeline *pipeline.Pipeline
}

// Options are the server's fixed settings.
type Options struct {
	Sender   *channel.Sender
	Channels channel.ValidateOptions
	Now      func() time.Time
	// Stopping ends WatchAlerts streams when the server shuts down.
	Stopping <-chan struct{}
	Logger   *slog.Logger
}

// Server implements AlertService.
type Server struct {
	alertv1.UnimplementedAlertServiceServer
	opts     Options
	backends atomic.Pointer[Backends]
}

// New returns the server; Start makes it serve.
func New(opts Options) *Server { return &Server{opts: opts} }

// Start sets the backends.
func (s *Server) Start(b *Backends) { s.backends.Store(b) }

// begin returns the caller's tenant and the backends.
func (s *Server) begin(ctx context.Context) (string, *Backends, error) {
	tenant, err := grpcerr.Tenant(ctx)
	if err != nil {
		return "", nil, err
	}
	b := s.backends.Load()
	if b == nil {
		return "", nil, status.Error(codes.Unavailable, "churn alerts are starting")
	}
	return tenant, b, nil
}

// invalid is INVALID_ARGUMENT listing every problem.
func invalid(what string, problems []*errdetails.BadRequest_FieldViolation) error {
	return grpcerr.Error(codes.InvalidArgument, fmt.Sprintf("invalid %s: %d problems, first: %s: %s",
		what, len(problems), problems[0].GetField(), problems[0].GetDescription()), problems...)
}

// problems collects violations.
type problems []*errdetails.BadRequest_FieldViolation

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, grpcerr.Violation(field, fmt.Sprintf(format, args...)))
}

func (p *problems) text(field, v string, required bool) {
	switch {
	case required && strings.TrimSpace(v) == "":
		p.add(field, "required")
	case len(v) > maxText:
		p.add(field, "at most %d bytes", maxText)
	}
}

func (p problems) err(what string) error {
	if len(p) == 0 {
		return nil
	}
	return invalid(what, p)
}

// failed turns a backend error into a status: the caller's own deadline or
// cancellation as such, anything else UNAVAILABLE (retry).
func (s *Server) failed(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	s.opts.Logger.WarnContext(ctx, what+" failed", "err", err)
	return status.Errorf(codes.Unavailable, "%s failed; retry", what)
}

func validSeverity(s alertv1.Severity) bool {
	_, ok := alertv1.Severity_name[int32(s)]
	return ok
}

// ListAlerts lists alerts newest first.
func (s *Server) ListAlerts(ctx context.Context, req *alertv1.ListAlertsRequest) (*alertv1.ListAlertsResponse, error) {
	tenant, b, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	var p problems
	size := int(req.GetPageSize())
	switch {
	case size < 0 || size > maxPageSize:
		p.add("page_size", "want 0 to %d", maxPageSize)
	case size == 0:
		size = defaultPageSize
	}
	after, tokenErr := parsePageToken(req.GetPageToken())
	if tokenErr != nil {
		p.add("page_token", "not a token from an earlier answer")
	}
	states := map[alertv1.AlertState]bool{}
	for i, st := range req.GetStates() {
		if _, ok := alertv1.AlertState_name[int32(st)]; !ok || st == alertv1.AlertState_ALERT_STATE_UNSPECIFIED {
			p.add(fmt.Sprintf("states[%d]", i), "unknown or unspecified state")
		}
		states[st] = true
	}
	if !validSeverity(req.GetMinSeverity()) {
		p.add("min_severity", "unknown severity")
	}
	if err := p.err("ListAlerts request"); err != nil {
		return nil, err
	}
	all := b.View.List(tenant, func(a *alertv1.Alert) bool {
		return (len(states) == 0 || states[a.GetState()]) &&
			a.GetSeverity() >= req.GetMinSeverity() &&
			(req.GetOwnerCsmId() == "" || a.GetOwner().GetPersonId() == req.GetOwnerCsmId()) &&
			(req.GetAssigneeId() == "" || a.GetAssignee().GetPersonId() == req.GetAssigneeId()) &&
			(req.GetAccountId() == "" || a.GetAccountId() == req.GetAccountId()) &&
			(req.GetRuleId() == "" || a.GetRuleId() == req.GetRuleId()) &&
			(after == nil || view.Newer(after, a) < 0)
	})
	resp := &alertv1.ListAlertsResponse{}
	if len(all) > size {
		all = all[:size]
		resp.NextPageToken = pageToken(all[size-1])
	}
	resp.Alerts = all
	return resp, nil
}

// Page tokens name the last alert of a page by its sort key.
func pageToken(a *alertv1.Alert) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(a.GetCreateTime().AsTime().UnixNano(), 10) + "|" + a.GetAlertId()))
}

func parsePageToken(tok string) (*alertv1.Alert, error) {
	if tok == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return nil, err
	}
	ns, id, ok := strings.Cut(string(b), "|")
	n, err := strconv.ParseInt(ns, 10, 64)
	if !ok || err != nil {
		return nil, errors.New("malformed page token")
	}
	return &alertv1.Alert{AlertId: id, CreateTime: timestamppb.New(time.Unix(0, n))}, nil
}

func (s *Server) alert(tenant string, b *Backends, id string) (*alertv1.Alert, error) {
	if id == "" {
		return nil, invalid("request", problems{grpcerr.Violation("alert_id", "required")})
	}
	a := b.View.Get(tenant, id)
	if a == nil {
		return nil, status.Errorf(codes.NotFound, "no alert %q", id)
	}
	return a, nil
}

// GetAlert returns one alert.
func (s *Server) GetAlert(ctx context.Context, req *alertv1.GetAlertRequest) (*alertv1.GetAlertResponse, error) {
	tenant, b, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	a, err := s.alert(tenant, b, req.GetAlertId())
	if err != nil {
		return nil, err
	}
	return &alertv1.GetAlertResponse{Alert: a}, nil
}

// act applies a person's action to an alert's account state, and waits
// until the view shows it.
func (s *Server) act(ctx context.Context, alertID string, validate func(*problems),
	fn func(*alertv1.AccountAlertState, lifecycle.Env) (*alertv1.Alert, error)) (*alertv1.Alert, error) {
	tenant, b, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	var p problems
	if alertID == "" {
		p.add("alert_id", "required")
	}
	validate(&p)
	if err := p.err("request"); err != nil {
		return nil, err
	}
	a, err := s.alert(tenant, b, alertID)
	if err != nil {
		return nil, err
	}
	var out *alertv1.Alert
	seq, err := b.Pipeline.Update(ctx, tenant, a.GetAccountId(), true, nil, func(st *alertv1.AccountAlertState, env lifecycle.Env) (bool, error) {
		n := len(st.GetOutbox())
		res, err := fn(st, env)
		if err != nil {
			return false, err
		}
		out = proto.CloneOf(res)
		return len(st.GetOutbox()) > n, nil
	})
	switch {
	case errors.Is(err, lifecycle.ErrNotFound):
		return nil, status.Errorf(codes.NotFound, "alert %q is superseded by a later alert of its rule", alertID)
	case errors.Is(err, lifecycle.ErrResolved):
		return nil, status.Errorf(codes.FailedPrecondition, "alert %q is resolved", alertID)
	case err != nil:
		return nil, s.failed(ctx, "update alert", err)
	}
	if seq > 0 {
		wctx, cancel := context.WithTimeout(ctx, readYourWrites)
		defer cancel()
		_ = b.View.WaitFor(wctx, seq) // the action is stored; the view follows soon
	}
	return out, nil
}

// AcknowledgeAlert stops an alert's escalation.
func (s *Server) AcknowledgeAlert(ctx context.Context, req *alertv1.AcknowledgeAlertRequest) (*alertv1.AcknowledgeAlertResponse, error) {
	a, err := s.act(ctx, req.GetAlertId(), func(p *problems) {
		p.text("actor", req.GetActor(), false)
		p.text("note", req.GetNote(), false)
	}, func(st *alertv1.AccountAlertState, env lifecycle.Env) (*alertv1.Alert, error) {
		return lifecycle.Acknowledge(st, req.GetAlertId(), req.GetActor(), req.GetNote(), env)
	})
	if err != nil {
		return nil, err
	}
	return &alertv1.AcknowledgeAlertResponse{Alert: a}, nil
}

// SnoozeAlert silences an alert until a time.
func (s *Server) SnoozeAlert(ctx context.Context, req *alertv1.SnoozeAlertRequest) (*alertv1.SnoozeAlertResponse, error) {
	now := s.opts.Now()
	until := req.GetSnoozeEndTime().AsTime()
	a, err := s.act(ctx, req.GetAlertId(), func(p *problems) {
		switch {
		case req.GetSnoozeEndTime() == nil || !req.GetSnoozeEndTime().IsValid():
			p.add("snooze_end_time", "required")
		case !until.After(now) || until.Sub(now) > maxSnooze:
			p.add("snooze_end_time", "want a time in the next %d days", int(maxSnooze.Hours()/24))
		}
		p.text("reason", req.GetReason(), true)
		p.text("actor", req.GetActor(), false)
	}, func(st *alertv1.AccountAlertState, env lifecycle.Env) (*alertv1.Alert, error) {
		return lifecycle.Snooze(st, req.GetAlertId(), until, req.GetReason(), req.GetActor(), env)
	})
	if err != nil {
		return nil, err
	}
	return &alertv1.SnoozeAlertResponse{Alert: a}, nil
}

// ResolveAlert closes an alert.
func (s *Server) ResolveAlert(ctx context.Context, req *alertv1.ResolveAlertRequest) (*alertv1.ResolveAlertResponse, error) {
	a, err := s.act(ctx, req.GetAlertId(), func(p *problems) {
		p.text("actor", req.GetActor(), false)
		p.text("note", req.GetNote(), false)
	}, func(st *alertv1.AccountAlertState, env lifecycle.Env) (*alertv1.Alert, error) {
		return lifecycle.Resolve(st, req.GetAlertId(), req.GetActor(), req.GetNote(), env)
	})
	if err != nil {
		return nil, err
	}
	return &alertv1.ResolveAlertResponse{Alert: a}, nil
}
