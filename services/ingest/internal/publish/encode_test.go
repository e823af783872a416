package publish

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
)

func TestFieldNumbers(t *testing.T) {
	num := func(md protoreflect.MessageDescriptor, name string) protowire.Number {
		f := md.Fields().ByName(protoreflect.Name(name))
		if f == nil {
			t.Fatalf("%s has no field %s", md.FullName(), name)
		}
		return f.Number()
	}
	event := (&eventv1.Event{}).ProtoReflect().Descriptor()
	value := (&structpb.Value{}).ProtoReflect().Descriptor()
	entry := (&structpb.Struct{}).ProtoReflect().Descriptor().Fields().ByName("fields").Message()
	for _, c := range []struct {
		got, want protowire.Number
		name      string
	}{
		{batchEvents, num((&eventv1.EventBatch{}).ProtoReflect().Descriptor(), "events"), "EventBatch.events"},
		{eventProperties, num(event, "properties"), "Event.properties"},
		{eventTraits, num(event, "traits"), "Event.traits"},
		{eventContext, num(event, "context"), "Event.context"},
		{structFields, num((&structpb.Struct{}).ProtoReflect().Descriptor(), "fields"), "Struct.fields"},
		{entryKey, num(entry, "key"), "map entry key"},
		{entryValue, num(entry, "value"), "map entry value"},
		{valueNull, num(value, "null_value"), "Value.null_value"},
		{valueNumber, num(value, "number_value"), "Value.number_value"},
		{valueString, num(value, "string_value"), "Value.string_value"},
		{valueBool, num(value, "bool_value"), "Value.bool_value"},
		{valueStruct, num(value, "struct_value"), "Value.struct_value"},
		{valueList, num(value, "list_value"), "Value.list_value"},
		{listValues, num((&structpb.ListValue{}).ProtoReflect().Descriptor(), "values"), "ListValue.values"},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, want %d", c.name, c.got, c.want)
		}
	}
}

// randomValue is a JSON-like value nested at most depth deep, with strings
// long enough to need two-byte lengths now and then.
func randomValue(r *rand.Rand, depth int) *structpb.Value {
	switch n := r.IntN(7); {
	case n == 0:
		return structpb.NewNullValue()
	case n == 1:
		return structpb.NewNumberValue(r.NormFloat64() * 1e6)
	case n == 2:
		return structpb.NewBoolValue(r.IntN(2) == 0)
	case n == 3 && depth > 0:
		return structpb.NewStructValue(randomStruct(r, depth-1))
	case n == 4 && depth > 0:
		l := &structpb.ListValue{}
		for range r.IntN(5) {
			l.Values = append(l.Values, randomValue(r, depth-1))
		}
		return structpb.NewListValue(l)
	}
	return structpb.NewStringValue(strings.Repeat("é€x", r.IntN(70)))
}

func randomStruct(r *rand.Rand, depth int) *structpb.Struct {
	s := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for i := range r.IntN(8) {
		s.Fields[fmt.Sprintf("k%d-%s", i, strings.Repeat("ü", r.IntN(3)))] = randomValue(r, depth)
	}
	return s
}

func randomEvent(r *rand.Rand, i int) *eventv1.Event {
	ev := &eventv1.Event{
		TenantId: "acme", MessageId: fmt.Sprint("m-", i), Type: eventv1.EventType(1 + r.IntN(6)), UserId: fmt.Sprint("u-", i%7),
		AccountId: "acct", Event: "Report Created", EventTime: timestamppb.New(time.Unix(1_700_000_000+int64(i), 5)),
		ReceivedTime: timestamppb.Now(), Partition: uint32(r.IntN(16)),
	}
	if r.IntN(4) > 0 {
		ev.Properties = randomStruct(r, 3)
	}
	if r.IntN(2) > 0 {
		ev.Traits = randomStruct(r, 2)
	}
	if r.IntN(4) > 0 {
		ev.Context = randomStruct(r, 3)
	}
	return ev
}

