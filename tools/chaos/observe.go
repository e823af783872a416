package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/lodestar-cs/lodestar/pkg/cache"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	"github.com/lodestar-cs/lodestar/pkg/ownership"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert"
)

// scoresSeen records when each (partition, epoch) published its first
// score change, as core NATS subscribers see publishes.
type scoresSeen struct {
	mu    sync.Mutex
	first map[[2]uint64]time.Time
}

func watchScores(nc *nats.Conn) (*scoresSeen, error) {
	s := &scoresSeen{first: map[[2]uint64]time.Time{}}
	_, err := nc.Subscribe(natsx.ScoresSubjectPrefix+".>", func(m *nats.Msg) {
		at := time.Now()
		tokens := strings.Split(m.Subject, ".")
		if len(tokens) != 5 {
			return
		}
		p, err1 := strconv.ParseUint(tokens[3], 10, 32)
		e, err2 := strconv.ParseUint(m.Header.Get(natsx.EpochHeader), 10, 64)
		if err1 != nil || err2 != nil {
			return
		}
		s.mu.Lock()
		if _, ok := s.first[[2]uint64{p, e}]; !ok {
			s.first[[2]uint64{p, e}] = at
		}
		s.mu.Unlock()
	})
	return s, err
}

// after returns when partition p first published under an epoch above e,
// and that epoch.
func (s *scoresSeen) after(p uint32, e uint64) (time.Time, uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var best time.Time
	var epoch uint64
	for k, at := range s.first {
		if k[0] == uint64(p) && k[1] > e && (best.IsZero() || at.Before(best)) {
			best, epoch = at, k[1]
		}
	}
	return best, epoch, !best.IsZero()
}

// lease is one partition's lease as the bucket holds it.
type lease struct {
	Member string
	Epoch  uint64
}

// owners reads group's leases, as lodestar status does (ownership.ReadStatus
// reads each key: a watch's initial values miss keys renewed meanwhile).
func owners(ctx context.Context, js jetstream.JetStream, group string) (map[uint32]lease, error) {
	st, err := ownership.ReadStatus(ctx, js, nil)
	if err != nil {
		return nil, err
	}
	out := map[uint32]lease{}
	for _, g := range st.Groups {
		if g.Group != group {
			continue
		}
		for _, p := range g.Partitions {
			if p.Owner != "" && p.Epoch > 0 {
				out[p.Partition] = lease{Member: p.Owner, Epoch: p.Epoch}
			}
		}
	}
	return out, nil
}

// readScores reads every account's current score from the cache.
func readScores(ctx context.Context, rd *cache.Redis, w *world) (map[string]*scoringv1.HealthScore, error) {
	out := map[string]*scoringv1.HealthScore{}
	for i := 0; i < len(w.accounts); i += 500 {
		var ids []string
		for _, a := range w.accounts[i:min(i+500, len(w.accounts))] {
			ids = append(ids, a.GetAccountId())
		}
		scores, err := rd.GetScores(ctx, w.tenant, ids)
		if err != nil {
			return nil, err
		}
		for _, s := range scores {
			if s != nil {
				out[s.GetAccountId()] = s
			}
		}
	}
	return out, nil
}

// diffScores returns the accounts whose scores differ in value, band, day
// or any measure's raw value and sub-score, with the first difference.
func diffScores(want, got map[string]*scoringv1.HealthScore) (int, string) {
	n, first := 0, ""
	for id, x := range want {
		y, ok := got[id]
		d := ""
		day := func(s *scoringv1.HealthScore) time.Time { return s.GetScoreTime().AsTime().Truncate(24 * time.Hour) }
		switch {
		case !ok:
			d = id + " missing"
		case x.GetScore() != y.GetScore() || x.GetBand() != y.GetBand() || !day(x).Equal(day(y)):
			d = fmt.Sprintf("%s: %.4f %v %v vs %.4f %v %v", id, x.GetScore(), x.GetBand(), day(x), y.GetScore(), y.GetBand(), day(y))
		default:
			for i, m := range x.GetMeasures() {
				if i >= len(y.GetMeasures()) || m.GetRawValue() != y.GetMeasures()[i].GetRawValue() || m.GetSubScore() != y.GetMeasures()[i].GetSubScore() {
					d = fmt.Sprintf("%s: measure %s differs", id, m.GetName())
					break
				}
			}
		}
		if d != "" {
			n++
			if first == "" {
				first = d
			}
		}
	}
	if len(got) != len(want) && first == "" {
		first = fmt.Sprintf("%d scores vs %d", len(got), len(want))
		n++
	}
	return n, first
}

