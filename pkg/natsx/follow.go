package natsx

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrWatchClosed is returned by WatchKV when the watch closes while its
// context is not done. It must stop the caller: state following a bucket
// that no longer follows it would go stale while looking current.
var ErrWatchClosed = errors.New("KV watch closed")

// WatchKV follows a KV watch until ctx is done, passing each entry to apply
// and calling loaded once the values stored when the watch began are
// delivered (at once for a watch with jetstream.UpdatesOnly). An error from
// apply or loaded ends it and is returned; a closed watch returns
// ErrWatchClosed; ctx done returns nil. The watch is stopped on return.
func WatchKV(ctx context.Context, w jetstream.KeyWatcher, loaded func() error, apply func(jetstream.KeyValueEntry) error) error {
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return ErrWatchClosed
			}
			var err error
			if e == nil { // the stored values are all delivered
				if loaded != nil {
					err = loaded()
				}
			} else {
				err = apply(e)
			}
			if err != nil {
				return err
			}
		}
	}
}

// ReadKV passes every value stored when the watch began to apply, then
// stops the watch and returns.
func ReadKV(ctx context.Context, w jetstream.KeyWatcher, apply func(jetstream.KeyValueEntry) error) error {
	errLoaded := errors.New("loaded")
	err := WatchKV(ctx, w, func() error { return errLoaded }, apply)
	switch {
	case errors.Is(err, errLoaded):
		return nil
	case err == nil: // ctx done first
		return ctx.Err()
	}
	return err
}

// ConsumeCaughtUp consumes cons (an ordered consumer), passing each message
// and its metadata (nil when it has none) to handle, and sets caughtUp once
// the messages stored when the consumer was created are handled: after the
// message with nothing pending behind it or, when there was nothing to
// deliver, once the consumer reports so (no message comes to say it).
func ConsumeCaughtUp(ctx context.Context, cons jetstream.Consumer, caughtUp *atomic.Bool, handle func(jetstream.Msg, *jetstream.MsgMetadata)) (jetstream.ConsumeContext, error) {
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		meta, err := msg.Metadata()
		if err != nil {
			meta = nil
		}
		handle(msg, meta)
		if meta != nil && meta.NumPending == 0 {
			caughtUp.Store(true)
		}
	})
	if err != nil {
		return nil, err
	}
	go markEmpty(ctx, cons, caughtUp)
	return cc, nil
}

// markEmpty sets caughtUp when the consumer had nothing to deliver.
func markEmpty(ctx context.Context, cons jetstream.Consumer, caughtUp *atomic.Bool) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for !caughtUp.Load() {
		info, err := cons.Info(ctx)
		if err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.Delivered.Consumer == 0 {
			caughtUp.Store(true)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
