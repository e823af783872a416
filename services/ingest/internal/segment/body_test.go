package segment

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
)

// TestReadBodyAllocatesAsBytesArrive: a request claiming a 500 KB body
// (Content-Length) that sends 2 bytes gets no 500 KB buffer; slow clients
// used to hold that much each before a byte arrived (issue 13, item 6).
func TestReadBodyAllocatesAsBytesArrive(t *testing.T) {
	const claimed, limit = 500 << 10, 500 << 10
	r := httptest.NewRequest(http.MethodPost, "/v1/batch", strings.NewReader("{}"))
	r.ContentLength = claimed
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	body, fail := readBody(httptest.NewRecorder(), r, limit, "batch_too_large")
	runtime.ReadMemStats(&after)
	if fail != nil || string(body) != "{}" {
		t.Fatalf("readBody: %q %v", body, fail)
	}
	// The bound is far above what reading 2 bytes takes and far below the
	// claimed length; the test's own goroutine is the only one allocating.
	if got := after.TotalAlloc - before.TotalAlloc; got > claimed/4 {
		t.Fatalf("reading a 2-byte body allocated %d bytes: it must not trust Content-Length %d", got, claimed)
	}
}
