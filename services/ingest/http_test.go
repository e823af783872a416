package ingest_test

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// httpAnswer is the JSON body of every answer.
type httpAnswer struct {
	Success  bool   `json:"success"`
	Code     string `json:"code"`
	Message  string `json:"message"`
	Accepted int    `json:"accepted"`
	Errors   []struct {
		Index int    `json:"index"`
		Field string `json:"field"`
		Code  string `json:"code"`
	} `json:"errors"`
}

// errs renders an answer's per-event errors as "index:field:code".
func (a httpAnswer) errs() []string {
	var out []string
	for _, e := range a.Errors {
		out = append(out, fmt.Sprintf("%d:%s:%s", e.Index, e.Field, e.Code))
	}
	return out
}

// postAs posts body to path as acme and returns the status, the Retry-After
// header and the answer.
func postAs(t *testing.T, e *env, path string, body []byte) (int, string, httpAnswer) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.http.URL+path, bytes.NewReader(body))
	req.SetBasicAuth(acmeWriteKey, "")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var a httpAnswer
	if err := json.NewDecoder(res.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header.Get("Retry-After"), a
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Bytes()
}

// batchOf wraps events (JSON objects) in a batch body.
func batchOf(events ...string) []byte {
	return []byte(`{"batch":[` + strings.Join(events, ",") + `]}`)
}

// track is a valid track call with message id id.
func track(id string) string {
	return `{"type":"track","userId":"u1","event":"Clicked","messageId":"` + id + `"}`
}

