package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Machine is what the figures were measured on.
type Machine struct {
	CPUs         int    `json:"cpus"`
	CPUModel     string `json:"cpu_model"`
	MemoryBytes  int64  `json:"memory_bytes"`
	Kernel       string `json:"kernel"`
	GoVersion    string `json:"go_version"`
	GOMAXPROCS   int    `json:"gomaxprocs"`
	NATSServer   string `json:"nats_server"`
	NATSClient   string `json:"nats_client"`
	GoRedis      string `json:"go_redis"`
	RedisVersion string `json:"redis_version"`
}

// describeMachine reads the machine from /proc, the build's module versions
// (those go.mod selects) and Redis's INFO.
func describeMachine(ctx context.Context, rc *redis.Client) Machine {
	m := Machine{
		CPUs:       runtime.NumCPU(),
		GoVersion:  runtime.Version(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		CPUModel:   procField("/proc/cpuinfo", "model name"),
		Kernel:     strings.TrimSpace(readFile("/proc/sys/kernel/osrelease")),
	}
	if kb, err := strconv.ParseInt(strings.Fields(procField("/proc/meminfo", "MemTotal") + " 0")[0], 10, 64); err == nil {
		m.MemoryBytes = kb << 10
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case "github.com/nats-io/nats-server/v2":
				m.NATSServer = d.Version
			case "github.com/nats-io/nats.go":
				m.NATSClient = d.Version
			case "github.com/redis/go-redis/v9":
				m.GoRedis = d.Version
			}
		}
	}
	if info, err := rc.Info(ctx, "server").Result(); err == nil {
		m.RedisVersion = infoField(info, "redis_version")
	}
	return m
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// procField returns the value of the first "key: value" line of a /proc
// file.
func procField(path, key string) string {
	sc := bufio.NewScanner(bytes.NewReader([]byte(readFile(path))))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// infoField returns a field of Redis's INFO answer.
func infoField(info, key string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+":"); ok {
			return v
		}
	}
	return ""
}

// cpuMeter measures the CPU this process and Redis use over a span, to say
// which of them a run saturates, and what the rest of the machine used: the
// VM is shared, and another process's load shows here.
type cpuMeter struct {
	rc        *redis.Client
	wall      time.Time
	self      time.Duration
	redis     float64 // seconds
	redisSeen bool
	busy      float64 // seconds of the whole machine, from /proc/stat
}

// userHZ is the unit of /proc/stat: Linux reports clock ticks of 1/100 s to
// user space on every architecture Go runs on.
const userHZ = 100

// machineBusy returns the seconds every CPU spent not idle since boot.
func machineBusy() float64 {
	for line := range strings.Lines(readFile("/proc/stat")) {
		f := strings.Fields(line)
		if len(f) < 8 || f[0] != "cpu" {
			continue
		}
		var busy float64
		for i, v := range f[1:] {
			n, _ := strconv.ParseFloat(v, 64)
			if i != 3 && i != 4 { // idle, iowait
				busy += n
			}
		}
		return busy / userHZ
	}
	return 0
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func redisCPU(ctx context.Context, rc *redis.Client) (float64, bool) {
	info, err := rc.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, false
	}
	var sum float64
	for _, k := range []string{"used_cpu_sys", "used_cpu_user"} {
		v, err := strconv.ParseFloat(infoField(info, k), 64)
		if err != nil {
			return 0, false
		}
		sum += v
	}
	return sum, true
}

func startCPU(ctx context.Context, rc *redis.Client) *cpuMeter {
	c := &cpuMeter{rc: rc, wall: time.Now(), self: processCPU(), busy: machineBusy()}
	c.redis, c.redisSeen = redisCPU(ctx, rc)
	return c
}

// CPUUse is the cores used over a span.
type CPUUse struct {
	Process float64 `json:"process_cores"`
	Redis   float64 `json:"redis_cores"`
	// Others is what the rest of the machine used: other processes, the
	// kernel's own work and time the hypervisor stole.
	Others float64 `json:"other_cores"`
}

func (u CPUUse) String() string {
	return fmt.Sprintf("bench process %.2f cores, Redis %.2f, others %.2f", u.Process, u.Redis, u.Others)
}

// stop returns the cores used since start.
func (c *cpuMeter) stop(ctx context.Context) CPUUse {
	wall := time.Since(c.wall).Seconds()
	u := CPUUse{Process: (processCPU() - c.self).Seconds() / wall}
	if r, ok := redisCPU(ctx, c.rc); ok && c.redisSeen {
		u.Redis = (r - c.redis) / wall
	}
	u.Others = max(0, (machineBusy()-c.busy)/wall-u.Process-u.Redis)
	return u
}

// waitQuiet waits, at most max, until the rest of the machine (other
// processes, not this one nor Redis) uses less than limit cores over a
// second: the VM is shared, and a measurement taken while another job
// runs measures that job too. It returns what the others used last.
func waitQuiet(ctx context.Context, rc *redis.Client, max time.Duration, limit float64) float64 {
	deadline := time.Now().Add(max)
	for {
		c := startCPU(ctx, rc)
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(time.Second):
		}
		others := c.stop(ctx).Others
		if others < limit || time.Now().After(deadline) {
			return others
		}
	}
}
