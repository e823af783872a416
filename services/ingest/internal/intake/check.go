// Package intake is the path every usage event takes from a decoded request
// to JetStream, shared by the Segment HTTP API and the gRPC IngestService:
// the validation rules, the fields ingest owns (tenant, times, message ids),
// the tenant's rate limit, account attribution and publishing.
package intake

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
)

// MaxIDBytes bounds user, anonymous, group, previous and message ids. Ids
// become KV keys and subject tokens, and the account API allows no longer
// account ids; an id longer than this is a sender's bug, not an id.
const MaxIDBytes = 256

// MaxDepth bounds the nesting of an event's properties, traits and context:
// objects and arrays within objects and arrays, the field itself being
// level 1. Each JSON level is two protobuf message levels
// (google.protobuf.Struct, Value), and protobuf decoders stop at 10,000
// (protobuf-go's default recursion limit): scoring must be able to decode
// every event ingest accepts, with room to spare. No real payload comes near
// 32 levels.
const MaxDepth = 32

// Field names an event field. Each API reports it in its own naming, so a
// client reads the name it sent.
type Field uint8

// The fields a violation can name.
const (
	FieldNone Field = iota
	FieldType
	FieldMessageID
	FieldUserID
	FieldAnonymousID
	FieldGroupID
	FieldPreviousID
	FieldEvent
	FieldName
	FieldProperties
	FieldTraits
	FieldContext
	FieldContextGroupID
	FieldTimestamp
	FieldSentAt
	FieldTenant
)

// fieldNames holds each field's Segment JSON name and eventv1.Event name.
var fieldNames = [...][2]string{
	FieldNone:           {"", ""},
	FieldType:           {"type", "type"},
	FieldMessageID:      {"messageId", "message_id"},
	FieldUserID:         {"userId", "user_id"},
	FieldAnonymousID:    {"anonymousId", "anonymous_id"},
	FieldGroupID:        {"groupId", "account_id"},
	FieldPreviousID:     {"previousId", "previous_id"},
	FieldEvent:          {"event", "event"},
	FieldName:           {"name", "name"},
	FieldProperties:     {"properties", "properties"},
	FieldTraits:         {"traits", "traits"},
	FieldContext:        {"context", "context"},
	FieldContextGroupID: {"context.groupId", "context.groupId"},
	FieldTimestamp:      {"timestamp", "event_time"},
	FieldSentAt:         {"sentAt", "sent_time"},
	FieldTenant:         {"tenant", "tenant_id"},
}

// Segment is the field's name in the Segment HTTP API.
func (f Field) Segment() string { return fieldNames[f][0] }

// Proto is the field's name in lodestar.event.v1.Event.
func (f Field) Proto() string { return fieldNames[f][1] }

// FieldBySegmentName returns the field a Segment JSON name denotes.
func FieldBySegmentName(name string) Field {
	for f, n := range fieldNames {
		if n[0] == name {
			return Field(f)
		}
	}
	return FieldNone
}

// Violation says why one event of a request was rejected.
type Violation struct {
	// Index is the event's position in the request.
	Index     int
	MessageID string
	Field     Field
	// Code is a stable machine-readable reason, also the metric label.
	Code   string
	Reason string
}

// Violation codes.
const (
	CodeInvalid  = "invalid"
	CodeMissing  = "missing"
	CodeTooLarge = "too_large"
	CodeType     = "wrong_type"
	CodeTooDeep  = "too_deep"
	// CodeDuplicate is an event repeating the message id of an earlier one
	// of its request: that one is stored, once.
	CodeDuplicate = "duplicate"
	// CodeOutOfRange is an event time beyond TimeBounds.
	CodeOutOfRange = "out_of_range"
)