// TestHTTPBadInput sends bad (and some good) requests to the Segment API and
// checks each answer, then that exactly the accepted events are stored,
// each under its write key's tenant.
func TestHTTPBadInput(t *testing.T) {
	e := start(t, nil)
	blob := strings.Repeat("x", 33<<10)
	bigEvent := `{"type":"track","userId":"u1","event":"Big","properties":{"blob":"` + blob + `"}}`
	var hugeBatch []string
	for range 30 {
		hugeBatch = append(hugeBatch, `{"type":"track","userId":"u1","event":"Big","properties":{"blob":"`+blob[:20<<10]+`"}}`)
	}
	bomb := gz(append([]byte(`{"batch":[`), bytes.Repeat([]byte(" "), 10<<20)...))
	accepted := map[string]string{} // message id to tenant, over all requests

	type want struct {
		status   int
		code     string // empty for success
		accepted int
		errors   []string
	}
	for _, tc := range []struct {
		name        string
		method      string // POST when empty
		path        string
		key         string // Basic-auth user; none when empty
		contentType string // application/json when empty; "-" for none
		encoding    string
		body        []byte
		want        want
		// stored maps the message ids this request must store to their tenant.
		stored map[string]string
	}{
		{name: "track", path: "/v1/track", key: acmeWriteKey, body: []byte(track("h-ok")),
			want: want{status: 200}, stored: map[string]string{"h-ok": "acme"}},
		{name: "malformed JSON", path: "/v1/track", key: acmeWriteKey, body: []byte(`{"userId":`),
			want: want{status: 400, code: "invalid_json"}},
		{name: "malformed JSON in a batch", path: "/v1/batch", key: acmeWriteKey, body: []byte(`{"batch":[` + track("h-syntax") + `,{"type":"track",}]}`),
			want: want{status: 400, code: "invalid_json"}},
		{name: "data after the batch", path: "/v1/batch", key: acmeWriteKey, body: append(batchOf(track("h-trailing")), `{}`...),
			want: want{status: 400, code: "invalid_json"}},
		{name: "batch body not an object", path: "/v1/batch", key: acmeWriteKey, body: []byte(`[` + track("h-array") + `]`),
			want: want{status: 400, code: "invalid_request"}},
		{name: "body not an object", path: "/v1/track", key: acmeWriteKey, body: []byte(`[1,2]`),
			want: want{status: 400, code: "invalid_event", errors: []string{"0::wrong_type"}}},
		{name: "oversize event", path: "/v1/track", key: acmeWriteKey, body: []byte(bigEvent),
			want: want{status: 413, code: "event_too_large"}},
		{name: "oversize batch", path: "/v1/batch", key: acmeWriteKey, body: batchOf(hugeBatch...),
			want: want{status: 413, code: "batch_too_large"}},
		{name: "oversize event in a batch", path: "/v1/batch", key: acmeWriteKey, body: batchOf(track("h-big-ok"), bigEvent),
			want: want{status: 200, accepted: 1, errors: []string{"1::too_large"}}, stored: map[string]string{"h-big-ok": "acme"}},
		{name: "missing ids", path: "/v1/track", key: acmeWriteKey, body: []byte(`{"event":"Clicked"}`),
			want: want{status: 400, code: "invalid_event", errors: []string{"0:userId:missing"}}},
		{name: "missing ids in a batch", path: "/v1/batch", key: acmeWriteKey, body: batchOf(`{"type":"track","event":"Clicked"}`, track("h-ids-ok")),
			want: want{status: 200, accepted: 1, errors: []string{"0:userId:missing"}}, stored: map[string]string{"h-ids-ok": "acme"}},
		{name: "null in a batch", path: "/v1/batch", key: acmeWriteKey, body: batchOf(track("h-null-ok"), `null`),
			want: want{status: 200, accepted: 1, errors: []string{"1::wrong_type"}}, stored: map[string]string{"h-null-ok": "acme"}},
		{name: "bad key", path: "/v1/track", key: "wk_not_a_key_0123456789", body: []byte(track("h-badkey")),
			want: want{status: 401, code: "invalid_write_key"}},
		{name: "bad key in body", path: "/v1/track", body: []byte(`{"writeKey":"wk_not_a_key_0123456789","userId":"u1","event":"Clicked"}`),
			want: want{status: 401, code: "invalid_write_key"}},
		{name: "missing key", path: "/v1/track", body: []byte(track("h-nokey")),
			want: want{status: 401, code: "missing_write_key"}},
		{name: "key in body", path: "/v1/batch", body: []byte(`{"writeKey":"` + acmeWriteKey + `","batch":[` + track("h-bodykey") + `]}`),
			want: want{status: 200, accepted: 1}, stored: map[string]string{"h-bodykey": "acme"}},
		{name: "another tenant's key, body naming acme", path: "/v1/track", key: globexWriteKey,
			body: []byte(`{"writeKey":"` + acmeWriteKey + `","tenant":"acme","tenant_id":"acme","userId":"u1","event":"Clicked","messageId":"h-globex"}`),
			want: want{status: 200}, stored: map[string]string{"h-globex": "globex"}},
		{name: "userId a number", path: "/v1/track", key: acmeWriteKey, body: []byte(`{"userId":42,"event":"Clicked"}`),
			want: want{status: 400, code: "invalid_event", errors: []string{"0:userId:wrong_type"}}},
		{name: "properties a string", path: "/v1/track", key: acmeWriteKey, body: []byte(`{"userId":"u1","event":"Clicked","properties":"x"}`),
			want: want{status: 400, code: "invalid_event", errors: []string{"0:properties:wrong_type"}}},
		{name: "context.groupId a number", path: "/v1/page", key: acmeWriteKey, body: []byte(`{"userId":"u1","context":{"groupId":7}}`),
			want: want{status: 400, code: "invalid_event", errors: []string{"0:context.groupId:wrong_type"}}},
		{name: "unknown type", path: "/v1/batch", key: acmeWriteKey, body: batchOf(`{"type":"purchase","userId":"u1"}`),
			want: want{status: 400, code: "invalid_events", errors: []string{"0:type:invalid"}}},
		{name: "no type in a batch", path: "/v1/batch", key: acmeWriteKey, body: batchOf(`{"userId":"u1","event":"Clicked"}`),
			want: want{status: 400, code: "invalid_events", errors: []string{"0:type:missing"}}},
		{name: "type of another endpoint", path: "/v1/track", key: acmeWriteKey, body: []byte(`{"type":"identify","userId":"u1"}`),
			want: want{status: 400, code: "invalid_event", errors: []string{"0:type:invalid"}}},
		{name: "group without groupId", path: "/v1/group", key: acmeWriteKey, body: []byte(`{"userId":"u1"}`),
			want: want{status: 400, code: "invalid_event", errors: []string{"0:groupId:missing"}}},
		{name: "alias without previousId", path: "/v1/alias", key: acmeWriteKey, body: []byte(`{"userId":"u1"}`),
			want: want{status: 400, code: "invalid_event", errors: []string{"0:previousId:missing"}}},
		{name: "bad timestamp", path: "/v1/identify", key: acmeWriteKey, body: []byte(`{"userId":"u1","timestamp":"yesterday"}`),
			want: want{status: 400, code: "invalid_event", errors: []string{"0:timestamp:invalid"}}},
		{name: "empty batch", path: "/v1/batch", key: acmeWriteKey, body: []byte(`{"batch":[]}`),
			want: want{status: 400, code: "empty_batch"}},
		{name: "batch not an array", path: "/v1/import", key: acmeWriteKey, body: []byte(`{"batch":"x"}`),
			want: want{status: 400, code: "invalid_request"}},
		{name: "batch sentAt a number", path: "/v1/batch", key: acmeWriteKey, body: []byte(`{"sentAt":5,"batch":[` + track("h-sentat5") + `]}`),
			want: want{status: 400, code: "invalid_request"}},
		{name: "bad batch sentAt", path: "/v1/batch", key: acmeWriteKey, body: []byte(`{"sentAt":"now","batch":[` + track("h-sentat") + `]}`),
			want: want{status: 400, code: "invalid_request"}},
		{name: "bad gzip", path: "/v1/batch", key: acmeWriteKey, encoding: "gzip", body: batchOf(track("h-badgz")),
			want: want{status: 400, code: "invalid_gzip"}},
		{name: "gzip bomb", path: "/v1/batch", key: acmeWriteKey, encoding: "gzip", body: bomb,
			want: want{status: 413, code: "batch_too_large"}},
		{name: "gzip", path: "/v1/import", key: acmeWriteKey, encoding: "gzip", body: gz(batchOf(track("h-gz"))),
			want: want{status: 200, accepted: 1}, stored: map[string]string{"h-gz": "acme"}},
		{name: "no content type", path: "/v1/screen", key: acmeWriteKey, contentType: "-", body: []byte(`{"anonymousId":"a1","name":"Home","messageId":"h-noct"}`),
			want: want{status: 200}, stored: map[string]string{"h-noct": "acme"}},
		{name: "wrong method", method: http.MethodGet, path: "/v1/track", key: acmeWriteKey,
			want: want{status: 405, code: "method_not_allowed"}},
		// As Segment's API: any Content-Type, as long as the body is JSON.
		{name: "JSON under another content type", path: "/v1/track", key: acmeWriteKey, contentType: "application/xml", body: []byte(track("h-xml")),
			want: want{status: 200}, stored: map[string]string{"h-xml": "acme"}},
		{name: "not JSON under another content type", path: "/v1/track", key: acmeWriteKey, contentType: "application/x-www-form-urlencoded", body: []byte("userId=u1&event=Clicked"),
			want: want{status: 400, code: "invalid_json"}},
		{name: "unsupported encoding", path: "/v1/track", key: acmeWriteKey, encoding: "br", body: []byte(track("h-br")),
			want: want{status: 415, code: "unsupported_encoding"}},
		{name: "unknown path", path: "/v1/purchase", key: acmeWriteKey, body: []byte(track("h-404")),
			want: want{status: 404, code: "not_found"}},
		{name: "rate limit: the burst", path: "/v1/batch", key: slowWriteKey,
			body: batchOf(track("h-slow-1"), track("h-slow-2"), track("h-slow-3"), track("h-slow-4"), track("h-slow-5")),
			want: want{status: 200, accepted: 5}, stored: map[string]string{"h-slow-1": "slow", "h-slow-2": "slow", "h-slow-3": "slow", "h-slow-4": "slow", "h-slow-5": "slow"}},
		{name: "rate limit: over", path: "/v1/track", key: slowWriteKey, body: []byte(track("h-slow-6")),
			want: want{status: 429, code: "rate_limited"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := cmp.Or(tc.method, http.MethodPost)
			req, err := http.NewRequest(method, e.http.URL+tc.path, bytes.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if ct := cmp.Or(tc.contentType, "application/json"); ct != "-" {
				req.Header.Set("Content-Type", ct)
			}
			if tc.encoding != "" {
				req.Header.Set("Content-Encoding", tc.encoding)
			}
			if tc.key != "" {
				req.SetBasicAuth(tc.key, "")
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("request failed (did the server crash?): %v", err)
			}
			defer res.Body.Close()
			raw, _ := io.ReadAll(res.Body)
			var got httpAnswer
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatalf("answer %d is not JSON: %q", res.StatusCode, raw)
			}
			if res.StatusCode != tc.want.status || got.Code != tc.want.code || got.Success != (tc.want.status == 200) ||
				got.Accepted != tc.want.accepted || !slices.Equal(got.errs(), tc.want.errors) {
				t.Errorf("answer %d %s, want %d code %q accepted %d errors %q", res.StatusCode, raw, tc.want.status, tc.want.code, tc.want.accepted, tc.want.errors)
			}
			switch res.StatusCode {
			case http.StatusTooManyRequests:
				if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || s < 1 || s > 60 {
					t.Errorf("Retry-After %q, want 1 to 60 seconds", res.Header.Get("Retry-After"))
				}
			case http.StatusMethodNotAllowed:
				if res.Header.Get("Allow") != http.MethodPost {
					t.Errorf("Allow %q, want POST", res.Header.Get("Allow"))
				}
			case http.StatusUnauthorized:
				if res.Header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
			}
			if tc.want.status >= 400 && got.Message == "" {
				t.Error("error without a message")
			}
			// Events stored by this request must be there now, not eventually.
			stored := e.storedEvents(t)
			for id, tenant := range tc.stored {
				accepted[id] = tenant
				if ev := stored[id]; ev == nil || ev.TenantId != tenant {
					t.Errorf("event %s: stored %v, want under tenant %s", id, ev, tenant)
				}
			}
		})
	}

	// Exactly the accepted events are stored, under their tenants.
	stored := e.storedEvents(t)
	for id, ev := range stored {
		if accepted[id] != ev.TenantId {
			t.Errorf("event %s stored under tenant %s, want %q", id, ev.TenantId, accepted[id])
		}
	}
	if len(stored) != len(accepted) {
		t.Errorf("stored %d events, want the %d accepted", len(stored), len(accepted))
	}
}

