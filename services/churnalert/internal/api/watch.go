package api

import (
	"context"
	"errors"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/streams"
)

// WatchAlerts streams the tenant's alert events from the ALERTS stream. The
// cursor is the event's stream sequence, so a client resumes exactly where it
// stopped, on any replica. It ends when the client goes or the server stops.
func (s *Server) WatchAlerts(req *alertv1.WatchAlertsRequest, stream grpc.ServerStreamingServer[alertv1.WatchAlertsResponse]) error {
	ctx := stream.Context()
	tenant, b, err := s.begin(ctx)
	if err != nil {
		return err
	}
	var p problems
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{streams.TenantAlerts(tenant)},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	}
	if c := req.GetCursor(); c != "" {
		seq, err := strconv.ParseUint(c, 10, 64)
		if err != nil {
			p.add("cursor", "not a cursor from an earlier answer")
		} else {
			// A cursor past the stream's end was never answered: refuse it,
			// rather than fail (Unavailable, which clients retry) or wait
			// for sequence numbers that may never come.
			info, err := b.JS.Stream(ctx, streams.Alerts)
			if err != nil {
				return s.failed(ctx, "watch alerts", err)
			}
			if seq > info.CachedInfo().State.LastSeq {
				p.add("cursor", "beyond the end of the alert history: not a cursor from an earlier answer")
			}
		}
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq+1
	}
	if !validSeverity(req.GetMinSeverity()) {
		p.add("min_severity", "unknown severity")
	}
	if err := p.err("WatchAlerts request"); err != nil {
		return err
	}
	cons, err := b.JS.OrderedConsumer(ctx, streams.Alerts, cfg)
	if err != nil {
		return s.failed(ctx, "watch alerts", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return s.failed(ctx, "watch alerts", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-ctx.Done():
		case <-s.opts.Stopping:
		}
		it.Stop()
	}()
	owner := req.GetOwnerCsmId()
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return s.failed(ctx, "watch alerts", err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			continue
		}
		var ev alertv1.AlertEvent
		if err := proto.Unmarshal(msg.Data(), &ev); err != nil {
			continue
		}
		a := ev.GetAlert()
		if a.GetSeverity() < req.GetMinSeverity() ||
			(owner != "" && a.GetOwner().GetPersonId() != owner && a.GetAssignee().GetPersonId() != owner) {
			continue
		}
		if err := stream.Send(&alertv1.WatchAlertsResponse{Event: &ev, Cursor: strconv.FormatUint(meta.Sequence.Stream, 10)}); err != nil {
			return err
		}
	}
}
