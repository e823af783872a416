// Package ownership divides a fixed number of logical partitions among the
// live replicas of a service, through leases in a JetStream KV bucket.
//
// Every replica keeps a member key alive and computes the same assignment
// from the live members (rendezvous hashing with a cap of ceil(P/N) per
// member, so a join or a leave moves few partitions). A replica takes a
// partition assigned to it once nobody holds it (kv.Create), renews its
// leases with revision-checked updates, and gives back the partitions
// assigned elsewhere: it stops their work first (a last flush and
// snapshot), then deletes the lease at its revision. The bucket's TTL
// expires the keys of a replica that died or stalled; with LimitMarkerTTL
// the expiry reaches every watcher as a delete, so the new owner starts at
// once.
//
// A lease's epoch is the KV revision that created it: a bucket-wide stream
// sequence, so a later owner of a partition always has a higher epoch.
// Writers put it on what they write (the fencing token), so a replica that
// lost a partition but does not know yet (a pause, a network partition)
// cannot overwrite its successor's results.
//
// Why leases and not consumer priority groups with pinned clients (see
// docs/runbooks/replicas.md): scoring does not ack, it restores a snapshot
// and reads from the sequence the snapshot reflects, so a durable pull
// consumer's pinning would guard nothing it relies on; a pin id is not
// ordered, so it cannot fence; and pinning gives hot standbys for a fixed
// member list rather than dividing partitions among whoever runs.
package ownership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is the KV bucket of members and leases, keys
// <group>.member.<member> and <group>.lease.<partition>.
const Bucket = "LODESTAR_OWNERSHIP"

// BucketConfig is the bucket: its TTL is the lease TTL, and expiry leaves
// delete markers so that watchers learn of it.
func BucketConfig(ttl time.Duration, replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:         Bucket,
		Description:    "Partition leases and live members of each partitioned service",
		History:        1,
		TTL:            ttl,
		LimitMarkerTTL: ttl,
		Storage:        jetstream.FileStorage,
		Replicas:       replicas,
	}
}

// Config configures a Manager.
type Config struct {
	// Group is the service whose replicas share the partitions.
	Group string
	// Member names this replica, unique among live ones; a replica
	// restarted under the same name takes its old leases back at once
	// (with new epochs) instead of waiting for them to expire.
	Member string
	// Partitions is the fixed number of logical partitions.
	Partitions int
	// TTL is the bucket's TTL: a lease not renewed for this long expires.
	TTL time.Duration
}

// DefaultMember is a member name unique on this host: hostname-pid.
func DefaultMember() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "replica"
	}
	return sanitize(h) + "-" + strconv.Itoa(os.Getpid())
}

// sanitize keeps a member name a valid KV key token.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}

// Lease is the ownership of one partition from one epoch.
type Lease struct {
	Partition uint32
	// Epoch is the KV revision that created the lease.
	Epoch uint64
	// until is the local deadline, unix nanoseconds, before which the
	// lease cannot have expired: the last renewal's send time plus the TTL.
	until *atomic.Int64
}

// Held reports whether the lease is certainly still held: renewed within
// the TTL. A writer checks it before a write it cannot fence otherwise; a
// pause between the check and the write is what the epoch is for.
func (l Lease) Held() bool { return time.Now().UnixNano() < l.until.Load() }

// Work runs a partition until ctx ends (the lease was lost or is being
// given back); it should leave the partition's state saved on return.
type Work func(ctx context.Context, l Lease) error

// record is the value of a lease or member key.
type record struct {
	Member string `json:"member"`
	Epoch  uint64 `json:"epoch,omitempty"`
	Since  int64  `json:"since"` // unix ms of the write
	// Taken is when the lease was created, unix ms; 0 on member keys.
	Taken int64 `json:"taken,omitempty"`
	// Lag is the partition's consumer lag as its owner last reported it
	// (see ReportLag); nil when the owner does not know or report it.
	Lag *uint64 `json:"lag,omitempty"`
}

// entry is a key's last known state.
type entry struct {
	rec     record
	rev     uint64
	created time.Time
}

// held is a partition this replica works.
type held struct {
	lease   Lease
	taken   time.Time
	rev     uint64 // the key's current revision
	cancel  context.CancelFunc
	done    chan struct{}
	leaving bool // being given back
}

