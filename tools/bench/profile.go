package main

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"

	"github.com/lodestar-cs/lodestar/tools/bench/internal/pprofsum"
)

// ProfileSummary is where the end-to-end run spends CPU and allocations.
type ProfileSummary struct {
	Window  string  `json:"window"`
	CPUFile string  `json:"cpu_file,omitempty"`
	MemFile string  `json:"mem_file,omitempty"`
	Events  float64 `json:"events"`

	CPUSeconds    float64 `json:"cpu_seconds"`
	CPUComponents []Share `json:"cpu_components,omitempty"`
	CPUTop        []Share `json:"cpu_top_flat,omitempty"`
	AllocBytes    float64 `json:"alloc_bytes"`
	AllocByComp   []Share `json:"alloc_components,omitempty"`
	AllocTop      []Share `json:"alloc_top_flat,omitempty"`
}

// Share is a component's or function's part of a profile.
type Share struct {
	Name    string  `json:"name"`
	Percent float64 `json:"percent"`
	// PerEvent is the amount per event of the window: µs of CPU or bytes.
	PerEvent float64 `json:"per_event"`
}

// components name the parts of the process a profile sample belongs to, by
// the first frame, from the leaf up, in a package they list: a malloc
// called by the JSON decoder counts as JSON decoding.
var components = []struct{ prefix, name string }{
	{"encoding/json.", "JSON (encoding/json)"},
	{"google.golang.org/protobuf/types/known/structpb.", "google.protobuf.Struct building"},
	{"google.golang.org/protobuf/", "protobuf marshal/unmarshal"},
	{"github.com/nats-io/nats-server/", "NATS server (JetStream)"},
	{"github.com/nats-io/nats.go", "NATS client"},
	{"github.com/lodestar-cs/lodestar/internal/scorecore/engine.", "scoring engine (apply, evaluate)"},
	{"github.com/lodestar-cs/lodestar/pkg/cache.", "score cache (encoding, script arguments)"},
	{"github.com/redis/go-redis/", "Redis client"},
	{"go.opentelemetry.io/", "OpenTelemetry (traces, metrics)"},
	{"google.golang.org/grpc", "gRPC"},
	{"github.com/lodestar-cs/lodestar/services/ingest/", "ingest (validation, attribution, packing)"},
	{"github.com/lodestar-cs/lodestar/services/scoring/", "scoring pipeline"},
	{"net/http.", "HTTP server"},
	{"compress/", "compression"},
	{"crypto/", "hashing"},
	{"runtime.gcBgMarkWorker", "GC (background marking)"},
}

// classify names a stack's component. The load generator's stacks are
// its own whatever they call, so the server's HTTP is not mixed with the
// client's.
func classify(stack []string) string {
	for _, fn := range stack {
		if strings.HasPrefix(fn, "main.") {
			return "bench load generator (HTTP client)"
		}
	}
	for _, fn := range stack {
		for _, c := range components {
			if strings.HasPrefix(fn, c.prefix) {
				return c.name
			}
		}
	}
	return ""
}

const otherComponent = "runtime and syscalls (scheduler, network, other)"

func (p *ProfileSummary) addCPU(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read cpu profile: %w", err)
	}
	defer f.Close()
	prof, err := pprofsum.Parse(f)
	if err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	i := prof.Index("cpu/nanoseconds")
	if i < 0 {
		return fmt.Errorf("cpu profile: no cpu/nanoseconds values in %q", prof.Types)
	}
	total := float64(prof.Total(i))
	p.CPUSeconds = total / 1e9
	perEvent := func(v int64) float64 { return float64(v) / 1e3 / p.Events } // µs
	p.CPUComponents = shares(prof.Components(i, classify, otherComponent), total, perEvent, false)
	p.CPUTop = shares(prof.Top(i, 20, false), total, perEvent, false)
	return nil
}

func (p *ProfileSummary) addAllocs(base, after []byte) error {
	b, err := pprofsum.Parse(bytes.NewReader(base))
	if err != nil {
		return fmt.Errorf("allocation profile: %w", err)
	}
	a, err := pprofsum.Parse(bytes.NewReader(after))
	if err != nil {
		return fmt.Errorf("allocation profile: %w", err)
	}
	prof := a.Sub(b)
	i := prof.Index("alloc_space/bytes")
	if i < 0 {
		return fmt.Errorf("allocation profile: no alloc_space values in %q", prof.Types)
	}
	total := float64(prof.Total(i))
	p.AllocBytes = total
	perEvent := func(v int64) float64 { return float64(v) / p.Events }
	p.AllocByComp = shares(prof.Components(i, classify, otherComponent), total, perEvent, false)
	p.AllocTop = shares(prof.Top(i, 15, false), total, perEvent, false)
	return nil
}

func shares(es []pprofsum.Entry, total float64, perEvent func(int64) float64, cum bool) []Share {
	out := make([]Share, len(es))
	for i, e := range es {
		v := e.Flat
		if cum {
			v = e.Cum
		}
		out[i] = Share{Name: e.Name, Percent: 100 * float64(v) / total, PerEvent: perEvent(v)}
	}
	return out
}

// heapProfile returns the allocation profile as of now.
func heapProfile() ([]byte, error) {
	runtime.GC() // the profile is as of the last GC
	var b bytes.Buffer
	if err := pprof.Lookup("allocs").WriteTo(&b, 0); err != nil {
		return nil, fmt.Errorf("allocation profile: %w", err)
	}
	return b.Bytes(), nil
}

func (p *ProfileSummary) writeMarkdown(b *strings.Builder) {
	fmt.Fprintf(b, "\n## Where the time goes\n\nProfiles of the end-to-end run: %s, everything in one process (so the load generator is in it too); Redis is another process, not in them.", p.Window)
	if p.CPUFile != "" {
		fmt.Fprintf(b, " CPU: `go tool pprof %s`.", p.CPUFile)
	}
	if p.MemFile != "" {
		fmt.Fprintf(b, " Allocations of the window: `go tool pprof -sample_index=alloc_space -base %s.base %s`.", p.MemFile, p.MemFile)
	}
	if p.CPUFile == "" {
		b.WriteString(" Add `-cpuprofile cpu.pprof -memprofile mem.pprof` to keep the profiles for `go tool pprof`.")
	}
	b.WriteString(" Components take a sample by the innermost frame in their packages, so a malloc or GC assist counts for the code that allocated.\n")
	table := func(title, unit string, rows []Share) {
		if len(rows) == 0 {
			return
		}
		fmt.Fprintf(b, "\n| %s | share | %s per event |\n|---|---|---|\n", title, unit)
		for _, r := range rows {
			fmt.Fprintf(b, "| %s | %.1f%% | %.2f |\n", strings.ReplaceAll(r.Name, "|", "\\|"), r.Percent, r.PerEvent)
		}
	}
	if p.CPUSeconds > 0 {
		fmt.Fprintf(b, "\nCPU: %.1f s sampled, %.1f µs per event.\n", p.CPUSeconds, p.CPUSeconds*1e6/p.Events)
		table("CPU by component", "µs", p.CPUComponents)
		table("CPU, top functions (flat)", "µs", p.CPUTop)
	}
	if p.AllocBytes > 0 {
		fmt.Fprintf(b, "\nAllocations: %.0f bytes per event (sampled).\n", p.AllocBytes/p.Events)
		table("allocated bytes by component", "bytes", p.AllocByComp)
		table("allocated bytes, top functions (flat)", "bytes", p.AllocTop)
	}
}
