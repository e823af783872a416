package main

import (
	"bytes"
	"context"
	"flag"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const testKey = "ak_test_0123456789abcdef"

// fakeScoring serves fixed scores, worst first, as the cache would.
type fakeScoring struct {
	scoringv1.UnimplementedScoringServiceServer
	scores []*scoringv1.HealthScore
}

func (f *fakeScoring) ListHealthScores(_ context.Context, req *scoringv1.ListHealthScoresRequest) (*scoringv1.ListHealthScoresResponse, error) {
	resp := &scoringv1.ListHealthScoresResponse{BandCounts: &scoringv1.BandCounts{}}
	for _, s := range f.scores {
		switch s.Band {
		case scoringv1.Band_BAND_RED:
			resp.BandCounts.Red++
		case scoringv1.Band_BAND_YELLOW:
			resp.BandCounts.Yellow++
		case scoringv1.Band_BAND_GREEN:
			resp.BandCounts.Green++
		}
		if (req.Band == 0 || s.Band == req.Band) && len(resp.Scores) < int(req.PageSize) {
			resp.Scores = append(resp.Scores, s)
		}
	}
	return resp, nil
}

func (f *fakeScoring) GetHealthScore(_ context.Context, req *scoringv1.GetHealthScoreRequest) (*scoringv1.GetHealthScoreResponse, error) {
	for _, s := range f.scores {
		if s.AccountId == req.AccountId {
			return &scoringv1.GetHealthScoreResponse{Score: s}, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "no score for account %q yet", req.AccountId)
}

func (f *fakeScoring) GetAccountActivity(_ context.Context, req *scoringv1.GetAccountActivityRequest) (*scoringv1.GetAccountActivityResponse, error) {
	if _, err := f.GetHealthScore(context.Background(), &scoringv1.GetHealthScoreRequest{AccountId: req.AccountId}); err != nil {
		return nil, err
	}
	resp := &scoringv1.GetAccountActivityResponse{Watermark: at(0)}
	for i := range req.Days {
		day := timestamppb.New(day0.Truncate(24*time.Hour).AddDate(0, 0, int(i-req.Days+1)))
		resp.Days = append(resp.Days, &scoringv1.ActivityDay{Day: day, CoreEvents: int64(1200 * i)})
	}
	resp.KeyEvents = []*scoringv1.KeyEvent{
		{Time: at(-1), Kind: scoringv1.KeyEventKind_KEY_EVENT_KIND_BILLING, Name: "Payment Failed"},
		{Time: timestamppb.New(day0.Truncate(24*time.Hour).AddDate(0, 0, -2)), Kind: scoringv1.KeyEventKind_KEY_EVENT_KIND_NPS, Name: "NPS Submitted", Detail: "mean 4.0 of 1 answers", DayOnly: true},
	}
	return resp, nil
}

func (f *fakeScoring) GetScoreHistory(_ context.Context, req *scoringv1.GetScoreHistoryRequest) (*scoringv1.GetScoreHistoryResponse, error) {
	cur, err := f.GetHealthScore(context.Background(), &scoringv1.GetHealthScoreRequest{AccountId: req.AccountId})
	if err != nil {
		return nil, err
	}
	s := cur.Score
	hist := []*scoringv1.HealthScore{
		s,
		{ScoreTime: at(-1), Score: s.PreviousScore, Band: scoringv1.Band_BAND_YELLOW, Delta: -9.5, Summary: "-9.5 to 45.5 yellow: core_usage -6.0 (20 → 8 events/wk)"},
		{ScoreTime: at(-2), Score: 55, Band: scoringv1.Band_BAND_YELLOW, ScorecardVersion: 2, ScorecardChanged: true, Summary: "scored under scorecard version 2"},
	}
	return &scoringv1.GetScoreHistoryResponse{Scores: hist[:min(len(hist), int(req.PageSize))]}, nil
}

type fakeAccounts struct {
	accountv1.UnimplementedAccountServiceServer
}

func (fakeAccounts) ListAccounts(_ context.Context, req *accountv1.ListAccountsRequest) (*accountv1.ListAccountsResponse, error) {
	all := []*accountv1.Account{
		{AccountId: "acct-00001", Name: "Northwind Logistics", Tier: accountv1.Tier_TIER_BENCHMARK, LifecycleStage: accountv1.LifecycleStage_LIFECYCLE_STAGE_ADOPTION,
			SeatsPurchased: 140, Arr: &accountv1.Money{CurrencyCode: "USD", Units: 134400}, Owner: &accountv1.Owner{CsmId: "csm-01", Name: "Alex Morgan"}, RenewalTime: at(200)},
		{AccountId: "acct-00002", Name: "Bluepeak Foods", Tier: accountv1.Tier_TIER_STANDARD, LifecycleStage: accountv1.LifecycleStage_LIFECYCLE_STAGE_PRE_RENEWAL,
			SeatsPurchased: 9, Arr: &accountv1.Money{CurrencyCode: "USD", Units: 4320}, Owner: &accountv1.Owner{CsmId: "csm-05"}, RenewalTime: at(40)},
		{AccountId: "acct-00003"},
	}
	// Two per page, to exercise paging.
	start := 0
	if req.PageToken != "" {
		start = 2
	}
	end := min(start+2, len(all), start+int(req.PageSize))
	resp := &accountv1.ListAccountsResponse{Accounts: all[start:end]}
	if end < len(all) {
		resp.NextPageToken = "next"
	}
	return resp, nil
}

// day0 is the fixed clock of the test data.
var day0 = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

// fixedClock is lodestarctl's now in the tests: relative times are stable.
func fixedClock() time.Time { return day0 }

func at(days int) *timestamppb.Timestamp { return timestamppb.New(day0.AddDate(0, 0, days)) }

func testScores() []*scoringv1.HealthScore {
	return []*scoringv1.HealthScore{
		{
			AccountId: "acct-00042", AccountName: "Stonegate Health", Score: 18.6, Band: scoringv1.Band_BAND_RED,
			PreviousScore: 31.2, Delta: -12.6, ScoreTime: at(0), ScorecardVersion: 2,
			LifecycleStage: accountv1.LifecycleStage_LIFECYCLE_STAGE_PRE_RENEWAL, Tier: accountv1.Tier_TIER_GROWTH,
			OwnerCsmId: "csm-03", Segment: "mid-market", Arr: &accountv1.Money{CurrencyCode: "USD", Units: 1234567}, RenewalTime: at(60), Drop_7D: -26.4,
			Summary: "-12.6 to 18.6 red: recency -7.5 (7 → 14 days since the last event), active_seats -5.1 (9 → 2 of 30 seats active)",
			Measures: []*scoringv1.MeasureResult{
				{Name: "active_seats", HasData: true, RawValue: 0.0667, SubScore: 10, Weight: 20, EffectiveWeight: 0.2105, Contribution: 2.1, Detail: "2 of 30 seats active"},
				{Name: "recency", HasData: true, RawValue: 14, SubScore: 10, Weight: 10, EffectiveWeight: 0.1053, Contribution: 1.05, Detail: "14 days since the last core event"},
				{Name: "nps", Weight: 5},
			},
			Attributions: []*scoringv1.Attribution{{Measure: "recency", Points: -7.5}, {Measure: "active_seats", Points: -5.1}},
			Notes:        []string{"nps left out (no data); its weight is spread over the other measures"},
		},
		{AccountId: "acct-00007", AccountName: "Redwood Labs", Score: 52.4, Band: scoringv1.Band_BAND_YELLOW, Delta: 1.2, Summary: "+1.2 to 52.4 yellow: core_usage +1.2 (10 → 12 events/wk)"},
		{AccountId: "acct-00001", AccountName: "Northwind Logistics", Score: 91, Band: scoringv1.Band_BAND_GREEN, Summary: "first score 91.0 green"},
	}
}

// serve starts the fake services on a local port; calls need the test key.
func serve(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		if !slices.Equal(md.Get("authorization"), []string{"Bearer " + testKey}) {
			return nil, status.Error(codes.Unauthenticated, "unknown API key")
		}
		return h(ctx, req)
	}))
	scoringv1.RegisterScoringServiceServer(srv, &fakeScoring{scores: testScores()})
	accountv1.RegisterAccountServiceServer(srv, fakeAccounts{})
	go srv.Serve(lis) //nolint:errcheck // Serve returns when the test stops the server.
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func TestCommands(t *testing.T) {
	addr := serve(t)
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"worst", []string{"worst"}, 0},
		{"worst_red", []string{"worst", "-band", "red", "-n", "5"}, 0},
		{"worst_n1", []string{"worst", "-n", "1"}, 0},
		{"score", []string{"score", "acct-00042"}, 0},
		{"history", []string{"history", "acct-00042", "-n", "3"}, 0},
		{"activity", []string{"activity", "acct-00042", "-days", "3"}, 0},
		{"activity_bad_days", []string{"activity", "acct-00042", "-days", "91"}, 2},
		{"activity_unknown", []string{"activity", "acct-99999"}, 1},
		{"accounts", []string{"accounts"}, 0},
		{"accounts_n1", []string{"accounts", "-n", "1"}, 0},
		{"score_unknown", []string{"score", "acct-99999"}, 1},
		{"wrong_key", []string{"-api-key", "ak_wrong_0123456789", "worst"}, 1},
		{"no_account", []string{"score"}, 2},
		{"bad_band", []string{"worst", "-band", "blue"}, 2},
		{"unknown_command", []string{"best"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"-addr", addr, "-api-key", testKey, "-tz", "UTC"}, tt.args...)
			code := run(context.Background(), args, &stdout, &stderr, fixedClock)
			if code != tt.code {
				t.Errorf("exit code %d, want %d; stderr: %s", code, tt.code, stderr.String())
			}
			golden(t, tt.name, append(stdout.Bytes(), stderr.Bytes()...))
		})
	}
}

