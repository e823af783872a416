package natsx_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
)

// TestEnsurePartitions: concurrent starters agree on the first count; any
// other count is refused with an error that says what to do.
func TestEnsurePartitions(t *testing.T) {
	_, nc := testenv.NATS(t)
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = natsx.EnsurePartitions(ctx, js, 16, 1) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	err := natsx.EnsurePartitions(ctx, js, 32, 1)
	var mismatch *natsx.PartitionsMismatch
	if !errors.As(err, &mismatch) || !strings.Contains(err.Error(), "-nats.partitions 16") {
		t.Fatalf("a changed partition count: %v", err)
	}
}
