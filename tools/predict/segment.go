package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/lodestar-cs/lodestar/tools/loadgen/sim"
)

// Limits of one Segment batch request: Segment's own 500 KB, and a count that
// keeps a request short.
const (
	batchEvents = 500
	batchBytes  = 450_000
	// sendRetries is how often a request answered 429 or 5xx, or not at
	// all, is tried again; ingest deduplicates by message id.
	sendRetries = 5
)

// segmentClient sends events to the Segment HTTP API: POST /v1/batch, the
// write key as the Basic-auth user.
type segmentClient struct {
	url         string
	writeKey    string
	client      *http.Client
	concurrency int
	sent        int
}

// send posts events in batches, day by day of event time: the batches of
// one day concurrency requests at a time, and a day's only once the day
// before is answered. Requests in flight at once reach ingest in any order,
// and an event that arrives after a later day's is scored at the watermark
// it arrives at, not on its own day: a Segment source delivers in order,
// and a replay that did not would score other days than the live run it
// replays. Within a day the order does not matter, as a score depends on
// the watermark's day. Events must come in event-time order. They keep
// their timestamps as they are (no sentAt, so no clock-skew correction):
// event time is the recorded time. Any event the server rejects is an
// error.
func (c *segmentClient) send(ctx context.Context, events []sim.SegmentEvent) error {
	var days [][][]byte // the bodies of each day's batches
	var cur bytes.Buffer
	n, day := 0, ""
	flush := func() {
		if n > 0 {
			cur.WriteString("]}")
			days[len(days)-1] = append(days[len(days)-1], bytes.Clone(cur.Bytes()))
		}
		cur.Reset()
		n = 0
	}
	for _, ev := range events {
		b, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("encode event %s: %w", ev.MessageID, err)
		}
		if d := eventDay(ev); d != day || len(days) == 0 {
			flush()
			days, day = append(days, nil), d
		}
		if n == batchEvents || n > 0 && cur.Len()+len(b)+2 > batchBytes {
			flush()
		}
		if n == 0 {
			cur.WriteString(`{"batch":[`)
		} else {
			cur.WriteByte(',')
		}
		cur.Write(b)
		n++
	}
	flush()
	for _, bodies := range days {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(c.concurrency)
		for _, body := range bodies {
			g.Go(func() error { return c.post(gctx, body) })
		}
		if err := g.Wait(); err != nil {
			return err
		}
	}
	c.sent += len(events)
	return nil
}

// eventDay is the UTC day of an event's timestamp (RFC 3339, in UTC), as
// its text.
func eventDay(ev sim.SegmentEvent) string {
	if t, err := time.Parse(time.RFC3339Nano, ev.Timestamp); err == nil {
		return t.UTC().Format(time.DateOnly)
	}
	return ev.Timestamp
}

// post sends one batch, retrying what is worth retrying with a doubling
// backoff.
func (c *segmentClient) post(ctx context.Context, body []byte) error {
	backoff := 200 * time.Millisecond
	for attempt := 0; ; attempt++ {
		retry, err := c.postOnce(ctx, body)
		if !retry || attempt == sendRetries {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

func (c *segmentClient) postOnce(ctx context.Context, body []byte) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+"/v1/batch", bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(c.writeKey, "")
	resp, err := c.client.Do(req)
	if err != nil {
		return true, fmt.Errorf("post batch: %w", err)
	}
	defer resp.Body.Close()
	var answer struct {
		Message string `json:"message"`
		Errors  []struct {
			MessageID string `json:"messageId"`
			Field     string `json:"field"`
			Reason    string `json:"reason"`
		} `json:"errors"`
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	_ = json.Unmarshal(raw, &answer) // a body that is not JSON leaves the answer empty
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return true, fmt.Errorf("post batch: HTTP %d: %s", resp.StatusCode, answer.Message)
	case resp.StatusCode != http.StatusOK:
		return false, fmt.Errorf("post batch: HTTP %d: %s", resp.StatusCode, raw)
	case len(answer.Errors) > 0:
		e := answer.Errors[0]
		return false, fmt.Errorf("post batch: %d events rejected, first %s: %s: %s", len(answer.Errors), e.MessageID, e.Field, e.Reason)
	}
	return false, nil
}
