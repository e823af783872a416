// Package view keeps every alert of the ALERTS stream in memory, at its
// latest version, to answer ListAlerts and GetAlert and to find the alerts
// whose escalation or snooze falls due. It is rebuilt by replaying the
// stream at start: the stream is the source of truth.
package view

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/streams"
)

// View is the in-memory index of alerts.
type View struct {
	logger *slog.Logger

	mu      sync.RWMutex
	alerts  map[string]map[string]*alertv1.Alert // tenant, alert id
	seq     uint64                               // last ALERTS sequence applied
	advance chan struct{}                        // closed when seq moves
	ready   atomic.Bool
}

// New returns an empty view; Run fills it.
func New(logger *slog.Logger) *View {
	return &View{logger: logger, alerts: map[string]map[string]*alertv1.Alert{}, advance: make(chan struct{})}
}

// Ready reports whether the view has caught up with the stream as it was
// at start.
func (v *View) Ready() bool { return v.ready.Load() }

// Run follows the ALERTS stream from its start until ctx is done.
func (v *View) Run(ctx context.Context, js jetstream.JetStream) error {
	st, err := js.Stream(ctx, streams.Alerts)
	if err != nil {
		return fmt.Errorf("alerts stream: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("alerts stream info: %w", err)
	}
	target := info.State.LastSeq
	if target == 0 {
		v.ready.Store(true)
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return fmt.Errorf("alerts view consumer: %w", err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		meta, err := msg.Metadata()
		if err != nil {
			return
		}
		var ev alertv1.AlertEvent
		if err := proto.Unmarshal(msg.Data(), &ev); err != nil {
			v.logger.Error("skip undecodable alert event", "seq", meta.Sequence.Stream, "err", err)
		} else {
			v.apply(ev.GetAlert())
		}
		v.mu.Lock()
		v.seq = meta.Sequence.Stream
		close(v.advance)
		v.advance = make(chan struct{})
		v.mu.Unlock()
		if meta.Sequence.Stream >= target {
			v.ready.Store(true)
		}
	})
	if err != nil {
		return fmt.Errorf("consume alerts: %w", err)
	}
	<-ctx.Done()
	cc.Stop()
	return nil
}

// apply keeps an alert unless a later version is known (an event published
// again after a crash can arrive late).
func (v *View) apply(a *alertv1.Alert) {
	v.mu.Lock()
	defer v.mu.Unlock()
	t := v.alerts[a.GetTenantId()]
	if t == nil {
		t = map[string]*alertv1.Alert{}
		v.alerts[a.GetTenantId()] = t
	}
	if cur := t[a.GetAlertId()]; cur == nil || cur.GetVersion() <= a.GetVersion() {
		t[a.GetAlertId()] = a
	}
}

// WaitFor waits until the view has applied ALERTS sequence seq, so that a
// caller reads its own writes.
func (v *View) WaitFor(ctx context.Context, seq uint64) error {
	for {
		v.mu.RLock()
		done, advance := v.seq >= seq, v.advance
		v.mu.RUnlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-advance:
		}
	}
}

// Get returns an alert, nil when unknown. Do not change it.
func (v *View) Get(tenant, id string) *alertv1.Alert {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.alerts[tenant][id]
}

// List returns a tenant's alerts that keep accepts, newest first (by
// creation, then id). Do not change them.
func (v *View) List(tenant string, keep func(*alertv1.Alert) bool) []*alertv1.Alert {
	v.mu.RLock()
	var out []*alertv1.Alert
	for _, a := range v.alerts[tenant] {
		if keep(a) {
			out = append(out, a)
		}
	}
	v.mu.RUnlock()
	slices.SortFunc(out, Newer)
	return out
}

// Newer orders alerts newest first: by creation time, then id.
func Newer(a, b *alertv1.Alert) int {
	if c := b.GetCreateTime().AsTime().Compare(a.GetCreateTime().AsTime()); c != 0 {
		return c
	}
	return cmp.Compare(a.GetAlertId(), b.GetAlertId())
}

// Due returns the alerts whose escalation or snooze end has come.
func (v *View) Due(now time.Time) []*alertv1.Alert {
	v.mu.RLock()
	defer v.mu.RUnlock()
	var out []*alertv1.Alert
	for _, t := range v.alerts {
		for _, a := range t {
			switch {
			case a.GetState() == alertv1.AlertState_ALERT_STATE_OPEN && a.EscalateTime != nil && !now.Before(a.GetEscalateTime().AsTime()),
				a.GetState() == alertv1.AlertState_ALERT_STATE_SNOOZED && !now.Before(a.GetSnoozeEndTime().AsTime()):
				out = append(out, a)
			}
		}
	}
	return out
}

// Prune forgets alerts resolved before a time: their events have left the
// stream, and a restart would not know them either.
func (v *View) Prune(before time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, t := range v.alerts {
		for id, a := range t {
			if a.GetState() == alertv1.AlertState_ALERT_STATE_RESOLVED && a.GetResolveTime().AsTime().Before(before) {
				delete(t, id)
			}
		}
	}
}