// Prepare validates the decoded events of one request and completes the
// fields ingest owns: tenant, received time, a message id where none was
// sent, account_id from context.groupId, and the corrected event time
// (rejecting those beyond bounds, see EventTime). evs
// holds nil where the decoder already rejected an event. body is the
// request as the client sent it, hashed only when an event needs a
// generated message id (it may be nil when none does). Prepare returns the
// valid events in request order and a violation for each other non-nil
// event; an event repeating the messageId of an earlier valid one is the
// same event sent twice, reported as a duplicate and stored once.
func Prepare(tenant string, received time.Time, bounds TimeBounds, evs []*eventv1.Event, body []byte) ([]*eventv1.Event, []Violation) {
	valid := make([]*eventv1.Event, 0, len(evs))
	var bad []Violation
	var ids *idSource
	var first map[string]int // request index of each message id sent
	for i, ev := range evs {
		if ev == nil {
			continue
		}
		v, ok := check(ev)
		var at time.Time
		if ok {
			var tv *Violation
			if at, tv = EventTime(ev.EventTime, ev.SentTime, received, bounds); tv != nil {
				v, ok = *tv, false
			}
		}
		if !ok {
			v.Index, v.MessageID = i, ev.MessageId
			bad = append(bad, v)
			continue
		}
		if ev.MessageId == "" {
			if ids == nil {
				ids = newIDSource(body)
			}
			ev.MessageId = ids.id(i)
		} else if j, dup := first[ev.MessageId]; dup {
			bad = append(bad, Violation{Index: i, MessageID: ev.MessageId, Field: FieldMessageID, Code: CodeDuplicate,
				Reason: fmt.Sprintf("repeats the messageId of event %d, which is stored once", j)})
			continue
		} else if len(evs) > 1 {
			if first == nil {
				first = make(map[string]int, len(evs))
			}
			first[ev.MessageId] = i
		}
		ev.TenantId = tenant
		ev.ReceivedTime = timestamppb.New(received)
		ev.EventTime = timestamppb.New(at)
		valid = append(valid, ev)
	}
	return valid, bad
}

// check applies the rules of the Segment spec and Lodestar's bounds, and
// takes account_id from context.groupId when the event names no account
// (a group call must name its own).
func check(ev *eventv1.Event) (Violation, bool) {
	bad := func(f Field, code, format string, args ...any) (Violation, bool) {
		return Violation{Field: f, Code: code, Reason: fmt.Sprintf(format, args...)}, false
	}
	if _, known := eventv1.EventType_name[int32(ev.Type)]; !known || ev.Type == eventv1.EventType_EVENT_TYPE_UNSPECIFIED {
		return bad(FieldType, CodeInvalid, "unknown event type %d", ev.Type)
	}
	if ev.UserId == "" && ev.AnonymousId == "" {
		return bad(FieldUserID, CodeMissing, "userId or anonymousId is required")
	}
	switch ev.Type {
	case eventv1.EventType_EVENT_TYPE_TRACK:
		if ev.Event == "" {
			return bad(FieldEvent, CodeMissing, "track calls need an event name")
		}
	case eventv1.EventType_EVENT_TYPE_GROUP:
		if ev.AccountId == "" {
			return bad(FieldGroupID, CodeMissing, "group calls need a groupId")
		}
	case eventv1.EventType_EVENT_TYPE_ALIAS:
		if ev.UserId == "" {
			return bad(FieldUserID, CodeMissing, "alias calls need a userId")
		}
		if ev.PreviousId == "" {
			return bad(FieldPreviousID, CodeMissing, "alias calls need a previousId")
		}
	}
	if v, ok := ev.GetContext().GetFields()["groupId"]; ok {
		s, isString := v.GetKind().(*structpb.Value_StringValue)
		if !isString {
			return bad(FieldContextGroupID, CodeType, "must be a string")
		}
		if ev.AccountId == "" {
			ev.AccountId = s.StringValue
		}
	}
	for _, id := range []struct {
		f Field
		v string
	}{{FieldMessageID, ev.MessageId}, {FieldUserID, ev.UserId}, {FieldAnonymousID, ev.AnonymousId}, {FieldGroupID, ev.AccountId}, {FieldPreviousID, ev.PreviousId}} {
		if len(id.v) > MaxIDBytes {
			return bad(id.f, CodeTooLarge, "%d bytes, over the %d-byte limit", len(id.v), MaxIDBytes)
		}
	}
	for _, st := range []struct {
		f Field
		v *structpb.Struct
	}{{FieldProperties, ev.Properties}, {FieldTraits, ev.Traits}, {FieldContext, ev.Context}} {
		if tooDeep(st.v, MaxDepth) {
			return bad(st.f, CodeTooDeep, "nested more than %d levels deep", MaxDepth)
		}
	}
	for _, ts := range []struct {
		f Field
		v *timestamppb.Timestamp
	}{{FieldTimestamp, ev.EventTime}, {FieldSentAt, ev.SentTime}} {
		if ts.v != nil {
			if err := ts.v.CheckValid(); err != nil {
				return bad(ts.f, CodeInvalid, "%v", err)
			}
		}
	}
	return Violation{}, true
}

// tooDeep reports whether s nests objects and arrays more than limit levels
// deep, s being level 1. It never walks below the limit, so a deep value
// costs no more than its first limit levels.
func tooDeep(s *structpb.Struct, limit int) bool {
	if s == nil {
		return false
	}
	if limit == 0 {
		return true
	}
	for _, v := range s.Fields {
		if valueTooDeep(v, limit-1) {
			return true
		}
	}
	return false
}

