package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
	ingestv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/ingest/v1"
	"github.com/lodestar-cs/lodestar/tools/loadgen/sim"
)

const (
	testWriteKey = "wk_test_0123456789abcdef"
	testAPIKey   = "ak_test_0123456789abcdef"
)

// segmentServer speaks the Segment batch endpoint and checks every request
// and event it receives.
type segmentServer struct {
	maxBody  int
	mu       sync.Mutex
	perKey   map[string]int // events by write key
	overload int            // answer this many requests 429 or 503 first
	events   map[string]sim.SegmentEvent
	bodies   []int // decompressed sizes
	problems []string
}

func (s *segmentServer) problem(format string, args ...any) {
	s.problems = append(s.problems, fmt.Sprintf(format, args...))
}

func (s *segmentServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	user, pass, ok := r.BasicAuth()
	if _, known := s.perKey[user]; r.Method != http.MethodPost || r.URL.Path != "/v1/batch" || !ok || !known || pass != "" {
		s.problem("bad request line or credentials: %s %s", r.Method, r.URL.Path)
		http.Error(w, "no", http.StatusUnauthorized)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			s.problem("gzip: %v", err)
			return
		}
		body = zr
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		s.problem("read body: %v", err)
		return
	}
	s.bodies = append(s.bodies, len(raw))
	if len(raw) > s.maxBody {
		s.problem("body of %d bytes, over %d", len(raw), s.maxBody)
	}
	if s.overload > 0 {
		// Alternate a rate limit and an outage; Retry-After 0 keeps the test fast.
		code := []int{http.StatusTooManyRequests, http.StatusServiceUnavailable}[s.overload%2]
		s.overload--
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(code)
		return
	}
	var req struct {
		Batch  []sim.SegmentEvent `json:"batch"`
		SentAt string             `json:"sentAt"`
	}
	if err := json.Unmarshal(raw, &req); err != nil {
		s.problem("decode: %v", err)
		return
	}
	if _, err := time.Parse(time.RFC3339Nano, req.SentAt); err != nil {
		s.problem("sentAt %q: %v", req.SentAt, err)
	}
	for _, ev := range req.Batch {
		if _, dup := s.events[ev.MessageID]; dup || ev.MessageID == "" {
			s.problem("message id %q missing or repeated", ev.MessageID)
		}
		if ev.UserID == "" && ev.AnonymousID == "" {
			s.problem("event %s: no userId or anonymousId", ev.MessageID)
		}
		if _, err := time.Parse(time.RFC3339Nano, ev.Timestamp); err != nil {
			s.problem("event %s: timestamp %q: %v", ev.MessageID, ev.Timestamp, err)
		}
		if ev.Context.GroupID == "" || !slices.Contains([]string{"track", "identify", "group", "page"}, ev.Type) ||
			(ev.Type == "track" && ev.Event == "") || (ev.Type == "group" && ev.GroupID == "") {
			s.problem("event %s: invalid %+v", ev.MessageID, ev)
		}
		s.events[ev.MessageID] = ev
		s.perKey[user]++
	}
	fmt.Fprintf(w, `{"success":true,"accepted":%d}`, len(req.Batch))
}

