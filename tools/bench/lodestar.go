package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lodestar-cs/lodestar/app"
)

// Counters the bench reads from the all-in-one's /metrics: ingest's stored
// events and scoring's applied ones, whose difference is scoring's backlog.
const (
	metricAccepted = "lodestar_ingest_events_accepted_total"
	metricApplied  = "lodestar_scoring_events_total"
	metricScores   = "lodestar_scoring_scores_total"
)

// lodestar is an all-in-one running in this process.
type lodestar struct {
	cfg    app.Config
	cancel context.CancelFunc
	done   chan error
	client *http.Client
	// Started is how long it took from Run to ready.
	Started time.Duration
}

// freeAddr returns a free loopback address. Another process could take it
// before Lodestar listens; on loopback of a bench machine that is a
// theoretical race.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startLodestar runs app.Run with cfg until Stop, and waits until
// /healthz says every service is ready, at most timeout.
func startLodestar(ctx context.Context, cfg app.Config, logger *slog.Logger, timeout time.Duration) (*lodestar, error) {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l := &lodestar{cfg: cfg, cancel: cancel, done: make(chan error, 1), client: &http.Client{Timeout: 5 * time.Second}}
	start := time.Now()
	go func() { l.done <- app.Run(runCtx, cfg, logger, io.Discard) }()
	if err := l.waitReady(ctx, timeout); err != nil {
		return nil, errors.Join(err, l.Stop())
	}
	l.Started = time.Since(start)
	return l, nil
}

func (l *lodestar) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if l.ready(ctx) {
			return nil
		}
		select {
		case err := <-l.done:
			l.done <- err // for Stop
			return fmt.Errorf("lodestar stopped while starting: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lodestar not ready after %s", timeout)
		}
	}
}

func (l *lodestar) ready(ctx context.Context) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+l.cfg.HTTPListenAddr+"/healthz", nil)
	if err != nil {
		return false
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Stop shuts the all-in-one down gracefully (scoring flushes and snapshots)
// and returns how Run ended.
func (l *lodestar) Stop() error {
	l.cancel()
	select {
	case err := <-l.done:
		if err != nil {
			return fmt.Errorf("lodestar: %w", err)
		}
		return nil
	case <-time.After(l.cfg.ShutdownGrace + 30*time.Second):
		return errors.New("lodestar did not stop")
	}
}

// counters reads the named counters from /metrics, each summed over its
// series.
func (l *lodestar) counters(ctx context.Context, names ...string) ([]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+l.cfg.HTTP.AdminListenAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape metrics: %w", err)
	}
	return sumCounters(body, names...), nil
}

// backlog is scoring's backlog: events stored by ingest, not yet applied.
func (l *lodestar) backlog(ctx context.Context) (accepted, applied float64, err error) {
	c, err := l.counters(ctx, metricAccepted, metricApplied)
	if err != nil {
		return 0, 0, err
	}
	return c[0], c[1], nil
}

// drain waits until scoring has applied every stored event and one flush
// interval more has passed, so its scores are written; at most timeout.
func (l *lodestar) drain(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		acc, app, err := l.backlog(ctx)
		if err != nil {
			return err
		}
		if app >= acc {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("scoring still %.0f events behind after %s", acc-app, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(2 * l.cfg.Scoring.FlushInterval):
		return nil
	}
}

// sumCounters sums, for each name, the values of its series in a Prometheus
// text exposition; 0 for a counter that is absent.
func sumCounters(exposition []byte, names ...string) []float64 {
	out := make([]float64, len(names))
	sc := bufio.NewScanner(bytes.NewReader(exposition))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		for i, name := range names {
			rest, ok := strings.CutPrefix(line, name)
			if !ok || rest == "" || rest[0] != ' ' && rest[0] != '{' {
				continue
			}
			fields := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
			if len(fields) == 0 {
				continue
			}
			if v, err := strconv.ParseFloat(fields[0], 64); err == nil {
				out[i] += v
			}
		}
	}
	return out
}
