package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a lodestar child process.
type proc struct {
	name, target string
	cmd          *exec.Cmd
	health       string
	exited       chan struct{}
}

func startProc(o options, dir, name, target, natsURL string, replicas int) (*proc, error) {
	hp, err := freePort()
	if err != nil {
		return nil, err
	}
	gp, err := freePort()
	if err != nil {
		return nil, err
	}
	log, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(o.lodestar,
		"-target="+target,
		"-nats.url="+natsURL,
		"-nats.replicas="+strconv.Itoa(replicas),
		"-nats.lease-ttl="+o.leaseTTL.String(),
		"-nats.member="+name,
		"-redis.addrs="+o.redis,
		fmt.Sprintf("-grpc.listen-addr=127.0.0.1:%d", gp),
		fmt.Sprintf("-http.listen-addr=127.0.0.1:%d", hp),
		"-http.admin-listen-addr=",
		"-data-dir="+filepath.Join(dir, name),
		"-log.level=info",
		"-churn-alert.rescan-interval="+rescanInterval.String(),
	)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, target: target, cmd: cmd, health: fmt.Sprintf("http://127.0.0.1:%d/healthz", hp), exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		log.Close()
		close(p.exited)
	}()
	return p, nil
}

// ready reports whether the process answers its health check with 200.
func (p *proc) ready() bool {
	select {
	case <-p.exited:
		return false
	default:
	}
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(p.health)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (p *proc) signal(sig syscall.Signal) {
	_ = p.cmd.Process.Signal(sig)
}

// stop ends the process with SIGTERM, SIGKILL after a while.
func (p *proc) stop() {
	p.signal(syscall.SIGCONT)
	p.signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		p.signal(syscall.SIGKILL)
		<-p.exited
	}
}

func (p *proc) kill() {
	p.signal(syscall.SIGKILL)
	<-p.exited
}

// cpu is the CPU time the process used so far, from /proc.
func (p *proc) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ 100
}

// selfCPU is this process's CPU time (the NATS servers run in it).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// waitUntil polls cond until it holds, ctx ends or timeout passes.
func waitUntil(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s", what, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}
