package ownership_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	"github.com/lodestar-cs/lodestar/pkg/ownership"
)

func TestAssign(t *testing.T) {
	members := []string{"a", "b", "c"}
	for _, tc := range []struct {
		partitions int
		members    []string
	}{{16, members}, {16, members[:1]}, {256, members}, {5, members}, {3, append(members, "d")}} {
		got := ownership.Assign(tc.partitions, tc.members)
		reversed := slices.Clone(tc.members)
		slices.Reverse(reversed)
		again := ownership.Assign(tc.partitions, reversed)
		if !slices.Equal(got, again) {
			t.Fatalf("%d/%v: the member order changed the assignment", tc.partitions, tc.members)
		}
		count := map[string]int{}
		for _, m := range got {
			count[m]++
		}
		limit := (tc.partitions + len(tc.members) - 1) / len(tc.members)
		for _, m := range tc.members {
			if count[m] > limit || count[m] < tc.partitions/len(tc.members)-1 {
				t.Fatalf("%d/%v: %s has %d partitions: %v", tc.partitions, tc.members, m, count[m], count)
			}
		}
	}
	// A member joining takes about its share and moves little else.
	before := ownership.Assign(256, members)
	after := ownership.Assign(256, append(slices.Clone(members), "d"))
	moved := 0
	for p := range before {
		if before[p] != after[p] && after[p] != "d" {
			moved++
		}
	}
	if moved > 256/4/2 {
		t.Fatalf("a join moved %d partitions between the old members", moved)
	}
}

// tracker records who works which partition, failing on two at once.
type tracker struct {
	t     *testing.T
	mu    sync.Mutex
	owner map[uint32]string
	epoch map[uint32]uint64
}

func (tr *tracker) work(member string) ownership.Work {
	return func(ctx context.Context, l ownership.Lease) error {
		tr.mu.Lock()
		if o, ok := tr.owner[l.Partition]; ok {
			tr.t.Errorf("partition %d taken by %s while %s works it", l.Partition, member, o)
		}
		if l.Epoch <= tr.epoch[l.Partition] {
			tr.t.Errorf("partition %d: epoch %d after %d", l.Partition, l.Epoch, tr.epoch[l.Partition])
		}
		tr.owner[l.Partition], tr.epoch[l.Partition] = member, l.Epoch
		tr.mu.Unlock()
		<-ctx.Done()
		tr.mu.Lock()
		delete(tr.owner, l.Partition)
		tr.mu.Unlock()
		return nil
	}
}

func (tr *tracker) counts() map[string]int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	c := map[string]int{}
	for _, o := range tr.owner {
		c[o]++
	}
	return c
}

// waitFor polls cond; the bound only guards against a hang.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not within 30s", what)
}

