package segment

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
	"github.com/lodestar-cs/lodestar/services/ingest/internal/intake"
)

const fuzzEventBytes, fuzzBatchBytes = 32 << 10, 500 << 10

// FuzzDecode feeds bodies to the single-call and batch decoders and what
// they accept to intake.Prepare: every input is an answer (an event, a
// violation or a request error), never a panic, and every event of a batch
// is accounted for exactly once.
func FuzzDecode(f *testing.F) {
	f.Add(testBatch())
	f.Add([]byte(`{"type":"track","userId":"u1","event":"Clicked","messageId":"m1","timestamp":"2026-03-01T10:00:00Z","writeKey":"wk"}`))
	f.Add([]byte(`{"batch":[{"type":"identify","userId":"u","traits":{"a":[1,{"b":null}]}}],"sentAt":"2026-03-01T10:00:01.000Z","context":{"library":{"name":"x"}}}`))
	f.Add([]byte(`{"batch":[{"type":"group","groupId":1}, "x", null, {"type":"alias"}]}`))
	f.Add([]byte(`{"batch":[],"writeKey":"k"}`))
	f.Add([]byte(`[1,2]`))
	f.Add([]byte(`{"properties":{"a":1e999}}`))
	received := time.Date(2026, 3, 1, 10, 0, 2, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		if req, fail := decodeSingle(body, eventv1.EventType_EVENT_TYPE_TRACK); fail == nil {
			if len(req.events) != 1 {
				t.Fatalf("a single call decoded to %d events", len(req.events))
			}
			intake.Prepare("fuzz", received, intake.DefaultTimeBounds(), req.events, body)
		}
		req, fail := decodeBatch(body, fuzzEventBytes)
		if fail != nil {
			return
		}
		valid, bad := intake.Prepare("fuzz", received, intake.DefaultTimeBounds(), req.events, body)
		nils := 0
		for _, ev := range req.events {
			if ev == nil {
				nils++
			}
		}
		if nils != len(req.violations) {
			t.Fatalf("%d events missing, %d violations", nils, len(req.violations))
		}
		if len(valid)+len(bad) != len(req.events)-nils {
			t.Fatalf("prepared %d valid and %d bad of %d decoded events", len(valid), len(bad), len(req.events)-nils)
		}
	})
}

// FuzzGzipBody feeds gzip bodies to readBody, raw (often not gzip at all)
// and compressed: a body is read whole up to the limit, refused with 413
// over it or 400 when it is not gzip; nothing larger than the limit is
// ever returned.
func FuzzGzipBody(f *testing.F) {
	f.Add(testBatch(), true)
	f.Add(gzipped(testBatch()), false)
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}, false)
	f.Add(bytes.Repeat([]byte("a"), 4096), true)
	f.Fuzz(func(t *testing.T, data []byte, compress bool) {
		const limit = 2048
		body := data
		if compress {
			body = gzipped(data)
		}
		r := httptest.NewRequest(http.MethodPost, "/v1/batch", bytes.NewReader(body))
		r.Header.Set("Content-Encoding", "gzip")
		got, fail := readBody(httptest.NewRecorder(), r, limit, "batch_too_large")
		switch {
		case fail == nil && len(got) > limit:
			t.Fatalf("returned %d bytes over the %d limit", len(got), limit)
		case fail != nil && fail.status != http.StatusBadRequest && fail.status != http.StatusRequestEntityTooLarge:
			t.Fatalf("answer %d %s", fail.status, fail.code)
		case compress && len(body) <= limit && len(data) <= limit && (fail != nil || !bytes.Equal(got, data)):
			t.Fatalf("a valid gzip body of %d bytes came back as %d bytes (%v)", len(data), len(got), fail)
		case compress && len(data) > limit && fail == nil:
			t.Fatalf("%d decompressed bytes accepted under a %d limit", len(data), limit)
		}
	})
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Bytes()
}
