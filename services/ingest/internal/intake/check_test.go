package intake

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
)

func TestEventTime(t *testing.T) {
	received := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(received.Add(d)) }
	for _, tc := range []struct {
		name              string
		timestamp, sentAt *timestamppb.Timestamp
		want              time.Time
	}{
		{"no timestamp", nil, at(-time.Hour), received},
		{"no sentAt", at(-time.Minute), nil, received.Add(-time.Minute)},
		{"client clock an hour fast", at(time.Hour - 10*time.Second), at(time.Hour), received.Add(-10 * time.Second)},
		{"client clock an hour slow", at(-time.Hour - 10*time.Second), at(-time.Hour), received.Add(-10 * time.Second)},
		{"timestamp after sentAt", at(5 * time.Second), at(0), received},
		{"future timestamp without sentAt", at(time.Hour), nil, received},
		{"import of last year", at(-365 * 24 * time.Hour), nil, received.Add(-365 * 24 * time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := EventTime(tc.timestamp, tc.sentAt, received); !got.Equal(tc.want) {
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
		valid, bad := Prepare("acme", time.Now(), evs(), []byte(body))
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
