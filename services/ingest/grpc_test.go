package ingest_test

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/pkg/natsx"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
	ingestv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/ingest/v1"
	"github.com/lodestar-cs/lodestar/services/ingest"
)

// grpcEvent is a valid track event with message id id, changed by mods.
func grpcEvent(id string, mods ...func(*eventv1.Event)) *eventv1.Event {
	ev := &eventv1.Event{MessageId: id, Type: eventv1.EventType_EVENT_TYPE_TRACK, UserId: "u1", Event: "Clicked"}
	for _, m := range mods {
		m(ev)
	}
	return ev
}

func withContext(fields map[string]any) func(*eventv1.Event) {
	return func(ev *eventv1.Event) { ev.Context, _ = structpb.NewStruct(fields) }
}

// fieldViolations returns the fields a status error's BadRequest names.
func fieldViolations(err error) []string {
	var out []string
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.FieldViolations {
				out = append(out, v.Field)
			}
		}
	}
	return out
}

// TestGRPCBadInput is TestHTTPBadInput for IngestService.
func TestGRPCBadInput(t *testing.T) {
	e := start(t, nil)
	blob := strings.Repeat("x", 33<<10)
	big := withContext(map[string]any{"blob": blob})
	var huge []*eventv1.Event
	for i := range 30 {
		huge = append(huge, grpcEvent(fmt.Sprint("g-huge-", i), withContext(map[string]any{"blob": blob[:20<<10]})))
	}
	accepted := map[string]string{}

	for _, tc := range []struct {
		name  string
		key   string
		track *ingestv1.TrackRequest
		batch *ingestv1.BatchRequest
		code  codes.Code
		// fields are the BadRequest field violations of a failure.
		fields []string
		// accepted and errors ("index:field") are a batch's answer.
		accepted int
		errors   []string
		stored   map[string]string
	}{
		{name: "track", key: acmeAPIKey, track: &ingestv1.TrackRequest{Event: grpcEvent("g-ok")},
			stored: map[string]string{"g-ok": "acme"}},
		{name: "missing key", track: &ingestv1.TrackRequest{Event: grpcEvent("g-nokey")}, code: codes.Unauthenticated},
		{name: "bad key", key: "ak_not_a_key_0123456789", track: &ingestv1.TrackRequest{Event: grpcEvent("g-badkey")}, code: codes.Unauthenticated},
		{name: "write key is not an API key", key: acmeWriteKey, track: &ingestv1.TrackRequest{Event: grpcEvent("g-wk")}, code: codes.Unauthenticated},
		{name: "no event", key: acmeAPIKey, track: &ingestv1.TrackRequest{},
			code: codes.InvalidArgument, fields: []string{"event"}},
		{name: "missing ids", key: acmeAPIKey, track: &ingestv1.TrackRequest{Event: grpcEvent("g-noid", func(ev *eventv1.Event) { ev.UserId = "" })},
			code: codes.InvalidArgument, fields: []string{"event.user_id"}},
		{name: "unknown type", key: acmeAPIKey, track: &ingestv1.TrackRequest{Event: grpcEvent("g-type", func(ev *eventv1.Event) { ev.Type = 99 })},
			code: codes.InvalidArgument, fields: []string{"event.type"}},
		{name: "group without account", key: acmeAPIKey, track: &ingestv1.TrackRequest{Event: grpcEvent("g-group", func(ev *eventv1.Event) { ev.Type = eventv1.EventType_EVENT_TYPE_GROUP })},
			code: codes.InvalidArgument, fields: []string{"event.account_id"}},
		{name: "context.groupId a number", key: acmeAPIKey, track: &ingestv1.TrackRequest{Event: grpcEvent("g-ctx", withContext(map[string]any{"groupId": 7}))},
			code: codes.InvalidArgument, fields: []string{"event.context.groupId"}},
		{name: "bad event time", key: acmeAPIKey, track: &ingestv1.TrackRequest{Event: grpcEvent("g-time", func(ev *eventv1.Event) { ev.EventTime = &timestamppb.Timestamp{Seconds: 1 << 50} })},
			code: codes.InvalidArgument, fields: []string{"event.event_time"}},
		{name: "body names another tenant", key: acmeAPIKey, track: &ingestv1.TrackRequest{Event: grpcEvent("g-other", func(ev *eventv1.Event) { ev.TenantId = "globex" })},
			code: codes.PermissionDenied, fields: []string{"event.tenant_id"}},
		{name: "body names the key's tenant", key: acmeAPIKey, track: &ingestv1.TrackRequest{Event: grpcEvent("g-same", func(ev *eventv1.Event) { ev.TenantId = "acme" })},
			stored: map[string]string{"g-same": "acme"}},
		{name: "another tenant's key", key: globexAPIKey, track: &ingestv1.TrackRequest{Event: grpcEvent("g-globex")},
			stored: map[string]string{"g-globex": "globex"}},
		{name: "oversize event", key: acmeAPIKey, track: &ingestv1.TrackRequest{Event: grpcEvent("g-big", big)}, code: codes.ResourceExhausted},
		{name: "oversize batch", key: acmeAPIKey, batch: &ingestv1.BatchRequest{Events: huge}, code: codes.ResourceExhausted},
		{name: "batch", key: acmeAPIKey, batch: &ingestv1.BatchRequest{Events: []*eventv1.Event{grpcEvent("g-b1"), grpcEvent("g-b2")}},
			accepted: 2, stored: map[string]string{"g-b1": "acme", "g-b2": "acme"}},
		{name: "batch partly invalid", key: acmeAPIKey,
			batch: &ingestv1.BatchRequest{Events: []*eventv1.Event{
				grpcEvent("g-p1"), grpcEvent("g-p2", func(ev *eventv1.Event) { ev.UserId = "" }), grpcEvent("g-p3", big), grpcEvent("g-p4")}},
			accepted: 2, errors: []string{"1:user_id", "2:"}, stored: map[string]string{"g-p1": "acme", "g-p4": "acme"}},
		{name: "batch all invalid", key: acmeAPIKey,
			batch: &ingestv1.BatchRequest{Events: []*eventv1.Event{grpcEvent("g-a1", func(ev *eventv1.Event) { ev.UserId = "" }), grpcEvent("g-a2", func(ev *eventv1.Event) { ev.Type = 0 })}},
			code:  codes.InvalidArgument, fields: []string{"events[0].user_id", "events[1].type"}},
		{name: "batch naming another tenant", key: acmeAPIKey,
			batch: &ingestv1.BatchRequest{Events: []*eventv1.Event{grpcEvent("g-t1"), grpcEvent("g-t2", func(ev *eventv1.Event) { ev.TenantId = "globex" })}},
			code:  codes.PermissionDenied, fields: []string{"events[1].tenant_id"}},
		{name: "empty batch", key: acmeAPIKey, batch: &ingestv1.BatchRequest{}, code: codes.InvalidArgument, fields: []string{"events"}},
		{name: "rate limit: the burst", key: slowAPIKey,
			batch:    &ingestv1.BatchRequest{Events: []*eventv1.Event{grpcEvent("g-s1"), grpcEvent("g-s2"), grpcEvent("g-s3"), grpcEvent("g-s4"), grpcEvent("g-s5")}},
			accepted: 5, stored: map[string]string{"g-s1": "slow", "g-s2": "slow", "g-s3": "slow", "g-s4": "slow", "g-s5": "slow"}},
		{name: "rate limit: over", key: slowAPIKey, track: &ingestv1.TrackRequest{Event: grpcEvent("g-s6")}, code: codes.ResourceExhausted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ingestv1.NewIngestServiceClient(e.dial(t, tc.key))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var err error
			var batch *ingestv1.BatchResponse
			if tc.track != nil {
				_, err = c.Track(ctx, tc.track)
			} else {
				batch, err = c.Batch(ctx, tc.batch)
			}
			if got := status.Code(err); got != tc.code {
				t.Fatalf("code %v (%v), want %v", got, err, tc.code)
			}
			if got := fieldViolations(err); !slices.Equal(got, tc.fields) {
				t.Errorf("field violations %q, want %q", got, tc.fields)
			}
			if tc.name == "rate limit: over" {
				if !slices.ContainsFunc(status.Convert(err).Details(), func(d any) bool { _, ok := d.(*errdetails.RetryInfo); return ok }) {
					t.Error("rate limit without RetryInfo")
				}
			}
			if batch != nil {
				var errs []string
				for _, e := range batch.Errors {
					errs = append(errs, fmt.Sprintf("%d:%s", e.Index, e.Field))
				}
				if int(batch.Accepted) != tc.accepted || !slices.Equal(errs, tc.errors) || len(batch.MessageIds) != tc.accepted {
					t.Errorf("batch answer %v, want accepted %d errors %q", batch, tc.accepted, tc.errors)
				}
			}
			stored := e.storedEvents(t)
			for id, tenant := range tc.stored {
				accepted[id] = tenant
				if ev := stored[id]; ev == nil || ev.TenantId != tenant {
					t.Errorf("event %s: stored %v, want under tenant %s", id, ev, tenant)
				}
			}
		})
	}

	stored := e.storedEvents(t)
	for id, ev := range stored {
		if accepted[id] != ev.TenantId {
			t.Errorf("event %s stored under tenant %s, want %q", id, ev.TenantId, accepted[id])
		}
	}
	if len(stored) != len(accepted) {
		t.Errorf("stored %d events, want the %d accepted", len(stored), len(accepted))
	}
}

