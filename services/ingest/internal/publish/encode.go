package publish

import (
	"errors"
	"math"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
)

// Field numbers of lodestar.event.v1 and google.protobuf's struct.proto that
// the encoder writes itself (TestFieldNumbers checks them).
const (
	batchEvents     protowire.Number = 1 // EventBatch.events
	eventProperties protowire.Number = 10
	eventTraits     protowire.Number = 11
	eventContext    protowire.Number = 12

	structFields protowire.Number = 1 // Struct.fields, a map<string, Value>
	entryKey     protowire.Number = 1 // a map entry's key and value
	entryValue   protowire.Number = 2
	valueNull    protowire.Number = 1 // Value's oneof kind
	valueNumber  protowire.Number = 2
	valueString  protowire.Number = 3
	valueBool    protowire.Number = 4
	valueStruct  protowire.Number = 5
	valueList    protowire.Number = 6
	listValues   protowire.Number = 1 // ListValue.values
)

var errInvalidUTF8 = errors.New("string field contains invalid UTF-8")

// eventBytesGuess sizes the buffer of a batch: a typical event with its
// properties and context, so that most batches encode without regrowing.
const eventBytesGuess = 512

// marshalBatch encodes events as a lodestar.event.v1.EventBatch.
//
// It encodes what proto.Marshal would, but for the events'
// google.protobuf.Structs (properties, traits, context), which it encodes
// itself: protobuf-go walks a Struct's map by reflection, once to size it
// and once to write it, and that is most of the time an event takes to
// encode. Each event's Struct fields come after its other fields, which
// protobuf decoders accept (fields may come in any order). To encode the
// other fields with protobuf-go it detaches the Structs from each event for
// the moment: the events must not be read concurrently.
func marshalBatch(events []*eventv1.Event) ([]byte, error) {
	b := make([]byte, 0, eventBytesGuess*len(events))
	for _, ev := range events {
		var (
			at  int
			err error
		)
		b = protowire.AppendTag(b, batchEvents, protowire.BytesType)
		b, at = reserve(b)
		if b, err = appendEvent(b, ev); err != nil {
			return nil, err
		}
		b = fill(b, at)
	}
	return b, nil
}

// appendEvent appends an Event's encoding.
func appendEvent(b []byte, ev *eventv1.Event) ([]byte, error) {
	props, traits, ctx := ev.Properties, ev.Traits, ev.Context
	ev.Properties, ev.Traits, ev.Context = nil, nil, nil
	b, err := proto.MarshalOptions{}.MarshalAppend(b, ev)
	ev.Properties, ev.Traits, ev.Context = props, traits, ctx
	for _, f := range [...]struct {
		num protowire.Number
		s   *structpb.Struct
	}{{eventProperties, props}, {eventTraits, traits}, {eventContext, ctx}} {
		if err != nil || f.s == nil {
			continue
		}
		var at int
		b = protowire.AppendTag(b, f.num, protowire.BytesType)
		b, at = reserve(b)
		b, err = appendStruct(b, f.s)
		b = fill(b, at)
	}
	return b, err
}

// reserve appends a one-byte placeholder for the length of what follows,
// and returns where it is for fill. Reserving and moving the bytes when the
// length needs more than one byte is cheaper than a sizing pass.
func reserve(b []byte) ([]byte, int) { return append(b, 0), len(b) }

// fill writes the length of what follows the placeholder at at.
func fill(b []byte, at int) []byte {
	n := len(b) - at - 1
	if k := protowire.SizeVarint(uint64(n)); k > 1 {
		b = append(b, make([]byte, k-1)...)
		copy(b[at+k:], b[at+1:at+1+n])
	}
	protowire.AppendVarint(b[at:at], uint64(n))
	return b
}

func appendStruct(b []byte, s *structpb.Struct) ([]byte, error) {
	if s == nil {
		return b, nil
	}
	for k, v := range s.Fields {
		if !utf8.ValidString(k) {
			return b, errInvalidUTF8
		}
		var entry, value int
		var err error
		b = protowire.AppendTag(b, structFields, protowire.BytesType)
		b, entry = reserve(b)
		b = protowire.AppendTag(b, entryKey, protowire.BytesType)
		b = protowire.AppendString(b, k)
		b = protowire.AppendTag(b, entryValue, protowire.BytesType)
		b, value = reserve(b)
		if b, err = appendValue(b, v); err != nil {
			return b, err
		}
		b = fill(fill(b, value), entry)
	}
	return append(b, s.ProtoReflect().GetUnknown()...), nil
}

func appendValue(b []byte, v *structpb.Value) ([]byte, error) {
	if v == nil {
		return b, nil
	}
	var (
		at  int
		err error
	)
	switch k := v.Kind.(type) {
	case *structpb.Value_NullValue:
		b = protowire.AppendTag(b, valueNull, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(k.NullValue))
	case *structpb.Value_NumberValue:
		b = protowire.AppendTag(b, valueNumber, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(k.NumberValue))
	case *structpb.Value_StringValue:
		if !utf8.ValidString(k.StringValue) {
			return b, errInvalidUTF8
		}
		b = protowire.AppendTag(b, valueString, protowire.BytesType)
		b = protowire.AppendString(b, k.StringValue)
	case *structpb.Value_BoolValue:
		b = protowire.AppendTag(b, valueBool, protowire.VarintType)
		b = protowire.AppendVarint(b, protowire.EncodeBool(k.BoolValue))
	case *structpb.Value_StructValue:
		b = protowire.AppendTag(b, valueStruct, protowire.BytesType)
		b, at = reserve(b)
		b, err = appendStruct(b, k.StructValue)
		b = fill(b, at)
	case *structpb.Value_ListValue:
		b = protowire.AppendTag(b, valueList, protowire.BytesType)
		b, at = reserve(b)
		b, err = appendList(b, k.ListValue)
		b = fill(b, at)
	}
	if err != nil {
		return b, err
	}
	return append(b, v.ProtoReflect().GetUnknown()...), nil
}

func appendList(b []byte, l *structpb.ListValue) ([]byte, error) {
	if l == nil {
		return b, nil
	}
	for _, item := range l.Values {
		var (
			at  int
			err error
		)
		b = protowire.AppendTag(b, listValues, protowire.BytesType)
		b, at = reserve(b)
		if b, err = appendValue(b, item); err != nil {
			return b, err
		}
		b = fill(b, at)
	}
	return append(b, l.ProtoReflect().GetUnknown()...), nil
}