// TestAPIKeyFromEnvironment checks that LODESTAR_API_KEY stands in for
// -api-key, and that no key at all is a usage error.
func TestAPIKeyFromEnvironment(t *testing.T) {
	addr := serve(t)
	var stdout, stderr bytes.Buffer
	t.Setenv("LODESTAR_API_KEY", "")
	if code := run(context.Background(), []string{"-addr", addr, "worst"}, &stdout, &stderr, fixedClock); code != 2 {
		t.Errorf("without a key: exit code %d, want 2", code)
	}
	t.Setenv("LODESTAR_API_KEY", testKey)
	if code := run(context.Background(), []string{"-addr", addr, "worst", "-n", "1"}, &stdout, &stderr, fixedClock); code != 0 {
		t.Errorf("with LODESTAR_API_KEY: exit code %d, want 0; stderr: %s", code, stderr.String())
	}
}

// golden compares got with testdata/name.golden, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestParseUntil(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	for _, tc := range []struct {
		in   string
		want time.Time
		err  bool
	}{
		{in: "72h", want: day0.Add(72 * time.Hour)},
		{in: "2026-03-24", want: time.Date(2026, 3, 24, 0, 0, 0, 0, berlin)},
		{in: "2026-03-24T09:30", want: time.Date(2026, 3, 24, 9, 30, 0, 0, berlin)},
		{in: "2026-03-24 09:30", want: time.Date(2026, 3, 24, 9, 30, 0, 0, berlin)},
		{in: "2026-03-24T09:30:00Z", want: time.Date(2026, 3, 24, 9, 30, 0, 0, time.UTC)},
		{in: "-1h", err: true},
		{in: "next week", err: true},
	} {
		got, err := parseUntil(tc.in, day0, berlin)
		if (err != nil) != tc.err || !got.Equal(tc.want) {
			t.Errorf("parseUntil(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// TestJSON checks that -json, before or after the command, prints the
// response in the proto3 JSON mapping.
func TestJSON(t *testing.T) {
	addr := serve(t)
	for _, args := range [][]string{{"-json", "worst", "-n", "2"}, {"worst", "-n", "2", "--json"}} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), append([]string{"-addr", addr, "-api-key", testKey}, args...), &stdout, &stderr, fixedClock); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr.String())
		}
		var got scoringv1.ListHealthScoresResponse
		if err := protojson.Unmarshal(stdout.Bytes(), &got); err != nil {
			t.Fatalf("%v: %v:\n%s", args, err, stdout.String())
		}
		want := &scoringv1.ListHealthScoresResponse{Scores: testScores()[:2], BandCounts: &scoringv1.BandCounts{Red: 1, Yellow: 1, Green: 1}}
		if !proto.Equal(&got, want) {
			t.Errorf("%v: got %v, want %v", args, &got, want)
		}
	}
}
