package api

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/streams"
)

// WatchAlerts streams the tenant's alert events from the ALERTS stream. It
// ends when the client goes or the server stops.
//
// The cursor is "<unix nanoseconds>.<n>": the time the event was stored and
// how many of the tenant's events stored at that very nanosecond it is, so a
// client resumes exactly where it stopped, on any replica. It is made of
// the tenant's own events only: the stream's sequence numbers, global
// across tenants, would tell one tenant how many alerts the others get.
// "0.0" resumes from the oldest event kept.
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
	var after watchCursor
	if c := req.GetCursor(); c != "" {
		var err error
		switch after, err = parseWatchCursor(c); {
		case err != nil:
			p.add("cursor", "not a cursor from an earlier answer")
		case after.at.After(s.opts.Now().Add(maxCursorSkew)):
			// Never answered: refuse it rather than wait for events that
			// may never come.
			p.add("cursor", "beyond the end of the alert history: not a cursor from an earlier answer")
		default:
			cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &after.at
		}
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
	// The headers say the watch has begun: a client that waits for them
	// (stream.Header) misses no event published from then on.
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		it.Stop()
		return err
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
		// Events stored at the cursor's nanosecond come in stream order:
		// skip those the client had.
		if at := meta.Timestamp; at.Equal(after.at) {
			after.n++
			if after.n <= after.skip {
				continue
			}
		} else {
			after = watchCursor{at: at, n: 1}
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
		if err := stream.Send(&alertv1.WatchAlertsResponse{Event: &ev, Cursor: after.String()}); err != nil {
			return err
		}
	}
}

// maxCursorSkew is how far past this server's clock a cursor may lie: the
// stored times are the NATS server's.
const maxCursorSkew = time.Minute

// watchCursor is a position in a tenant's alert events: the n-th of those
// stored at time at (skip of them to pass over when resuming).
type watchCursor struct {
	at      time.Time
	skip, n int
}

func (c watchCursor) String() string {
	return strconv.FormatInt(c.at.UnixNano(), 10) + "." + strconv.Itoa(c.n)
}

func parseWatchCursor(s string) (watchCursor, error) {
	ts, n, ok := strings.Cut(s, ".")
	ns, err1 := strconv.ParseInt(ts, 10, 64)
	k, err2 := strconv.Atoi(n)
	if !ok || err1 != nil || err2 != nil || ns < 0 || k < 0 {
		return watchCursor{}, errors.New("malformed cursor")
	}
	return watchCursor{at: time.Unix(0, ns), skip: k}, nil
}
