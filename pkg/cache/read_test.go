package cache

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// TestRedisGetScoreEncoded checks that the encoded read is what GetScore
// decodes, byte for byte what a put stored, and that it fails as GetScore
// does.
func TestRedisGetScoreEncoded(t *testing.T) {
	ctx := context.Background()
	client := testenv.Redis(t)
	tenant := testenv.Tenant(t)
	cleanupKeys(t, client, "readtest:{"+tenant+"}*")
	c := NewRedis(client, Config{KeyPrefix: "readtest"})

	hs := &scoringv1.HealthScore{
		TenantId: tenant, AccountId: "acct/1 é", Score: 61.5, Band: scoringv1.Band_BAND_YELLOW,
		ScoreTime: timestamppb.New(time.Date(2026, 3, 1, 12, 3, 0, 0, time.UTC)), Summary: "-4.0 to 61.5 yellow: recency -4.0",
		Measures: []*scoringv1.MeasureResult{
			{Name: "recency", HasData: true, RawValue: 9, SubScore: 40, Weight: 10, EffectiveWeight: 0.5, Contribution: 20, Detail: "last seen 9 days ago"},
			{Name: "nps", Weight: 10, Detail: "no answers"},
		},
	}
	if err := c.PutScores(ctx, []Update{{Score: hs, Record: true}}); err != nil {
		t.Fatal(err)
	}
	b, err := c.GetScoreEncoded(ctx, tenant, hs.GetAccountId())
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := marshal(hs); string(b) != string(want) {
		t.Errorf("encoded score is not the stored encoding")
	}
	var got scoringv1.HealthScore
	if err := proto.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	decoded, err := c.GetScore(ctx, tenant, hs.GetAccountId())
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&got, decoded) || !proto.Equal(&got, hs) {
		t.Errorf("encoded score decodes to %v, GetScore gives %v, want %v", &got, decoded, hs)
	}

	if _, err := c.GetScoreEncoded(ctx, tenant, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing account: %v, want ErrNotFound", err)
	}
	if _, err := c.GetScoreEncoded(ctx, "other"+tenant, hs.GetAccountId()); !errors.Is(err, ErrNotFound) {
		t.Errorf("other tenant: %v, want ErrNotFound", err)
	}

	// A value that is not protobuf fails, as GetScore's decoding does.
	if err := client.Set(ctx, c.scoreKey(tenant, "garbled"), "\x0a\xff\xff", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetScoreEncoded(ctx, tenant, "garbled"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("garbled value: %v, want a decoding error", err)
	}
	if _, err := c.GetScore(ctx, tenant, "garbled"); err == nil {
		t.Errorf("GetScore of a garbled value succeeded")
	}
}

func TestCheckWire(t *testing.T) {
	b, err := marshal(&scoringv1.HealthScore{TenantId: "t", AccountId: "a", Score: 50,
		Measures: []*scoringv1.MeasureResult{{Name: "m", Detail: "d"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"score", b, true},
		{"empty", nil, true},
		{"truncated", b[:len(b)-1], false},
		{"bad tag", append([]byte{0x00}, b...), false},
		{"length past the end", []byte{0x12, 0x7f, 'a'}, false},
	} {
		if err := checkWire(tc.b); (err == nil) != tc.ok {
			t.Errorf("%s: checkWire = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}