// TestGRPCGeneratedMessageID checks that an event sent without a message id
// gets a UUID-like one that is the same when the identical request is
// retried, so the retry is stored once.
func TestGRPCGeneratedMessageID(t *testing.T) {
	e := start(t, nil)
	c := ingestv1.NewIngestServiceClient(e.dial(t, acmeAPIKey))
	ctx := context.Background()
	req := &ingestv1.TrackRequest{Event: grpcEvent("")}
	var ids []string
	for range 2 {
		resp, err := c.Track(ctx, proto.Clone(req).(*ingestv1.TrackRequest))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, resp.MessageId)
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(ids[0]) || ids[0] != ids[1] {
		t.Errorf("message ids %q, want one UUID twice", ids)
	}
	if n := len(e.storedEvents(t)); n != 1 {
		t.Errorf("stored %d events, want 1", n)
	}
}

// TestGRPCWithoutAuthInterceptor checks that a server missing the auth
// interceptor serves nobody.
func TestGRPCWithoutAuthInterceptor(t *testing.T) {
	e := start(t, nil)
	svc, err := ingest.New(ingest.DefaultConfig(), ingest.Deps{JS: e.js, Tenants: testTenants(t), Limits: natsx.DefaultLimits()})
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	svc.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_, err = ingestv1.NewIngestServiceClient(conn).Track(context.Background(), &ingestv1.TrackRequest{Event: grpcEvent("x")})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("code %v, want Unauthenticated", status.Code(err))
	}
}

// TestGRPCDeepNesting is TestHTTPDeepNesting for IngestService.Track.
func TestGRPCDeepNesting(t *testing.T) {
	e := start(t, nil)
	client := ingestv1.NewIngestServiceClient(e.dial(t, acmeAPIKey))
	var v any = "leaf"
	for range 100 {
		v = map[string]any{"a": v}
	}
	_, err := client.Track(context.Background(), &ingestv1.TrackRequest{Event: grpcEvent("deep", func(ev *eventv1.Event) {
		ev.Type, ev.Traits = eventv1.EventType_EVENT_TYPE_IDENTIFY, must(structpb.NewStruct(map[string]any{"x": v}))
	})})
	if status.Code(err) != codes.InvalidArgument || !slices.Equal(fieldViolations(err), []string{"event.traits"}) {
		t.Errorf("Track: %v (fields %q), want InvalidArgument naming event.traits", err, fieldViolations(err))
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
