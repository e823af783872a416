// Package ops serves lodestar.ops.v1.OpsService: how the deployment runs,
// read from NATS, so that every process connected to it answers alike.
//
// What it answers is the deployment's (partition numbers, replica names,
// leases, lag), not any tenant's, so any authenticated caller may read it;
// the one tenant-specific part, the partitions holding the tenant's events,
// is the caller's own tenant's, taken from its credential.
package ops

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/pkg/grpcerr"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	"github.com/lodestar-cs/lodestar/pkg/ownership"
	opsv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/ops/v1"
)

// Deps are what the service reads.
type Deps struct {
	JS jetstream.JetStream
	// Lag computes the partition lag of the services whose owners do not
	// report it, by service name (ownership.ReadStatus).
	Lag map[string]ownership.LagSource
}

// Service is the ops service.
type Service struct {
	opsv1.UnimplementedOpsServiceServer
	deps Deps
}

// New returns the service.
func New(deps Deps) *Service { return &Service{deps: deps} }

// Register registers lodestar.ops.v1.OpsService.
func (s *Service) Register(r grpc.ServiceRegistrar) { opsv1.RegisterOpsServiceServer(r, s) }

// Run does nothing until ctx is done: the service reads NATS per call.
func (s *Service) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// Ready reports true: a call that cannot read NATS fails on its own.
func (s *Service) Ready() bool { return true }

// readTimeout bounds one status read: it is a few dozen requests to NATS.
const readTimeout = 10 * time.Second

// GetOwnership reports each partitioned service's partitions: owners,
// epochs, leases and lag, and the partitions of the caller's tenant.
func (s *Service) GetOwnership(ctx context.Context, _ *opsv1.GetOwnershipRequest) (*opsv1.GetOwnershipResponse, error) {
	tenant, err := grpcerr.Tenant(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	st, err := ownership.ReadStatus(ctx, s.deps.JS, s.deps.Lag)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "read the partition leases: %v", err)
	}
	resp := response(st)
	if resp.TenantPartitions, err = tenantPartitions(ctx, s.deps.JS, tenant, st.Partitions); err != nil {
		return nil, status.Errorf(codes.Unavailable, "read the tenant's partitions: %v", err)
	}
	return resp, nil
}

// response is st as the RPC answers it, without the caller's partitions.
func response(st ownership.Status) *opsv1.GetOwnershipResponse {
	resp := &opsv1.GetOwnershipResponse{
		PartitionCount: uint32(st.Partitions),
		LeaseTtl:       durationpb.New(st.TTL),
		ReadTime:       timestamppb.New(st.Read),
	}
	for _, g := range st.Groups {
		svc := &opsv1.PartitionedService{Name: g.Group, LagSource: opsv1.LagSource_LAG_SOURCE_OWNER, LagError: g.LagError}
		if g.LagFrom == ownership.LagFromStreams {
			svc.LagSource = opsv1.LagSource_LAG_SOURCE_STREAMS
		}
		for _, m := range g.Members {
			svc.Replicas = append(svc.Replicas, &opsv1.Replica{Name: m.Name, RenewTime: timestamppb.New(m.Renewed), PartitionsOwned: uint32(m.Owned)})
		}
		for _, p := range g.Partitions {
			out := &opsv1.Partition{Partition: p.Partition, Owner: p.Owner, Epoch: p.Epoch}
			if p.Owner != "" {
				out.RenewTime, out.ExpireTime = timestamppb.New(p.Renewed), timestamppb.New(p.Expires)
				if !p.Taken.IsZero() {
					out.AcquireTime = timestamppb.New(p.Taken)
				}
			}
			if p.LagKnown {
				out.Lag = &p.Lag
			}
			svc.Partitions = append(svc.Partitions, out)
		}
		resp.Services = append(resp.Services, svc)
	}
	return resp
}

// tenantPartitions lists the partitions holding tenant's accounts: those
// with a message of the tenant in SCORES or ACCOUNT_CHANGES, found by a
// last-message read filtered on the tenant's subjects of the partition
// (<prefix>.<tenant>.<partition>.*), so nothing of another tenant is read.
// Not EVENTS: ingest puts a watermark of every tenant in every partition.
func tenantPartitions(ctx context.Context, js jetstream.JetStream, tenant string, partitions int) ([]uint32, error) {
	var strs []jetstream.Stream
	var prefixes []string
	for _, src := range []struct{ stream, prefix string }{
		{natsx.StreamScores, natsx.ScoresSubjectPrefix}, {natsx.StreamAccountChanges, natsx.AccountsSubjectPrefix},
	} {
		str, err := js.Stream(ctx, src.stream)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		strs, prefixes = append(strs, str), append(prefixes, src.prefix)
	}
	holds := make([]bool, partitions)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for p := range partitions {
		g.Go(func() error {
			for i, str := range strs {
				_, err := str.GetLastMsgForSubject(gctx, prefixes[i]+"."+tenant+"."+strconv.Itoa(p)+".*")
				if errors.Is(err, jetstream.ErrMsgNotFound) {
					continue
				}
				if err != nil {
					return fmt.Errorf("partition %d: %w", p, err)
				}
				holds[p] = true
				return nil
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var out []uint32
	for p, ok := range holds {
		if ok {
			out = append(out, uint32(p))
		}
	}
	return out, nil
}
