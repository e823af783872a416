package sim

import (
	"testing"

	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
)

func TestProto(t *testing.T) {
	evs := history(newProduct(t, 3, 20), 2)
	seen := map[eventv1.EventType]bool{}
	for _, ev := range evs {
		pe, err := ev.Proto()
		if err != nil {
			t.Fatal(err)
		}
		seen[pe.GetType()] = true
		if pe.GetMessageId() != ev.MessageID || pe.GetAccountId() != ev.AccountID || pe.GetUserId() != ev.UserID ||
			pe.GetEvent() != ev.Event || pe.GetName() != ev.Name || !pe.GetEventTime().AsTime().Equal(ev.Time) {
			t.Fatalf("%+v became %v", ev, pe)
		}
		if pe.GetTenantId() != "" || pe.GetReceivedTime() != nil {
			t.Fatalf("%v: tenant and receive time are ingest's to set", pe)
		}
		if len(ev.Properties) != len(pe.GetProperties().GetFields()) || len(ev.Traits) != len(pe.GetTraits().GetFields()) {
			t.Fatalf("properties %v and traits %v became %v and %v", ev.Properties, ev.Traits, pe.GetProperties(), pe.GetTraits())
		}
	}
	for _, typ := range []eventv1.EventType{eventv1.EventType_EVENT_TYPE_TRACK, eventv1.EventType_EVENT_TYPE_IDENTIFY,
		eventv1.EventType_EVENT_TYPE_GROUP, eventv1.EventType_EVENT_TYPE_PAGE} {
		if !seen[typ] {
			t.Errorf("no %v among %d events", typ, len(evs))
		}
	}
}
