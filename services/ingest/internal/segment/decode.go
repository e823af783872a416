package segment

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
	"github.com/lodestar-cs/lodestar/services/ingest/internal/intake"
)

// types maps Segment's type names to event types.
var types = map[string]eventv1.EventType{
	"track":    eventv1.EventType_EVENT_TYPE_TRACK,
	"identify": eventv1.EventType_EVENT_TYPE_IDENTIFY,
	"group":    eventv1.EventType_EVENT_TYPE_GROUP,
	"page":     eventv1.EventType_EVENT_TYPE_PAGE,
	"screen":   eventv1.EventType_EVENT_TYPE_SCREEN,
	"alias":    eventv1.EventType_EVENT_TYPE_ALIAS,
}

// wireEvent is one call of Segment's HTTP Tracking API. Fields Lodestar does
// not use (integrations, receivedAt, ...) are ignored, as is any tenant a
// body names: the tenant comes from the write key alone.
type wireEvent struct {
	Type        string         `json:"type"`
	MessageID   string         `json:"messageId"`
	UserID      string         `json:"userId"`
	AnonymousID string         `json:"anonymousId"`
	GroupID     string         `json:"groupId"`
	PreviousID  string         `json:"previousId"`
	Event       string         `json:"event"`
	Name        string         `json:"name"`
	Timestamp   string         `json:"timestamp"`
	SentAt      string         `json:"sentAt"`
	Properties  map[string]any `json:"properties"`
	Traits      map[string]any `json:"traits"`
	Context     map[string]any `json:"context"`
	WriteKey    string         `json:"writeKey"`
}

// typeViolation turns a JSON type error into the violation of the field at
// fault, or reports false for a syntax error.
func typeViolation(err error) (intake.Violation, bool) {
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) {
		return intake.Violation{}, false
	}
	if te.Field == "" {
		return intake.Violation{Code: intake.CodeType, Reason: "must be a JSON object, not " + te.Value}, true
	}
	return intake.Violation{Field: intake.FieldBySegmentName(te.Field), Code: intake.CodeType, Reason: fmt.Sprintf("%s must be %s, not %s", te.Field, want(te), te.Value)}, true
}

// want names the JSON type a type error expected.
func want(te *json.UnmarshalTypeError) string {
	switch te.Type.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "an array"
	}
	return "an object"
}

// parseTime parses a Segment ISO 8601 date-time; empty means absent.
func parseTime(s string) (*timestamppb.Timestamp, error) {
	if s == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return nil, fmt.Errorf("%q is not an ISO 8601 date-time such as 2026-01-02T15:04:05.000Z", s)
	}
	return timestamppb.New(t), nil
}

// event converts w into an event of type typ: the path's type, or
// UNSPECIFIED to take it from the body. sentAt and ctx are the batch's, used
// where the event has none; ctx's values are shared by the events, not
// copied, so they must not be changed.
func (w *wireEvent) event(typ eventv1.EventType, sentAt *timestamppb.Timestamp, ctx map[string]*structpb.Value) (*eventv1.Event, *intake.Violation) {
	bad := func(f intake.Field, code, format string, args ...any) (*eventv1.Event, *intake.Violation) {
		return nil, &intake.Violation{MessageID: w.MessageID, Field: f, Code: code, Reason: fmt.Sprintf(format, args...)}
	}
	bodyType, known := types[w.Type]
	switch {
	case typ == eventv1.EventType_EVENT_TYPE_UNSPECIFIED && w.Type == "":
		return bad(intake.FieldType, intake.CodeMissing, "type is required in a batch")
	case w.Type != "" && !known:
		return bad(intake.FieldType, intake.CodeInvalid, "unknown type %q: want track, identify, group, page, screen or alias", w.Type)
	case typ == eventv1.EventType_EVENT_TYPE_UNSPECIFIED:
		typ = bodyType
	case w.Type != "" && bodyType != typ:
		return bad(intake.FieldType, intake.CodeInvalid, "type %q sent to the endpoint of another type", w.Type)
	}
	ev := &eventv1.Event{
		MessageId:   w.MessageID,
		Type:        typ,
		UserId:      w.UserID,
		AnonymousId: w.AnonymousID,
		Event:       w.Event,
		Name:        w.Name,
		PreviousId:  w.PreviousID,
		SentTime:    sentAt,
	}
	if typ == eventv1.EventType_EVENT_TYPE_GROUP {
		ev.AccountId = w.GroupID
	}
	var err error
	if ev.EventTime, err = parseTime(w.Timestamp); err != nil {
		return bad(intake.FieldTimestamp, intake.CodeInvalid, "%v", err)
	}
	if w.SentAt != "" {
		if ev.SentTime, err = parseTime(w.SentAt); err != nil {
			return bad(intake.FieldSentAt, intake.CodeInvalid, "%v", err)
		}
	}
	for _, o := range []struct {
		f   intake.Field
		m   map[string]any
		dst **structpb.Struct
	}{{intake.FieldProperties, w.Properties, &ev.Properties}, {intake.FieldTraits, w.Traits, &ev.Traits}, {intake.FieldContext, w.Context, &ev.Context}} {
		if o.m == nil {
			continue
		}
		if *o.dst, err = structpb.NewStruct(o.m); err != nil {
			return bad(o.f, intake.CodeInvalid, "%v", err)
		}
	}
	if ctx != nil { // a batch context, even an empty one, gives every event one
		if ev.Context == nil {
			ev.Context = &structpb.Struct{Fields: make(map[string]*structpb.Value, len(ctx))}
		}
		for k, v := range ctx {
			if _, own := ev.Context.Fields[k]; !own {
				ev.Context.Fields[k] = v
			}
		}
	}
	return ev, nil
}

