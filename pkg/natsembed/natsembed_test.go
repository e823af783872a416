package natsembed

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestRestartKeepsStream checks that a file-store stream survives a restart
// of the embedded server on the same store dir: the all-in-one's durability.
func TestRestartKeepsStream(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	publish := func(t *testing.T) uint64 {
		s, err := Start(Config{StoreDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Shutdown()
		if s.ClientURL() != "" {
			t.Fatalf("listener opened without a port: %s", s.ClientURL())
		}
		nc, err := s.Connect("test")
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(ctx, "t.1", []byte("x")); err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	if n := publish(t); n != 1 {
		t.Fatalf("first run: %d messages", n)
	}
	if n := publish(t); n != 2 {
		t.Fatalf("after restart: %d messages, want 2", n)
	}
}

func TestListener(t *testing.T) {
	s, err := Start(Config{StoreDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
}
