package cache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/redis/go-redis/v9"

	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// Redis is the cache in Redis or Redis Cluster. Every key of a tenant
// carries the hash tag {tenant}, so a tenant lives in one slot and its
// scripts and multi-key reads never cross slots. Keys, with <t> the escaped
// tenant and <id> the escaped account id:
//
//	<prefix>:{<t>}:score:<id>   string: the current HealthScore (proto binary)
//	<prefix>:{<t>}:acct:<id>    hash: the account's index per dimension, so a move finds its old sets
//	<prefix>:{<t>}:hist:<id>    sorted set: past HealthScores scored by score_time in µs, capped
//	<prefix>:{<t>}:rank:score   sorted set: account ids scored by score
//	<prefix>:{<t>}:rank:drop    sorted set: account ids scored by drop_7d
//	<prefix>:{<t>}:rank:<score|drop>:<dim>:<value>
//	                            the same for one filter value; dim is band, tier or
//	                            stage (enum numbers), owner or segment (escaped)
//
// A sorted set orders equal scores by member bytes, which makes (sort key,
// account id) the rankings' native order. A score change is one ZADD per
// ranking the account is in whose sort key changed (up to six per order),
// plus a ZREM per index it leaves.
type Redis struct {
	client redis.UniversalClient
	// gets serves single-score reads: go-redis's autopipeliner (marked
	// experimental in go-redis v9.23), which sends the GETs of concurrent
	// callers as one pipeline (one write, one read and one Redis wake-up for
	// many) and a lone caller's at once; GetHealthScore with 64 clients went
	// from 0.28 to 0.39 of raw GET throughput with it. The client itself
	// when it has none.
	gets          redis.Cmdable
	prefix        string
	historyLength int
	put, page     *redis.Script
	// fence and set are a Fenced cache's (fence.go): put is then fenced too.
	fence *Fence
	set   *redis.Script
}

// NewRedis returns the cache in the Redis behind client, which may be a
// cluster client.
func NewRedis(client redis.UniversalClient, cfg Config) *Redis {
	cfg = cfg.withDefaults()
	var gets redis.Cmdable = client
	if c, ok := client.(interface {
		AutoPipeline() (*redis.AutoPipeliner, error)
	}); ok {
		if ap, err := c.AutoPipeline(); err == nil {
			gets = ap
		}
	}
	return &Redis{
		client:        client,
		gets:          gets,
		prefix:        cfg.KeyPrefix,
		historyLength: cfg.HistoryLength,
		put:           redis.NewScript(putScript),
		page:          redis.NewScript(pageScript),
	}
}

// putScript moves one account in the rankings and records its score in
// history, in one step so that readers never see an account in two bands.
// It reads the account's previous indexes from its hash; every key it
// derives carries the tenant's hash tag, so it stays in the slot of its
// declared keys. The current score is not its business: a plain SET is.
//
// KEYS: acct, hist. ARGV: the encoded score ("" when not recorded), the
// tenant's ranking key prefix, the account id, its score and drop, the
// change time (absent from history when ""), the history length, then a
// (dimension, index suffix) pair per dimension, the suffix "" when the
// account is in no index of that dimension.
const putScript = `
local prev = {}
local h = redis.call('HGETALL', KEYS[1])
for i = 1, #h, 2 do prev[h[i]] = h[i + 1] end
local rank, id = ARGV[2], ARGV[3]
local orders = {{'score', ARGV[4]}, {'drop', ARGV[5]}}
-- ZADD CH tells whether the sort key changed: if not, the indexes the
-- account stays in need no update either.
for _, o in ipairs(orders) do
  o[3] = redis.call('ZADD', rank .. o[1], 'CH', o[2], id) == 1
end
local moved = {}
for i = 8, #ARGV, 2 do
  local dim, to = ARGV[i], ARGV[i + 1]
  local from = prev[dim] or ''
  for _, o in ipairs(orders) do
    if from ~= '' and from ~= to then redis.call('ZREM', rank .. o[1] .. from, id) end
    if to ~= '' and (from ~= to or o[3]) then redis.call('ZADD', rank .. o[1] .. to, o[2], id) end
  end
  if from ~= to then
    moved[#moved + 1] = dim
    moved[#moved + 1] = to
  end
end
if #moved > 0 then redis.call('HSET', KEYS[1], unpack(moved)) end
if ARGV[6] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -1 - tonumber(ARGV[7]))
end
return 0
`

