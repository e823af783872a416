package pipeline

import (
	"bytes"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/lodestar-cs/lodestar/internal/scorecore/engine"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
)

// Field numbers of lodestar.event.v1: EventBatch.events and the Event fields
// holding google.protobuf.Structs.
const (
	batchEvents     protowire.Number = 1
	eventProperties protowire.Number = 10
	eventTraits     protowire.Number = 11
	eventContext    protowire.Number = 12
	maxReused                        = 1 << 16 // events a decoder keeps for reuse
)

// decoder decodes EVENTS messages for the engine, leaving out what it never
// reads. Decoding the google.protobuf.Structs of an event (properties,
// traits, context) costs more than the rest of it together, and the engine
// reads them for a few kinds of event only (engine.Reads): so each event is
// decoded without them, and a Struct is decoded only when the engine reads
// it. A Struct left out is not checked either, so a corrupt one the engine
// would not read no longer makes the whole message undecodable. The events
// it returns are reused by the next decode: it is for one goroutine, and the
// engine keeps no event.
type decoder struct {
	events  []*eventv1.Event
	scratch []byte
}

// badEvent is an event of a batch that could not be decoded: a corrupt one,
// or one nested beyond protobuf's recursion limit (ingest rejects those
// since it bounds nesting, but EVENTS may hold older ones).
type badEvent struct {
	index int    // in the batch
	data  []byte // its encoding, copied
	err   error
}

// decode decodes an EventBatch's events. An event that does not decode is
// returned among the bad ones and the others are kept: one bad event never
// costs the events stored with it. An error means the batch's own framing
// is corrupt, so no event can be told from the next: then none is returned.
func (d *decoder) decode(data []byte) ([]*eventv1.Event, []badEvent, error) {
	n := 0
	var bad []badEvent
	for i := 0; len(data) > 0; {
		num, typ, k := protowire.ConsumeTag(data)
		if k < 0 {
			return nil, nil, fmt.Errorf("event batch: %w", protowire.ParseError(k))
		}
		data = data[k:]
		if num != batchEvents || typ != protowire.BytesType {
			if k = protowire.ConsumeFieldValue(num, typ, data); k < 0 {
				return nil, nil, fmt.Errorf("event batch: %w", protowire.ParseError(k))
			}
			data = data[k:]
			continue
		}
		b, k := protowire.ConsumeBytes(data)
		if k < 0 {
			return nil, nil, fmt.Errorf("event batch: %w", protowire.ParseError(k))
		}
		data = data[k:]
		if n == len(d.events) {
			d.events = append(d.events, new(eventv1.Event))
		}
		if err := d.event(b, d.events[n]); err != nil {
			bad = append(bad, badEvent{index: i, data: bytes.Clone(b), err: err})
		} else {
			n++
		}
		i++
	}
	events := d.events[:n]
	if len(d.events) > maxReused {
		d.events = nil // a freak batch does not pin its events
	}
	return events, bad, nil
}

// event decodes one Event into ev, its Structs only where the engine reads
// them.
func (d *decoder) event(b []byte, ev *eventv1.Event) error {
	// Keep every field but the Structs, in order, and remember where those
	// are. A field may repeat: protobuf merges a message field's occurrences.
	var props, traits [][]byte
	d.scratch = d.scratch[:0]
	trimmed := false
	for rest := b; len(rest) > 0; {
		num, typ, k := protowire.ConsumeTag(rest)
		if k < 0 {
			return protowire.ParseError(k)
		}
		v := protowire.ConsumeFieldValue(num, typ, rest[k:])
		if v < 0 {
			return protowire.ParseError(v)
		}
		field := rest[:k+v]
		rest = rest[k+v:]
		if typ == protowire.BytesType {
			switch num {
			case eventProperties, eventTraits, eventContext:
				value, _ := protowire.ConsumeBytes(field[k:])
				if num == eventProperties {
					props = append(props, value)
				} else if num == eventTraits {
					traits = append(traits, value)
				}
				trimmed = true
				continue
			}
		}
		d.scratch = append(d.scratch, field...)
	}
	if !trimmed {
		return proto.Unmarshal(b, ev)
	}
	// proto.Unmarshal copies what it keeps, so scratch is free again after.
	if err := proto.Unmarshal(d.scratch, ev); err != nil {
		return err
	}
	readsProps, readsTraits := engine.Reads(ev.GetType(), ev.GetEvent(), ev.GetName())
	var err error
	if readsProps {
		ev.Properties, err = mergeStruct(props)
	}
	if err == nil && readsTraits {
		ev.Traits, err = mergeStruct(traits)
	}
	return err
}

// mergeStruct decodes a Struct field's occurrences, nil for none.
func mergeStruct(parts [][]byte) (*structpb.Struct, error) {
	if len(parts) == 0 {
		return nil, nil
	}
	s := new(structpb.Struct)
	for _, p := range parts {
		if err := (proto.UnmarshalOptions{Merge: true}).Unmarshal(p, s); err != nil {
			return nil, err
		}
	}
	return s, nil
}