// valueTooDeep reports whether v nests objects and arrays more than limit
// levels deep.
func valueTooDeep(v *structpb.Value, limit int) bool {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StructValue:
		return tooDeep(k.StructValue, limit)
	case *structpb.Value_ListValue:
		if limit == 0 {
			return true
		}
		for _, item := range k.ListValue.GetValues() {
			if valueTooDeep(item, limit-1) {
				return true
			}
		}
	}
	return false
}

// TimeBounds bound the event times ingest accepts, measured against the
// time the event was sent (sentAt), else received: a client clock's error
// cancels out, so the bounds hold however wrong that clock is.
type TimeBounds struct {
	// MaxAge is how long before it was sent an event may have happened:
	// older events are rejected. It should not exceed the EVENTS retention
	// (a backfill older than that could never be replayed).
	MaxAge time.Duration
	// MaxFuture is how far after it was sent an event may claim to have
	// happened: such an event is taken as happening when it was received (a
	// little clock jitter between a client's timestamp and its sentAt);
	// later ones are rejected, as a client bug.
	MaxFuture time.Duration
}

// DefaultTimeBounds are the bounds of the default configuration: EVENTS'
// default retention back, an hour forward.
func DefaultTimeBounds() TimeBounds {
	return TimeBounds{MaxAge: 400 * 24 * time.Hour, MaxFuture: time.Hour}
}

// EventTime applies Segment's clock-skew correction: a client's clock may be
// off, but the gap between its timestamp and its sentAt is measured on that
// one clock, so event time = received - (sentAt - timestamp). Without sentAt
// the timestamp is taken as is; without a timestamp the event is taken to
// have happened when it was sent, which the correction maps to the received
// time. An event cannot have happened after it arrived, so the result is
// capped at the received time: a client clock running fast can never move a
// tenant's event-time watermark past the wall clock.
//
// The gap is computed in whole seconds first, so that no timestamp pair
// (years 1 to 9999 both) overflows a time.Duration, and checked against b:
// an event older than b.MaxAge, or later than b.MaxFuture, is rejected with
// a violation of its timestamp field.
func EventTime(timestamp, sentAt *timestamppb.Timestamp, received time.Time, b TimeBounds) (time.Time, *Violation) {
	if timestamp == nil {
		return received, nil
	}
	ref := sentAt
	if ref == nil {
		ref = timestamppb.New(received)
	}
	const slack = 1 // second, for the nanoseconds
	age := ref.GetSeconds() - timestamp.GetSeconds()
	if age <= int64(b.MaxAge/time.Second)+slack && -age <= int64(b.MaxFuture/time.Second)+slack {
		d := time.Duration(age)*time.Second + time.Duration(ref.GetNanos()-timestamp.GetNanos())
		switch {
		case d < -b.MaxFuture:
		case d > b.MaxAge:
		case d < 0:
			return received, nil
		default:
			return received.Add(-d), nil
		}
	}
	v := &Violation{Field: FieldTimestamp, Code: CodeOutOfRange}
	if age > 0 {
		v.Reason = fmt.Sprintf("the event happened %s before it was sent, over the %s limit", formatAge(age), b.MaxAge)
	} else {
		v.Reason = fmt.Sprintf("the event happened %s after it was sent, over the %s limit", formatAge(-age), b.MaxFuture)
	}
	return time.Time{}, v
}

// formatAge writes a gap of seconds, in days when it is long.
func formatAge(sec int64) string {
	if sec >= 2*86400 {
		return fmt.Sprintf("%d days", sec/86400)
	}
	return (time.Duration(sec) * time.Second).String()
}

// idSource generates the message ids of events sent without one. The id is
// derived from the request's bytes and the event's position, not random, so
// a client retrying the identical request gets the identical ids and its
// retry is deduplicated like any other.
type idSource struct {
	sum [sha256.Size]byte
}

func newIDSource(body []byte) *idSource { return &idSource{sum: sha256.Sum256(body)} }

// id formats the hash of (request, index) as a UUID of version 8, the
// RFC 9562 version for custom, here hash-based, UUIDs.
func (s *idSource) id(index int) string {
	var b [sha256.Size + 8]byte
	copy(b[:], s.sum[:])
	binary.BigEndian.PutUint64(b[sha256.Size:], uint64(index))
	h := sha256.Sum256(b[:])
	u := h[:16]
	u[6] = u[6]&0x0f | 0x80 // version 8
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	var out [36]byte
	hex.Encode(out[0:8], u[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], u[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], u[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], u[8:10])
	out[23] = '-'
	hex.Encode(out[24:36], u[10:16])
	return string(out[:])
}
