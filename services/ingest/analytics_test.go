package ingest_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/analytics-go/v3"

	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
)

// TestAnalyticsGo sends events with Segment's own Go library, unchanged but
// for its endpoint, and checks each is stored once, under the write key's
// tenant, attributed to the right account, at the right time.
func TestAnalyticsGo(t *testing.T) {
	e := start(t, nil)
	ts := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)

	// u1 joins acct-1 and acts in the same flush; u2 names its account on
	// the call itself; the anonymous a3 has none.
	send(t, e.http.URL, []analytics.Message{
		analytics.Group{MessageId: "g1", UserId: "u1", GroupId: "acct-1", Timestamp: ts, Traits: analytics.NewTraits().SetName("Acme Corp")},
		analytics.Identify{MessageId: "i1", UserId: "u1", Timestamp: ts, Traits: analytics.NewTraits().SetEmail("ada@acme.test").Set("role", "VP Sales")},
		analytics.Track{MessageId: "t1", UserId: "u1", Event: "Opportunity Created", Timestamp: ts, Properties: analytics.NewProperties().Set("amount", 1200)},
		analytics.Page{MessageId: "p1", UserId: "u2", Name: "Pipeline", Timestamp: ts, Context: &analytics.Context{Extra: map[string]any{"groupId": "acct-2"}}},
		analytics.Track{MessageId: "t2", AnonymousId: "a3", Event: "Signed Up", Timestamp: ts},
	})
	// A later flush reaches another ingest instance, whose cache is empty:
	// u1's last known account comes from the USER_ACCOUNTS bucket.
	other := start(t, e.nc)
	send(t, other.http.URL, []analytics.Message{
		analytics.Track{MessageId: "t3", UserId: "u1", Event: "Report Viewed", Timestamp: ts},
	})

	want := map[string]struct {
		typ     eventv1.EventType
		account string
	}{
		"g1": {eventv1.EventType_EVENT_TYPE_GROUP, "acct-1"},
		"i1": {eventv1.EventType_EVENT_TYPE_IDENTIFY, "acct-1"},
		"t1": {eventv1.EventType_EVENT_TYPE_TRACK, "acct-1"},
		"p1": {eventv1.EventType_EVENT_TYPE_PAGE, "acct-2"},
		"t2": {eventv1.EventType_EVENT_TYPE_TRACK, ""},
		"t3": {eventv1.EventType_EVENT_TYPE_TRACK, "acct-1"},
	}
	got := e.storedEvents(t)
	if len(got) != len(want) {
		t.Errorf("stored %d events, want %d", len(got), len(want))
	}
	for id, w := range want {
		ev, ok := got[id]
		if !ok {
			t.Errorf("event %s not stored", id)
			continue
		}
		if ev.TenantId != "acme" || ev.Type != w.typ || ev.AccountId != w.account {
			t.Errorf("event %s: tenant %q type %v account %q, want acme %v %q", id, ev.TenantId, ev.Type, ev.AccountId, w.typ, w.account)
		}
		// The library's clock is the test's: the skew correction may add
		// only the time between sending and receiving.
		if d := ev.EventTime.AsTime().Sub(ts); d < 0 || d > time.Second {
			t.Errorf("event %s: event time %v, want %v (+ transit)", id, ev.EventTime.AsTime(), ts)
		}
	}
	if p := got["t1"].GetProperties().GetFields()["amount"].GetNumberValue(); p != 1200 {
		t.Errorf("t1 amount = %v, want 1200", p)
	}
	if lib := got["t1"].GetContext().GetFields()["library"].GetStructValue().GetFields()["name"].GetStringValue(); lib != "analytics-go" {
		t.Errorf("t1 context.library.name = %q: the batch context was not merged", lib)
	}
}

// TestAnalyticsGoRetry makes the library's first upload fail after Lodestar
// stored its batch, so that the library retries the same batch, and checks
// that every event is stored once.
func TestAnalyticsGoRetry(t *testing.T) {
	for _, tc := range []struct {
		name string
		// lose loses the answer to a request that was handled.
		lose func(http.ResponseWriter)
	}{
		{"500 after storing", func(w http.ResponseWriter) { http.Error(w, "answer lost", http.StatusInternalServerError) }},
		{"connection closed after storing", func(w http.ResponseWriter) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, nil)
			var attempts atomic.Int32
			flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if attempts.Add(1) > 1 {
					e.svc.Handler().ServeHTTP(w, r)
					return
				}
				rec := httptest.NewRecorder()
				e.svc.Handler().ServeHTTP(rec, r)
				if rec.Code != http.StatusOK {
					t.Errorf("first attempt answered %d: %s", rec.Code, rec.Body)
				}
				tc.lose(w)
			}))
			t.Cleanup(flaky.Close)

			var msgs []analytics.Message
			for i, id := range []string{"r1", "r2", "r3", "r4", "r5", "r6"} {
				msgs = append(msgs, analytics.Track{MessageId: id, UserId: "u" + string(rune('a'+i%3)), Event: "Clicked",
					Context: &analytics.Context{Extra: map[string]any{"groupId": "acct-" + string(rune('a'+i%2))}}})
			}
			send(t, flaky.URL, msgs)

			if n := attempts.Load(); n < 2 {
				t.Fatalf("%d upload attempts: the client did not retry", n)
			}
			got := e.storedEvents(t) // fails on an event stored twice
			for _, m := range msgs {
				if id := m.(analytics.Track).MessageId; got[id] == nil {
					t.Errorf("event %s not stored", id)
				}
			}
			if len(got) != len(msgs) {
				t.Errorf("stored %d events, want %d", len(got), len(msgs))
			}
		})
	}
}

// send sends msgs with analytics-go as one batch to endpoint with acme's
// write key, and waits until the library reports every message delivered.
func send(t *testing.T, endpoint string, msgs []analytics.Message) {
	t.Helper()
	cb := &callback{done: make(chan struct{}), want: len(msgs)}
	c, err := analytics.NewWithConfig(acmeWriteKey, analytics.Config{
		Endpoint: endpoint,
		// One batch, sent when the last message is queued.
		BatchSize:  len(msgs),
		Interval:   time.Hour,
		RetryAfter: func(int) time.Duration { return 20 * time.Millisecond },
		Logger:     testLogger{t},
		Callback:   cb,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if err := c.Enqueue(m); err != nil {
			t.Fatalf("enqueue: %v", err)
		}
	}
	// Close drops messages still waiting for a retry: wait for the outcome.
	select {
	case <-cb.done:
	case <-time.After(15 * time.Second):
		t.Fatal("analytics-go did not deliver the batch in 15s")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if n := cb.failed.Load(); n > 0 {
		t.Fatalf("analytics-go reported %d messages failed", n)
	}
}

// callback closes done once every message succeeded or failed.
type callback struct {
	mu     sync.Mutex
	n      int
	want   int
	done   chan struct{}
	failed atomic.Int32
}

func (c *callback) Success(analytics.Message) { c.count() }

func (c *callback) Failure(analytics.Message, error) {
	c.failed.Add(1)
	c.count()
}

func (c *callback) count() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n++; c.n == c.want {
		close(c.done)
	}
}

type testLogger struct{ t *testing.T }

func (l testLogger) Logf(format string, args ...any) { l.t.Logf("analytics-go: "+format, args...) }
func (l testLogger) Errorf(format string, args ...any) {
	l.t.Logf("analytics-go error: "+format, args...)
}
