package sim

import (
	"fmt"

	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
)

var protoTypes = [...]eventv1.EventType{
	Track:    eventv1.EventType_EVENT_TYPE_TRACK,
	Identify: eventv1.EventType_EVENT_TYPE_IDENTIFY,
	Group:    eventv1.EventType_EVENT_TYPE_GROUP,
	Page:     eventv1.EventType_EVENT_TYPE_PAGE,
}

// Proto returns the event as a client sends it over IngestService: no
// tenant (the credential names it) and no receive or send time.
func (e Event) Proto() (*eventv1.Event, error) {
	pe := &eventv1.Event{
		Type:        protoTypes[e.Type],
		MessageId:   e.MessageID,
		UserId:      e.UserID,
		AnonymousId: e.AnonymousID,
		AccountId:   e.AccountID,
		Event:       e.Event,
		Name:        e.Name,
		EventTime:   timestamppb.New(e.Time),
	}
	var err error
	if e.Properties != nil {
		if pe.Properties, err = structpb.NewStruct(e.Properties); err != nil {
			return nil, fmt.Errorf("event %s: properties: %w", e.MessageID, err)
		}
	}
	if e.Traits != nil {
		if pe.Traits, err = structpb.NewStruct(e.Traits); err != nil {
			return nil, fmt.Errorf("event %s: traits: %w", e.MessageID, err)
		}
	}
	return pe, nil
}