// TestHTTPClockSkew checks Segment's correction of a client clock running
// an hour fast: the event happened 10 s before it was sent.
func TestHTTPClockSkew(t *testing.T) {
	e := start(t, nil)
	clientNow := time.Now().Add(time.Hour).UTC()
	body := fmt.Sprintf(`{"sentAt":%q,"batch":[{"type":"track","userId":"u1","event":"Clicked","messageId":"skew","timestamp":%q}]}`,
		clientNow.Format(time.RFC3339Nano), clientNow.Add(-10*time.Second).Format(time.RFC3339Nano))
	before := time.Now()
	req, _ := http.NewRequest(http.MethodPost, e.http.URL+"/v1/batch", strings.NewReader(body))
	req.SetBasicAuth(acmeWriteKey, "")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	after := time.Now()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", res.StatusCode)
	}
	ev := e.storedEvents(t)["skew"]
	got, received := ev.GetEventTime().AsTime(), ev.GetReceivedTime().AsTime()
	if received.Before(before) || received.After(after) {
		t.Errorf("received time %v outside the request [%v, %v]", received, before, after)
	}
	if d := received.Sub(got); d < 10*time.Second-time.Millisecond || d > 10*time.Second+time.Millisecond {
		t.Errorf("event time %v is %v before receipt, want 10s", got, d)
	}
	if ev.GetSentTime().AsTime().Sub(clientNow).Abs() > time.Microsecond {
		t.Errorf("sent time %v, want the client's %v", ev.GetSentTime().AsTime(), clientNow)
	}
}