type replica struct {
	m      *ownership.Manager
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, url, name string, tr *tracker) *replica {
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	kv, err := natsx.EnsureKeyValue(context.Background(), js, ownership.BucketConfig(time.Second, 1))
	if err != nil {
		t.Fatal(err)
	}
	m := ownership.New(ownership.Config{Group: "test", Member: name, Partitions: 16, TTL: time.Second}, kv, slog.New(slog.DiscardHandler))
	m.ReportLag(reportedLag)
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{m: m, nc: nc, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- m.Run(ctx, tr.work(name)) }()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

// TestReplicasDividePartitions: replicas starting divide the partitions,
// one stopping gives its partitions back, one cut off from NATS loses them
// once its leases expire, each time with a higher epoch and never two
// workers of one partition at once.
func TestReplicasDividePartitions(t *testing.T) {
	srv, _ := testenv.NATS(t)
	tr := &tracker{t: t, owner: map[uint32]string{}, epoch: map[uint32]uint64{}}
	a := start(t, srv.ClientURL(), "a", tr)
	waitFor(t, "a owns all", func() bool { return tr.counts()["a"] == 16 && a.m.Settled() })

	// lodestar status shows the owner of every partition.
	js, _ := jetstream.New(a.nc)
	testStatus(t, js)

	b := start(t, srv.ClientURL(), "b", tr)
	c := start(t, srv.ClientURL(), "c", tr)
	balanced := func(names ...string) func() bool {
		return func() bool {
			cs, total := tr.counts(), 0
			for _, n := range names {
				if cs[n] < 16/len(names) {
					return false
				}
				total += cs[n]
			}
			return total == 16
		}
	}
	waitFor(t, "a, b, c balanced", balanced("a", "b", "c"))

	// A graceful stop: b's partitions move at once.
	b.cancel()
	if err := <-b.done; err != nil {
		t.Fatal(err)
	}
	b.done <- nil // for the cleanup
	waitFor(t, "a, c balanced after b stopped", balanced("a", "c"))

	// c is cut off: its leases expire and a takes them; c's work stops
	// once it cannot renew, and its leases say so.
	owned := c.m.Owned()
	c.nc.Close()
	waitFor(t, "a owns all after c was cut off", func() bool { return tr.counts()["a"] == 16 })
	for _, l := range owned {
		if l.Held() {
			t.Fatalf("c's lease of partition %d still held after a took it", l.Partition)
		}
	}
}

// reportedLag is what the test replicas report as their partitions' lag:
// 10 per partition number for even partitions, unknown for odd ones.
func reportedLag(p uint32) (uint64, bool) { return 10 * uint64(p), p%2 == 0 }

// testStatus reads the status while replica a owns every partition of
// group test: the leases, the lag the owner reports (after its first
// renewal), or the lag a source computes instead, and the table printed.
func testStatus(t *testing.T, js jetstream.JetStream) {
	ctx := context.Background()
	read := func(sources map[string]ownership.LagSource) ownership.Status {
		t.Helper()
		st, err := ownership.ReadStatus(ctx, js, sources)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Groups) != 1 || st.Groups[0].Group != "test" || len(st.Groups[0].Partitions) != 16 {
			t.Fatalf("status: %+v, want group test with 16 partitions", st)
		}
		return st
	}
	var st ownership.Status
	waitFor(t, "every partition's lag reported", func() bool {
		st = read(nil)
		for _, p := range st.Groups[0].Partitions {
			if want, known := reportedLag(p.Partition); p.LagKnown != known || (known && p.Lag != want) {
				return false
			}
		}
		return true
	})
	g := st.Groups[0]
	if g.LagFrom != ownership.LagFromOwner || st.TTL != time.Second {
		t.Errorf("lag from %v, TTL %s: want the owner's, 1s", g.LagFrom, st.TTL)
	}
	if len(g.Members) != 1 || g.Members[0].Name != "a" || g.Members[0].Owned != 16 {
		t.Errorf("members %+v, want a owning 16", g.Members)
	}
	for _, p := range g.Partitions {
		if p.Owner != "a" || p.Epoch == 0 || p.Taken.IsZero() || p.Taken.After(st.Read) || !p.Held(st.Read) || p.Expires.Sub(p.Renewed) != time.Second {
			t.Errorf("partition %d: %+v, want held by a since before the read", p.Partition, p)
		}
	}

	// A source replaces what the owners report, for every partition.
	computed := read(map[string]ownership.LagSource{"test": func(_ context.Context, _ jetstream.JetStream, n int) (map[uint32]uint64, error) {
		if n != 16 {
			t.Errorf("source asked for %d partitions, want 16", n)
		}
		return map[uint32]uint64{1: 7}, nil
	}}).Groups[0]
	if computed.LagFrom != ownership.LagFromStreams || !computed.Partitions[1].LagKnown || computed.Partitions[1].Lag != 7 ||
		computed.Partitions[0].LagKnown || computed.Partitions[2].LagKnown {
		t.Errorf("lag from a source: %+v", computed)
	}
	failed := read(map[string]ownership.LagSource{"test": func(context.Context, jetstream.JetStream, int) (map[uint32]uint64, error) {
		return map[uint32]uint64{0: 1}, errors.New("positions unreadable")
	}}).Groups[0]
	if failed.LagError != "positions unreadable" || failed.Partitions[0].LagKnown {
		t.Errorf("a failed source: lag error %q, partition 0 %+v", failed.LagError, failed.Partitions[0])
	}

	var out bytes.Buffer
	if err := ownership.WriteStatus(&out, st); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\ntest   "); n != 16+1 {
		t.Fatalf("status lists %d rows of group test, want 16 leases and a member:\n%s", n, out.String())
	}
	if !strings.Contains(out.String(), "\ntest   2          a      ") || !strings.Contains(out.String(), "  20\n") {
		t.Errorf("status does not show partition 2 owned by a with lag 20:\n%s", out.String())
	}
}

// BenchmarkReadStatus reads the status of two services of 256 partitions
// each, from an embedded server on loopback: what lodestar status, the RPC
// and the console's page cost, lag sources aside.
func BenchmarkReadStatus(b *testing.B) {
	_, nc := testenv.NATS(b)
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	kv, err := natsx.EnsureKeyValue(ctx, js, ownership.BucketConfig(time.Hour, 1))
	if err != nil {
		b.Fatal(err)
	}
	const partitions = 256
	for _, group := range []string{"scoring", "churn-alert"} {
		for m := range 3 {
			if _, err := kv.Put(ctx, fmt.Sprintf("%s.member.r%d", group, m), []byte(`{"member":"r`+strconv.Itoa(m)+`","since":1}`)); err != nil {
				b.Fatal(err)
			}
		}
		for p := range partitions {
			rec := fmt.Sprintf(`{"member":"r%d","epoch":%d,"since":1,"taken":1,"lag":%d}`, p%3, p+1, p)
			if _, err := kv.Put(ctx, fmt.Sprintf("%s.lease.%d", group, p), []byte(rec)); err != nil {
				b.Fatal(err)
			}
		}
	}
	for b.Loop() {
		st, err := ownership.ReadStatus(ctx, js, nil)
		if err != nil {
			b.Fatal(err)
		}
		if len(st.Groups) != 2 || len(st.Groups[0].Partitions) != partitions {
			b.Fatalf("%d groups", len(st.Groups))
		}
	}
}
