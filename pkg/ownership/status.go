package ownership

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/lodestar-cs/lodestar/pkg/natsx"
)

// Status is who owns which partition of every partitioned service, read
// from the leases bucket: what `lodestar status` prints and
// lodestar.ops.v1.OpsService serves.
type Status struct {
	// Partitions is the deployment's partition count; 0 before any
	// partitioned service started.
	Partitions int
	// TTL is the lease TTL: a lease not renewed for this long expires.
	TTL time.Duration
	// Read is when the bucket was read; the lease times compare to it.
	Read time.Time
	// Groups are the services with members or leases, by name.
	Groups []GroupStatus
}

// GroupStatus is one service's replicas and partitions.
type GroupStatus struct {
	Group string
	// Members are the live replicas, by name.
	Members []MemberStatus
	// Partitions has every partition, owned or not, in order.
	Partitions []PartitionStatus
	// LagFrom says where Lag comes from: LagFromOwner or LagFromStreams.
	LagFrom LagFrom
	// LagError says why the lag is unknown, when its source failed.
	LagError string
}

// LagFrom is where a group's partition lag comes from.
type LagFrom int

const (
	// LagFromOwner is the lag each owner reports on its renewals
	// (Manager.ReportLag): at most TTL/4 old, none for an unowned partition.
	LagFromOwner LagFrom = iota
	// LagFromStreams is the lag a LagSource computes from what the service
	// stores in NATS, for owned and unowned partitions alike.
	LagFromStreams
)

// MemberStatus is one live replica.
type MemberStatus struct {
	Name string
	// Renewed is when it last renewed its membership (server time).
	Renewed time.Time
	// Owned is how many partitions it holds.
	Owned int
}

// PartitionStatus is one partition's lease and lag.
type PartitionStatus struct {
	Partition uint32
	// Owner is the member holding the lease; empty when none does.
	Owner string
	// Epoch is the lease's fencing token: a later owner's is higher.
	Epoch uint64
	// Taken is when the lease was created (the owner's clock); zero when
	// its owner runs a version that does not say.
	Taken time.Time
	// Renewed is the lease's last write (server time); Expires is Renewed
	// plus the TTL: the lease is held until then unless renewed.
	Renewed, Expires time.Time
	// Lag is the partition's consumer lag in messages when LagKnown.
	Lag      uint64
	LagKnown bool
}

// Held reports whether the lease was live when the status was read.
func (p PartitionStatus) Held(read time.Time) bool { return p.Owner != "" && read.Before(p.Expires) }

// LagSource computes a group's consumer lag per partition from what the
// service stores in NATS, for a service whose owners do not report it.
// Partitions it leaves out have unknown lag.
type LagSource func(ctx context.Context, js jetstream.JetStream, partitions int) (map[uint32]uint64, error)