// TestHTTPEventTimeBounds checks that an event whose sentAt is years away
// from its timestamp is rejected before the 200, named by its index, and
// never stored at a time centuries away (issue 13, item 3).
func TestHTTPEventTimeBounds(t *testing.T) {
	e := start(t, nil)
	now := time.Now().UTC()
	ev := func(id string, timestamp, sentAt time.Time) string {
		return fmt.Sprintf(`{"type":"track","userId":"u1","event":"Clicked","messageId":%q,"timestamp":%q,"sentAt":%q}`,
			id, timestamp.Format(time.RFC3339Nano), sentAt.Format(time.RFC3339Nano))
	}
	body := batchOf(
		ev("ok", now.Add(-time.Minute), now),
		ev("sent-9999", now.Add(-time.Minute), time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)),
		ev("sent-0001", now.Add(-time.Minute), time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)),
	)
	status, _, a := postAs(t, e, "/v1/batch", body)
	if want := []string{"1:timestamp:out_of_range", "2:timestamp:out_of_range"}; status != http.StatusOK || a.Accepted != 1 || !slices.Equal(a.errs(), want) {
		t.Fatalf("status %d, accepted %d, errors %q: want 200, 1, %q", status, a.Accepted, a.errs(), want)
	}
	stored := e.storedEvents(t)
	if len(stored) != 1 || stored["ok"] == nil {
		t.Fatalf("stored %d events, want only ok", len(stored))
	}
	if d := now.Sub(stored["ok"].GetEventTime().AsTime()); d < 0 || d > time.Minute+5*time.Second {
		t.Errorf("event time %v, want about a minute before %v", stored["ok"].GetEventTime().AsTime(), now)
	}

	// A single call so wrong is a 400 naming the field.
	status, _, a = postAs(t, e, "/v1/track", []byte(ev("single", now, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC))))
	if status != http.StatusBadRequest || a.Code != "invalid_event" || !slices.Equal(a.errs(), []string{"0:timestamp:out_of_range"}) {
		t.Errorf("single call: status %d, code %s, errors %q", status, a.Code, a.errs())
	}
}

