// Package cache is the hot score cache: each account's current health score
// with its explanation, the tenant's rankings (worst first, biggest drop
// first) with an index per filter value, band counts, and each account's
// recent score history. The scoring service writes every score change here,
// and ScoringService reads only from here.
//
// Two implementations have one method set and one behaviour, held together by
// one conformance suite: [Redis], for microservice mode and anything that
// scales out (Redis Cluster included), and [Memory], the in-process cache the
// all-in-one uses when no Redis address is given. Losing either loses nothing:
// scores are rebuilt from the streams.
//
// # Rankings and page tokens
//
// A ranking orders a tenant's accounts by a sort key (score, or drop_7d), ties
// broken by account id (byte order), so the order is total and stable. Filter
// indexes are rankings restricted to one value of a filter (band, tier, owner,
// stage, segment), kept for both sort keys.
//
// A page token holds the sort key and account id of the last account
// returned (not an offset), so accounts updated between pages never make an
// unchanged account be skipped or repeated; an account that moves may of
// course show up at its new place. A token is bound to its query: used with
// other filters or another order it is rejected with [ErrBadPageToken].
package cache

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"math"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

var (
	// ErrNotFound is returned when an account has no score.
	ErrNotFound = errors.New("score not found")
	// ErrBadPageToken is wrapped by errors for page tokens that are malformed
	// or belong to another query.
	ErrBadPageToken = errors.New("bad page token")
)

// Update is one account's new current score for PutScores. Record also adds
// it to the account's history: the scoring service sets it for exactly the
// changes it publishes on the SCORES stream (first score, a real move, a
// band, stage or scorecard change), so the cache's history is the newest
// part of that stream, and rescoring an account that did not move only
// refreshes its current score.
type Update struct {
	Score  *scoringv1.HealthScore
	Record bool
}

// Config configures either implementation.
type Config struct {
	// KeyPrefix starts every Redis key; "lodestar" when empty. Memory has no
	// keys and ignores it.
	KeyPrefix string
	// HistoryLength is how many recorded changes are kept per account;
	// DefaultHistoryLength when zero. Older history lives in the durable
	// SCORES stream. In Redis an account's history costs up to HistoryLength
	// encoded scores.
	HistoryLength int
}

// DefaultHistoryLength is the history kept per account unless configured.
const DefaultHistoryLength = 100

// DefaultConfig returns the defaults.
func DefaultConfig() Config { return Config{HistoryLength: DefaultHistoryLength} }

// RegisterFlags registers the configuration as -<prefix>.* flags (the
// runner's prefix is "cache"), with c's values as defaults.
func (c *Config) RegisterFlags(prefix string, fs *flag.FlagSet) {
	fs.IntVar(&c.HistoryLength, prefix+".history-length", c.HistoryLength, "Score changes kept per account in the cache; older ones are read from the SCORES stream.")
}

func (c Config) withDefaults() Config {
	if c.KeyPrefix == "" {
		c.KeyPrefix = "lodestar"
	}
	if c.HistoryLength <= 0 {
		c.HistoryLength = DefaultHistoryLength
	}
	return c
}

// ListQuery selects and orders a page of a tenant's scores. Zero-valued
// filters match everything.
type ListQuery struct {
	Band       scoringv1.Band
	Tier       accountv1.Tier
	OwnerCSMID string
	Segment    string
	Stage      accountv1.LifecycleStage
	// Order is score ascending (worst first) when unspecified; DROP is the
	// biggest drop_7d first. Ties are broken by account id, reversed with
	// the order for SCORE_DESCENDING.
	Order scoringv1.ListHealthScoresOrder
	// PageSize is 100 when zero, at most 1000.
	PageSize  int
	PageToken string
}

// HistoryQuery selects a page of an account's score changes, newest first.
type HistoryQuery struct {
	// Start and End bound score_time to [Start, End), at microsecond
	// precision; a zero time leaves its side open.
	Start, End time.Time
	// PageSize is 100 when zero, at most 1000.
	PageSize  int
	PageToken string
}

const (
	defaultPageSize = 100
	maxPageSize     = 1000
	// scanChunk is how many entries a list with several filters reads at a
	// time from the index it walks, since only some of them match.
	scanChunk = 256
)

func pageSize(n int) int {
	if n <= 0 {
		return defaultPageSize
	}
	return min(n, maxPageSize)
}