// pageScript returns up to n members of a ranking, with their scores, after
// (or before, backwards) a cursor: a sort key and account id that need not
// be in the ranking any more. Finding the cursor's rank and reading from it
// is one step, so concurrent writes cannot shift the page.
//
// KEYS: the ranking. ARGV: n, "rev" or "", then the cursor's key and id,
// absent for the first page. Returns members and scores, ascending.
const pageScript = `
local key, n = KEYS[1], tonumber(ARGV[1])
-- gt compares as Redis orders members: by bytes (Lua's < follows the locale).
local function gt(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = a:byte(i), b:byte(i)
    if x ~= y then return x > y end
  end
  return #a > #b
end
-- before: how many members order before the cursor; at: 1 if it is there.
local before, at = 0, 0
if ARGV[3] then
  local s, id = ARGV[3], ARGV[4]
  local cur = redis.call('ZSCORE', key, id)
  if cur and tonumber(cur) == tonumber(s) then
    before, at = redis.call('ZRANK', key, id), 1
  else
    -- The cursor's account moved: bisect its old score's ties by id.
    local lo = redis.call('ZCOUNT', key, '-inf', '(' .. s)
    local hi = lo + redis.call('ZCOUNT', key, s, s)
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if gt(redis.call('ZRANGE', key, mid, mid)[1], id) then hi = mid else lo = mid + 1 end
    end
    before = lo
  end
elseif ARGV[2] == 'rev' then
  before = redis.call('ZCARD', key)
end
if ARGV[2] == 'rev' then
  if before == 0 then return {} end
  return redis.call('ZRANGE', key, math.max(0, before - n), before - 1, 'WITHSCORES')
end
return redis.call('ZRANGE', key, before + at, before + at + n - 1, 'WITHSCORES')
`

// tenantKey is the start of every key of a tenant.
func (r *Redis) tenantKey(tenant string) string { return r.prefix + ":{" + escape(tenant) + "}:" }

func (r *Redis) scoreKey(tenant, account string) string {
	return r.tenantKey(tenant) + "score:" + escape(account)
}

func (r *Redis) rankingKey(tenant, name string) string { return r.tenantKey(tenant) + "rank:" + name }

// SetScores makes scores their accounts' current ones, for GetScore and
// GetScores, in pipelines of plain SETs of at most putChunk scores; Record
// is ignored. It is the half of PutScores that read latency depends on: a
// SET costs Redis a microsecond or two, where indexing a score costs tens
// (a dozen sorted-set updates), so the scoring service sets scores at
// once and indexes them in batches, a moment later.
func (r *Redis) SetScores(ctx context.Context, updates []Update) error {
	return r.putAll(ctx, "set scores", updates, true, false)
}

// IndexScores moves accounts in the rankings to their scores and records
// those marked so in history, in pipelines of script calls of at most
// putChunk updates; current scores stay as they are. Until an account's
// update is indexed its rankings lag its current score; ListScores checks
// each score against the filters it was found by, since a reader can always
// see rankings and scores a moment apart.
func (r *Redis) IndexScores(ctx context.Context, updates []Update) error {
	return r.putAll(ctx, "index scores", updates, false, true)
}

// PutScores stores current scores, each the latest of its account, and
// indexes them: SetScores and IndexScores in one pipeline per chunk, the
// SETs first so that each score is visible as soon as Redis reaches it.
// Putting the same updates again changes nothing, so a failure part way is
// mended by putting them all again; the same holds for the other two.
func (r *Redis) PutScores(ctx context.Context, updates []Update) error {
	return r.putAll(ctx, "put scores", updates, true, true)
}

