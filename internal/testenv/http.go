package testenv

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// WaitReady waits until base/healthz answers 200, for at most within.
func WaitReady(t testing.TB, base string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within %s: %v", within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// PostBatch sends Segment events to base/v1/batch with a write key, as a
// product backend does, and fails the test unless they are accepted.
func PostBatch(t testing.TB, base, writeKey string, events []map[string]any, sentAt time.Time) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"batch": events, "sentAt": sentAt.Format(time.RFC3339Nano)})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/batch", bytes.NewReader(body))
	req.SetBasicAuth(writeKey, "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("batch: HTTP %d", resp.StatusCode)
	}
}
