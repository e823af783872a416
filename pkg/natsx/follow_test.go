package natsx_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
)

// kv returns a fresh bucket holding keys a and b, and its connection, which
// the test may close.
func kv(t *testing.T) (jetstream.KeyValue, *nats.Conn) {
	t.Helper()
	_, nc := testenv.NATS(t)
	js, err := natsx.NewJetStream(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	b, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "T"})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b"} {
		if _, err := b.Put(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	return b, nc
}

// TestWatchKVClosed: a watch that closes under a running follower is an
// error, not a quiet return that leaves the follower's state looking
// current; the stored values come first, then loaded, then updates.
func TestWatchKVClosed(t *testing.T) {
	b, nc := kv(t)
	ctx := context.Background()
	w, err := b.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	done := make(chan error, 1)
	loadedAt := make(chan int, 1)
	go func() {
		done <- natsx.WatchKV(ctx, w, func() error { loadedAt <- len(seen); return nil }, func(e jetstream.KeyValueEntry) error {
			seen = append(seen, e.Key())
			return nil
		})
	}()
	if n := <-loadedAt; n != 2 {
		t.Fatalf("loaded after %d stored values, want 2", n)
	}
	nc.Close()
	if err := <-done; !errors.Is(err, natsx.ErrWatchClosed) {
		t.Fatalf("WatchKV on a closed watch returned %v, want ErrWatchClosed", err)
	}
}

func TestWatchKVStops(t *testing.T) {
	b, _ := kv(t)
	ctx, cancel := context.WithCancel(context.Background())
	w, err := b.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := natsx.WatchKV(ctx, w, nil, func(jetstream.KeyValueEntry) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("apply's error: got %v", err)
	}
	w, err = b.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := natsx.WatchKV(ctx, w, nil, func(jetstream.KeyValueEntry) error { return nil }); err != nil {
		t.Fatalf("a watch ended by its context: got %v, want nil", err)
	}
}

func TestReadKV(t *testing.T) {
	b, _ := kv(t)
	ctx := context.Background()
	w, err := b.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := natsx.ReadKV(ctx, w, func(e jetstream.KeyValueEntry) error { keys = append(keys, e.Key()); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0] != "a" || keys[1] != "b" {
		t.Fatalf("read %q, want a and b", keys)
	}
}

// TestConsumeCaughtUp: caught up after the backlog present at start, and
// also on a stream with nothing to deliver, where no message says so.
func TestConsumeCaughtUp(t *testing.T) {
	_, nc := testenv.NATS(t)
	js, err := natsx.NewJetStream(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range []struct {
		name string
		msgs int
	}{{"EMPTY", 0}, {"BACKLOG", 5}} {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: c.name, Subjects: []string{c.name}}); err != nil {
			t.Fatal(err)
		}
		for range c.msgs {
			if _, err := js.Publish(ctx, c.name, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		cons, err := js.OrderedConsumer(ctx, c.name, jetstream.OrderedConsumerConfig{})
		if err != nil {
			t.Fatal(err)
		}
		var caughtUp atomic.Bool
		var handled atomic.Int64
		handledAtCaughtUp := make(chan int64, 1)
		cc, err := natsx.ConsumeCaughtUp(ctx, cons, &caughtUp, func(_ jetstream.Msg, meta *jetstream.MsgMetadata) {
			if meta == nil {
				t.Error("no metadata")
			}
			handled.Add(1)
		})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for !caughtUp.Load() {
				time.Sleep(5 * time.Millisecond)
			}
			handledAtCaughtUp <- handled.Load()
		}()
		select {
		case n := <-handledAtCaughtUp:
			if n != int64(c.msgs) {
				t.Errorf("%s: caught up after %d messages, want %d", c.name, n, c.msgs)
			}
		case <-ctx.Done():
			t.Fatalf("%s: never caught up", c.name)
		}
		cc.Stop()
	}
}
