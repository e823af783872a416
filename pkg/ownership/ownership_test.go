package ownership_test

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
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
	var status bytes.Buffer
	js, _ := jetstream.New(a.nc)
	if err := ownership.WriteStatus(context.Background(), js, &status); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(status.String(), "\ntest   "); n != 16+1 {
		t.Fatalf("status lists %d rows of group test, want 16 leases and a member:\n%s", n, status.String())
	}

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
