package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lodestar-cs/lodestar/pkg/auth"
)

// Counters read from the child's /metrics: ingest's stored events and
// scoring's applied ones; scoring has caught up when they are equal.
const (
	metricAccepted = "lodestar_ingest_events_accepted_total"
	metricApplied  = "lodestar_scoring_events_total"
)

// buildLodestar builds the lodestar binary of package pkg into dir.
func buildLodestar(ctx context.Context, pkg, dir string) (string, error) {
	bin := filepath.Join(dir, "lodestar")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}

// lodestar is a lodestar process this tool started, with -target=all, an
// in-process score cache, a fresh data dir and free loopback ports.
type lodestar struct {
	cmd      *exec.Cmd
	done     chan struct{} // closed when the process has exited
	waitErr  error
	logPath  string
	httpAddr string
	// adminAddr serves /metrics.
	adminAddr string
	grpcAddr  string
	keys      auth.DemoKeys
	client    *http.Client
}

// maxEventAge lets the child take the real data set's invoices of 2010-2011.
const maxEventAge = 30 * 365 * 24 * time.Hour

// startLodestar starts bin and waits until /healthz says every service is
// ready, at most timeout. The demo tenant's keys derive from a random seed
// given on the command line (auth.Demo), so the tool knows them.
func startLodestar(ctx context.Context, bin, dir string, timeout time.Duration) (*lodestar, error) {
	httpAddr, err1 := freeAddr()
	grpcAddr, err2 := freeAddr()
	adminAddr, err3 := freeAddr()
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, err
	}
	seed := make([]byte, 8)
	_, _ = rand.Read(seed) // crypto/rand.Read never fails on supported platforms.
	_, keys, err := auth.Demo(hex.EncodeToString(seed))
	if err != nil {
		return nil, fmt.Errorf("demo keys: %w", err)
	}
	logPath := filepath.Join(dir, "lodestar.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command(bin,
		"-target=all",
		"-data-dir="+filepath.Join(dir, "data"),
		"-http.listen-addr="+httpAddr,
		"-http.admin-listen-addr="+adminAddr,
		"-grpc.listen-addr="+grpcAddr,
		// A backfill of history years old: ingest refuses events older than
		// the EVENTS retention from live clients, not from an import.
		"-ingest.max-event-age="+maxEventAge.String(),
		"-auth.demo-key-seed="+hex.EncodeToString(seed),
		"-log.level=warn",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	l := &lodestar{
		cmd: cmd, done: make(chan struct{}), logPath: logPath,
		httpAddr: httpAddr, adminAddr: adminAddr, grpcAddr: grpcAddr, keys: keys,
		client: &http.Client{Timeout: 30 * time.Second},
	}
	go func() { l.waitErr = cmd.Wait(); close(l.done) }()
	if err := l.waitReady(ctx, timeout); err != nil {
		return nil, errors.Join(err, l.stop())
	}
	return l, nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func (l *lodestar) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+l.httpAddr+"/healthz", nil)
		if err != nil {
			return err
		}
		if resp, err := l.client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lodestar not ready after %s (log: %s)", timeout, l.logTail())
		}
		select {
		case <-l.done:
			return fmt.Errorf("lodestar exited while starting: %v (log: %s)", l.waitErr, l.logTail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop ends the process this tool started: SIGTERM to its pid for a graceful
// shutdown, SIGKILL to the same pid when it has not exited in time.
func (l *lodestar) stop() error {
	select {
	case <-l.done:
		return nil
	default:
	}
	if err := l.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop lodestar (pid %d): %w", l.cmd.Process.Pid, err)
	}
	select {
	case <-l.done:
		return nil
	case <-time.After(45 * time.Second):
	}
	_ = l.cmd.Process.Kill()
	<-l.done
	return fmt.Errorf("lodestar (pid %d) did not stop in 45s: killed", l.cmd.Process.Pid)
}

// logTail is the end of the child's log, for errors.
func (l *lodestar) logTail() string {
	b, err := os.ReadFile(l.logPath)
	if err != nil {
		return err.Error()
	}
	const max = 2000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return strings.TrimSpace(string(b))
}

// drain waits until scoring has applied every event ingest stored, which must
// be at least sent, at most timeout.
func (l *lodestar) drain(ctx context.Context, sent int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := l.counters(ctx, metricAccepted, metricApplied)
		if err != nil {
			return err
		}
		if c[0] >= float64(sent) && c[1] >= c[0] {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: ingest stored %.0f of %d events, scoring applied %.0f", timeout, c[0], sent, c[1])
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// counters reads the named counters from /metrics, each summed over its
// series.
func (l *lodestar) counters(ctx context.Context, names ...string) ([]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+l.adminAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape metrics: %w", err)
	}
	defer resp.Body.Close()
	return sumCounters(resp.Body, names...)
}

// sumCounters sums, for each name, the values of its series in a Prometheus
// text exposition; 0 for a counter that is absent.
func sumCounters(r io.Reader, names ...string) ([]float64, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	out := make([]float64, len(names))
	for i, name := range names {
		for _, m := range families[name].GetMetric() {
			out[i] += m.GetCounter().GetValue()
		}
	}
	return out, nil
}
