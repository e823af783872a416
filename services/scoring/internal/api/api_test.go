package api

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/pkg/auth"
	"github.com/lodestar-cs/lodestar/pkg/cache"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

func testScore(tenant, account string) *scoringv1.HealthScore {
	hs := &scoringv1.HealthScore{TenantId: tenant, AccountId: account, Score: 72.5, Band: scoringv1.Band_BAND_GREEN,
		ScoreTime: timestamppb.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)),
		Summary:   "+3.1 to 72.5 green: core_usage +2.0 (18 → 22 events/wk)"}
	for _, name := range []string{"active_seats", "core_usage", "nps"} {
		hs.Measures = append(hs.Measures, &scoringv1.MeasureResult{Name: name, HasData: name != "nps", RawValue: 12,
			SubScore: 70, Weight: 10, EffectiveWeight: 0.1, Contribution: 7, Detail: "12 of 20 seats active in 14 days"})
	}
	return hs
}

// TestEncodedScoreResponse checks that a response carrying an encoded score
// is, on the wire, the response with that score set.
func TestEncodedScoreResponse(t *testing.T) {
	det := proto.MarshalOptions{Deterministic: true}
	for name, hs := range map[string]*scoringv1.HealthScore{
		"full":  testScore("acme", "acct-1"),
		"empty": {}, // encodes to no bytes at all
	} {
		enc, err := det.Marshal(hs)
		if err != nil {
			t.Fatal(err)
		}
		got, err := det.Marshal(encodedScoreResponse(enc))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := det.Marshal(&scoringv1.GetHealthScoreResponse{Score: hs})
		if !bytes.Equal(got, want) {
			t.Errorf("%s: encoded response is\n%x, want\n%x", name, got, want)
		}
		var resp scoringv1.GetHealthScoreResponse
		if err := proto.Unmarshal(got, &resp); err != nil {
			t.Fatal(err)
		}
		if resp.GetScore() == nil || !proto.Equal(resp.GetScore(), hs) || len(resp.ProtoReflect().GetUnknown()) != 0 {
			t.Errorf("%s: decoded response %v, want score %v", name, &resp, hs)
		}
	}
}

// encodedOnly is a cache whose encoded reads fail with err.
type encodedOnly struct {
	Reader
	err error
}

func (e encodedOnly) GetScoreEncoded(context.Context, string, string) ([]byte, error) {
	return nil, e.err
}

// TestGetHealthScore reads scores over gRPC from Redis (encoded) and from
// the in-process cache (decoded): the client sees the same.
func TestGetHealthScore(t *testing.T) {
	ctx := context.Background()
	rc := testenv.Redis(t)
	tenant, other := testenv.Tenant(t), testenv.Tenant(t)
	t.Cleanup(func() {
		for _, tn := range []string{tenant, other} {
			keys, _ := rc.Keys(context.Background(), "apitest:{"+tn+"}*").Result()
			if len(keys) > 0 {
				rc.Del(context.Background(), keys...)
			}
		}
	})
	hs := testScore(tenant, "acct/1")
	redisCache := cache.NewRedis(rc, cache.Config{KeyPrefix: "apitest"})
	memCache := cache.NewMemory(cache.Config{})
	for _, c := range []interface {
		PutScores(context.Context, []cache.Update) error
	}{redisCache, memCache} {
		if err := c.PutScores(ctx, []cache.Update{{Score: hs}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := Reader(redisCache).(EncodedReader); !ok {
		t.Fatal("pkg/cache's Redis is not an EncodedReader")
	}

	for _, tc := range []struct {
		name string
		c    Reader
	}{{"redis", redisCache}, {"memory", memCache}} {
		t.Run(tc.name, func(t *testing.T) {
			client, otherClient := serve(t, tc.c, tenant, other)
			resp, err := client.GetHealthScore(ctx, &scoringv1.GetHealthScoreRequest{AccountId: hs.GetAccountId()})
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(resp.GetScore(), hs) {
				t.Errorf("score %v, want %v", resp.GetScore(), hs)
			}
			_, err = client.GetHealthScore(ctx, &scoringv1.GetHealthScoreRequest{AccountId: "nobody"})
			if status.Code(err) != codes.NotFound {
				t.Errorf("unknown account: %v, want NotFound", err)
			}
			// The tenant comes from the credential: another tenant's key
			// does not reach this tenant's scores.
			_, err = otherClient.GetHealthScore(ctx, &scoringv1.GetHealthScoreRequest{AccountId: hs.GetAccountId()})
			if status.Code(err) != codes.NotFound {
				t.Errorf("other tenant: %v, want NotFound", err)
			}
			_, err = client.GetHealthScore(ctx, &scoringv1.GetHealthScoreRequest{})
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || len(st.Details()) != 1 {
				t.Fatalf("no account id: %v, want InvalidArgument with details", err)
			}
			if br, ok := st.Details()[0].(*errdetails.BadRequest); !ok || br.GetFieldViolations()[0].GetField() != "account_id" {
				t.Errorf("details %v, want a BadRequest on account_id", st.Details())
			}
		})
	}

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			err  error
			want codes.Code
		}{
			{errors.New("connection refused"), codes.Unavailable},
			{context.DeadlineExceeded, codes.DeadlineExceeded},
			{cache.ErrNotFound, codes.NotFound},
		} {
			s := New(encodedOnly{err: tc.err}, nil, nil, 1, testLogger())
			_, err := s.GetHealthScore(auth.WithTenant(ctx, tenant), &scoringv1.GetHealthScoreRequest{AccountId: "a"})
			if status.Code(err) != tc.want {
				t.Errorf("cache error %v: %v, want %v", tc.err, err, tc.want)
			}
		}
		s := New(encodedOnly{}, nil, nil, 1, testLogger())
		if _, err := s.GetHealthScore(ctx, &scoringv1.GetHealthScoreRequest{AccountId: "a"}); status.Code(err) != codes.Unauthenticated {
			t.Errorf("no tenant: %v, want Unauthenticated", err)
		}
	})
}

// serve runs the API on c behind API-key auth and returns clients of tenant
// and of other.
func serve(t *testing.T, c Reader, tenant, other string) (scoringv1.ScoringServiceClient, scoringv1.ScoringServiceClient) {
	t.Helper()
	key := func(tn string) string { return "ak_" + tn + "_0123456789" }
	reg, err := auth.NewRegistry([]auth.Tenant{{ID: tenant, APIKeys: []string{key(tenant)}}, {ID: other, APIKeys: []string{key(other)}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(reg.UnaryServerInterceptor(nil)))
	scoringv1.RegisterScoringServiceServer(srv, New(c, nil, nil, 1, testLogger()))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	dial := func(tn string) scoringv1.ScoringServiceClient {
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(auth.BearerCredentials{Key: key(tn), Insecure: true}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return scoringv1.NewScoringServiceClient(conn)
	}
	return dial(tenant), dial(other)
}

func testLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