// putChunk bounds the updates of one pipeline. Each costs Redis tens of
// microseconds of script time, and a pipeline must be written and answered
// within the client's write and read timeouts (go-redis: 3 s by default):
// one pipeline of the 100k scores a restart rewrites never got through.
// 500 keep a pipeline to tens of milliseconds of Redis time.
const putChunk = 500

func (r *Redis) putAll(ctx context.Context, op string, updates []Update, set, index bool) error {
	if err := validate(updates); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	for chunk := range slices.Chunk(updates, putChunk) {
		err := r.putPipelined(ctx, chunk, set, index)
		if redis.HasErrorPrefix(err, "NOSCRIPT") {
			// The server lost its script cache (restart, failover, SCRIPT
			// FLUSH): load the script on every node and redo the batch,
			// which is safe since puts are idempotent.
			if err = r.put.Load(ctx, r.client).Err(); err == nil && r.set != nil {
				err = r.set.Load(ctx, r.client).Err()
			}
			if err == nil {
				err = r.putPipelined(ctx, chunk, set, index)
			}
		}
		if err = fencedErr(err); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	return nil
}

func (r *Redis) putPipelined(ctx context.Context, updates []Update, set, index bool) error {
	values := make([][]byte, len(updates))
	for i, u := range updates {
		if !set && !u.Record {
			continue // neither stored nor recorded: only its sort keys are
		}
		v, err := marshal(u.Score)
		if err != nil {
			return fmt.Errorf("encode score of %q: %w", u.Score.GetAccountId(), err)
		}
		values[i] = v
	}
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		if set {
			for i, u := range updates {
				key := r.scoreKey(u.Score.GetTenantId(), u.Score.GetAccountId())
				if r.fence != nil {
					r.set.EvalSha(ctx, p, []string{key, r.fenceKey(u.Score.GetTenantId())}, values[i], r.epoch())
				} else {
					p.Set(ctx, key, values[i], 0)
				}
			}
		}
		if !index {
			return nil
		}
		for i, u := range updates {
			s := u.Score
			var v, at any = "", ""
			if u.Record {
				v, at = values[i], changeTime(s)
			}
			tk, id := r.tenantKey(s.GetTenantId()), escape(s.GetAccountId())
			ix := indexesOf(s)
			args := make([]any, 0, 7+2*len(ix))
			args = append(args, v, tk+"rank:", s.GetAccountId(), s.GetScore(), s.GetDrop_7D(), at, r.historyLength)
			for _, x := range ix {
				args = append(args, x.dim, x.suffix)
			}
			keys := []string{tk + "acct:" + id, tk + "hist:" + id}
			if r.fence != nil {
				keys, args = append(keys, r.fenceKey(s.GetTenantId())), append(args, r.epoch())
			}
			r.put.EvalSha(ctx, p, keys, args...)
		}
		return nil
	})
	return err
}

// GetScore returns an account's score, or an error wrapping ErrNotFound.
func (r *Redis) GetScore(ctx context.Context, tenant, accountID string) (*scoringv1.HealthScore, error) {
	b, err := r.gets.Get(ctx, r.scoreKey(tenant, accountID)).Bytes()
	if errors.Is(err, redis.Nil) {
		err = ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get score of %q: %w", accountID, err)
	}
	s, err := unmarshal(b)
	if err != nil {
		return nil, fmt.Errorf("get score of %q: %w", accountID, err)
	}
	return s, nil
}

// GetScores returns the scores of accounts in their order, nil for those
// without one, in one round trip.
func (r *Redis) GetScores(ctx context.Context, tenant string, accountIDs []string) ([]*scoringv1.HealthScore, error) {
	keys := make([]string, len(accountIDs))
	for i, id := range accountIDs {
		keys[i] = r.scoreKey(tenant, id)
	}
	scores, err := r.mget(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("get scores: %w", err)
	}
	return scores, nil
}

