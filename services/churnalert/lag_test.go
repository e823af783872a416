package churnalert_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert"
)

// TestPartitionLag reads churn-alert's lag per partition from what the
// service stores: none once it has applied every change (which also pins
// the positions' names to the pipeline's), and exactly the changes
// published to one partition while the service is stopped.
func TestPartitionLag(t *testing.T) {
	tenant := testenv.Tenant(t)
	e := newEnv(t, testConfig(), tenant)
	now := time.Now()
	var steps []step
	for i := range 12 {
		steps = append(steps, scored("acct-"+strconv.Itoa(i), now.Add(-time.Minute), 80))
	}
	publish(t, e.js, tenant, steps...)
	settle(t, e.js)
	ctx := context.Background()
	lag, err := churnalert.PartitionLag(ctx, e.js, testPartitions)
	if err != nil {
		t.Fatal(err)
	}
	if len(lag) != testPartitions {
		t.Fatalf("lag of %d partitions, want %d", len(lag), testPartitions)
	}
	for p, n := range lag {
		if n != 0 {
			t.Errorf("partition %d: lag %d once every change is applied", p, n)
		}
	}

	e.stop()
	behind := natsx.Partition(tenant, "acct-0", testPartitions)
	const more = 5
	for i := range more {
		publish(t, e.js, tenant, scored("acct-0", now.Add(time.Duration(i)*time.Second), 70-float64(i)))
	}
	// An account change of the same partition counts too.
	publish(t, e.js, tenant, account(&accountv1.Account{AccountId: partitionMate(tenant, "acct-0"), Name: "mate"}))
	if lag, err = churnalert.PartitionLag(ctx, e.js, testPartitions); err != nil {
		t.Fatal(err)
	}
	for p := range uint32(testPartitions) {
		want := uint64(0)
		if p == behind {
			want = more + 1
		}
		if lag[p] != want {
			t.Errorf("partition %d: lag %d with the service stopped, want %d", p, lag[p], want)
		}
	}
}
