package cache

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// cache is the method set both implementations share, as the scoring
// service declares it.
type cache interface {
	PutScores(ctx context.Context, updates []Update) error
	SetScores(ctx context.Context, updates []Update) error
	IndexScores(ctx context.Context, updates []Update) error
	GetScore(ctx context.Context, tenant, accountID string) (*scoringv1.HealthScore, error)
	GetScores(ctx context.Context, tenant string, accountIDs []string) ([]*scoringv1.HealthScore, error)
	ListScores(ctx context.Context, tenant string, q ListQuery) ([]*scoringv1.HealthScore, string, error)
	BandCounts(ctx context.Context, tenant string) (*scoringv1.BandCounts, error)
	History(ctx context.Context, tenant, accountID string, q HistoryQuery) ([]*scoringv1.HealthScore, string, error)
	Ping(ctx context.Context) error
}

var (
	_ cache = (*Redis)(nil)
	_ cache = (*Memory)(nil)
)

// implementation opens a cache for a test of tenant.
type implementation struct {
	name string
	open func(t *testing.T, cfg Config, tenant string) cache
}

// implementations are both caches, Redis on one server and on a Redis
// Cluster started for t (where a multi-key command across slots fails with
// CROSSSLOT); Redis on the shared server deletes the keys of the test's
// tenant (and of the tenants it prefixes) when the test ends.
func implementations(t *testing.T) []implementation {
	cluster := testenv.RedisCluster(t).Client(t)
	return []implementation{
		{"Redis", func(t *testing.T, cfg Config, tenant string) cache {
			client := testenv.Redis(t)
			cleanupKeys(t, client, cfg.withDefaults().KeyPrefix+":{"+tenant+"*")
			return NewRedis(client, cfg)
		}},
		{"RedisCluster", func(_ *testing.T, cfg Config, _ string) cache { return NewRedis(cluster, cfg) }},
		{"Memory", func(_ *testing.T, cfg Config, _ string) cache { return NewMemory(cfg) }},
	}
}

func cleanupKeys(t testing.TB, client *redis.Client, pattern string) {
	t.Cleanup(func() {
		ctx := context.Background() // the test's context is done by now
		iter := client.Scan(ctx, 0, pattern, 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("scan %s: %v", pattern, err)
		}
		for chunk := range slices.Chunk(keys, 1000) {
			if err := client.Unlink(ctx, chunk...).Err(); err != nil {
				t.Errorf("unlink: %v", err)
			}
		}
	})
}

// TestConformance runs every case against both implementations.
func TestConformance(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		run  func(t *testing.T, c cache, tenant string)
	}{
		{"get and batch get", Config{}, testGet},
		{"list order and ties", Config{}, testOrder},
		{"filters", Config{}, testFilters},
		{"account moves between indexes", Config{}, testMoves},
		{"paging while others change", Config{}, testPagingUnderUpdates},
		{"bad page token", Config{}, testBadPageToken},
		{"history", Config{}, testHistory},
		{"history cap", Config{HistoryLength: 3}, testHistoryCap},
		{"updates not recorded", Config{}, testUnrecorded},
		{"set now, index later", Config{}, testSetThenIndex},
		{"tenant isolation", Config{}, testTenantIsolation},
		{"ping", Config{}, func(t *testing.T, c cache, _ string) {
			if err := c.Ping(t.Context()); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, impl := range implementations(t) {
		t.Run(impl.name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tenant := testenv.Tenant(t)
					tc.run(t, impl.open(t, tc.cfg, tenant), tenant)
				})
			}
		})
	}
}

// at is the i-th minute of the test's clock.
func at(i int) time.Time { return time.Date(2026, 3, 1, 12, i, 0, 0, time.UTC) }

func score(tenant, account string, v float64, edit ...func(*scoringv1.HealthScore)) *scoringv1.HealthScore {
	s := &scoringv1.HealthScore{
		TenantId:  tenant,
		AccountId: account,
		Score:     v,
		Band:      bandOf(v),
		ScoreTime: timestamppb.New(at(0)),
		Summary:   fmt.Sprintf("%s at %g", account, v),
	}
	for _, e := range edit {
		e(s)
	}
	return s
}

func bandOf(v float64) scoringv1.Band {
	switch {
	case v < 40:
		return scoringv1.Band_BAND_RED
	case v < 70:
		return scoringv1.Band_BAND_YELLOW
	}
	return scoringv1.Band_BAND_GREEN
}

