package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lodestar-cs/lodestar/tools/bench/internal/stats"
)

// driver posts Segment batches to the all-in-one's /v1/batch with a
// tenant's write key, over a bounded set of keep-alive connections.
type driver struct {
	client   *http.Client
	url      string
	writeKey string
	conns    int
	// seq numbers the live batches sent, so every stamped message id is new.
	seq atomic.Uint64
}

func newDriver(httpAddr, writeKey string, conns int) *driver {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, IdleConnTimeout: time.Minute}
	return &driver{
		client:   &http.Client{Transport: tr, Timeout: 30 * time.Second},
		url:      "http://" + httpAddr + "/v1/batch",
		writeKey: writeKey,
		conns:    conns,
	}
}

// post sends one body and reports whether every event was stored (HTTP 200).
func (d *driver) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("new request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(d.writeKey, "")
	resp, err := d.client.Do(req)
	if err != nil {
		return fmt.Errorf("post batch: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("post batch: HTTP %d: %s", resp.StatusCode, msg)
	}
	return nil
}

// paceResult is what an open-loop run did.
type paceResult struct {
	Offered  float64 // events/s scheduled
	Sent     int64   // events posted
	Accepted int64   // events answered 200
	Failed   int64   // requests that failed
	// Late counts batches that found every connection busy and its queue
	// full when due: ingest answered too slowly to take the offered rate.
	Late      int64
	Requests  stats.Summary // request latency, due time to answer
	FirstErr  error
	Completed time.Duration
}

// ok reports whether the run delivered what it offered.
func (r paceResult) ok() (bool, string) {
	switch {
	case r.Failed > 0:
		return false, fmt.Sprintf("%d requests failed: %v", r.Failed, r.FirstErr)
	case r.Late > 0:
		return false, fmt.Sprintf("%d batches due while every connection was busy", r.Late)
	}
	return true, ""
}

// pace posts the live templates round robin at rate events/s until ctx is
// done, open loop: batch k is due at start + k/(rate/events per batch)
// whatever happened to the batches before it, and its latency is measured
// from when it was due, so a slow answer is never hidden by waiting for it
// (no coordinated omission). A batch due while all connections are busy
// waits in a queue of one per connection; one due with that queue full is
// counted late and not sent.
func (d *driver) pace(ctx context.Context, pool []*template, rate float64) paceResult {
	type job struct {
		t   *template
		due time.Time
	}
	jobs := make(chan job, d.conns)
	var (
		res              = paceResult{Offered: rate}
		sent, ok, failed atomic.Int64
		mu               sync.Mutex
		lat              []time.Duration
		wg               sync.WaitGroup
	)
	for range d.conns {
		wg.Go(func() {
			var buf []byte
			var mine []time.Duration
			for j := range jobs {
				buf = j.t.stamp(buf, d.seq.Add(1), time.Now())
				sent.Add(int64(j.t.events))
				if err := d.post(context.WithoutCancel(ctx), buf); err != nil {
					if failed.Add(1) == 1 {
						mu.Lock()
						res.FirstErr = err
						mu.Unlock()
					}
					continue
				}
				ok.Add(int64(j.t.events))
				mine = append(mine, time.Since(j.due))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	interval := time.Duration(float64(time.Second) * batchEvents / rate)
	start := time.Now()
	next, k := start, 0
loop:
	for {
		for now := time.Now(); !next.After(now); next = start.Add(time.Duration(k) * interval) {
			select {
			case jobs <- job{pool[k%len(pool)], next}:
			default:
				res.Late++
			}
			k++
		}
		select {
		case <-ctx.Done():
			break loop
		case <-time.After(time.Until(next)):
		}
	}
	close(jobs)
	wg.Wait()
	res.Completed = time.Since(start)
	res.Sent, res.Accepted, res.Failed = sent.Load(), ok.Load(), failed.Load()
	res.Requests = stats.Summarize(lat)
	return res
}

// sendAll posts every body once, as fast as the connections allow, and
// returns the events stored.
func (d *driver) sendAll(ctx context.Context, bodies <-chan *template) (int64, error) {
	var (
		stored  atomic.Int64
		errOnce sync.Once
		first   error
		wg      sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range d.conns {
		wg.Go(func() {
			for t := range bodies {
				if ctx.Err() != nil {
					continue // drain, so the producer never blocks
				}
				if err := d.post(ctx, t.body); err != nil {
					errOnce.Do(func() { first = err; cancel() })
					continue
				}
				stored.Add(int64(t.events))
			}
		})
	}
	wg.Wait()
	return stored.Load(), first
}
