package ops_test

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/pkg/auth"
	"github.com/lodestar-cs/lodestar/pkg/grpcserver"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	"github.com/lodestar-cs/lodestar/pkg/ownership"
	opsv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/ops/v1"
	"github.com/lodestar-cs/lodestar/services/ops"
)

const partitions = 8

// TestGetOwnership runs two replicas of a partitioned service on real
// leases and asks the service through the gRPC server with the real
// authentication: every partition's owner, epoch, lease and the lag its
// owner reports; a second service's lag from its source; for each tenant,
// the partitions of its own accounts and nothing of the other tenant's.
func TestGetOwnership(t *testing.T) {
	srv, nc := testenv.NATS(t)
	js, err := natsx.NewJetStream(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	limits := natsx.DefaultLimits()
	limits.Partitions, limits.LeaseTTL = partitions, time.Second
	// Two replicas of "scoring", each in its own connection, reporting a
	// lag of 100 plus the partition.
	for _, name := range []string{"r1", "r2"} {
		rnc, err := nats.Connect(srv.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(rnc.Close)
		rjs, _ := natsx.NewJetStream(rnc)
		l := limits
		l.Member = name
		m, err := ownership.Start(ctx, rjs, l, "scoring", slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		m.ReportLag(func(p uint32) (uint64, bool) { return 100 + uint64(p), true })
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- m.Run(rctx, func(ctx context.Context, _ ownership.Lease) error { <-ctx.Done(); return nil })
		}()
		t.Cleanup(func() { cancel(); <-done })
	}
	// A second service whose lag a source computes; it has one member
	// that holds nothing (its partitions are not its yet).
	kv, err := natsx.EnsureKeyValue(ctx, js, ownership.BucketConfig(limits.LeaseTTL, 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "churn-alert.member.idle", []byte(`{"member":"idle","since":1}`)); err != nil {
		t.Fatal(err)
	}
	lag := func(_ context.Context, _ jetstream.JetStream, n int) (map[uint32]uint64, error) {
		out := map[uint32]uint64{}
		for p := range uint32(n) {
			out[p] = uint64(p) * 2
		}
		return out, nil
	}

	// Two tenants' accounts, in the partitions they hash to.
	a, b := testenv.Tenant(t), testenv.Tenant(t)
	if err := natsx.EnsureStreams(ctx, js, limits.ScoresStream(), limits.AccountChangesStream()); err != nil {
		t.Fatal(err)
	}
	want := map[string][]uint32{}
	for tenant, accounts := range map[string]int{a: 3, b: 2} {
		for i := range accounts {
			acct := tenant + "-acct-" + strconv.Itoa(i)
			subj := natsx.ScoreSubject(tenant, acct, partitions)
			if i == 0 {
				subj = natsx.AccountChangeSubject(tenant, acct, partitions) // an account not scored yet counts
			}
			if _, err := js.Publish(ctx, subj, []byte("x")); err != nil {
				t.Fatal(err)
			}
			if p := natsx.Partition(tenant, acct, partitions); !slices.Contains(want[tenant], p) {
				want[tenant] = append(want[tenant], p)
			}
		}
		slices.Sort(want[tenant])
	}

	reg, err := auth.NewRegistry([]auth.Tenant{{ID: a, APIKeys: []string{"ak_test_a_0123456789"}}, {ID: b, APIKeys: []string{"ak_test_b_0123456789"}}})
	if err != nil {
		t.Fatal(err)
	}
	client := serve(t, reg, ops.New(ops.Deps{JS: js, Lag: map[string]ownership.LagSource{"churn-alert": lag}}))

	if _, err := client(ctx, "").GetOwnership(ctx, &opsv1.GetOwnershipRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("without a key: %v, want Unauthenticated", err)
	}
	if _, err := client(ctx, "ak_wrong_0123456789").GetOwnership(ctx, &opsv1.GetOwnershipRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("with an unknown key: %v, want Unauthenticated", err)
	}

	// Wait until the replicas divided the partitions and renewed once (the
	// lag comes with the renewals); the bound only guards against a hang.
	var resp *opsv1.GetOwnershipResponse
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err = client(ctx, "ak_test_a_0123456789").GetOwnership(ctx, &opsv1.GetOwnershipRequest{}); err != nil {
			t.Fatal(err)
		}
		if settled(resp) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replicas never divided the partitions with their lag reported:\n%s", prototext.Format(resp))
		}
	}
	if resp.GetPartitionCount() != partitions || resp.GetLeaseTtl().AsDuration() != time.Second || len(resp.GetServices()) != 2 {
		t.Fatalf("response:\n%s", prototext.Format(resp))
	}
	churn, scoring := resp.GetServices()[0], resp.GetServices()[1]
	if churn.GetName() != "churn-alert" || churn.GetLagSource() != opsv1.LagSource_LAG_SOURCE_STREAMS ||
		len(churn.GetReplicas()) != 1 || churn.GetReplicas()[0].GetPartitionsOwned() != 0 || len(churn.GetPartitions()) != partitions {
		t.Errorf("churn-alert:\n%s", prototext.Format(churn))
	}
	for _, p := range churn.GetPartitions() {
		if p.GetOwner() != "" || p.Lag == nil || p.GetLag() != uint64(p.GetPartition())*2 {
			t.Errorf("churn-alert partition %d: %s, want no owner and the source's lag", p.GetPartition(), prototext.Format(p))
		}
	}
	if scoring.GetLagSource() != opsv1.LagSource_LAG_SOURCE_OWNER || len(scoring.GetReplicas()) != 2 {
		t.Errorf("scoring:\n%s", prototext.Format(scoring))
	}
	owned := 0
	for _, r := range scoring.GetReplicas() {
		owned += int(r.GetPartitionsOwned())
	}
	read := resp.GetReadTime().AsTime()
	for _, p := range scoring.GetPartitions() {
		if p.GetEpoch() == 0 || p.GetAcquireTime().AsTime().After(read) || !p.GetExpireTime().AsTime().After(read) ||
			p.GetExpireTime().AsTime().Sub(p.GetRenewTime().AsTime()) != time.Second {
			t.Errorf("scoring partition %d: %s", p.GetPartition(), prototext.Format(p))
		}
	}
	if owned != partitions {
		t.Errorf("the replicas own %d partitions, want %d", owned, partitions)
	}

	// Each tenant sees the partitions of its own accounts, and no other
	// tenant's id anywhere.
	for _, tc := range []struct{ me, other, key string }{{a, b, "ak_test_a_0123456789"}, {b, a, "ak_test_b_0123456789"}} {
		resp, err := client(ctx, tc.key).GetOwnership(ctx, &opsv1.GetOwnershipRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(resp.GetTenantPartitions(), want[tc.me]) {
			t.Errorf("tenant %s: partitions %v, want %v", tc.me, resp.GetTenantPartitions(), want[tc.me])
		}
		if text := prototext.Format(resp); strings.Contains(text, tc.other) || strings.Contains(text, tc.me) {
			t.Errorf("tenant %s: the response names a tenant:\n%s", tc.me, text)
		}
	}
}

// settled reports whether scoring's partitions are all owned with their lag
// reported.
func settled(resp *opsv1.GetOwnershipResponse) bool {
	for _, s := range resp.GetServices() {
		if s.GetName() != "scoring" {
			continue
		}
		for _, p := range s.GetPartitions() {
			if p.GetOwner() == "" || p.Lag == nil || p.GetLag() != 100+uint64(p.GetPartition()) {
				return false
			}
		}
		return len(s.GetPartitions()) == partitions
	}
	return false
}

// serve runs svc behind the authentication interceptor and returns a
// client factory: a client sending key ("" sends none).
func serve(t *testing.T, reg *auth.Registry, svc *ops.Service) func(context.Context, string) opsv1.OpsServiceClient {
	gs := grpcserver.New(grpcserver.Config{},
		grpcserver.WithUnaryInterceptors(reg.UnaryServerInterceptor(grpcserver.IsInfraMethod)))
	svc.Register(gs.GRPC())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(ctx, lis) }()
	t.Cleanup(func() { cancel(); <-done })
	return func(_ context.Context, key string) opsv1.OpsServiceClient {
		opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
		if key != "" {
			opts = append(opts, grpc.WithPerRPCCredentials(auth.BearerCredentials{Key: key, Insecure: true}))
		}
		conn, err := grpc.NewClient(lis.Addr().String(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return opsv1.NewOpsServiceClient(conn)
	}
}