// The sort keys of the rankings; every index exists for both.
const (
	byScore = "score"
	byDrop  = "drop"
)

func sortKey(order string, s *scoringv1.HealthScore) float64 {
	if order == byDrop {
		return s.GetDrop_7D()
	}
	return s.GetScore()
}

// ranking names a ranking: the global one of an order, or with an index
// suffix the one restricted to a filter value.
func ranking(order, suffix string) string { return order + suffix }

// cursor is a place in a ranking: a sort key and an account id. Cursors
// order as rankings do, so one is also an entry of a Memory ranking.
type cursor struct {
	key     float64
	account string
}

func (c cursor) less(d cursor) bool {
	return c.key < d.key || c.key == d.key && c.account < d.account
}

func (c cursor) encode() []byte {
	return append(binary.BigEndian.AppendUint64(nil, math.Float64bits(c.key)), c.account...)
}

func decodeCursor(b []byte) (cursor, error) {
	if len(b) <= 8 {
		return cursor{}, errors.New("malformed")
	}
	return cursor{math.Float64frombits(binary.BigEndian.Uint64(b)), string(b[8:])}, nil
}

// index is a score's place in one filter dimension: the dimension's name and
// the suffix of its rankings there, "" for a zero value, which is never
// indexed because an empty filter matches everything.
type index struct{ dim, suffix string }

const numDims = 5

// indexesOf lists a score's indexes, one per dimension, always in the same
// order.
func indexesOf(s *scoringv1.HealthScore) [numDims]index {
	return [numDims]index{
		enumIndex("band", int32(s.GetBand())),
		enumIndex("tier", int32(s.GetTier())),
		stringIndex("owner", s.GetOwnerCsmId()),
		enumIndex("stage", int32(s.GetLifecycleStage())),
		stringIndex("segment", s.GetSegment()),
	}
}

func enumIndex(dim string, v int32) index {
	if v == 0 {
		return index{dim: dim}
	}
	return index{dim, ":" + dim + ":" + strconv.Itoa(int(v))}
}

func stringIndex(dim, v string) index {
	if v == "" {
		return index{dim: dim}
	}
	return index{dim, ":" + dim + ":" + escape(v)}
}

// filters are a query's indexes: a score matches the query when it is in
// each of them. Deriving them from a score keeps filtering and indexing one
// definition.
func (q ListQuery) filters() [numDims]index {
	return indexesOf(&scoringv1.HealthScore{
		Band:           q.Band,
		Tier:           q.Tier,
		OwnerCsmId:     q.OwnerCSMID,
		LifecycleStage: q.Stage,
		Segment:        q.Segment,
	})
}

func matches(filters [numDims]index, s *scoringv1.HealthScore) bool {
	have := indexesOf(s)
	for i, f := range filters {
		if f.suffix != "" && f.suffix != have[i].suffix {
			return false
		}
	}
	return true
}

// rank returns the ranking a query walks and whether it walks it backwards.
func (q ListQuery) rank() (order string, rev bool, err error) {
	switch q.Order {
	case scoringv1.ListHealthScoresOrder_LIST_HEALTH_SCORES_ORDER_UNSPECIFIED,
		scoringv1.ListHealthScoresOrder_LIST_HEALTH_SCORES_ORDER_SCORE_ASCENDING:
		return byScore, false, nil
	case scoringv1.ListHealthScoresOrder_LIST_HEALTH_SCORES_ORDER_SCORE_DESCENDING:
		return byScore, true, nil
	case scoringv1.ListHealthScoresOrder_LIST_HEALTH_SCORES_ORDER_DROP:
		return byDrop, false, nil
	}
	return "", false, fmt.Errorf("unknown order %v", q.Order)
}

