package natsx_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
)

func TestToken(t *testing.T) {
	for _, id := range []string{"acme-42", "ACME_corp", "a.b", "a b", "*", ">", "=x", "ünï", strings.Repeat("x", 200), "0"} {
		tok := natsx.Token(id)
		if strings.ContainsAny(tok, ". *>\t\n") || tok == "" {
			t.Errorf("Token(%q) = %q is not subject-safe", id, tok)
		}
		back, err := natsx.ParseToken(tok)
		if err != nil || back != id {
			t.Errorf("ParseToken(Token(%q)) = %q, %v", id, back, err)
		}
	}
	if natsx.Token("acme-42") != "acme-42" {
		t.Error("a plain id should be its own token")
	}
}

func TestPartition(t *testing.T) {
	const n = 16
	seen := map[uint32]bool{}
	for i := range 1000 {
		acc := "acct-" + string(rune('a'+i%26)) + strings.Repeat("x", i%7)
		p := natsx.Partition("acme", acc, n)
		if p >= n || p != natsx.Partition("acme", acc, n) {
			t.Fatalf("partition %d of %q unstable or out of range", p, acc)
		}
		seen[p] = true
	}
	if len(seen) < n/2 {
		t.Fatalf("only %d of %d partitions used", len(seen), n)
	}
	if natsx.Partition("acme", "x", 1) != 0 {
		t.Fatal("one partition must be 0")
	}
}

// TestPublishAllDedup checks the durability contract ingest relies on: every
// message is acked, and a retried message id is stored once.
func TestPublishAllDedup(t *testing.T) {
	_, nc := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	js, err := natsx.NewJetStream(nc)
	if err != nil {
		t.Fatal(err)
	}
	l := natsx.DefaultLimits()
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	// Twice: creation is idempotent.
	for range 2 {
		if err := natsx.EnsureStreams(ctx, js, l.EventsStream(), l.AccountChangesStream(), l.ScoresStream()); err != nil {
			t.Fatal(err)
		}
	}
	batch := func() []*nats.Msg {
		var msgs []*nats.Msg
		for i := range 500 {
			m := nats.NewMsg(natsx.EventSubject("acme", uint32(i%4)))
			m.Data = []byte("payload")
			m.Header.Set(nats.MsgIdHdr, natsx.MsgID("acme", "m"+string(rune('0'+i%10))+strings.Repeat("y", i/10)))
			msgs = append(msgs, m)
		}
		return msgs
	}
	for range 2 {
		if err := natsx.PublishAll(ctx, js, batch()); err != nil {
			t.Fatal(err)
		}
	}
	st, err := js.Stream(ctx, natsx.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 500 {
		t.Fatalf("stream holds %d messages, want 500", info.State.Msgs)
	}
}

func TestMsgID(t *testing.T) {
	if natsx.MsgID("acme", "m1") != "acme:m1" {
		t.Fatal("single id form changed")
	}
	a, b := natsx.MsgID("acme", "m1", "m2"), natsx.MsgID("acme", "m2", "m1")
	if a == b || a != natsx.MsgID("acme", "m1", "m2") {
		t.Fatal("multi-id form must be deterministic and order-sensitive")
	}
	if natsx.MsgID("acme", "m1m2") == natsx.MsgID("acme", "m1", "m2") {
		t.Fatal("ambiguous join")
	}
}
