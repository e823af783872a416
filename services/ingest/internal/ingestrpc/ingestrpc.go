// Package ingestrpc serves lodestar.ingest.v1.IngestService: the events of
// the Segment HTTP API over gRPC, with the same validation, limits and
// durability. The tenant comes from the API key (see auth interceptors); an
// event naming another tenant fails the call with PermissionDenied.
package ingestrpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/lodestar-cs/lodestar/pkg/grpcerr"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
	ingestv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/ingest/v1"
	"github.com/lodestar-cs/lodestar/services/ingest/internal/intake"
	"github.com/lodestar-cs/lodestar/services/ingest/internal/quota"
)

// api labels this API's metrics.
const api = "grpc"

// Config bounds request sizes, in protobuf bytes, and event times.
type Config struct {
	MaxEventBytes int
	MaxBatchBytes int
	// EventTimes bound the events' times.
	EventTimes intake.TimeBounds
}

// Server implements IngestService.
type Server struct {
	ingestv1.UnimplementedIngestServiceServer
	cfg      Config
	pipeline func() *intake.Pipeline
	logger   *slog.Logger
}

// New returns the server. pipeline returns nil until events can be stored;
// until then every call fails with Unavailable.
func New(cfg Config, pipeline func() *intake.Pipeline, logger *slog.Logger) *Server {
	return &Server{cfg: cfg, pipeline: pipeline, logger: logger}
}

// Track stores one event. An invalid event fails with InvalidArgument and a
// BadRequest detail naming the field.
func (s *Server) Track(ctx context.Context, req *ingestv1.TrackRequest) (*ingestv1.TrackResponse, error) {
	if n := proto.Size(req.GetEvent()); n > s.cfg.MaxEventBytes {
		return nil, grpcerr.Error(codes.ResourceExhausted, fmt.Sprintf("event is %d bytes, over the %d-byte limit", n, s.cfg.MaxEventBytes))
	}
	if _, _, err := s.store(ctx, req, []*eventv1.Event{req.GetEvent()}, func(int) string { return "event" }); err != nil {
		return nil, err
	}
	return &ingestv1.TrackResponse{MessageId: req.Event.MessageId}, nil
}

// Batch stores the valid events of a batch and reports the others by index.
// It fails with InvalidArgument when no event is valid.
func (s *Server) Batch(ctx context.Context, req *ingestv1.BatchRequest) (*ingestv1.BatchResponse, error) {
	if n := proto.Size(req); n > s.cfg.MaxBatchBytes {
		return nil, grpcerr.Error(codes.ResourceExhausted, fmt.Sprintf("batch is %d bytes, over the %d-byte limit", n, s.cfg.MaxBatchBytes))
	}
	if len(req.Events) == 0 {
		return nil, grpcerr.Error(codes.InvalidArgument, "no events", grpcerr.Violation("events", "at least one event is required"))
	}
	valid, bad, err := s.store(ctx, req, req.Events, func(i int) string { return fmt.Sprintf("events[%d]", i) })
	if err != nil {
		return nil, err
	}
	resp := &ingestv1.BatchResponse{Accepted: int32(len(valid)), MessageIds: make([]string, len(valid))}
	for i, ev := range valid {
		resp.MessageIds[i] = ev.MessageId
	}
	for _, v := range bad {
		resp.Errors = append(resp.Errors, &ingestv1.EventError{Index: int32(v.Index), MessageId: v.MessageID, Field: v.Field.Proto(), Reason: v.Reason})
	}
	return resp, nil
}

// store validates and stores the events of req, naming event i by path(i)
// in errors, and returns the stored events and the violations of the others.
func (s *Server) store(ctx context.Context, req proto.Message, evs []*eventv1.Event, path func(int) string) ([]*eventv1.Event, []intake.Violation, error) {
	tenant, err := grpcerr.Tenant(ctx)
	if err != nil {
		return nil, nil, err
	}
	p := s.pipeline()
	if p == nil {
		return nil, nil, grpcerr.Error(codes.Unavailable, "ingest is starting")
	}
	// The bytes identifying the request for generated message ids are taken
	// before Prepare fills in the events, and only when one is needed.
	var body []byte
	if slices.ContainsFunc(evs, func(ev *eventv1.Event) bool { return ev.GetMessageId() == "" }) {
		if body, err = (proto.MarshalOptions{Deterministic: true}).Marshal(req); err != nil {
			return nil, nil, grpcerr.Error(codes.InvalidArgument, fmt.Sprintf("marshal request: %v", err))
		}
	}
	var (
		checked = make([]*eventv1.Event, len(evs))
		bad     []intake.Violation
		denied  []*errdetails.BadRequest_FieldViolation
	)
	for i, ev := range evs {
		switch {
		case ev == nil:
			bad = append(bad, intake.Violation{Index: i, Code: intake.CodeMissing, Reason: "event is required"})
		case proto.Size(ev) > s.cfg.MaxEventBytes:
			bad = append(bad, intake.Violation{Index: i, MessageID: ev.MessageId, Code: intake.CodeTooLarge,
				Reason: fmt.Sprintf("event is %d bytes, over the %d-byte limit", proto.Size(ev), s.cfg.MaxEventBytes)})
		case ev.TenantId != "" && ev.TenantId != tenant:
			denied = append(denied, grpcerr.Violation(path(i)+".tenant_id", fmt.Sprintf("%q is not the tenant of the API key; leave it empty", ev.TenantId)))
		default:
			checked[i] = ev
		}
	}
	if len(denied) > 0 {
		return nil, nil, grpcerr.Error(codes.PermissionDenied, "events name another tenant than the API key's", denied...)
	}
	valid, invalid := intake.Prepare(tenant, time.Now(), s.cfg.EventTimes, checked, body)
	bad = append(bad, invalid...)
	slices.SortFunc(bad, func(x, y intake.Violation) int { return x.Index - y.Index })
	p.RejectViolations(ctx, api, tenant, bad)
	if len(valid) == 0 {
		vs := make([]*errdetails.BadRequest_FieldViolation, len(bad))
		for i, v := range bad {
			field := path(v.Index)
			if f := v.Field.Proto(); f != "" {
				field += "." + f
			}
			vs[i] = grpcerr.Violation(field, v.Reason)
		}
		return nil, nil, grpcerr.Error(codes.InvalidArgument, "no valid event", vs...)
	}
	if err := p.Store(ctx, api, tenant, valid); err != nil {
		var rl *intake.RateLimitError
		if errors.As(err, &rl) {
			return nil, nil, grpcerr.WithDetails(codes.ResourceExhausted, rl.Error(), &errdetails.RetryInfo{RetryDelay: durationpb.New(rl.RetryAfter)})
		}
		var ql *quota.Error
		if errors.As(err, &ql) {
			details := []protoadapt.MessageV1{&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{
				Subject: "tenant:" + tenant, Description: ql.Error()}}}}
			if ql.RetryAfter > 0 {
				details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(ql.RetryAfter)})
			}
			return nil, nil, grpcerr.WithDetails(codes.ResourceExhausted, ql.Error(), details...)
		}
		s.logger.WarnContext(ctx, "storing events failed", "tenant", tenant, "events", len(valid), "err", err)
		return nil, nil, grpcerr.Error(codes.Unavailable, "events could not be stored; retry")
	}
	return valid, bad, nil
}