// Manager takes, renews and gives back one replica's leases.
type Manager struct {
	cfg    Config
	kv     jetstream.KeyValue
	logger *slog.Logger
	work   Work
	lag    func(partition uint32) (uint64, bool)

	mu      sync.Mutex
	members map[string]entry // by member name
	leases  map[uint32]entry // by partition, as last seen in the bucket
	held    map[uint32]*held
	settled atomic.Bool
	joined  time.Time // when Run started: see round
	wake    chan struct{}
	wg      sync.WaitGroup
}

// New returns a manager of cfg.Group's leases in kv (BucketConfig).
func New(cfg Config, kv jetstream.KeyValue, logger *slog.Logger) *Manager {
	if cfg.Member == "" {
		cfg.Member = DefaultMember()
	}
	cfg.Member = sanitize(cfg.Member)
	return &Manager{
		cfg: cfg, kv: kv, logger: logger.With("group", cfg.Group, "member", cfg.Member),
		members: map[string]entry{}, leases: map[uint32]entry{}, held: map[uint32]*held{},
		wake: make(chan struct{}, 1),
	}
}

// ReportLag makes every renewal of a lease carry the partition's consumer
// lag as lag reports it (ok false: unknown), so that a status reader in any
// process sees it (ReadStatus), at most TTL/4 old. Call it before Run.
func (m *Manager) ReportLag(lag func(partition uint32) (n uint64, ok bool)) { m.lag = lag }

// Member is this replica's name.
func (m *Manager) Member() string { return m.cfg.Member }

// Settled reports whether this replica holds every partition assigned to it
// by the last round: readiness waits for it at start.
func (m *Manager) Settled() bool { return m.settled.Load() }

// Owned returns the leases this replica works, by partition.
func (m *Manager) Owned() []Lease {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Lease, 0, len(m.held))
	for _, h := range m.held {
		out = append(out, h.lease)
	}
	slices.SortFunc(out, func(a, b Lease) int { return int(a.Partition) - int(b.Partition) })
	return out
}

func (m *Manager) memberKey(name string) string { return m.cfg.Group + ".member." + name }
func (m *Manager) leaseKey(p uint32) string {
	return m.cfg.Group + ".lease." + strconv.FormatUint(uint64(p), 10)
}

// Run keeps this replica a member and works its partitions with work until
// ctx ends; then it stops every partition's work and gives its leases back,
// so that the others take them at once.
func (m *Manager) Run(ctx context.Context, work Work) error {
	m.work, m.joined = work, time.Now()
	time.AfterFunc(m.warmUp(), m.poke)
	w, err := m.kv.Watch(ctx, m.cfg.Group+".>")
	if err != nil {
		return fmt.Errorf("watch %s leases: %w", m.cfg.Group, err)
	}
	defer func() { _ = w.Stop() }()
	defer m.releaseAll()
	tick := time.NewTicker(m.cfg.TTL / 4)
	defer tick.Stop()
	loaded := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("%s leases: watch closed", m.cfg.Group)
			}
			if e != nil {
				if m.observe(e) && loaded {
					m.poke()
				}
				continue
			}
			loaded = true
			m.round(ctx)
		case <-m.wake:
			if loaded {
				m.round(ctx)
			}
		case <-tick.C:
			if loaded {
				m.round(ctx)
			}
		}
	}
}

