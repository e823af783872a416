package ingest_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

// TestRealSegmentClients sends what real Segment clients send (issue 13,
// item 10): axios-based SDKs gzip JSON under a form content type;
// analytics.js and analytics-next post text/plain to short paths with the
// write key in the body, from web pages, after a CORS preflight when they
// add headers.
func TestRealSegmentClients(t *testing.T) {
	e := start(t, nil)
	type call struct {
		name     string
		method   string
		path     string
		header   map[string]string
		basicKey string
		body     []byte
		status   int
		code     string
		// stored is the message id this call stores, and under which tenant.
		stored, tenant string
	}
	const textPlain = "text/plain;charset=UTF-8"
	calls := []call{
		{name: "axios: gzip JSON as a form", path: "/v1/batch", basicKey: acmeWriteKey,
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"},
			body:   gz(batchOf(track("rc-axios"))), status: 200, stored: "rc-axios", tenant: "acme"},
		{name: "analytics.js track", path: "/v1/t", header: map[string]string{"Content-Type": textPlain},
			body: []byte(`{"type":"track","event":"Viewed","userId":"u1","messageId":"rc-t","writeKey":"` + acmeWriteKey + `"}`), status: 200, stored: "rc-t", tenant: "acme"},
		{name: "analytics.js identify", path: "/v1/i", header: map[string]string{"Content-Type": textPlain},
			body: []byte(`{"type":"identify","userId":"u1","traits":{"name":"Ada"},"messageId":"rc-i","writeKey":"` + acmeWriteKey + `"}`), status: 200, stored: "rc-i", tenant: "acme"},
		{name: "analytics.js group", path: "/v1/g", header: map[string]string{"Content-Type": textPlain},
			body: []byte(`{"type":"group","userId":"u1","groupId":"acct-1","messageId":"rc-g","writeKey":"` + acmeWriteKey + `"}`), status: 200, stored: "rc-g", tenant: "acme"},
		{name: "analytics.js page", path: "/v1/p", header: map[string]string{"Content-Type": textPlain},
			body: []byte(`{"type":"page","anonymousId":"a1","name":"Home","messageId":"rc-p","writeKey":"` + acmeWriteKey + `"}`), status: 200, stored: "rc-p", tenant: "acme"},
		{name: "analytics.js screen", path: "/v1/s", header: map[string]string{"Content-Type": textPlain},
			body: []byte(`{"type":"screen","anonymousId":"a1","name":"Home","messageId":"rc-s","writeKey":"` + acmeWriteKey + `"}`), status: 200, stored: "rc-s", tenant: "acme"},
		{name: "analytics.js alias", path: "/v1/a", header: map[string]string{"Content-Type": textPlain},
			body: []byte(`{"type":"alias","userId":"u2","previousId":"a1","messageId":"rc-a","writeKey":"` + acmeWriteKey + `"}`), status: 200, stored: "rc-a", tenant: "acme"},
		{name: "analytics-next batch", path: "/v1/b", header: map[string]string{"Content-Type": textPlain, "Origin": "https://shop.example"},
			body: []byte(`{"batch":[` + track("rc-b") + `],"sentAt":"2026-03-01T10:00:01.000Z","writeKey":"` + acmeWriteKey + `"}`), status: 200, stored: "rc-b", tenant: "acme"},
		// The tenant comes from the key, never from other fields of the body.
		{name: "body names another tenant", path: "/v1/t", header: map[string]string{"Content-Type": textPlain},
			body:   []byte(`{"type":"track","event":"X","userId":"u1","messageId":"rc-spoof","tenantId":"acme","tenant":"acme","context":{"tenant":"acme"},"writeKey":"` + globexWriteKey + `"}`),
			status: 200, stored: "rc-spoof", tenant: "globex"},
		{name: "allowed origin", path: "/v1/t", header: map[string]string{"Content-Type": textPlain, "Origin": globexOrigin},
			body: []byte(`{"type":"track","event":"X","userId":"u1","messageId":"rc-origin","writeKey":"` + globexWriteKey + `"}`), status: 200, stored: "rc-origin", tenant: "globex"},
		{name: "origin the tenant does not allow", path: "/v1/t", header: map[string]string{"Content-Type": textPlain, "Origin": "https://evil.example"},
			body: []byte(`{"type":"track","event":"X","userId":"u1","messageId":"rc-evil","writeKey":"` + globexWriteKey + `"}`), status: 403, code: "origin_not_allowed"},
		{name: "no write key anywhere", path: "/v1/t", header: map[string]string{"Content-Type": textPlain},
			body: []byte(`{"type":"track","event":"X","userId":"u1","messageId":"rc-nokey"}`), status: 401, code: "missing_write_key"},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, e.http.URL+c.path, bytes.NewReader(c.body))
			for k, v := range c.header {
				req.Header.Set(k, v)
			}
			if c.basicKey != "" {
				req.SetBasicAuth(c.basicKey, "")
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(res.Body)
			res.Body.Close()
			var got httpAnswer
			if err := json.Unmarshal(raw, &got); err != nil || res.StatusCode != c.status || got.Code != c.code {
				t.Fatalf("answer %d %s, want %d %q", res.StatusCode, raw, c.status, c.code)
			}
			if o := c.header["Origin"]; o != "" && c.status == 200 && res.Header.Get("Access-Control-Allow-Origin") != o {
				t.Errorf("Access-Control-Allow-Origin %q, want %q: the page cannot read the answer", res.Header.Get("Access-Control-Allow-Origin"), o)
			}
			if c.stored != "" {
				if ev := e.storedEvents(t)[c.stored]; ev == nil || ev.GetTenantId() != c.tenant {
					t.Fatalf("event %s stored as %v, want under %s", c.stored, ev, c.tenant)
				}
			}
		})
	}
	if ev := e.storedEvents(t)["rc-evil"]; ev != nil {
		t.Error("an event from a refused origin was stored")
	}

	t.Run("preflight", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodOptions, e.http.URL+"/v1/t", nil)
		req.Header.Set("Origin", globexOrigin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		h := res.Header
		if res.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != globexOrigin ||
			h.Get("Access-Control-Allow-Methods") != "POST" || h.Get("Access-Control-Allow-Headers") == "" || h.Get("Vary") != "Origin" {
			t.Fatalf("preflight answered %d %v", res.StatusCode, h)
		}
	})
}
