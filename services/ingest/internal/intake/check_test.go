package intake

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
)

func TestEventTime(t *testing.T) {
	received := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(received.Add(d)) }
	year := func(y int) *timestamppb.Timestamp { return timestamppb.New(time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)) }
	for _, tc := range []struct {
		name              string
		timestamp, sentAt *timestamppb.Timestamp
		want              time.Time // zero: rejected
	}{
		{"no timestamp", nil, at(-time.Hour), received},
		{"no sentAt", at(-time.Minute), nil, received.Add(-time.Minute)},
		{"client clock an hour fast", at(time.Hour - 10*time.Second), at(time.Hour), received.Add(-10 * time.Second)},
		{"client clock an hour slow", at(-time.Hour - 10*time.Second), at(-time.Hour), received.Add(-10 * time.Second)},
		{"timestamp after sentAt", at(5 * time.Second), at(0), received},
		{"future timestamp without sentAt", at(time.Hour), nil, received},
		{"import of last year", at(-365 * 24 * time.Hour), nil, received.Add(-365 * 24 * time.Hour)},
		// A client clock at year 1 or 9999 that is consistent is corrected.
		{"client clock at year 9999", year(9999), timestamppb.New(time.Date(9999, 1, 1, 0, 0, 30, 0, time.UTC)), received.Add(-30 * time.Second)},
		{"client clock at year 1", year(1), timestamppb.New(time.Date(1, 1, 1, 0, 0, 30, 0, time.UTC)), received.Add(-30 * time.Second)},
		// The cases: an inconsistent sentAt is rejected, never stored at year -292 or 1734.
		{"sentAt in year 9999", at(-time.Minute), year(9999), time.Time{}},
		{"sentAt in year 1", at(-time.Minute), year(1), time.Time{}},
		{"timestamp in year 1", year(1), nil, time.Time{}},
		{"timestamp in year 9999", year(9999), nil, time.Time{}},
		{"two hours after sentAt", at(2 * time.Hour), at(0), time.Time{}},
		{"older than the max age", at(-401 * 24 * time.Hour), nil, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, v := EventTime(tc.timestamp, tc.sentAt, received, DefaultTimeBounds())
			switch {
			case tc.want.IsZero() && v == nil:
				t.Errorf("EventTime = %v, want a violation", got)
			case tc.want.IsZero() && (v.Field != FieldTimestamp || v.Code != CodeOutOfRange):
				t.Errorf("violation %+v, want %s of %s", v, CodeOutOfRange, FieldTimestamp.Segment())
			case !tc.want.IsZero() && v != nil:
				t.Errorf("violation %+v, want %v", v, tc.want)
			case !got.Equal(tc.want):
				t.Errorf("EventTime = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestPrepareGeneratedIDs checks that generated message ids depend on the
// request bytes and the event's position only.
func TestPrepareGeneratedIDs(t *testing.T) {
	evs := func() []*eventv1.Event {
		return []*eventv1.Event{
			{Type: eventv1.EventType_EVENT_TYPE_PAGE, AnonymousId: "a"},
			{Type: eventv1.EventType_EVENT_TYPE_PAGE, AnonymousId: "a"},
			{Type: eventv1.EventType_EVENT_TYPE_PAGE, AnonymousId: "a", MessageId: "given"},
		}
	}
	prepare := func(body string) []string {
		valid, bad := Prepare("acme", time.Now(), DefaultTimeBounds(), evs(), []byte(body))
		if len(bad) > 0 || len(valid) != 3 {
			t.Fatalf("Prepare: %d valid, violations %v", len(valid), bad)
		}
		return []string{valid[0].MessageId, valid[1].MessageId, valid[2].MessageId}
	}
	first, retry, other := prepare("request"), prepare("request"), prepare("another request")
	if !slices.Equal(first, retry) {
		t.Errorf("a retry got ids %q, the first attempt %q", retry, first)
	}
	if first[0] == first[1] || first[0] == other[0] || first[2] != "given" {
		t.Errorf("ids %q and %q: want distinct per position and request, given ones kept", first, other)
	}
}

// nested returns a value nesting objects (or arrays) n levels deep.
func nested(n int, array bool) any {
	var v any = 1.0
	for range n {
		if array {
			v = []any{v}
		} else {
			v = map[string]any{"a": v}
		}
	}
	return v
}

// TestPrepareNesting checks the nesting limit of the Struct fields, the
// field itself being level 1.
func TestPrepareNesting(t *testing.T) {
	for _, tc := range []struct {
		name  string
		depth int // of the field
		array bool
		field Field
		ok    bool
	}{
		{"flat", 1, false, FieldProperties, true},
		{"at the limit", MaxDepth, false, FieldTraits, true},
		{"arrays at the limit", MaxDepth, true, FieldProperties, true},
		{"one over", MaxDepth + 1, false, FieldTraits, false},
		{"arrays one over", MaxDepth + 1, true, FieldContext, false},
		{"6000 levels", 6000, false, FieldTraits, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := structpb.NewStruct(map[string]any{"x": nested(tc.depth-1, tc.array)})
			if err != nil {
				t.Fatal(err)
			}
			ev := &eventv1.Event{Type: eventv1.EventType_EVENT_TYPE_IDENTIFY, UserId: "u", MessageId: "m"}
			switch tc.field {
			case FieldProperties:
				ev.Properties = s
			case FieldTraits:
				ev.Traits = s
			case FieldContext:
				ev.Context = s
			}
			valid, bad := Prepare("acme", time.Now(), DefaultTimeBounds(), []*eventv1.Event{ev}, nil)
			if tc.ok {
				if len(valid) != 1 {
					t.Errorf("rejected: %+v", bad)
				}
				return
			}
			if len(valid) != 0 || len(bad) != 1 || bad[0].Field != tc.field || bad[0].Code != CodeTooDeep || bad[0].MessageID != "m" {
				t.Errorf("valid %d, violations %+v: want one %s of %s", len(valid), bad, CodeTooDeep, tc.field.Segment())
			}
		})
	}
}