// escape makes s safe inside a key name: bytes other than ASCII letters,
// digits, '.', '_' and '-' become %XX, so no id can contain ':' or a brace and
// fake another key or the tenant's hash tag.
func escape(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !plain(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		if c := s[i]; plain(c) {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

func plain(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
}

// changeTime is a score's score_time in Unix microseconds: exact as a Redis
// sorted-set score (a float64) for the next two centuries.
func changeTime(s *scoringv1.HealthScore) int64 { return s.GetScoreTime().AsTime().UnixMicro() }

func validate(updates []Update) error {
	for i, u := range updates {
		s := u.Score
		if s.GetTenantId() == "" || s.GetAccountId() == "" {
			return fmt.Errorf("score %d has no tenant or account id", i)
		}
		if math.IsNaN(s.GetScore()) || math.IsNaN(s.GetDrop_7D()) {
			return fmt.Errorf("score %d of %q is not a number", i, s.GetAccountId())
		}
	}
	return nil
}

// marshal encodes a score deterministically, so an identical change always
// has identical bytes: re-putting it, as a replay does, adds no history.
func marshal(s *scoringv1.HealthScore) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(s)
}

func unmarshal(b []byte) (*scoringv1.HealthScore, error) {
	s := new(scoringv1.HealthScore)
	if err := proto.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("decode score: %w", err)
	}
	return s, nil
}

// store is what the read paths shared by both implementations need, each
// implementation serving it from its own ordered structures.
type store interface {
	// cards returns the sizes of a tenant's rankings.
	cards(ctx context.Context, tenant string, rankings []string) ([]int64, error)
	// scan returns up to n entries of a ranking after a cursor, or from its
	// start when after is nil, backwards when rev is set.
	scan(ctx context.Context, tenant, ranking string, after *cursor, rev bool, n int) ([]entry, error)
	// changes returns up to n of an account's changes with change time in
	// [lo, hi], newest first, after skipping offset of them.
	changes(ctx context.Context, tenant, account string, hi, lo int64, offset, n int) ([]change, error)
}

// entry is a place in a ranking with the account's current score, nil when
// the score is gone (a Redis read sees index and values a moment apart).
type entry struct {
	at    cursor
	score *scoringv1.HealthScore
}

// change is one score in an account's history.
type change struct {
	micros int64
	score  *scoringv1.HealthScore
}

// listScores serves ListScores. With no filter it walks the global ranking
// and with one filter that filter's index: O(log N + page) either way. With
// several it takes the smallest of their indexes (one ZCARD each) and checks
// the other filters on each stored score it walks, which costs up to that
// index's size when matches are rare: the most selective filter bounds it.
func listScores(ctx context.Context, s store, tenant string, q ListQuery) ([]*scoringv1.HealthScore, string, error) {
	order, rev, err := q.rank()
	if err != nil {
		return nil, "", fmt.Errorf("list scores: %w", err)
	}
	filters := q.filters()
	fp := fingerprint("list %q %s %t %q", tenant, order, rev, filters)
	var after *cursor
	if q.PageToken != "" {
		c, err := decodeToken(q.PageToken, fp, decodeCursor)
		if err != nil {
			return nil, "", fmt.Errorf("list scores: %w", err)
		}
		after = &c
	}
	var names []string
	for _, f := range filters {
		if f.suffix != "" {
			names = append(names, ranking(order, f.suffix))
		}
	}
	name := ranking(order, "")
	switch len(names) {
	case 0:
	case 1:
		name = names[0]
	default:
		sizes, err := s.cards(ctx, tenant, names)
		if err != nil {
			return nil, "", fmt.Errorf("list scores: %w", err)
		}
		best := 0
		for i, n := range sizes {
			if n < sizes[best] {
				best = i
			}
		}
		name = names[best]
	}

	size := pageSize(q.PageSize)
	var (
		out  []*scoringv1.HealthScore
		last cursor // place of out's last score
	)
	for {
		// One more than the page, to know whether another page follows.
		n := size + 1 - len(out)
		if len(names) > 1 {
			n = max(n, scanChunk)
		}
		es, err := s.scan(ctx, tenant, name, after, rev, n)
		if err != nil {
			return nil, "", fmt.Errorf("list scores: %w", err)
		}
		for _, e := range es {
			// Checked for every index: Redis reads an index and the scores
			// in two steps, and an account may move in between.
			if e.score == nil || !matches(filters, e.score) {
				continue
			}
			if len(out) == size {
				return out, encodeToken(fp, last.encode()), nil
			}
			out, last = append(out, e.score), e.at
		}
		if len(es) < n {
			return out, "", nil
		}
		after = &es[len(es)-1].at
	}
}

// bandCounts serves BandCounts from the sizes of the band indexes, which
// cannot drift from the scores they index.
func bandCounts(ctx context.Context, s store, tenant string) (*scoringv1.BandCounts, error) {
	bands := []scoringv1.Band{scoringv1.Band_BAND_RED, scoringv1.Band_BAND_YELLOW, scoringv1.Band_BAND_GREEN}
	names := make([]string, len(bands))
	for i, b := range bands {
		names[i] = ranking(byScore, enumIndex("band", int32(b)).suffix)
	}
	n, err := s.cards(ctx, tenant, names)
	if err != nil {
		return nil, fmt.Errorf("band counts: %w", err)
	}
	return &scoringv1.BandCounts{Red: n[0], Yellow: n[1], Green: n[2]}, nil
}

// historyCursor is a place in an account's history: the change time of the
// last change returned, and how many changes of that very time were returned
// so far. Newer changes never shift it, and several changes in one
// microsecond are rare enough for that count to stay tiny.
type historyCursor struct {
	micros int64
	seen   int
}

func (c historyCursor) encode() []byte {
	return binary.AppendUvarint(binary.BigEndian.AppendUint64(nil, uint64(c.micros)), uint64(c.seen))
}

func decodeHistoryCursor(b []byte) (historyCursor, error) {
	if len(b) < 9 {
		return historyCursor{}, errors.New("malformed")
	}
	n, k := binary.Uvarint(b[8:])
	if k <= 0 || 8+k != len(b) || n > math.MaxInt32 {
		return historyCursor{}, errors.New("malformed")
	}
	return historyCursor{int64(binary.BigEndian.Uint64(b)), int(n)}, nil
}

// scoreHistory serves History.
func scoreHistory(ctx context.Context, s store, tenant, account string, q HistoryQuery) ([]*scoringv1.HealthScore, string, error) {
	hi, lo := int64(math.MaxInt64), int64(math.MinInt64)
	if !q.End.IsZero() {
		hi = q.End.UnixMicro() - 1
	}
	if !q.Start.IsZero() {
		lo = q.Start.UnixMicro()
	}
	fp := fingerprint("history %q %q %d %d", tenant, account, lo, hi)
	offset := 0
	if q.PageToken != "" {
		c, err := decodeToken(q.PageToken, fp, decodeHistoryCursor)
		if err != nil {
			return nil, "", fmt.Errorf("score history: %w", err)
		}
		hi, offset = c.micros, c.seen
	}
	size := pageSize(q.PageSize)
	cs, err := s.changes(ctx, tenant, account, hi, lo, offset, size+1)
	if err != nil {
		return nil, "", fmt.Errorf("score history: %w", err)
	}
	out := make([]*scoringv1.HealthScore, 0, min(len(cs), size))
	for _, c := range cs[:min(len(cs), size)] {
		out = append(out, c.score)
	}
	if len(cs) <= size {
		return out, "", nil
	}
	next := historyCursor{micros: cs[size-1].micros}
	for _, c := range cs[:size] {
		if c.micros == next.micros {
			next.seen++
		}
	}
	if next.micros == hi {
		next.seen += offset
	}
	return out, encodeToken(fp, next.encode()), nil
}

// A page token is the unpadded base64url of a version byte, the fingerprint
// of the query it continues, and the cursor.
const tokenVersion = 1

func fingerprint(format string, args ...any) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, format, args...)
	return h.Sum64()
}

func encodeToken(fp uint64, cursor []byte) string {
	b := binary.BigEndian.AppendUint64([]byte{tokenVersion}, fp)
	return base64.RawURLEncoding.EncodeToString(append(b, cursor...))
}

// decodeToken returns a token's cursor, checking that it belongs to the
// query with fingerprint fp; its errors wrap ErrBadPageToken.
func decodeToken[C any](tok string, fp uint64, decodeCursor func([]byte) (C, error)) (C, error) {
	var c C
	b, err := base64.RawURLEncoding.DecodeString(tok)
	switch {
	case err != nil:
	case len(b) < 9 || b[0] != tokenVersion:
		err = errors.New("malformed")
	case binary.BigEndian.Uint64(b[1:9]) != fp:
		err = errors.New("issued for another query")
	default:
		c, err = decodeCursor(b[9:])
	}
	if err != nil {
		return c, fmt.Errorf("%w: %w", ErrBadPageToken, err)
	}
	return c, nil
}

func cloneAll(scores []*scoringv1.HealthScore) []*scoringv1.HealthScore {
	for i, s := range scores {
		if s != nil {
			scores[i] = proto.Clone(s).(*scoringv1.HealthScore)
		}
	}
	return scores
}