// put stores scores as changes, recorded in history.
func put(t *testing.T, c cache, scores ...*scoringv1.HealthScore) {
	t.Helper()
	if err := c.PutScores(t.Context(), recorded(scores...)); err != nil {
		t.Fatal(err)
	}
}

// recorded makes scores updates recorded in history.
func recorded(scores ...*scoringv1.HealthScore) []Update {
	us := make([]Update, len(scores))
	for i, s := range scores {
		us[i] = Update{Score: s, Record: true}
	}
	return us
}

func ids(scores []*scoringv1.HealthScore) []string {
	out := make([]string, len(scores))
	for i, s := range scores {
		out[i] = s.GetAccountId()
	}
	return out
}

// listAll pages through a query, checking page sizes, and returns the ids in
// order; between pages it runs between, with the page's number and last id.
func listAll(t *testing.T, c cache, tenant string, q ListQuery, between func(page int, last string)) []string {
	t.Helper()
	var all []string
	for page := 0; ; page++ {
		if page > 1000 {
			t.Fatal("paging does not end")
		}
		scores, next, err := c.ListScores(t.Context(), tenant, q)
		if err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		if len(scores) > pageSize(q.PageSize) {
			t.Fatalf("page %d has %d scores, page size %d", page, len(scores), q.PageSize)
		}
		all = append(all, ids(scores)...)
		if next == "" {
			return all
		}
		q.PageToken = next
		if between != nil {
			between(page, all[len(all)-1])
		}
	}
}

