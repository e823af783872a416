package pipeline

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/internal/scorecore/engine"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
)

func mustStruct(m map[string]any) *structpb.Struct {
	s, err := structpb.NewStruct(m)
	if err != nil {
		panic(err)
	}
	return s
}

// testBatch is an EventBatch as ingest stores it: every event with the
// merged Segment context, core events with properties, an NPS answer and a
// ticket whose properties scoring reads, identify and group calls with
// traits, a page.
func testBatch(n int) *eventv1.EventBatch {
	at := timestamppb.New(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	ctx := mustStruct(map[string]any{"groupId": "acct-1", "ip": "10.1.2.3", "library": map[string]any{"name": "analytics-go", "version": "3.3.0"}})
	var b eventv1.EventBatch
	for i := range n {
		ev := &eventv1.Event{TenantId: "acme", MessageId: fmt.Sprint("m", i), UserId: fmt.Sprint("user-", i%7), AccountId: "acct-1",
			Context: ctx, EventTime: at, ReceivedTime: at, Partition: 3}
		switch i % 6 {
		case 0:
			ev.Type, ev.Event = eventv1.EventType_EVENT_TYPE_TRACK, "Report Created"
			ev.Properties = mustStruct(map[string]any{"report_type": "pipeline", "amount": 1234.5, "items": []any{1, "two", true}})
		case 1:
			ev.Type, ev.Event = eventv1.EventType_EVENT_TYPE_TRACK, "NPS Submitted"
			ev.Properties = mustStruct(map[string]any{"score": 9})
		case 2:
			ev.Type, ev.Event, ev.AnonymousId, ev.UserId = eventv1.EventType_EVENT_TYPE_TRACK, "Ticket Opened", "support-system", ""
			ev.Properties = mustStruct(map[string]any{"ticket_id": "T-1", "severity": "high"})
		case 3:
			ev.Type = eventv1.EventType_EVENT_TYPE_IDENTIFY
			ev.Traits = mustStruct(map[string]any{"role": "CEO", "email": "ceo@example.com"})
		case 4:
			ev.Type = eventv1.EventType_EVENT_TYPE_GROUP
			ev.Traits = mustStruct(map[string]any{"name": "Acme", "plan": "enterprise"})
		case 5:
			ev.Type, ev.Name = eventv1.EventType_EVENT_TYPE_PAGE, "Dashboard"
			ev.Properties = mustStruct(map[string]any{"path": "/dashboard"})
		}
		b.Events = append(b.Events, ev)
	}
	return &b
}

// lean is what the decoder should make of ev: no context, and properties
// and traits only where the engine reads them.
func lean(ev *eventv1.Event) *eventv1.Event {
	ev = proto.CloneOf(ev)
	props, traits := engine.Reads(ev.GetType(), ev.GetEvent(), ev.GetName())
	if !props {
		ev.Properties = nil
	}
	if !traits {
		ev.Traits = nil
	}
	ev.Context = nil
	return ev
}

func TestDecodeLeavesOutUnreadStructs(t *testing.T) {
	var d decoder
	for round, n := range []int{12, 5, 0, 30} { // reuse across batches of other sizes
		want := testBatch(n)
		data, err := proto.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		got, bad, err := d.decode(data)
		if err != nil || len(bad) > 0 {
			t.Fatalf("round %d: %v, bad %v", round, err, bad)
		}
		if len(got) != n {
			t.Fatalf("round %d: %d events, want %d", round, len(got), n)
		}
		for i, ev := range got {
			if w := lean(want.Events[i]); !proto.Equal(ev, w) {
				t.Errorf("round %d event %d:\n got %v\nwant %v", round, i, ev, w)
			}
		}
	}
}

func TestDecodeMergesRepeatedStructs(t *testing.T) {
	// A message field may occur twice on the wire; its parts merge.
	ev := &eventv1.Event{TenantId: "acme", Type: eventv1.EventType_EVENT_TYPE_TRACK, Event: "NPS Submitted", AccountId: "a"}
	data, _ := proto.Marshal(ev)
	for _, part := range []*structpb.Struct{mustStruct(map[string]any{"score": 3}), mustStruct(map[string]any{"comment": "slow"})} {
		p, _ := proto.Marshal(part)
		data = protowire.AppendBytes(protowire.AppendTag(data, eventProperties, protowire.BytesType), p)
	}
	batch := protowire.AppendBytes(protowire.AppendTag(nil, batchEvents, protowire.BytesType), data)
	var d decoder
	got, _, err := d.decode(batch)
	if err != nil {
		t.Fatal(err)
	}
	var want eventv1.EventBatch
	if err := proto.Unmarshal(batch, &want); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got[0], want.Events[0]) || len(got[0].GetProperties().GetFields()) != 2 {
		t.Errorf("got %v, want %v", got[0], want.Events[0])
	}
}

func TestDecodeRejectsGarbage(t *testing.T) {
	good, _ := proto.Marshal(testBatch(3))
	var d decoder
	for _, data := range [][]byte{good[:len(good)-1], {0x0a, 0x05, 0x01}, {0xff}} {
		if evs, _, err := d.decode(data); err == nil || evs != nil {
			t.Errorf("decode(%x): %d events, err %v; want an error and no events", data, len(evs), err)
		}
	}
}

// deepStruct returns a Struct nesting objects n levels deep: 2n protobuf
// message levels.
func deepStruct(n int) *structpb.Struct {
	s := &structpb.Struct{Fields: map[string]*structpb.Value{"leaf": structpb.NewNumberValue(1)}}
	for range n - 1 {
		s = &structpb.Struct{Fields: map[string]*structpb.Value{"a": structpb.NewStructValue(s)}}
	}
	return s
}

// TestDecodeKeepsTheOthersOfABadEvent checks that an event nested beyond
// protobuf's recursion limit (an identify call, whose traits the engine
// reads) is returned as bad, with its bytes and index, and that the events
// around it are decoded (issue 13, item 2).
func TestDecodeKeepsTheOthersOfABadEvent(t *testing.T) {
	b := testBatch(7)
	deep := proto.CloneOf(b.Events[3]) // an identify call
	deep.MessageId, deep.Traits = "deep", deepStruct(6000)
	b.Events = slices.Insert(b.Events, 2, deep)
	data, err := (proto.MarshalOptions{}).Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	var d decoder
	got, bad, err := d.decode(data)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if len(bad) != 1 || bad[0].index != 2 || bad[0].err == nil {
		t.Fatalf("bad events %+v, want event 2", bad)
	}
	var back eventv1.Event
	if err := (proto.UnmarshalOptions{RecursionLimit: 20000}).Unmarshal(bad[0].data, &back); err != nil || back.GetMessageId() != "deep" {
		t.Errorf("bad event's bytes decode to %q, %v; want the deep event", back.GetMessageId(), err)
	}
	want := slices.Delete(slices.Clone(b.Events), 2, 3)
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d", len(got), len(want))
	}
	for i, ev := range got {
		if w := lean(want[i]); !proto.Equal(ev, w) {
			t.Errorf("event %d:\n got %v\nwant %v", i, ev, w)
		}
	}
}

// BenchmarkDecodeBatch decodes a 100-event batch the way scoring did before
// (proto.Unmarshal of everything) and with the decoder.
func BenchmarkDecodeBatch(b *testing.B) {
	data, err := proto.Marshal(testBatch(100))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("proto.Unmarshal", func(b *testing.B) {
		var batch eventv1.EventBatch
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if err := proto.Unmarshal(data, &batch); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("decoder", func(b *testing.B) {
		var d decoder
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, _, err := d.decode(data); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "events/s")
	})
}