func TestMarshalBatchDecodesAsProtoMarshal(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var batch eventv1.EventBatch
		for i := range r.IntN(30) {
			batch.Events = append(batch.Events, randomEvent(r, i))
		}
		if round == 0 {
			// Edge cases: empty Structs, nil map values and oneofs, unknown fields.
			odd := &structpb.Struct{Fields: map[string]*structpb.Value{
				"nil": nil, "empty": {}, "nilStruct": {Kind: &structpb.Value_StructValue{}},
				"nilList": {Kind: &structpb.Value_ListValue{}}, "emptyStruct": structpb.NewStructValue(&structpb.Struct{}),
			}}
			odd.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 7))
			batch.Events = append(batch.Events, &eventv1.Event{TenantId: "acme", Properties: odd, Traits: &structpb.Struct{}})
		}
		want, err := proto.Marshal(&batch)
		if err != nil {
			t.Fatal(err)
		}
		got, err := marshalBatch(batch.Events)
		if err != nil {
			t.Fatal(err)
		}
		var a, b eventv1.EventBatch
		if err := proto.Unmarshal(want, &a); err != nil {
			t.Fatal(err)
		}
		if err := proto.Unmarshal(got, &b); err != nil {
			t.Fatalf("round %d: our encoding does not decode: %v", round, err)
		}
		if !proto.Equal(&a, &b) {
			t.Fatalf("round %d: decodes to\n%v\nwant\n%v", round, &b, &a)
		}
		if len(got) != len(want) {
			t.Errorf("round %d: %d bytes, proto.Marshal makes %d", round, len(got), len(want))
		}
		for i, ev := range batch.Events {
			if !proto.Equal(ev, a.Events[i]) {
				t.Fatalf("round %d: event %d changed by marshalling", round, i)
			}
		}
	}
}

func TestMarshalBatchRejectsInvalidUTF8(t *testing.T) {
	for _, s := range []*structpb.Struct{
		{Fields: map[string]*structpb.Value{"k": {Kind: &structpb.Value_StringValue{StringValue: "\xff"}}}},
		{Fields: map[string]*structpb.Value{"\xff": structpb.NewNullValue()}},
	} {
		ev := &eventv1.Event{TenantId: "acme", Context: s}
		if _, err := proto.Marshal(ev); err == nil {
			t.Fatal("proto.Marshal takes invalid UTF-8: the test is wrong")
		}
		if _, err := marshalBatch([]*eventv1.Event{ev}); err == nil {
			t.Errorf("invalid UTF-8 in %v: want an error, as proto.Marshal gives", s)
		}
		if ev.Context != s {
			t.Error("the event lost its context")
		}
	}
}

// benchEvents are 100 events as ingest publishes them: properties on track
// and page calls, traits on identify and group calls, and every event with
// the Segment context merged with the batch's (the library).
func benchEvents() []*eventv1.Event {
	must := func(m map[string]any) *structpb.Struct {
		s, err := structpb.NewStruct(m)
		if err != nil {
			panic(err)
		}
		return s
	}
	at := timestamppb.New(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	var evs []*eventv1.Event
	for i := range 100 {
		ev := &eventv1.Event{TenantId: "acme", MessageId: fmt.Sprintf("0b6f4a7e-%04d-4c1e-9a63-2f6d1c0e5b7a", i), UserId: fmt.Sprint("user-", i%20),
			AccountId: fmt.Sprint("acct-", i%10), EventTime: at, SentTime: at, ReceivedTime: at, Partition: uint32(i % 16),
			Context: must(map[string]any{"groupId": fmt.Sprint("acct-", i%10), "ip": "10.1.2.3", "library": map[string]any{"name": "analytics-go", "version": "3.3.0"}})}
		switch i % 10 {
		case 0:
			ev.Type, ev.Traits = eventv1.EventType_EVENT_TYPE_IDENTIFY, must(map[string]any{"name": "Ada Lovelace", "email": "ada@example.com", "role": "VP Sales"})
		case 1:
			ev.Type, ev.Traits = eventv1.EventType_EVENT_TYPE_GROUP, must(map[string]any{"name": "Acme", "industry": "Software", "seats": 40})
		case 2, 3:
			ev.Type, ev.Name, ev.Properties = eventv1.EventType_EVENT_TYPE_PAGE, "Dashboard", must(map[string]any{"path": "/dashboard"})
		default:
			ev.Type, ev.Event = eventv1.EventType_EVENT_TYPE_TRACK, "Report Created"
			ev.Properties = must(map[string]any{"report_type": "pipeline", "amount": 1234.5, "currency": "USD", "items": 3})
		}
		evs = append(evs, ev)
	}
	return evs
}

// BenchmarkMarshalBatch encodes 100 events as one EventBatch, with
// proto.Marshal as publish did before and with marshalBatch.
func BenchmarkMarshalBatch(b *testing.B) {
	evs := benchEvents()
	batch := &eventv1.EventBatch{Events: evs}
	for _, c := range []struct {
		name    string
		marshal func() ([]byte, error)
	}{
		{"proto.Marshal", func() ([]byte, error) { return proto.Marshal(batch) }},
		{"marshalBatch", func() ([]byte, error) { return marshalBatch(evs) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.marshal(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(evs))/b.Elapsed().Seconds(), "events/s")
		})
	}
}