// mget reads and decodes scores, nil for missing keys.
func (r *Redis) mget(ctx context.Context, keys []string) ([]*scoringv1.HealthScore, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	vals, err := r.client.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, err
	}
	scores := make([]*scoringv1.HealthScore, len(vals))
	for i, v := range vals {
		if v == nil {
			continue
		}
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("key %s holds %T", keys[i], v)
		}
		if scores[i], err = unmarshal([]byte(s)); err != nil {
			return nil, fmt.Errorf("key %s: %w", keys[i], err)
		}
	}
	return scores, nil
}

// ListScores returns a page of a tenant's scores; the package doc describes
// orders and page tokens. With no filter or one it reads one index: a script
// that finds the cursor and reads a page of ids (O(log N + page)), then an
// MGET of their scores. With several it walks the smallest of their indexes
// in chunks and checks the rest on the stored scores: up to that index's
// size when matches are rare.
func (r *Redis) ListScores(ctx context.Context, tenant string, q ListQuery) ([]*scoringv1.HealthScore, string, error) {
	return listScores(ctx, r, tenant, q)
}

// BandCounts counts a tenant's accounts per band.
func (r *Redis) BandCounts(ctx context.Context, tenant string) (*scoringv1.BandCounts, error) {
	return bandCounts(ctx, r, tenant)
}

// History returns a page of an account's last Config.HistoryLength score
// changes, newest first; an account without history has an empty one.
func (r *Redis) History(ctx context.Context, tenant, accountID string, q HistoryQuery) ([]*scoringv1.HealthScore, string, error) {
	return scoreHistory(ctx, r, tenant, accountID, q)
}

// Ping reports whether Redis answers, for readiness.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping redis: %w", err)
	}
	return nil
}

func (r *Redis) cards(ctx context.Context, tenant string, rankings []string) ([]int64, error) {
	cmds := make([]*redis.IntCmd, len(rankings))
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, name := range rankings {
			cmds[i] = p.ZCard(ctx, r.rankingKey(tenant, name))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	n := make([]int64, len(cmds))
	for i, c := range cmds {
		n[i] = c.Val()
	}
	return n, nil
}

func (r *Redis) scan(ctx context.Context, tenant, ranking string, after *cursor, rev bool, n int) ([]entry, error) {
	args := []any{n, ""}
	if rev {
		args[1] = "rev"
	}
	if after != nil {
		args = append(args, after.key, after.account)
	}
	res, err := r.page.Run(ctx, r.client, []string{r.rankingKey(tenant, ranking)}, args...).StringSlice()
	if err != nil {
		return nil, err
	}
	es := make([]entry, len(res)/2)
	keys := make([]string, len(es))
	for i := range es {
		key, err := strconv.ParseFloat(res[2*i+1], 64)
		if err != nil {
			return nil, fmt.Errorf("ranking score: %w", err)
		}
		es[i].at = cursor{key, res[2*i]}
		keys[i] = r.scoreKey(tenant, res[2*i])
	}
	if rev {
		slices.Reverse(es)
		slices.Reverse(keys)
	}
	scores, err := r.mget(ctx, keys)
	if err != nil {
		return nil, err
	}
	for i := range es {
		es[i].score = scores[i]
	}
	return es, nil
}

func (r *Redis) changes(ctx context.Context, tenant, account string, hi, lo int64, offset, n int) ([]change, error) {
	zs, err := r.client.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{
		Key:     r.tenantKey(tenant) + "hist:" + escape(account),
		Start:   strconv.FormatInt(hi, 10),
		Stop:    strconv.FormatInt(lo, 10),
		ByScore: true,
		Rev:     true,
		Offset:  int64(offset),
		Count:   int64(n),
	}).Result()
	if err != nil {
		return nil, err
	}
	cs := make([]change, len(zs))
	for i, z := range zs {
		s, ok := z.Member.(string)
		if !ok {
			return nil, fmt.Errorf("history member is %T", z.Member)
		}
		if cs[i].score, err = unmarshal([]byte(s)); err != nil {
			return nil, err
		}
		cs[i].micros = int64(z.Score)
	}
	return cs, nil
}
