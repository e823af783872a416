package sim

import "time"

// SegmentEvent is one call in Segment's JSON, as Segment's libraries send
// it: the account named by context.groupId, and by groupId for a group call.
type SegmentEvent struct {
	Type        string         `json:"type"`
	MessageID   string         `json:"messageId"`
	UserID      string         `json:"userId,omitempty"`
	AnonymousID string         `json:"anonymousId,omitempty"`
	GroupID     string         `json:"groupId,omitempty"`
	Event       string         `json:"event,omitempty"`
	Name        string         `json:"name,omitempty"`
	Timestamp   string         `json:"timestamp"`
	Properties  map[string]any `json:"properties,omitempty"`
	Traits      map[string]any `json:"traits,omitempty"`
	Context     SegmentContext `json:"context"`
}

// SegmentContext is the part of a call's context that names its account.
type SegmentContext struct {
	GroupID string `json:"groupId"`
}

// Segment returns the event as a call of Segment's HTTP API.
func (e Event) Segment() SegmentEvent {
	se := SegmentEvent{
		Type:        e.Type.String(),
		MessageID:   e.MessageID,
		UserID:      e.UserID,
		AnonymousID: e.AnonymousID,
		Event:       e.Event,
		Name:        e.Name,
		Timestamp:   e.Time.UTC().Format(time.RFC3339Nano),
		Properties:  e.Properties,
		Traits:      e.Traits,
		Context:     SegmentContext{GroupID: e.AccountID},
	}
	if e.Type == Group {
		se.GroupID = e.AccountID
	}
	return se
}