// request is a decoded request body.
type request struct {
	writeKey string
	// events holds nil where violations has the event's rejection.
	events     []*eventv1.Event
	violations []intake.Violation
}

// decodeSingle decodes the body of a single-call endpoint of type typ.
func decodeSingle(body []byte, typ eventv1.EventType) (request, *apiError) {
	var w wireEvent
	if err := json.Unmarshal(body, &w); err != nil {
		v, ok := typeViolation(err)
		if !ok {
			return request{}, errInvalidJSON(err)
		}
		v.MessageID = w.MessageID
		return request{writeKey: w.WriteKey, events: []*eventv1.Event{nil}, violations: []intake.Violation{v}}, nil
	}
	ev, v := w.event(typ, nil, nil)
	r := request{writeKey: w.WriteKey, events: []*eventv1.Event{ev}}
	if v != nil {
		r.violations = append(r.violations, *v)
	}
	return r, nil
}

// decodeBatch decodes the body of /v1/batch or /v1/import, rejecting events
// over maxEventBytes. The batch's sentAt and context apply to every event
// that has none of its own (Segment's libraries put them there). It streams the body with a json.Decoder, decoding each event once from
// the stream, so that each event has its own size and type errors without
// a second parse of the body; a syntax error anywhere fails the request.
func decodeBatch(body []byte, maxEventBytes int) (request, *apiError) {
	invalid := func(format string, args ...any) (request, *apiError) {
		return request{}, &apiError{status: http.StatusBadRequest, code: "invalid_request", message: fmt.Sprintf(format, args...)}
	}
	var (
		r      request
		wires  []*wireEvent
		sentAt string
		ctx    map[string]any
	)
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil {
		return request{}, errInvalidJSON(err)
	} else if tok != json.Delim('{') {
		return invalid("the body must be a JSON object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return request{}, errInvalidJSON(err)
		}
		key := tok.(string)
		switch key {
		case "batch":
			if wires, r.violations, err = decodeEvents(dec, maxEventBytes); errors.Is(err, errNotArray) {
				return invalid("batch must be an array of events")
			}
		case "sentAt":
			err = dec.Decode(&sentAt)
		case "context":
			err = dec.Decode(&ctx)
		case "writeKey":
			err = dec.Decode(&r.writeKey)
		default:
			err = dec.Decode(new(json.RawMessage))
		}
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			return invalid("%s must be %s, not %s", key, want(te), te.Value)
		case err != nil:
			return request{}, errInvalidJSON(err)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return request{}, errInvalidJSON(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return request{}, errInvalidJSON(fmt.Errorf("data after the batch object"))
	}
	at, err := parseTime(sentAt)
	if err != nil {
		return invalid("sentAt: %v", err)
	}
	// The batch's context is converted once, and its values shared by the
	// events that have none of their own, not converted again for each.
	var shared map[string]*structpb.Value
	if ctx != nil {
		s, err := structpb.NewStruct(ctx)
		if err != nil {
			return invalid("context: %v", err)
		}
		shared = s.Fields
	}
	if len(wires) == 0 {
		return request{}, &apiError{status: http.StatusBadRequest, code: "empty_batch", message: `"batch" holds no events`}
	}
	r.events = make([]*eventv1.Event, len(wires))
	for i, w := range wires {
		if w == nil {
			continue // rejected by decodeEvents
		}
		ev, v := w.event(eventv1.EventType_EVENT_TYPE_UNSPECIFIED, at, shared)
		if v != nil {
			v.Index = i
			r.violations = append(r.violations, *v)
			continue
		}
		r.events[i] = ev
	}
	return r, nil
}

var errNotArray = errors.New("not an array")

// decodeEvents decodes the array of events dec is at. It returns nil in
// place of the events it rejects, with their violations.
func decodeEvents(dec *json.Decoder, maxEventBytes int) ([]*wireEvent, []intake.Violation, error) {
	if tok, err := dec.Token(); err != nil {
		return nil, nil, err
	} else if tok != json.Delim('[') {
		return nil, nil, errNotArray
	}
	var (
		wires []*wireEvent
		bad   []intake.Violation
	)
	for i := 0; dec.More(); i++ {
		start := dec.InputOffset()
		var w *wireEvent
		err := dec.Decode(&w)
		// The size includes the separator before the event: a byte or two.
		size := int(dec.InputOffset() - start)
		v, isType := typeViolation(err)
		switch {
		case err != nil && !isType:
			return nil, nil, err
		case size > maxEventBytes:
			v = intake.Violation{Code: intake.CodeTooLarge, Reason: fmt.Sprintf("event is %d bytes, over the %d-byte limit", size, maxEventBytes)}
		case err == nil && w == nil:
			v = intake.Violation{Code: intake.CodeType, Reason: "must be a JSON object, not null"}
		case err == nil:
			wires = append(wires, w)
			continue
		}
		v.Index = i
		if w != nil {
			v.MessageID = w.MessageID
		}
		bad = append(bad, v)
		wires = append(wires, nil)
	}
	_, err := dec.Token() // the closing bracket
	return wires, bad, err
}
