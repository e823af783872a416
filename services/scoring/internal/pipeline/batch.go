package pipeline

import "github.com/lodestar-cs/lodestar/pkg/cache"

// batch collects score updates waiting to be written. Of an account's
// updates it keeps every one recorded in history, in order, but only the
// latest of those that are not: a current score that a newer one replaced
// need not be written. So a batch that waits (its store is down, or it
// waits for the next index step) grows with the accounts scored and their
// recorded changes, not with the flushes.
type batch struct {
	updates []cache.Update
	last    map[accountKey]int // each account's latest update in updates
}

type accountKey struct{ tenant, account string }

func (b *batch) add(updates ...cache.Update) {
	if b.last == nil {
		b.last = make(map[accountKey]int)
	}
	for _, u := range updates {
		k := accountKey{u.Score.GetTenantId(), u.Score.GetAccountId()}
		if i, ok := b.last[k]; ok && !b.updates[i].Record {
			b.updates[i] = u
			continue
		}
		b.last[k] = len(b.updates)
		b.updates = append(b.updates, u)
	}
}

// reset empties the batch, keeping its memory. The updates are cleared, not
// only cut: the array would otherwise keep a big batch's scores alive, tens
// of megabytes for the GC to mark.
func (b *batch) reset() {
	clear(b.updates)
	b.updates = b.updates[:0]
	clear(b.last)
}