// readStream passes every message of a stream, from the start, to fn.
func readStream(ctx context.Context, js jetstream.JetStream, stream string, fn func(jetstream.Msg, *jetstream.MsgMetadata)) error {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return err
	}
	if info.State.Msgs == 0 {
		return nil
	}
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return err
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer it.Stop()
	for {
		m, err := it.Next()
		if err != nil {
			return err
		}
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		fn(m, meta)
		if meta.NumPending == 0 {
			return nil
		}
	}
}

// opened is the OPENED events of ALERTS: how many per alert id, and each
// one's rule.
type opened struct {
	count map[string]int
	rule  map[string]string
	// account of each alert id, and each account's alert events in stream
	// order, to show where two runs part.
	account map[string]string
	trail   map[string][]string
}

func openedAlerts(ctx context.Context, js jetstream.JetStream) (opened, error) {
	out := opened{count: map[string]int{}, rule: map[string]string{}, account: map[string]string{}, trail: map[string][]string{}}
	err := readStream(ctx, js, "ALERTS", func(m jetstream.Msg, _ *jetstream.MsgMetadata) {
		var ev alertv1.AlertEvent
		if proto.Unmarshal(m.Data(), &ev) != nil {
			return
		}
		a := ev.GetAlert()
		out.trail[a.GetAccountId()] = append(out.trail[a.GetAccountId()], fmt.Sprintf("%s %s %s at %s (score %.1f)",
			strings.TrimPrefix(ev.GetType().String(), "ALERT_EVENT_TYPE_"), a.GetRuleId(), a.GetAlertId(),
			ev.GetEventTime().AsTime().Format(time.DateTime), a.GetScore()))
		if ev.GetType() == alertv1.AlertEventType_ALERT_EVENT_TYPE_OPENED {
			out.count[a.GetAlertId()]++
			out.rule[a.GetAlertId()] = a.GetRuleId()
			out.account[a.GetAlertId()] = a.GetAccountId()
		}
	})
	return out, err
}

// staleScores counts SCORES messages of an epoch below one published
// before them in their partition: writes of an owner that had lost it.
func staleScores(ctx context.Context, js jetstream.JetStream) (total, stale int, err error) {
	maxEpoch := map[string]uint64{}
	err = readStream(ctx, js, natsx.StreamScores, func(m jetstream.Msg, _ *jetstream.MsgMetadata) {
		tokens := strings.Split(m.Subject(), ".")
		e, perr := strconv.ParseUint(m.Headers().Get(natsx.EpochHeader), 10, 64)
		if len(tokens) != 5 || perr != nil {
			return
		}
		total++
		if e < maxEpoch[tokens[3]] {
			stale++
		}
		maxEpoch[tokens[3]] = max(maxEpoch[tokens[3]], e)
	})
	return total, stale, err
}

// alertsCaughtUp reports whether churn-alert has applied every change of
// both streams, each partition's stored position against its last message.
func alertsCaughtUp(ctx context.Context, js jetstream.JetStream) (bool, error) {
	kv, err := js.KeyValue(ctx, "ALERT_STATE")
	if err != nil {
		return false, err
	}
	for _, c := range []struct{ stream, prefix string }{
		{natsx.StreamScores, natsx.ScoresSubjectPrefix}, {natsx.StreamAccountChanges, natsx.AccountsSubjectPrefix},
	} {
		st, err := js.Stream(ctx, c.stream)
		if err != nil {
			return false, err
		}
		for p := range uint32(natsx.DefaultPartitions) {
			last, err := st.GetLastMsgForSubject(ctx, natsx.PartitionFilter(c.prefix, p))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				return false, err
			}
			e, err := kv.Get(ctx, churnalert.PositionKey(c.stream, p, natsx.DefaultPartitions))
			if err != nil {
				return false, nil
			}
			if pos, _ := strconv.ParseUint(string(e.Value()), 10, 64); pos < last.Sequence {
				return false, nil
			}
		}
	}
	return true, nil
}
