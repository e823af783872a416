package scorecards_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lodestar-cs/lodestar/internal/scorecards"
	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// TestWatchClosed: the stored active scorecards reach the watcher, then a
// closed watch ends Watch with an error (which stops scoring) rather than
// quietly, leaving scoring ready while activations no longer arrive.
func TestWatchClosed(t *testing.T) {
	_, nc := testenv.NATS(t)
	js, err := natsx.NewJetStream(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kv, err := natsx.EnsureKeyValue(ctx, js, scorecards.BucketConfig(1))
	if err != nil {
		t.Fatal(err)
	}
	store := scorecards.New(kv)
	if _, err := store.Put(ctx, "acme", &scoringv1.Scorecard{Name: "custom"}, 1, time.Now()); err != nil {
		t.Fatal(err)
	}

	got := map[string]int32{}
	loaded := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- store.Watch(ctx, func(tenant string, sc *scoringv1.Scorecard) { got[tenant] = sc.GetVersion() }, func() { close(loaded) })
	}()
	<-loaded
	if got["acme"] != 2 {
		t.Fatalf("loaded %v, want acme v2", got)
	}
	nc.Close()
	if err := <-done; !errors.Is(err, natsx.ErrWatchClosed) {
		t.Fatalf("Watch on a closed watch returned %v, want ErrWatchClosed", err)
	}
}