// poke asks for a round soon.
func (m *Manager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// observe records a key's change seen by the watch, and reports whether it
// calls for a round now: a member came or went, or a lease was given back
// or expired. Renewals do not.
func (m *Manager) observe(e jetstream.KeyValueEntry) bool {
	rest := strings.TrimPrefix(e.Key(), m.cfg.Group+".")
	kind, name, ok := strings.Cut(rest, ".")
	if !ok {
		return false
	}
	var rec record
	del := e.Operation() != jetstream.KeyValuePut
	if !del && json.Unmarshal(e.Value(), &rec) != nil {
		m.logger.Warn("ignore undecodable ownership key", "key", e.Key())
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch kind {
	case "member":
		_, known := m.members[name]
		if del {
			delete(m.members, name)
			return known
		}
		m.members[name] = entry{rec: rec, rev: e.Revision(), created: e.Created()}
		return !known
	case "lease":
		p, err := strconv.ParseUint(name, 10, 32)
		if err != nil {
			return false
		}
		if del {
			delete(m.leases, uint32(p))
			return true
		}
		m.leases[uint32(p)] = entry{rec: rec, rev: e.Revision(), created: e.Created()}
	}
	return false
}

// live reports whether a key seen in the bucket has not expired yet: the
// server's timestamp plus the TTL, against this host's clock (replicas'
// clocks are NTP-close compared to a TTL of seconds).
func (m *Manager) live(e entry, now time.Time) bool { return now.Before(e.created.Add(m.cfg.TTL)) }

// round renews this replica's keys, gives back what is assigned elsewhere
// and takes what is assigned here and free.
func (m *Manager) round(ctx context.Context) {
	now := time.Now()
	if _, err := m.kv.Put(ctx, m.memberKey(m.cfg.Member), m.encode(record{})); err != nil {
		m.logger.Warn("renew membership", "err", err)
	}
	m.mu.Lock()
	members := []string{m.cfg.Member}
	for name, e := range m.members {
		if name != m.cfg.Member && m.live(e, now) {
			members = append(members, name)
		}
	}
	want := Assign(m.cfg.Partitions, members)
	type take struct {
		p   uint32
		rev uint64 // a stale own lease to replace; 0: create
	}
	var renew []*held
	var takes []take
	// A replica takes nothing in its first moments (warmUp): replicas
	// started together see each other first, instead of each taking
	// partitions the assignment then moves (each move a stop, a snapshot
	// and a restore: a from-scratch replay with three replicas started
	// together took 35 s instead of 20 s with one).
	warm := time.Since(m.joined) >= m.warmUp()
	settled := warm
	var taking []uint32
	for p := range uint32(m.cfg.Partitions) {
		h, mine := m.held[p]
		e, seen := m.leases[p]
		switch {
		case mine && h.leaving: // giveBack renews it meanwhile
		case mine && want[p] != m.cfg.Member:
			h.leaving = true
			m.wg.Go(func() { m.giveBack(h) })
		case mine:
			renew = append(renew, h)
		case want[p] != m.cfg.Member, !warm:
		case !seen || !m.live(e, now):
			takes, taking = append(takes, take{p: p}), append(taking, p)
		case e.rec.Member == m.cfg.Member:
			// Ours from before a restart: take it back under a new epoch.
			takes, taking = append(takes, take{p: p, rev: e.rev}), append(taking, p)
		default:
			settled = false // its owner gives it back
		}
	}
	m.mu.Unlock()

	// At once: a round must end well within a TTL however many leases.
	var wg sync.WaitGroup
	for _, h := range renew {
		wg.Go(func() { m.renew(ctx, h) })
	}
	wg.Wait()
	for _, t := range takes {
		if t.rev != 0 {
			if err := m.kv.Delete(ctx, m.leaseKey(t.p), jetstream.LastRevision(t.rev)); err != nil {
				continue
			}
		}
		m.acquire(ctx, t.p)
	}
	m.mu.Lock()
	for _, p := range taking {
		if _, ok := m.held[p]; !ok {
			settled = false
		}
	}
	m.mu.Unlock()
	if settled {
		m.settled.Store(true)
	}
}

// warmUp is how long a replica waits before taking partitions: long enough
// to see replicas started with it, short enough not to delay a lone one.
func (m *Manager) warmUp() time.Duration { return min(m.cfg.TTL/4, 500*time.Millisecond) }

// encode is the value of a key of this member: r with the member and the
// time of the write.
func (m *Manager) encode(r record) []byte {
	r.Member, r.Since = m.cfg.Member, time.Now().UnixMilli()
	b, _ := json.Marshal(r)
	return b
}

// leaseRecord is the value of a held lease's key at a renewal.
func (m *Manager) leaseRecord(l Lease, taken time.Time) record {
	r := record{Epoch: l.Epoch, Taken: taken.UnixMilli()}
	if m.lag != nil {
		if n, ok := m.lag(l.Partition); ok {
			r.Lag = &n
		}
	}
	return r
}

// acquire creates a partition's lease and starts its work.
func (m *Manager) acquire(ctx context.Context, p uint32) {
	sent := time.Now()
	// The epoch is the revision Create returns; the value repeats it for
	// readers (status), so it is written right after.
	rev, err := m.kv.Create(ctx, m.leaseKey(p), m.encode(record{Taken: sent.UnixMilli()}))
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) {
			m.logger.Warn("take lease", "partition", p, "err", err)
		}
		return
	}
	l := Lease{Partition: p, Epoch: rev, until: new(atomic.Int64)}
	l.until.Store(sent.Add(m.cfg.TTL).UnixNano())
	if r, err := m.kv.Update(ctx, m.leaseKey(p), m.encode(record{Epoch: rev, Taken: sent.UnixMilli()}), rev); err == nil {
		rev = r
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h := &held{lease: l, taken: sent, rev: rev, cancel: cancel, done: make(chan struct{})}
	m.mu.Lock()
	m.held[p] = h
	m.mu.Unlock()
	m.logger.Info("took partition", "partition", p, "epoch", l.Epoch)
	go func() {
		defer close(h.done)
		if err := m.work(wctx, l); err != nil && wctx.Err() == nil {
			m.logger.Error("partition work failed; giving it back", "partition", p, "err", err)
			m.mu.Lock()
			leaving := h.leaving
			h.leaving = true
			m.mu.Unlock()
			if !leaving {
				m.wg.Go(func() { m.giveBack(h) })
			}
		}
	}()
}

// renew updates a held lease at its revision; a mismatch means another
// replica took it after it expired: its work stops at once.
func (m *Manager) renew(ctx context.Context, h *held) {
	sent := time.Now()
	rev, err := m.kv.Update(ctx, m.leaseKey(h.lease.Partition), m.encode(m.leaseRecord(h.lease, h.taken)), h.rev)
	switch {
	case err == nil:
		h.lease.until.Store(sent.Add(m.cfg.TTL).UnixNano())
		m.mu.Lock()
		h.rev = rev
		m.mu.Unlock()
	case errors.Is(err, jetstream.ErrKeyExists), isWrongSequence(err):
		m.logger.Warn("lost partition", "partition", h.lease.Partition, "epoch", h.lease.Epoch, "err", err)
		m.drop(h)
	default:
		m.logger.Warn("renew lease", "partition", h.lease.Partition, "err", err)
		if !h.lease.Held() {
			m.drop(h)
		}
	}
}

// drop stops a partition's work without giving back a lease that is no
// longer ours, and without waiting for it: its writes are fenced.
func (m *Manager) drop(h *held) {
	h.lease.until.Store(0)
	h.cancel()
	m.mu.Lock()
	if m.held[h.lease.Partition] == h {
		delete(m.held, h.lease.Partition)
	}
	m.mu.Unlock()
}

// giveBack stops a partition's work, waiting for its last snapshot, and
// deletes the lease at its revision, renewing it meanwhile.
func (m *Manager) giveBack(h *held) {
	h.cancel()
	t := time.NewTicker(m.cfg.TTL / 4)
	defer t.Stop()
	ctx := context.Background()
	for waiting := true; waiting; {
		select {
		case <-h.done:
			waiting = false
		case <-t.C:
			m.renew(ctx, h)
		}
	}
	m.mu.Lock()
	rev, ours := h.rev, m.held[h.lease.Partition] == h
	if ours {
		delete(m.held, h.lease.Partition)
	}
	m.mu.Unlock()
	h.lease.until.Store(0)
	if !ours {
		return
	}
	if err := m.kv.Delete(ctx, m.leaseKey(h.lease.Partition), jetstream.LastRevision(rev)); err != nil {
		m.logger.Warn("give back lease", "partition", h.lease.Partition, "err", err)
		return
	}
	m.logger.Info("gave back partition", "partition", h.lease.Partition, "epoch", h.lease.Epoch)
	m.poke()
}

// releaseAll gives back every lease and the membership, on stop.
func (m *Manager) releaseAll() {
	m.mu.Lock()
	for _, h := range m.held {
		if !h.leaving {
			h.leaving = true
			m.wg.Go(func() { m.giveBack(h) })
		}
	}
	m.mu.Unlock()
	m.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = m.kv.Delete(ctx, m.memberKey(m.cfg.Member))
}

func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// Assign maps each partition to one of members: by rendezvous hashing,
// each member taking at most ceil(partitions/len(members)), partitions in
// order. Every replica computes the same map from the same members, and a
// member joining or leaving moves about its share.
func Assign(partitions int, members []string) []string {
	out := make([]string, partitions)
	if len(members) == 0 {
		return out
	}
	members = slices.Clone(members)
	slices.Sort(members)
	limit := (partitions + len(members) - 1) / len(members)
	count := map[string]int{}
	for p := range partitions {
		best, bestW := "", uint64(0)
		for _, mem := range members {
			if count[mem] >= limit {
				continue
			}
			if w := weight(p, mem); best == "" || w > bestW {
				best, bestW = mem, w
			}
		}
		out[p] = best
		count[best]++
	}
	return out
}

func weight(p int, member string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(member))
	h.Write([]byte{0, byte(p), byte(p >> 8), byte(p >> 16), byte(p >> 24)})
	x := h.Sum64()
	// fnv's low bits mix poorly for short suffixes: finish with a mixer.
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	return x
}
