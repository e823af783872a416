package scoring_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/internal/scorecore/scorecard"
	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/pkg/auth"
	"github.com/lodestar-cs/lodestar/pkg/cache"
	"github.com/lodestar-cs/lodestar/pkg/grpcserver"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/scoring"
)

type apiFixture struct {
	client, other scoringv1.ScoringServiceClient
	tenant        string
	svc           *scoring.Service
	history       history
	js            jetstream.JetStream
}

// startAPI runs the scoring service on embedded NATS with the in-process
// cache (history capped at 3 changes, so older ones come from SCORES) behind
// a real gRPC server with API-key auth for two tenants.
func startAPI(t *testing.T, accounts int) apiFixture {
	t.Helper()
	tenant, other := testenv.Tenant(t), testenv.Tenant(t)
	reg, err := auth.NewRegistry([]auth.Tenant{
		{ID: tenant, APIKeys: []string{"ak_" + tenant + "_0123456789"}},
		{ID: other, APIKeys: []string{"ak_" + other + "_0123456789"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, nc := testenv.NATS(t)
	js, _ := natsx.NewJetStream(nc)
	ensureStreams(t, js)
	h := makeHistory(tenant, accounts, 50)
	publishAccounts(t, js, h.accounts)
	publishBatches(t, js, tenant, h.batches)

	cfg := scoring.DefaultConfig()
	cfg.FlushInterval = 20 * time.Millisecond
	cfg.IndexInterval = 50 * time.Millisecond
	// The history is the demo product's: scored with its scorecard, its
	// declining accounts record a change most days.
	cfg.ScorecardFile = "../../tools/loadgen/sim/scorecard.yaml"
	limits := natsx.DefaultLimits()
	limits.Partitions = testPartitions // as publishBatches
	svc, err := scoring.New(cfg, scoring.Deps{
		// No telemetry: the defaults (pkg/service) must do.
		JS: js, Cache: cache.NewMemory(cache.Config{HistoryLength: 3}), Limits: limits,
	})
	if err != nil {
		t.Fatal(err)
	}
	// The server of the binary: its interceptors refuse undefined enums.
	srv := grpcserver.New(grpcserver.Config{}, grpcserver.WithUnaryInterceptors(reg.UnaryServerInterceptor(nil)))
	svc.Register(srv.GRPC())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ctx, lis) }()
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-served
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	dial := func(tn string) scoringv1.ScoringServiceClient {
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(auth.BearerCredentials{Key: "ak_" + tn + "_0123456789", Insecure: true}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return scoringv1.NewScoringServiceClient(conn)
	}
	f := apiFixture{client: dial(tenant), other: dial(other), tenant: tenant, svc: svc, history: h, js: js}
	// Settled: every account scored on the history's last day.
	last := h.batches[len(h.batches)-1].GetEvents()
	lastDay := last[len(last)-1].GetEventTime().AsTime().Truncate(24 * time.Hour)
	waitFor(t, "all accounts scored on the last day", func() bool {
		resp, err := f.client.ListHealthScores(context.Background(), &scoringv1.ListHealthScoresRequest{})
		if err != nil || !svc.Ready() || len(resp.GetScores()) != accounts {
			return false
		}
		for _, s := range resp.GetScores() {
			if !s.GetScoreTime().AsTime().Truncate(24 * time.Hour).Equal(lastDay) {
				return false
			}
		}
		return true
	})
	return f
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestScoringAPI(t *testing.T) {
	const accounts = 9
	f := startAPI(t, accounts)
	ctx := context.Background()

	t.Run("list worst first with band counts", func(t *testing.T) {
		resp, err := f.client.ListHealthScores(ctx, &scoringv1.ListHealthScoresRequest{PageSize: 4})
		if err != nil {
			t.Fatal(err)
		}
		all := resp.GetScores()
		for tok := resp.GetNextPageToken(); tok != ""; {
			next, err := f.client.ListHealthScores(ctx, &scoringv1.ListHealthScoresRequest{PageSize: 4, PageToken: tok})
			if err != nil {
				t.Fatal(err)
			}
			all, tok = append(all, next.GetScores()...), next.GetNextPageToken()
		}
		// Every account at least once; one whose score moved between pages
		// may come twice, as the cache's cursors allow.
		seen := map[string]bool{}
		for _, s := range all {
			seen[s.GetAccountId()] = true
		}
		if len(seen) != accounts {
			t.Fatalf("paged through %d accounts, want %d", len(seen), accounts)
		}
		for i := 1; i < len(resp.GetScores()); i++ {
			if resp.GetScores()[i].GetScore() < resp.GetScores()[i-1].GetScore() {
				t.Fatalf("first page not worst first at %d", i)
			}
		}
		c := resp.GetBandCounts()
		if c.GetRed()+c.GetYellow()+c.GetGreen() != accounts {
			t.Fatalf("band counts %v do not add up to %d", c, accounts)
		}
		red, err := f.client.ListHealthScores(ctx, &scoringv1.ListHealthScoresRequest{Band: scoringv1.Band_BAND_RED})
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(red.GetScores())) != c.GetRed() {
			t.Fatalf("red filter gave %d, band count says %d", len(red.GetScores()), c.GetRed())
		}
	})

	t.Run("get and batch get", func(t *testing.T) {
		got, err := f.client.GetHealthScore(ctx, &scoringv1.GetHealthScoreRequest{AccountId: "acct-000"})
		if err != nil {
			t.Fatal(err)
		}
		hs := got.GetScore()
		if hs.GetTenantId() != f.tenant || len(hs.GetMeasures()) == 0 || hs.GetSummary() == "" || hs.GetScorecardVersion() != 0 {
			t.Fatalf("score lacks its explanation: %v", hs)
		}
		b, err := f.client.BatchGetHealthScores(ctx, &scoringv1.BatchGetHealthScoresRequest{AccountIds: []string{"acct-001", "nope", "acct-002"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(b.GetScores()) != 2 || b.GetScores()[0].GetAccountId() != "acct-001" || len(b.GetMissingAccountIds()) != 1 {
			t.Fatalf("batch get = %v", b)
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			call  func() error
			code  codes.Code
			field string
		}{
			{"missing account id", func() error {
				_, err := f.client.GetHealthScore(ctx, &scoringv1.GetHealthScoreRequest{})
				return err
			}, codes.InvalidArgument, "account_id"},
			{"unknown account", func() error {
				_, err := f.client.GetHealthScore(ctx, &scoringv1.GetHealthScoreRequest{AccountId: "nope"})
				return err
			}, codes.NotFound, ""},
			{"another tenant's account", func() error {
				_, err := f.other.GetHealthScore(ctx, &scoringv1.GetHealthScoreRequest{AccountId: "acct-000"})
				return err
			}, codes.NotFound, ""},
			{"too many ids", func() error {
				_, err := f.client.BatchGetHealthScores(ctx, &scoringv1.BatchGetHealthScoresRequest{AccountIds: make([]string, 1001)})
				return err
			}, codes.InvalidArgument, "account_ids"},
			{"bad page size", func() error {
				_, err := f.client.ListHealthScores(ctx, &scoringv1.ListHealthScoresRequest{PageSize: 5000})
				return err
			}, codes.InvalidArgument, "page_size"},
			{"bad page token", func() error {
				_, err := f.client.ListHealthScores(ctx, &scoringv1.ListHealthScoresRequest{PageToken: "garbage"})
				return err
			}, codes.InvalidArgument, "page_token"},
			{"order_by out of range", func() error {
				_, err := f.client.ListHealthScores(ctx, &scoringv1.ListHealthScoresRequest{OrderBy: 99})
				return err
			}, codes.InvalidArgument, "order_by"},
			{"band out of range", func() error {
				_, err := f.client.ListHealthScores(ctx, &scoringv1.ListHealthScoresRequest{Band: -1})
				return err
			}, codes.InvalidArgument, "band"},
			{"bad history token", func() error {
				_, err := f.client.GetScoreHistory(ctx, &scoringv1.GetScoreHistoryRequest{AccountId: "acct-000", PageToken: "x1"})
				return err
			}, codes.InvalidArgument, "page_token"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				err := tc.call()
				if status.Code(err) != tc.code {
					t.Fatalf("code %v (%v), want %v", status.Code(err), err, tc.code)
				}
				if tc.field != "" && !hasViolation(err, tc.field) {
					t.Fatalf("no field violation for %s in %v", tc.field, err)
				}
			})
		}
		other, err := f.other.ListHealthScores(ctx, &scoringv1.ListHealthScoresRequest{})
		if err != nil || len(other.GetScores()) != 0 {
			t.Fatalf("another tenant sees %d scores (%v)", len(other.GetScores()), err)
		}
	})

	t.Run("history beyond the cache comes from SCORES", func(t *testing.T) {
		var all []*scoringv1.HealthScore
		tok := ""
		for {
			resp, err := f.client.GetScoreHistory(ctx, &scoringv1.GetScoreHistoryRequest{AccountId: "acct-001", PageSize: 2, PageToken: tok})
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, resp.GetScores()...)
			if tok = resp.GetNextPageToken(); tok == "" {
				break
			}
		}
		if len(all) <= 3 {
			t.Fatalf("%d changes in history: the cache keeps 3, the rest should come from the stream", len(all))
		}
		for i := 1; i < len(all); i++ {
			if !all[i].GetScoreTime().AsTime().Before(all[i-1].GetScoreTime().AsTime()) {
				t.Fatalf("history not newest first, or repeated, at %d: %v then %v", i,
					all[i-1].GetScoreTime().AsTime(), all[i].GetScoreTime().AsTime())
			}
		}
	})

	t.Run("activity", func(t *testing.T) { testActivity(t, f) })

	t.Run("scorecards", func(t *testing.T) {
		active, err := f.client.GetScorecard(ctx, &scoringv1.GetScorecardRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if active.GetScorecard().GetVersion() != 0 || len(active.GetScorecard().GetMeasures()) == 0 {
			t.Fatalf("default scorecard = %v", active.GetScorecard())
		}
		bad := &scoringv1.Scorecard{Measures: []*scoringv1.Measure{{Name: "x", Weight: -1}}}
		v, err := f.client.ValidateScorecard(ctx, &scoringv1.ValidateScorecardRequest{Scorecard: bad})
		if err != nil || v.GetValid() || len(v.GetProblems()) < 2 {
			t.Fatalf("validate bad scorecard: %v %v", v, err)
		}
		_, err = f.client.UpdateScorecard(ctx, &scoringv1.UpdateScorecardRequest{Scorecard: bad})
		if status.Code(err) != codes.InvalidArgument || !hasViolation(err, "scorecard.measures[0].weight") {
			t.Fatalf("update with a bad scorecard: %v", err)
		}

		next, err := scorecard.Default()
		if err != nil {
			t.Fatal(err)
		}
		next.Name = "tighter"
		next.Bands.RedBelow, next.Bands.GreenFrom = 60, 90
		up, err := f.client.UpdateScorecard(ctx, &scoringv1.UpdateScorecardRequest{Scorecard: next})
		if err != nil {
			t.Fatal(err)
		}
		if up.GetScorecard().GetVersion() != 1 {
			t.Fatalf("new version = %d, want 1", up.GetScorecard().GetVersion())
		}
		waitFor(t, "scores under version 1", func() bool {
			hs, err := f.client.GetHealthScore(ctx, &scoringv1.GetHealthScoreRequest{AccountId: "acct-000"})
			return err == nil && hs.GetScore().GetScorecardVersion() == 1 && hs.GetScore().GetScorecardChanged()
		})
		old, err := f.client.GetScorecard(ctx, &scoringv1.GetScorecardRequest{Version: 1})
		if err != nil || old.GetScorecard().GetName() != "tighter" {
			t.Fatalf("get version 1: %v %v", old, err)
		}
		if _, err := f.other.GetScorecard(ctx, &scoringv1.GetScorecardRequest{Version: 1}); status.Code(err) != codes.NotFound {
			t.Fatalf("another tenant reads version 1: %v", err)
		}
	})
}

func hasViolation(err error, field string) bool {
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if v.GetField() == field {
					return true
				}
			}
		}
	}
	return false
}

// testActivity checks GetAccountActivity against the history published:
// core events per day as counted here, key events published on top, and
// nothing for another tenant or bad input.
func testActivity(t *testing.T, f apiFixture) {
	ctx := context.Background()
	const id = "acct-000"
	core := map[string]bool{"Report Created": true, "Opportunity Created": true, "Invoice Sent": true, "Workflow Run": true}
	perDay := map[time.Time]int64{}
	var last time.Time
	for _, b := range f.history.batches {
		for _, ev := range b.GetEvents() {
			if ev.GetAccountId() == id && core[ev.GetEvent()] {
				perDay[ev.GetEventTime().AsTime().UTC().Truncate(24*time.Hour)]++
			}
			last = ev.GetEventTime().AsTime()
		}
	}

	resp, err := f.client.GetAccountActivity(ctx, &scoringv1.GetAccountActivityRequest{AccountId: id})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetDays()) != 30 {
		t.Fatalf("%d days by default, want 30", len(resp.GetDays()))
	}
	var total int64
	for i, d := range resp.GetDays() {
		day := d.GetDay().AsTime()
		if i > 0 && !day.Equal(resp.GetDays()[i-1].GetDay().AsTime().Add(24*time.Hour)) {
			t.Fatalf("day %d is %v: not the day after the one before", i, day)
		}
		if d.GetCoreEvents() != perDay[day] {
			t.Fatalf("%v: %d core events, published %d", day, d.GetCoreEvents(), perDay[day])
		}
		total += d.GetCoreEvents()
	}
	if total == 0 {
		t.Fatal("no core events in 30 days of a healthy account")
	}
	if wd := resp.GetWatermark().AsTime().UTC().Truncate(24 * time.Hour); !wd.Equal(resp.GetDays()[29].GetDay().AsTime()) {
		t.Fatalf("last day %v, watermark's %v", resp.GetDays()[29].GetDay().AsTime(), wd)
	}
	if n := len(resp.GetKeyEvents()); n != 1 || resp.GetKeyEvents()[0].GetKind() != scoringv1.KeyEventKind_KEY_EVENT_KIND_FIRST_EVENT {
		t.Fatalf("key events before any were published: %v", resp.GetKeyEvents())
	}

	// A failed payment and a ticket, a minute before the history's end.
	at := timestamppb.New(last.Add(-time.Minute))
	props, _ := structpb.NewStruct(map[string]any{scorecard.PropertyTicketID: "T-7", scorecard.PropertySeverity: "urgent"})
	publishBatches(t, f.js, f.tenant, []*eventv1.EventBatch{{Events: []*eventv1.Event{
		{TenantId: f.tenant, MessageId: "key-1", Type: eventv1.EventType_EVENT_TYPE_TRACK, UserId: id + "-u0", AccountId: id, Event: scorecard.EventPaymentFailed, EventTime: at},
		{TenantId: f.tenant, MessageId: "key-2", Type: eventv1.EventType_EVENT_TYPE_TRACK, UserId: id + "-u0", AccountId: id, Event: scorecard.EventTicketOpened, EventTime: at, Properties: props},
	}}})
	waitFor(t, "the key events", func() bool {
		resp, err = f.client.GetAccountActivity(ctx, &scoringv1.GetAccountActivityRequest{AccountId: id, Days: 7})
		return err == nil && len(resp.GetKeyEvents()) == 3
	})
	if len(resp.GetDays()) != 7 {
		t.Fatalf("%d days, asked for 7", len(resp.GetDays()))
	}
	kinds := map[scoringv1.KeyEventKind]*scoringv1.KeyEvent{}
	for _, k := range resp.GetKeyEvents() {
		kinds[k.GetKind()] = k
	}
	if b := kinds[scoringv1.KeyEventKind_KEY_EVENT_KIND_BILLING]; b.GetName() != scorecard.EventPaymentFailed || !b.GetTime().AsTime().Equal(at.AsTime().Truncate(time.Second)) {
		t.Fatalf("billing key event %v, want %s at %v", b, scorecard.EventPaymentFailed, at.AsTime())
	}
	if k := kinds[scoringv1.KeyEventKind_KEY_EVENT_KIND_TICKET_OPENED]; k == nil || !strings.Contains(k.GetDetail(), "severe") {
		t.Fatalf("ticket key event %v", k)
	}

	for _, tc := range []struct {
		name   string
		client scoringv1.ScoringServiceClient
		req    *scoringv1.GetAccountActivityRequest
		code   codes.Code
		fields []string
	}{
		{"another tenant's account", f.other, &scoringv1.GetAccountActivityRequest{AccountId: id}, codes.NotFound, nil},
		{"unknown account", f.client, &scoringv1.GetAccountActivityRequest{AccountId: "nope"}, codes.NotFound, nil},
		{"no account, too many days", f.client, &scoringv1.GetAccountActivityRequest{Days: 91}, codes.InvalidArgument, []string{"account_id", "days"}},
		{"negative days", f.client, &scoringv1.GetAccountActivityRequest{AccountId: id, Days: -1}, codes.InvalidArgument, []string{"days"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.client.GetAccountActivity(ctx, tc.req)
			if status.Code(err) != tc.code {
				t.Fatalf("code %v (%v), want %v", status.Code(err), err, tc.code)
			}
			for _, field := range tc.fields {
				if !hasViolation(err, field) {
					t.Fatalf("no field violation for %s in %v", field, err)
				}
			}
		})
	}
}