// TestHTTPDeepNesting checks that an event nested deeper than scoring can
// decode is rejected before the 200, named by its index, while the valid
// events of its batch are stored (issue 13, item 2).
func TestHTTPDeepNesting(t *testing.T) {
	e := start(t, nil)
	deep := strings.Repeat("[", 6000) + strings.Repeat("]", 6000) // 12 KB, under the event limit
	body := batchOf(track("ok"), `{"type":"identify","userId":"u2","messageId":"deep","traits":{"a":`+deep+`}}`)
	status, _, a := postAs(t, e, "/v1/batch", body)
	if want := []string{"1:traits:too_deep"}; status != http.StatusOK || a.Accepted != 1 || !slices.Equal(a.errs(), want) {
		t.Fatalf("status %d, accepted %d, errors %q: want 200, 1, %q", status, a.Accepted, a.errs(), want)
	}
	if stored := e.storedEvents(t); len(stored) != 1 || stored["ok"] == nil {
		t.Errorf("stored %d events, want only ok", len(stored))
	}
}

// TestHTTPDuplicateMessageIDs sends one messageId five times in a batch: it
// is stored once, and the repeats are listed as duplicates (issue 13, item 4).
func TestHTTPDuplicateMessageIDs(t *testing.T) {
	e := start(t, nil)
	body := batchOf(track("same"), track("other"), track("same"), track("same"), track("same"), track("same"))
	status, _, a := postAs(t, e, "/v1/batch", body)
	want := []string{"2:messageId:duplicate", "3:messageId:duplicate", "4:messageId:duplicate", "5:messageId:duplicate"}
	if status != http.StatusOK || a.Accepted != 2 || !slices.Equal(a.errs(), want) {
		t.Fatalf("status %d, accepted %d, errors %q: want 200, 2, %q", status, a.Accepted, a.errs(), want)
	}
	n := 0
	for _, m := range e.storedMessages(t) {
		for _, ev := range m.events {
			if ev.MessageId == "same" {
				n++
			}
		}
	}
	if n != 1 {
		t.Errorf("event stored %d times, want once", n)
	}
}