func testGet(t *testing.T, c cache, tenant string) {
	a := score(tenant, "a", 61.5, func(s *scoringv1.HealthScore) {
		s.Measures = []*scoringv1.MeasureResult{{Name: "core_usage", HasData: true, RawValue: 12, SubScore: 60, Weight: 3, Contribution: 30}}
		s.Arr = &accountv1.Money{CurrencyCode: "EUR", Units: 12000}
	})
	odd := score(tenant, "b/ü {x}:1 %41", 20) // escaping must keep it apart from "A"
	plainA := score(tenant, "A", 90)
	put(t, c, a, odd, plainA)
	ctx := t.Context()

	for _, want := range []*scoringv1.HealthScore{a, odd, plainA} {
		got, err := c.GetScore(ctx, tenant, want.AccountId)
		if err != nil {
			t.Fatalf("get %q: %v", want.AccountId, err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("get %q = %v, want %v", want.AccountId, got, want)
		}
	}
	if _, err := c.GetScore(ctx, tenant, "missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get missing: err = %v, want ErrNotFound", err)
	}

	got, err := c.GetScores(ctx, tenant, []string{"a", "missing", odd.AccountId, "A"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || !proto.Equal(got[0], a) || got[1] != nil || !proto.Equal(got[2], odd) || !proto.Equal(got[3], plainA) {
		t.Fatalf("batch get = %v", got)
	}
	if got, err := c.GetScores(ctx, tenant, nil); err != nil || len(got) != 0 {
		t.Fatalf("empty batch get = %v, %v", got, err)
	}
	for _, bad := range []*scoringv1.HealthScore{nil, score(tenant, "", 1), score("", "a", 1), score(tenant, "a", math.NaN())} {
		if err := c.PutScores(ctx, recorded(bad)); err == nil {
			t.Errorf("put %v: no error", bad)
		}
	}

	// Neither the caller's scores nor returned ones alias the cache's.
	a.Score = 0
	got[0].Summary = "changed"
	if again, _ := c.GetScore(ctx, tenant, "a"); again.Score != 61.5 || again.Summary != "a at 61.5" {
		t.Fatalf("cache state changed through a proto: %v", again)
	}
}

func testOrder(t *testing.T, c cache, tenant string) {
	drop := func(d float64) func(*scoringv1.HealthScore) {
		return func(s *scoringv1.HealthScore) { s.Drop_7D = d }
	}
	put(t, c,
		score(tenant, "a", 50, drop(-5)),
		score(tenant, "b", 20, drop(-10)),
		score(tenant, "c", 50, drop(-10)),
		score(tenant, "d", 80, drop(0)),
		score(tenant, "e", 20, drop(-5)),
		score(tenant, "f", 100, drop(-1*0.0)), // negative zero ranks with zero
		score(tenant, "g", -3, drop(-2)),
	)
	for _, tc := range []struct {
		order scoringv1.ListHealthScoresOrder
		want  []string
	}{
		{scoringv1.ListHealthScoresOrder_LIST_HEALTH_SCORES_ORDER_UNSPECIFIED, []string{"g", "b", "e", "a", "c", "d", "f"}},
		{scoringv1.ListHealthScoresOrder_LIST_HEALTH_SCORES_ORDER_SCORE_ASCENDING, []string{"g", "b", "e", "a", "c", "d", "f"}},
		{scoringv1.ListHealthScoresOrder_LIST_HEALTH_SCORES_ORDER_SCORE_DESCENDING, []string{"f", "d", "c", "a", "e", "b", "g"}},
		{scoringv1.ListHealthScoresOrder_LIST_HEALTH_SCORES_ORDER_DROP, []string{"b", "c", "a", "e", "g", "d", "f"}},
	} {
		for _, size := range []int{0, 1, 2, 7} {
			if got := listAll(t, c, tenant, ListQuery{Order: tc.order, PageSize: size}, nil); !slices.Equal(got, tc.want) {
				t.Errorf("%v, page size %d: %v, want %v", tc.order, size, got, tc.want)
			}
		}
	}
	if _, _, err := c.ListScores(t.Context(), tenant, ListQuery{Order: 99}); err == nil {
		t.Error("unknown order: no error")
	}
}

// fixture is n accounts spread over every filter value, zero values
// included, with many tied scores.
func fixture(tenant string, n int) []*scoringv1.HealthScore {
	owners := []string{"", "csm-1", "csm/2 ü", "{csm}:3"}
	segments := []string{"", "smb", "mid market", "ent:{x}"}
	scores := make([]*scoringv1.HealthScore, n)
	for i := range scores {
		scores[i] = score(tenant, fmt.Sprintf("acct-%03d", i), float64(i*37%23*4), func(s *scoringv1.HealthScore) {
			s.Drop_7D = -float64(i * 7 % 10)
			s.Tier = accountv1.Tier(i % 4)
			s.OwnerCsmId = owners[i/2%4]
			s.LifecycleStage = accountv1.LifecycleStage(i % 6)
			s.Segment = segments[i/3%4]
		})
	}
	return scores
}

// expect is the list a query must return, computed the obvious way.
func expect(scores []*scoringv1.HealthScore, q ListQuery) []string {
	var out []*scoringv1.HealthScore
	for _, s := range scores {
		if (q.Band == 0 || s.Band == q.Band) && (q.Tier == 0 || s.Tier == q.Tier) &&
			(q.OwnerCSMID == "" || s.OwnerCsmId == q.OwnerCSMID) && (q.Stage == 0 || s.LifecycleStage == q.Stage) &&
			(q.Segment == "" || s.Segment == q.Segment) {
			out = append(out, s)
		}
	}
	key := func(s *scoringv1.HealthScore) float64 { return s.Score }
	if q.Order == scoringv1.ListHealthScoresOrder_LIST_HEALTH_SCORES_ORDER_DROP {
		key = func(s *scoringv1.HealthScore) float64 { return s.Drop_7D }
	}
	sort.Slice(out, func(i, j int) bool {
		if key(out[i]) != key(out[j]) {
			return key(out[i]) < key(out[j])
		}
		return out[i].AccountId < out[j].AccountId
	})
	if q.Order == scoringv1.ListHealthScoresOrder_LIST_HEALTH_SCORES_ORDER_SCORE_DESCENDING {
		slices.Reverse(out)
	}
	return ids(out)
}

func testFilters(t *testing.T, c cache, tenant string) {
	scores := fixture(tenant, 120)
	put(t, c, scores...)
	queries := []ListQuery{
		{},
		{Band: scoringv1.Band_BAND_RED},
		{Band: scoringv1.Band_BAND_GREEN},
		{Tier: accountv1.Tier_TIER_GROWTH},
		{OwnerCSMID: "csm/2 ü"},
		{OwnerCSMID: "{csm}:3"},
		{Stage: accountv1.LifecycleStage_LIFECYCLE_STAGE_PRE_RENEWAL},
		{Segment: "mid market"},
		{Segment: "ent:{x}"},
		{Band: scoringv1.Band_BAND_YELLOW, Tier: accountv1.Tier_TIER_STANDARD},
		{OwnerCSMID: "csm-1", Segment: "smb", Stage: accountv1.LifecycleStage_LIFECYCLE_STAGE_ONBOARDING},
		{Band: scoringv1.Band_BAND_RED, Tier: accountv1.Tier_TIER_BENCHMARK, OwnerCSMID: "csm/2 ü", Stage: accountv1.LifecycleStage_LIFECYCLE_STAGE_ADOPTION, Segment: "mid market"},
		{OwnerCSMID: "nobody"},
		{OwnerCSMID: "csm-1", Segment: "nothing"},
	}
	for _, q := range queries {
		for _, order := range []scoringv1.ListHealthScoresOrder{1, 2, 3} {
			q.Order, q.PageSize = order, 7
			want := expect(scores, q)
			if got := listAll(t, c, tenant, q, nil); !slices.Equal(got, want) {
				t.Errorf("%+v:\n got %v\nwant %v", q, got, want)
			}
		}
	}
	// Filters over more accounts than one scan chunk.
	many := fixture(tenant, 2*scanChunk+50)
	put(t, c, many...)
	q := ListQuery{OwnerCSMID: "csm-1", Segment: "smb", PageSize: 5}
	if got, want := listAll(t, c, tenant, q, nil), expect(many, q); !slices.Equal(got, want) {
		t.Errorf("%+v:\n got %v\nwant %v", q, got, want)
	}
}

func testMoves(t *testing.T, c cache, tenant string) {
	ctx := t.Context()
	before := score(tenant, "x", 10, func(s *scoringv1.HealthScore) {
		s.Tier, s.OwnerCsmId, s.LifecycleStage, s.Segment, s.Drop_7D = accountv1.Tier_TIER_BENCHMARK, "o1", accountv1.LifecycleStage_LIFECYCLE_STAGE_ONBOARDING, "s1", -30
	})
	after := score(tenant, "x", 90, func(s *scoringv1.HealthScore) {
		s.Tier, s.OwnerCsmId, s.LifecycleStage, s.Segment, s.Drop_7D = accountv1.Tier_TIER_GROWTH, "o2", accountv1.LifecycleStage_LIFECYCLE_STAGE_ADOPTION, "s2", 0
	})
	other := score(tenant, "y", 50, func(s *scoringv1.HealthScore) { s.OwnerCsmId = "o1" })
	put(t, c, before, other)
	put(t, c, after)
	put(t, c, after) // again: nothing changes

	counts, err := c.BandCounts(ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	if counts.Red != 0 || counts.Yellow != 1 || counts.Green != 1 {
		t.Fatalf("band counts = %v, want 0 red, 1 yellow, 1 green", counts)
	}
	for _, tc := range []struct {
		q    ListQuery
		want []string
	}{
		{ListQuery{Band: scoringv1.Band_BAND_RED}, nil},
		{ListQuery{Band: scoringv1.Band_BAND_GREEN}, []string{"x"}},
		{ListQuery{Tier: accountv1.Tier_TIER_BENCHMARK}, nil},
		{ListQuery{Tier: accountv1.Tier_TIER_GROWTH}, []string{"x"}},
		{ListQuery{OwnerCSMID: "o1"}, []string{"y"}},
		{ListQuery{OwnerCSMID: "o2"}, []string{"x"}},
		{ListQuery{Stage: accountv1.LifecycleStage_LIFECYCLE_STAGE_ONBOARDING}, nil},
		{ListQuery{Segment: "s1"}, nil},
		{ListQuery{Segment: "s2", OwnerCSMID: "o2"}, []string{"x"}},
		{ListQuery{Order: scoringv1.ListHealthScoresOrder_LIST_HEALTH_SCORES_ORDER_DROP}, []string{"x", "y"}},
		{ListQuery{Order: scoringv1.ListHealthScoresOrder_LIST_HEALTH_SCORES_ORDER_DROP, OwnerCSMID: "o2"}, []string{"x"}},
		{ListQuery{}, []string{"y", "x"}},
	} {
		if got := listAll(t, c, tenant, tc.q, nil); !slices.Equal(got, tc.want) {
			t.Errorf("%+v: %v, want %v", tc.q, got, tc.want)
		}
	}

	// Leaving a dimension (no owner any more) leaves its index too.
	put(t, c, score(tenant, "x", 90, func(s *scoringv1.HealthScore) { s.Tier = accountv1.Tier_TIER_GROWTH }))
	if got := listAll(t, c, tenant, ListQuery{OwnerCSMID: "o2"}, nil); len(got) != 0 {
		t.Errorf("owner o2 after x lost its owner: %v", got)
	}

	// Band counts stay exact over many moves.
	scores := fixture(tenant, 90)
	put(t, c, scores...)
	for i, s := range scores {
		s.Score = float64(100 - i)
		s.Band = bandOf(s.Score)
	}
	put(t, c, scores...)
	want := &scoringv1.BandCounts{}
	for _, s := range append(scores, other, after) {
		switch s.Band {
		case scoringv1.Band_BAND_RED:
			want.Red++
		case scoringv1.Band_BAND_YELLOW:
			want.Yellow++
		case scoringv1.Band_BAND_GREEN:
			want.Green++
		}
	}
	if counts, err := c.BandCounts(ctx, tenant); err != nil || !proto.Equal(counts, want) {
		t.Fatalf("band counts = %v, %v; want %v", counts, err, want)
	}
}

func testPagingUnderUpdates(t *testing.T, c cache, tenant string) {
	stable := map[string]*scoringv1.HealthScore{}
	for i := range 40 {
		s := score(tenant, fmt.Sprintf("stable-%02d", i), float64(10+i/3*5), func(s *scoringv1.HealthScore) {
			s.OwnerCsmId, s.Segment = "keep", "smb"
		})
		stable[s.AccountId] = s
		put(t, c, s)
	}
	queries := []ListQuery{
		{PageSize: 6},
		{PageSize: 6, Order: scoringv1.ListHealthScoresOrder_LIST_HEALTH_SCORES_ORDER_SCORE_DESCENDING},
		{PageSize: 6, OwnerCSMID: "keep"},
		{PageSize: 6, OwnerCSMID: "keep", Segment: "smb"},
	}
	for qi, q := range queries {
		moved := map[string]bool{}
		// Between pages, new accounts land before and after the cursor,
		// other accounts jump around the ranking, and every other time the
		// cursor's own account moves.
		between := func(page int, last string) {
			var churn []*scoringv1.HealthScore
			for k := range 5 {
				churn = append(churn,
					score(tenant, fmt.Sprintf("new-%d-%d-%d", qi, page, k), float64(page*k%100)),
					score(tenant, fmt.Sprintf("churn-%d", k), float64((page*31+k*17)%100), func(s *scoringv1.HealthScore) { s.Segment = "smb" }))
			}
			if s := stable[last]; s != nil && page%2 == 0 {
				s.Score = float64(page * 13 % 100)
				moved[last] = true
				churn = append(churn, s)
			}
			put(t, c, churn...)
		}
		seen := map[string]int{}
		for _, id := range listAll(t, c, tenant, q, between) {
			seen[id]++
		}
		for id := range stable {
			if !moved[id] && seen[id] != 1 || seen[id] > 2 {
				t.Errorf("%+v: %s (moved: %t) listed %d times", q, id, moved[id], seen[id])
			}
		}
		if len(moved) == 0 {
			t.Errorf("%+v: no cursor moved", q)
		}
	}
}

func testBadPageToken(t *testing.T, c cache, tenant string) {
	ctx := t.Context()
	put(t, c, fixture(tenant, 5)...)
	_, next, err := c.ListScores(ctx, tenant, ListQuery{PageSize: 2})
	if err != nil || next == "" {
		t.Fatalf("first page: %q, %v", next, err)
	}
	for _, tc := range []struct {
		name string
		q    ListQuery
	}{
		{"not base64", ListQuery{PageToken: "!!!"}},
		{"junk", ListQuery{PageToken: "AAAA"}},
		{"truncated", ListQuery{PageToken: next[:len(next)-12]}},
		{"other order", ListQuery{PageToken: next, Order: scoringv1.ListHealthScoresOrder_LIST_HEALTH_SCORES_ORDER_DROP}},
		{"other filter", ListQuery{PageToken: next, Tier: accountv1.Tier_TIER_GROWTH}},
	} {
		if _, _, err := c.ListScores(ctx, tenant, tc.q); !errors.Is(err, ErrBadPageToken) {
			t.Errorf("list, %s: err = %v, want ErrBadPageToken", tc.name, err)
		}
	}
	for _, tok := range []string{"!!!", "AAAA", next} {
		if _, _, err := c.History(ctx, tenant, "acct-000", HistoryQuery{PageToken: tok}); !errors.Is(err, ErrBadPageToken) {
			t.Errorf("history, token %q: err = %v, want ErrBadPageToken", tok, err)
		}
	}
}

// changeAt is a change of account "acct" at the i-th minute.
func changeAt(tenant string, i int, v float64) *scoringv1.HealthScore {
	return score(tenant, "acct", v, func(s *scoringv1.HealthScore) { s.ScoreTime = timestamppb.New(at(i)) })
}

func history(t *testing.T, c cache, tenant string, q HistoryQuery, between func()) []*scoringv1.HealthScore {
	t.Helper()
	var all []*scoringv1.HealthScore
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("paging does not end")
		}
		page, next, err := c.History(t.Context(), tenant, "acct", q)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > pageSize(q.PageSize) {
			t.Fatalf("page of %d, page size %d", len(page), q.PageSize)
		}
		all = append(all, page...)
		if next == "" {
			return all
		}
		q.PageToken = next
		if between != nil {
			between()
		}
	}
}

func testHistory(t *testing.T, c cache, tenant string) {
	var puts []*scoringv1.HealthScore
	for i := 1; i <= 8; i++ {
		puts = append(puts, changeAt(tenant, i, float64(10*i)))
	}
	puts = append(puts, changeAt(tenant, 4, 41), changeAt(tenant, 4, 42)) // three changes at minute 4
	put(t, c, puts[:5]...)
	put(t, c, puts[5:]...)
	put(t, c, puts[2], puts[7]) // replayed: no new entries

	all := history(t, c, tenant, HistoryQuery{}, nil)
	if len(all) != len(puts) {
		t.Fatalf("history has %d changes, want %d", len(all), len(puts))
	}
	for i, s := range all {
		if i > 0 && s.ScoreTime.AsTime().After(all[i-1].ScoreTime.AsTime()) {
			t.Fatalf("history not newest first at %d: %v", i, all)
		}
		if !slices.ContainsFunc(puts, func(c *scoringv1.HealthScore) bool { return proto.Equal(c, s) }) {
			t.Fatalf("history has unknown change %v", s)
		}
	}

	// Pages, even with new changes arriving between them, concatenate to
	// the same history.
	next := 9
	paged := history(t, c, tenant, HistoryQuery{PageSize: 2}, func() {
		put(t, c, changeAt(tenant, next, 1))
		next++
	})
	if !slices.EqualFunc(paged, all, func(a, b *scoringv1.HealthScore) bool { return proto.Equal(a, b) }) {
		t.Fatalf("paged history:\n%v\nwant\n%v", ids(paged), ids(all))
	}

	// [minute 3, minute 6): minutes 5, 4, 4, 4, 3.
	window := history(t, c, tenant, HistoryQuery{Start: at(3), End: at(6), PageSize: 1}, nil)
	var minutes []int
	for _, s := range window {
		minutes = append(minutes, s.ScoreTime.AsTime().Minute())
	}
	if !slices.Equal(minutes, []int{5, 4, 4, 4, 3}) {
		t.Fatalf("history in [3, 6) has minutes %v", minutes)
	}

	if got, err := c.GetScore(t.Context(), tenant, "acct"); err != nil || got.Score != 1 {
		t.Fatalf("current score = %v, %v; want the last put", got, err)
	}
	if page, next, err := c.History(t.Context(), tenant, "nobody", HistoryQuery{}); err != nil || len(page) != 0 || next != "" {
		t.Fatalf("history of an unknown account = %v, %q, %v", page, next, err)
	}
}

func testHistoryCap(t *testing.T, c cache, tenant string) {
	for i := 1; i <= 6; i++ {
		put(t, c, changeAt(tenant, i, float64(i)))
	}
	put(t, c, changeAt(tenant, 0, 0)) // older than everything kept: dropped at once
	var got []float64
	for _, s := range history(t, c, tenant, HistoryQuery{}, nil) {
		got = append(got, s.Score)
	}
	if !slices.Equal(got, []float64{6, 5, 4}) {
		t.Fatalf("capped history = %v, want [6 5 4]", got)
	}
}

// testUnrecorded checks that an update not marked for history changes the
// current score and its rankings but not the history.
func testUnrecorded(t *testing.T, c cache, tenant string) {
	ctx := t.Context()
	put(t, c, changeAt(tenant, 1, 10))
	if err := c.PutScores(ctx, []Update{{Score: changeAt(tenant, 2, 80)}}); err != nil {
		t.Fatal(err)
	}
	if got, err := c.GetScore(ctx, tenant, "acct"); err != nil || got.Score != 80 {
		t.Fatalf("current score = %v, %v; want 80", got, err)
	}
	if got := listAll(t, c, tenant, ListQuery{Band: scoringv1.Band_BAND_GREEN}, nil); !slices.Equal(got, []string{"acct"}) {
		t.Fatalf("green list = %v", got)
	}
	if counts, err := c.BandCounts(ctx, tenant); err != nil || counts.Red != 0 || counts.Green != 1 {
		t.Fatalf("band counts = %v, %v", counts, err)
	}
	put(t, c, changeAt(tenant, 3, 90))
	var minutes []int
	for _, s := range history(t, c, tenant, HistoryQuery{}, nil) {
		minutes = append(minutes, s.ScoreTime.AsTime().Minute())
	}
	if !slices.Equal(minutes, []int{3, 1}) {
		t.Fatalf("history has minutes %v, want [3 1]", minutes)
	}
}

// testSetThenIndex checks the scoring service's two steps: SetScores makes
// a score current at once without recording it, and IndexScores then ranks
// and records it, never moving the current score back to an older one.
func testSetThenIndex(t *testing.T, c cache, tenant string) {
	ctx := t.Context()
	older, newer := recorded(changeAt(tenant, 1, 10)), recorded(changeAt(tenant, 2, 80))
	if err := c.SetScores(ctx, older); err != nil {
		t.Fatal(err)
	}
	if err := c.SetScores(ctx, newer); err != nil {
		t.Fatal(err)
	}
	if got, err := c.GetScore(ctx, tenant, "acct"); err != nil || got.Score != 80 {
		t.Fatalf("current score after set = %v, %v; want 80", got, err)
	}
	if h := history(t, c, tenant, HistoryQuery{}, nil); len(h) != 0 {
		t.Fatalf("history after set = %v, want none", h)
	}
	// The older update indexed late, as the index step lags the set step.
	if err := c.IndexScores(ctx, older); err != nil {
		t.Fatal(err)
	}
	if got, err := c.GetScore(ctx, tenant, "acct"); err != nil || got.Score != 80 {
		t.Fatalf("current score after indexing an older one = %v, %v; want 80", got, err)
	}
	if err := c.IndexScores(ctx, newer); err != nil {
		t.Fatal(err)
	}
	if got := listAll(t, c, tenant, ListQuery{Band: scoringv1.Band_BAND_GREEN}, nil); !slices.Equal(got, []string{"acct"}) {
		t.Fatalf("green list = %v", got)
	}
	if counts, err := c.BandCounts(ctx, tenant); err != nil || counts.Red != 0 || counts.Green != 1 {
		t.Fatalf("band counts = %v, %v", counts, err)
	}
	var scores []float64
	for _, s := range history(t, c, tenant, HistoryQuery{}, nil) {
		scores = append(scores, s.Score)
	}
	if !slices.Equal(scores, []float64{80, 10}) {
		t.Fatalf("history = %v, want [80 10]", scores)
	}
}

func testTenantIsolation(t *testing.T, c cache, tenant string) {
	ctx := t.Context()
	// Unescaped, other's account "a" and tenant's account "x}:score:a"
	// would share one key.
	other := tenant + "}:score:x"
	put(t, c, score(tenant, "a", 10), score(tenant, "b", 80), score(tenant, "x}:score:a", 30))
	put(t, c, score(other, "a", 55), score(other, "c", 20))

	if got, _ := c.GetScore(ctx, tenant, "x}:score:a"); got.GetScore() != 30 {
		t.Errorf("tenant's x}:score:a = %v", got)
	}
	if got, _ := c.GetScore(ctx, other, "a"); got.GetScore() != 55 {
		t.Errorf("other tenant's a = %v", got)
	}
	if _, err := c.GetScore(ctx, tenant, "c"); !errors.Is(err, ErrNotFound) {
		t.Errorf("other tenant's account: err = %v", err)
	}
	if got, _ := c.GetScores(ctx, tenant, []string{"a", "c"}); got[0].GetScore() != 10 || got[1] != nil {
		t.Errorf("batch get = %v", got)
	}
	if got := listAll(t, c, tenant, ListQuery{}, nil); !slices.Equal(got, []string{"a", "x}:score:a", "b"}) {
		t.Errorf("list = %v", got)
	}
	if got := listAll(t, c, other, ListQuery{Band: scoringv1.Band_BAND_RED}, nil); !slices.Equal(got, []string{"c"}) {
		t.Errorf("other tenant's red list = %v", got)
	}
	if counts, _ := c.BandCounts(ctx, tenant); counts.Red != 2 || counts.Yellow != 0 || counts.Green != 1 {
		t.Errorf("band counts = %v", counts)
	}
	if h, _, _ := c.History(ctx, tenant, "a", HistoryQuery{}); len(h) != 1 || h[0].Score != 10 {
		t.Errorf("history = %v", h)
	}
}

// TestRedisKeys checks the key layout: every key in the tenant's hash tag,
// and an account's old index sets gone once it moves.
func TestRedisKeys(t *testing.T) {
	client, tenant := testenv.Redis(t), testenv.Tenant(t)
	cleanupKeys(t, client, "lodestar:{"+tenant+"}:*")
	c := NewRedis(client, Config{})
	put(t, c, score(tenant, "a/1", 10, func(s *scoringv1.HealthScore) { s.OwnerCsmId = "o:1" }))
	put(t, c, score(tenant, "a/1", 90, func(s *scoringv1.HealthScore) { s.OwnerCsmId = "o:2" }))

	keys, err := client.Keys(t.Context(), "lodestar:{"+tenant+"}:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	k := "lodestar:{" + tenant + "}:"
	want := []string{
		k + "acct:a%2F1", k + "hist:a%2F1",
		k + "rank:drop", k + "rank:drop:band:3", k + "rank:drop:owner:o%3A2",
		k + "rank:score", k + "rank:score:band:3", k + "rank:score:owner:o%3A2",
		k + "score:a%2F1",
	}
	if !slices.Equal(keys, want) {
		t.Fatalf("keys:\n%v\nwant\n%v", keys, want)
	}
}

// TestRedisReloadsScript checks that puts survive a server that does not
// know the script (after a restart or SCRIPT FLUSH), without flushing the
// shared server's scripts: a fresh comment makes a script it cannot know.
func TestRedisReloadsScript(t *testing.T) {
	client, tenant := testenv.Redis(t), testenv.Tenant(t)
	cleanupKeys(t, client, "lodestar:{"+tenant+"}:*")
	c := NewRedis(client, Config{})
	c.put = redis.NewScript(putScript + "-- " + tenant + "\n")
	put(t, c, score(tenant, "a", 10))
	if got, err := c.GetScore(t.Context(), tenant, "a"); err != nil || got.Score != 10 {
		t.Fatalf("get = %v, %v", got, err)
	}
}

// TestRedisPutsInChunks puts more updates than one pipeline carries: every
// one is stored, across the chunks' boundaries.
func TestRedisPutsInChunks(t *testing.T) {
	client, tenant := testenv.Redis(t), testenv.Tenant(t)
	cleanupKeys(t, client, "lodestar:{"+tenant+"}:*")
	c := NewRedis(client, Config{HistoryLength: 2})
	n := 2*putChunk + 1
	ids := make([]string, n)
	var updates []Update
	for i := range n {
		ids[i] = fmt.Sprintf("acct-%05d", i)
		updates = append(updates, Update{Score: score(tenant, ids[i], float64(i%100)), Record: true})
	}
	if err := c.PutScores(t.Context(), updates); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetScores(t.Context(), tenant, ids)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range got {
		if s.GetAccountId() != ids[i] {
			t.Fatalf("score %d: got %v", i, s)
		}
	}
	counts, err := c.BandCounts(t.Context(), tenant)
	if err != nil {
		t.Fatal(err)
	}
	if total := counts.Red + counts.Yellow + counts.Green; total != int64(n) {
		t.Errorf("band counts %v: %d accounts ranked, want %d", counts, total, n)
	}
}
