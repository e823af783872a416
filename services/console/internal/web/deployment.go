package web

import (
	"net/http"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/pkg/humanize"
	opsv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/ops/v1"
)

// deploymentData is the deployment page: which replica of each partitioned
// service owns which partition, its lease and its lag. It is the
// deployment's, the same for every tenant, but for Mine: the partitions of
// the signed-in tenant's accounts, as the service answers for the session's
// key.
type deploymentData struct {
	Partitions uint32
	TTL        string
	Read       *timestamppb.Timestamp
	Services   []serviceView
	Mine       int // partitions holding the tenant's accounts
}

type serviceView struct {
	Name       string
	LagSource  string
	LagError   string
	Replicas   []replicaView
	Partitions []partitionView
	Owned      int    // partitions held
	Lag        string // total of the known lags
	MaxLag     string
}

type replicaView struct {
	Name    string
	Owned   uint32
	Renewed string // how long before the read
}

type partitionView struct {
	N       uint32
	Owner   string
	Epoch   uint64
	HeldFor string
	// Lease is "held", "expired" or "unowned"; Expires says when a held
	// lease expires unless renewed.
	Lease   string
	Expires string
	Lag     string
	Mine    bool
}

// deployment shows the partitions of the deployment's services.
func (srv *Server) deployment(w http.ResponseWriter, r *http.Request) {
	resp, err := srv.ops.GetOwnership(rpc(r), &opsv1.GetOwnershipRequest{})
	if err != nil {
		srv.failRPC(w, r, "read the partition ownership", err)
		return
	}
	srv.render(w, r, http.StatusOK, "deployment.html", "Deployment", "deployment", deploymentView(resp))
}

func deploymentView(resp *opsv1.GetOwnershipResponse) deploymentData {
	read := resp.GetReadTime().AsTime()
	d := deploymentData{Partitions: resp.GetPartitionCount(), TTL: resp.GetLeaseTtl().AsDuration().String(), Read: resp.GetReadTime()}
	mine := map[uint32]bool{}
	for _, p := range resp.GetTenantPartitions() {
		mine[p] = true
	}
	d.Mine = len(mine)
	for _, s := range resp.GetServices() {
		v := serviceView{Name: s.GetName(), LagError: s.GetLagError(), LagSource: "reported by the owners on each lease renewal"}
		if s.GetLagSource() == opsv1.LagSource_LAG_SOURCE_STREAMS {
			v.LagSource = "from the positions the service stores (up to a checkpoint interval behind)"
		}
		for _, r := range s.GetReplicas() {
			v.Replicas = append(v.Replicas, replicaView{Name: r.GetName(), Owned: r.GetPartitionsOwned(), Renewed: ago(read, r.GetRenewTime())})
		}
		var total, most uint64
		known := false
		for _, p := range s.GetPartitions() {
			pv := partitionView{N: p.GetPartition(), Owner: p.GetOwner(), Epoch: p.GetEpoch(), Lease: "unowned", Lag: humanize.Missing, HeldFor: humanize.Missing, Expires: humanize.Missing, Mine: mine[p.GetPartition()]}
			if p.GetOwner() != "" {
				if taken := timeOf(p.GetAcquireTime()); !taken.IsZero() {
					pv.HeldFor = humanize.Duration(read.Sub(taken))
				}
				pv.Lease = "expired"
				if left := p.GetExpireTime().AsTime().Sub(read); left > 0 {
					pv.Lease, pv.Expires = "held", "in "+left.Round(100*time.Millisecond).String()
					v.Owned++
				}
			}
			if p.Lag != nil {
				known = true
				total += p.GetLag()
				most = max(most, p.GetLag())
				pv.Lag = humanize.Int(int64(p.GetLag()))
			}
			v.Partitions = append(v.Partitions, pv)
		}
		v.Lag, v.MaxLag = humanize.Missing, humanize.Missing
		if known {
			v.Lag, v.MaxLag = humanize.Int(int64(total)), humanize.Int(int64(most))
		}
		d.Services = append(d.Services, v)
	}
	return d
}

// ago says how long before read ts was, to the tenth of a second: leases
// live for seconds.
func ago(read time.Time, ts *timestamppb.Timestamp) string {
	t := timeOf(ts)
	if t.IsZero() {
		return humanize.Missing
	}
	return max(read.Sub(t), 0).Round(100*time.Millisecond).String() + " ago"
}

// epoch formats an epoch without thousands separators: it is an id.
func epoch(e uint64) string { return strconv.FormatUint(e, 10) }
