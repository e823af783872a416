package main

import (
	"fmt"
	"io"
	"math/bits"
	"strconv"
	"sync"
	"time"
)

// subBuckets is the number of histogram buckets per power of two: 16 keeps
// a quantile within about 3% of the true value.
const subBuckets = 16

// histogram counts durations in log-linear buckets, as HdrHistogram does:
// constant memory, cheap to record, precise enough for p99.9.
type histogram struct {
	counts [(64 - 3) * subBuckets]uint64
	n      uint64
	max    time.Duration
}

func bucketOf(d time.Duration) int {
	v := uint64(max(d, 0))
	if v < subBuckets {
		return int(v)
	}
	shift := bits.Len64(v) - 5 // keep the top 5 bits: 16 to 31
	return (shift+1)*subBuckets + int(v>>shift) - subBuckets
}

// bucketMid is the middle of a bucket's range.
func bucketMid(i int) time.Duration {
	if i < subBuckets {
		return time.Duration(i)
	}
	shift := i/subBuckets - 1
	lower := uint64(i%subBuckets+subBuckets) << shift
	return time.Duration(lower + (uint64(1)<<shift)/2)
}

func (h *histogram) record(d time.Duration) {
	h.counts[bucketOf(d)]++
	h.n++
	h.max = max(h.max, d)
}

// quantile returns the q-quantile (0 < q <= 1), or 0 when empty.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		if seen += c; seen >= rank {
			return min(bucketMid(i), h.max)
		}
	}
	return h.max
}

// counts are what a phase has done so far.
type counts struct {
	events   int64 // accepted by the server
	rejected int64 // events the server refused as invalid
	requests int64
	failed   int64 // requests that failed for good
	retries  int64
}

// stats follows the current phase: totals and latencies since it began,
// and since the last progress line.
type stats struct {
	mu       sync.Mutex
	phase    string
	began    time.Time
	total    counts
	last     counts // at the last progress line
	lastLine time.Time
	latency  histogram // since the phase began
	interval histogram // since the last progress line
	// eventTime is the event time of the latest batch being sent.
	eventTime time.Time
}

// begin starts a phase.
func (s *stats) begin(phase string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.phase, s.began, s.lastLine = phase, now, now
	s.total, s.last = counts{}, counts{}
	s.latency, s.interval = histogram{}, histogram{}
}

// request records one request: its latency from the batch's intended send
// time, the events it delivered and rejected, and whether it failed.
func (s *stats) request(latency time.Duration, events, rejected int, failed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total.requests++
	if failed {
		s.total.failed++
		return
	}
	s.total.events += int64(events - rejected)
	s.total.rejected += int64(rejected)
	s.latency.record(latency)
	s.interval.record(latency)
}

func (s *stats) retried() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total.retries++
}

func (s *stats) sending(eventTime time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.eventTime = eventTime
}

// progress writes one line about the time since the previous one.
func (s *stats) progress(w io.Writer, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	secs := now.Sub(s.lastLine).Seconds()
	d := s.total
	fmt.Fprintf(w, "loadgen: %s %s: %s events/s, %s requests/s, %d failed, %d rejected, %d retries; latency p50 %s p99 %s; event time %s\n",
		s.phase, now.Sub(s.began).Round(time.Second),
		perSecond(d.events-s.last.events, secs), perSecond(d.requests-s.last.requests, secs),
		d.failed-s.last.failed, d.rejected-s.last.rejected, d.retries-s.last.retries,
		roundLatency(s.interval.quantile(0.5)), roundLatency(s.interval.quantile(0.99)),
		s.eventTime.UTC().Format("2006-01-02 15:04"))
	s.last, s.lastLine, s.interval = d, now, histogram{}
}

// summary writes the phase's totals.
func (s *stats) summary(w io.Writer, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	took := now.Sub(s.began)
	d := s.total
	fmt.Fprintf(w, "loadgen: %s done: %d events in %s (%s/s), %d requests, %d failed, %d rejected events, %d retries; latency p50 %s p90 %s p99 %s p99.9 %s max %s\n",
		s.phase, d.events, took.Round(time.Millisecond), perSecond(d.events, max(took.Seconds(), 1e-9)),
		d.requests, d.failed, d.rejected, d.retries,
		roundLatency(s.latency.quantile(0.5)), roundLatency(s.latency.quantile(0.9)),
		roundLatency(s.latency.quantile(0.99)), roundLatency(s.latency.quantile(0.999)), roundLatency(s.latency.max))
}

// perSecond prints a rate with one decimal below 10/s, so that a slow
// stream does not read as "0 events/s".
func perSecond(n int64, secs float64) string {
	r := float64(n) / secs
	if r < 10 {
		return strconv.FormatFloat(r, 'f', 1, 64)
	}
	return strconv.FormatInt(int64(r), 10)
}

// roundLatency keeps three significant digits or so.
func roundLatency(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