// ReadStatus reads every group's members and leases, and each partition's
// lag: from sources[group] when there is one, else as the owners report
// it. A source's failure leaves that group's lag unknown, with the error.
func ReadStatus(ctx context.Context, js jetstream.JetStream, sources map[string]LagSource) (Status, error) {
	st := Status{Read: time.Now()}
	kv, err := js.KeyValue(ctx, Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("ownership bucket: %w", err)
	}
	if st.Partitions, err = natsx.StoredPartitions(ctx, js); err != nil {
		return st, err
	}
	ks, err := kv.Status(ctx)
	if err != nil {
		return st, fmt.Errorf("ownership bucket status: %w", err)
	}
	st.TTL = ks.TTL()
	entries, err := readCurrent(ctx, js, kv)
	if err != nil {
		return st, fmt.Errorf("read ownership bucket: %w", err)
	}
	groups := map[string]*GroupStatus{}
	type lease struct {
		rec     record
		renewed time.Time
	}
	leases := map[string]map[uint32]lease{}
	for _, e := range entries {
		group, rest, _ := strings.Cut(e.Key(), ".")
		kind, name, ok := strings.Cut(rest, ".")
		var rec record
		if !ok || json.Unmarshal(e.Value(), &rec) != nil {
			continue // not ours to judge: the managers log it
		}
		g := groups[group]
		if g == nil {
			g = &GroupStatus{Group: group}
			groups[group], leases[group] = g, map[uint32]lease{}
		}
		switch kind {
		case "member":
			g.Members = append(g.Members, MemberStatus{Name: name, Renewed: e.Created()})
		case "lease":
			if p, err := strconv.ParseUint(name, 10, 32); err == nil {
				leases[group][uint32(p)] = lease{rec, e.Created()}
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(groups)) {
		g := groups[name]
		n := st.Partitions
		for p := range leases[name] {
			n = max(n, int(p)+1) // a count recorded elsewhere: show what is held
		}
		owned := map[string]int{}
		for p := range uint32(n) {
			ps := PartitionStatus{Partition: p}
			if l, ok := leases[name][p]; ok {
				ps.Owner, ps.Epoch, ps.Renewed, ps.Expires = l.rec.Member, l.rec.Epoch, l.renewed, l.renewed.Add(st.TTL)
				if l.rec.Taken != 0 {
					ps.Taken = time.UnixMilli(l.rec.Taken)
				}
				if l.rec.Lag != nil {
					ps.Lag, ps.LagKnown = *l.rec.Lag, true
				}
				owned[l.rec.Member]++
			}
			g.Partitions = append(g.Partitions, ps)
		}
		for i := range g.Members {
			g.Members[i].Owned = owned[g.Members[i].Name]
		}
		slices.SortFunc(g.Members, func(a, b MemberStatus) int { return cmp.Compare(a.Name, b.Name) })
		if src, ok := sources[name]; ok {
			g.LagFrom = LagFromStreams
			lag, err := src(ctx, js, n)
			if err != nil {
				g.LagError = err.Error()
			}
			for i := range g.Partitions {
				g.Partitions[i].Lag, g.Partitions[i].LagKnown = 0, false
				if v, ok := lag[g.Partitions[i].Partition]; ok && err == nil {
					g.Partitions[i].Lag, g.Partitions[i].LagKnown = v, true
				}
			}
		}
		st.Groups = append(st.Groups, *g)
	}
	return st, nil
}

// WriteStatus writes st as tables: each partition's owner, epoch, how long
// it has held the lease, when the lease expires unless renewed and the lag;
// then the live members.
func WriteStatus(out io.Writer, st Status) error {
	if len(st.Groups) == 0 {
		_, err := fmt.Fprintln(out, "no partitioned service has started yet")
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%d partitions, lease TTL %s, read %s\n\n", st.Partitions, st.TTL, st.Read.UTC().Format(time.RFC3339))
	fmt.Fprintln(tw, "GROUP\tPARTITION\tOWNER\tEPOCH\tHELD FOR\tEXPIRES IN\tLAG")
	for _, g := range st.Groups {
		for _, p := range g.Partitions {
			owner, epoch, age, expires := "-", "-", "-", "-"
			if p.Owner != "" {
				owner, epoch = p.Owner, strconv.FormatUint(p.Epoch, 10)
				if !p.Taken.IsZero() {
					age = st.Read.Sub(p.Taken).Round(time.Second).String()
				}
				expires = "expired"
				if p.Held(st.Read) {
					expires = p.Expires.Sub(st.Read).Round(100 * time.Millisecond).String()
				}
			}
			lag := "-"
			if p.LagKnown {
				lag = strconv.FormatUint(p.Lag, 10)
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", g.Group, p.Partition, owner, epoch, age, expires, lag)
		}
	}
	fmt.Fprintln(tw, "\nGROUP\tMEMBER\tPARTITIONS\tLAST RENEWED")
	for _, g := range st.Groups {
		for _, m := range g.Members {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", g.Group, m.Name, m.Owned, m.Renewed.UTC().Format(time.RFC3339))
		}
	}
	for _, g := range st.Groups {
		if g.LagError != "" {
			fmt.Fprintf(tw, "\n%s: lag unknown: %s\n", g.Group, g.LagError)
		}
	}
	return tw.Flush()
}

// readCurrent returns the bucket's current entries: the keys from the
// stream's subjects, then each key's value. Not a watch: its end-of-values
// marker counts deliveries, and keys renewed while they are read (leases
// renew every TTL/4) are delivered twice, so it came before some keys in
// tests.
func readCurrent(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue) ([]jetstream.KeyValueEntry, error) {
	prefix := "$KV." + Bucket + "."
	str, err := js.Stream(ctx, "KV_"+Bucket)
	if err != nil {
		return nil, err
	}
	info, err := str.Info(ctx, jetstream.WithSubjectFilter(prefix+">"))
	if err != nil {
		return nil, err
	}
	keys := slices.Collect(maps.Keys(info.State.Subjects))
	out := make([]jetstream.KeyValueEntry, len(keys))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i, subj := range keys {
		g.Go(func() error {
			e, err := kv.Get(gctx, strings.TrimPrefix(subj, prefix))
			if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
				return nil // expired or given back
			}
			out[i] = e
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return slices.DeleteFunc(out, func(e jetstream.KeyValueEntry) bool { return e == nil }), nil
}