func TestHTTP(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		events   int
		maxBody  int
		overload int
		// from and to bound the event times, relative to the start.
		from, to time.Duration
	}{
		{
			name: "backfill", args: []string{"-accounts", "100", "-backfill", "3", "-gzip", "-batch.max-bytes", "20000"},
			events: 1000, maxBody: 20000, overload: 4, from: -3*24*time.Hour - time.Hour, to: 0,
		},
		{
			// One batch of 4000 events, about 1 MB, is split to fit 500 KB.
			name: "split", args: []string{"-accounts", "100", "-backfill", "7", "-batch.size", "10000"},
			events: 4000, maxBody: 500_000, from: -7*24*time.Hour - time.Hour, to: 0,
		},
		{
			// Live at max pace: events are stamped when they are sent.
			name: "live", args: []string{"-accounts", "20", "-rate", "max"},
			events: 500, maxBody: 500_000, from: 0, to: time.Minute,
		},
	}
	// The backfill cases ask for fewer events than the history holds even
	// on a weekend, so that they end within the backfill.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &segmentServer{maxBody: tt.maxBody, overload: tt.overload, events: map[string]sim.SegmentEvent{}, perKey: map[string]int{testWriteKey: 0}}
			ts := httptest.NewServer(srv)
			t.Cleanup(ts.Close)
			var stderr bytes.Buffer
			start := time.Now()
			args := append([]string{"-http.url", ts.URL, "-write-key", testWriteKey,
				"-crm=false", "-events", strconv.Itoa(tt.events), "-duration", "1m"}, tt.args...)
			if code := run(context.Background(), args, &stderr); code != 0 {
				t.Fatalf("exit code %d: %s", code, stderr.String())
			}
			if strings.Contains(stderr.String(), "live done") != (tt.from == 0) {
				t.Errorf("the live phase ran or did not as it should not have:\n%s", stderr.String())
			}
			srv.mu.Lock()
			defer srv.mu.Unlock()
			for _, p := range srv.problems[:min(len(srv.problems), 5)] {
				t.Error(p)
			}
			if len(srv.events) != tt.events {
				t.Errorf("%d events received, want %d", len(srv.events), tt.events)
			}
			if len(srv.bodies) < 2 {
				t.Errorf("%d requests: no batching", len(srv.bodies))
			}
			for _, ev := range srv.events {
				ts, _ := time.Parse(time.RFC3339Nano, ev.Timestamp)
				if ts.Before(start.Add(tt.from)) || ts.After(start.Add(tt.to).Add(time.Minute)) {
					t.Fatalf("event %s at %s: want between %s and %s after the start", ev.MessageID, ts, tt.from, tt.to)
				}
			}
			if want := fmt.Sprintf("%d retries", tt.overload); !strings.Contains(stderr.String(), want) {
				t.Errorf("summary does not say %q:\n%s", want, stderr.String())
			}
		})
	}
}

// TestTenants plays two tenants from a keys file: each gets its own events,
// under its own write key.
func TestTenants(t *testing.T) {
	other := "wk_other_0123456789abcdef"
	srv := &segmentServer{maxBody: 500_000, events: map[string]sim.SegmentEvent{}, perKey: map[string]int{testWriteKey: 0, other: 0}}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	keys := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte("# write key, API key\n"+testWriteKey+" -\n\n"+other+" -\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	args := []string{"-http.url", ts.URL, "-keys-file", keys, "-accounts", "20", "-rate", "max", "-events", "2000"}
	if code := run(context.Background(), args, &stderr); code != 0 {
		t.Fatalf("exit code %d: %s", code, stderr.String())
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for _, p := range srv.problems[:min(len(srv.problems), 5)] {
		t.Error(p)
	}
	if a, b := srv.perKey[testWriteKey], srv.perKey[other]; a+b != 2000 || a < 500 || b < 500 {
		t.Errorf("events per tenant: %d and %d, want 2000 in all, shared", a, b)
	}
	if !strings.Contains(stderr.String(), "tenant 1 has no API key") {
		t.Errorf("a tenant without API key is not reported:\n%s", stderr.String())
	}
}

// fakeLodestar serves IngestService and AccountService, checking the API key.
type fakeLodestar struct {
	ingestv1.UnimplementedIngestServiceServer
	accountv1.UnimplementedAccountServiceServer
	mu       sync.Mutex
	accounts []*accountv1.Account
	events   map[string]*eventv1.Event
	rejected bool // reject the first event of the first batch as invalid
}

func (f *fakeLodestar) UpsertAccounts(_ context.Context, req *accountv1.UpsertAccountsRequest) (*accountv1.UpsertAccountsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.accounts = append(f.accounts, req.Accounts...)
	return &accountv1.UpsertAccountsResponse{Accounts: req.Accounts}, nil
}

func (f *fakeLodestar) Batch(_ context.Context, req *ingestv1.BatchRequest) (*ingestv1.BatchResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &ingestv1.BatchResponse{}
	for i, ev := range req.Events {
		if !f.rejected {
			f.rejected = true
			resp.Errors = append(resp.Errors, &ingestv1.EventError{Index: int32(i), Field: "event", Reason: "test rejection"})
			continue
		}
		f.events[ev.MessageId] = ev
		resp.Accepted++
	}
	return resp, nil
}

func TestGRPC(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		if !slices.Equal(md.Get("authorization"), []string{"Bearer " + testAPIKey}) {
			return nil, status.Error(codes.Unauthenticated, "unknown API key")
		}
		return h(ctx, req)
	}))
	fake := &fakeLodestar{events: map[string]*eventv1.Event{}}
	ingestv1.RegisterIngestServiceServer(srv, fake)
	accountv1.RegisterAccountServiceServer(srv, fake)
	go srv.Serve(lis) //nolint:errcheck // Serve returns when the test stops the server.
	t.Cleanup(srv.Stop)

	var stderr bytes.Buffer
	args := []string{"-transport", "grpc", "-grpc.addr", lis.Addr().String(), "-api-key", testAPIKey,
		"-accounts", "25", "-backfill", "2", "-rate", "max", "-events", "1000"}
	if code := run(context.Background(), args, &stderr); code != 0 {
		t.Fatalf("exit code %d: %s", code, stderr.String())
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.accounts) != 25 {
		t.Errorf("%d accounts upserted, want 25", len(fake.accounts))
	}
	for _, a := range fake.accounts {
		if a.AccountId == "" || a.SeatsPurchased < 1 || a.GetArr().GetUnits() < 1 || a.RenewalTime == nil || a.GetOwner().GetCsmId() == "" {
			t.Errorf("incomplete CRM data: %v", a)
		}
	}
	if len(fake.events) != 999 {
		t.Errorf("%d events stored, want 999 (one rejected)", len(fake.events))
	}
	for _, ev := range fake.events {
		if ev.AccountId == "" || ev.EventTime == nil || ev.SentTime == nil || ev.Type == eventv1.EventType_EVENT_TYPE_UNSPECIFIED {
			t.Fatalf("incomplete event: %v", ev)
		}
	}
	if !strings.Contains(stderr.String(), "1 rejected events") || !strings.Contains(stderr.String(), "test rejection") {
		t.Errorf("the rejection is not reported:\n%s", stderr.String())
	}

	// A wrong key stops the run at once.
	stderr.Reset()
	args[5] = "ak_wrong_0123456789abcdef"
	if code := run(context.Background(), args, &stderr); code != 1 || !strings.Contains(stderr.String(), "Unauthenticated") {
		t.Errorf("wrong key: exit code %d, want 1 with Unauthenticated:\n%s", code, stderr.String())
	}
}

func TestFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"no keys", []string{}, "no keys"},
		{"unbounded", []string{"-write-key", testWriteKey, "-duration", "0"}, "the run must end"},
		{"bad rate", []string{"-write-key", testWriteKey, "-rate", "fast"}, "want events per second"},
		{"bad scenario", []string{"-write-key", testWriteKey, "-scenario", "chaos"}, "want demo"},
		{"grpc without api key", []string{"-write-key", testWriteKey, "-transport", "grpc"}, "needs an API key"},
		{"speed without natural pace", []string{"-write-key", testWriteKey, "-live.speed", "60"}, "need -rate natural"},
		{"busy without natural pace", []string{"-write-key", testWriteKey, "-rate", "max", "-live.busy"}, "need -rate natural"},
		{"speed too low", []string{"-write-key", testWriteKey, "-rate", "natural", "-live.speed", "0.5"}, "want 1 to 3600"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := run(context.Background(), tt.args, &stderr); code != 2 || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit code %d, want 2 with %q:\n%s", code, tt.want, stderr.String())
			}
		})
	}
	// The scenario's presets yield to flags given explicitly.
	var o options
	if err := o.parse(flag.NewFlagSet("loadgen", flag.ContinueOnError), []string{"-scenario", "demo", "-accounts", "12", "-write-key", testWriteKey}); err != nil {
		t.Fatal(err)
	}
	if o.accounts != 12 || o.backfill != 45 || o.rate.kind != paceNatural {
		t.Errorf("demo scenario with -accounts 12: accounts %d, backfill %d, rate %s", o.accounts, o.backfill, o.rate.String())
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Millisecond)
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {0.999, 999 * time.Millisecond}, {1, time.Second}}
	for _, tt := range tests {
		if got := h.quantile(tt.q); got < tt.want*97/100 || got > tt.want*103/100 {
			t.Errorf("quantile(%v) = %s, want %s within 3%%", tt.q, got, tt.want)
		}
	}
	for _, d := range []time.Duration{0, 1, 15, 16, 17, 1000, time.Hour, 1<<63 - 1} {
		if mid := bucketMid(bucketOf(d)); math.Abs(float64(mid)-float64(d)) > 0.04*float64(d) {
			t.Errorf("bucket of %d has middle %d", d, mid)
		}
	}
}
