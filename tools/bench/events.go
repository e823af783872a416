package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/lodestar-cs/lodestar/tools/loadgen/sim"
)

// batchEvents is the events of one Segment batch: what Segment's libraries
// send at once, and what the throughput is counted in.
const batchEvents = 100

// Placeholders stamped at send time. Neither byte is escaped by
// encoding/json, and neither occurs in simulated events.
const (
	seqHole  = "@@@@@@@@@@@@@@@@"         // 16 hex digits of a batch sequence
	timeHole = "####-##-##T##:##:##.###Z" // an RFC 3339 time in UTC, milliseconds
)

// timeLayout fills timeHole: fixed width, so stamping never moves a byte.
const timeLayout = "2006-01-02T15:04:05.000Z"

// template is one Segment batch body. A live template has holes for its
// events' message ids and times, stamped anew for each send, so a small pool
// of bodies makes an endless stream of distinct events happening now.
type template struct {
	body   []byte
	events int
	seqs   []int // offsets of seqHole
	times  []int // offsets of timeHole
}

// stamp writes t into dst, its message ids made unique by seq and its times
// (the events' and the batch's sentAt) set to at, and returns dst.
func (t *template) stamp(dst []byte, seq uint64, at time.Time) []byte {
	dst = append(dst[:0], t.body...)
	var s [8]byte
	for i := range s {
		s[i] = byte(seq >> (56 - 8*i))
	}
	var hx [16]byte
	hex.Encode(hx[:], s[:])
	for _, o := range t.seqs {
		copy(dst[o:], hx[:])
	}
	if len(t.times) > 0 {
		ts := at.UTC().AppendFormat(make([]byte, 0, len(timeHole)), timeLayout)
		for _, o := range t.times {
			copy(dst[o:], ts)
		}
	}
	return dst
}

// encodeBatch encodes evs as one Segment batch body. Live batches get holes
// for message ids (prefix, then the stamped sequence, then the event's
// index) and times; others keep the simulator's ids and times and send no
// sentAt, so the events keep their own time.
func encodeBatch(evs []sim.Event, live bool, prefix string) (*template, error) {
	var b bytes.Buffer
	b.WriteString(`{"batch":[`)
	for i, ev := range evs {
		se := ev.Segment()
		se.Timestamp = ev.Time.UTC().Format(timeLayout)
		if live {
			se.MessageID, se.Timestamp = prefix+seqHole+"-"+strconv.Itoa(i), timeHole
		}
		if i > 0 {
			b.WriteByte(',')
		}
		enc, err := json.Marshal(se)
		if err != nil {
			return nil, fmt.Errorf("encode event %s: %w", ev.MessageID, err)
		}
		b.Write(enc)
	}
	b.WriteString(`],"context":{"library":{"name":"lodestar-bench","version":"1"}}`)
	if live {
		b.WriteString(`,"sentAt":"` + timeHole + `"`)
	}
	b.WriteString("}")
	t := &template{body: b.Bytes(), events: len(evs)}
	if live {
		t.seqs = offsets(t.body, seqHole)
		t.times = offsets(t.body, timeHole)
	}
	return t, nil
}

// offsets returns where hole occurs in body.
func offsets(body []byte, hole string) []int {
	var out []int
	for at := 0; ; at += len(hole) {
		i := bytes.Index(body[at:], []byte(hole))
		if i < 0 {
			return out
		}
		at += i
		out = append(out, at)
	}
}

// encodeBatches encodes evs as batches of batchEvents.
func encodeBatches(evs []sim.Event, live bool, prefix string) ([]*template, error) {
	var out []*template
	for start := 0; start < len(evs); start += batchEvents {
		t, err := encodeBatch(evs[start:min(start+batchEvents, len(evs))], live, prefix)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// recentEvents returns at least n of the product's events, from the hours
// before now, most recent hours first: the product's own mix of calls and
// sizes. The events' times do not matter to a live pool, which stamps them.
func recentEvents(p *sim.Product, now time.Time, n int) []sim.Event {
	var out []sim.Event
	// Weekends are quiet; four weeks back always holds enough workdays.
	for h := 1; len(out) < n && h <= 28*24; h++ {
		out = p.AppendHour(out, now.Add(-time.Duration(h)*time.Hour))
	}
	return out
}

// probeBody is one probe event of the latency probe: a core event of the
// probe account at a distinct time, by which its score shows when it was
// applied.
func probeBody(n int, at time.Time) []byte {
	return fmt.Appendf(nil, `{"batch":[{"type":"track","messageId":"probe-%d","userId":"probe-user","event":"Report Created",`+
		`"timestamp":%q,"context":{"groupId":%q}}]}`, n, at.UTC().Format(timeLayout), probeAccount)
}
