// Package pprofsum summarises a runtime/pprof profile (the gzipped
// profile.proto) without the pprof tool: the heaviest functions, flat and
// cumulative, and the share of each component, so that a benchmark report
// can say where the time went. It decodes only what it needs, with
// protowire, to keep github.com/google/pprof out of the module.
package pprofsum

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// Profile is a decoded profile: each sample's stack, leaf first, as
// function names, and its values.
type Profile struct {
	// Types names the sample values, such as "cpu/nanoseconds" or
	// "alloc_space/bytes".
	Types   []string
	Samples []Sample
}

// Sample is one stack and its values, in the order of Types.
type Sample struct {
	Stack  []string
	Values []int64
}

// Entry is a function or component and its share of one value.
type Entry struct {
	Name string
	Flat int64 // in the function itself (for a component: its samples)
	Cum  int64 // in it and what it calls
}

// Parse reads a profile, gzipped or not.
func Parse(r io.Reader) (*Profile, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read profile: %w", err)
	}
	if len(raw) > 1 && raw[0] == 0x1f && raw[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("gunzip profile: %w", err)
		}
		if raw, err = io.ReadAll(zr); err != nil {
			return nil, fmt.Errorf("gunzip profile: %w", err)
		}
	}
	return decode(raw)
}

// wire is the profile as encoded: ids into tables, names into strings.
type wire struct {
	types     [][2]int64 // (type, unit) string indexes
	samples   []wireSample
	locations map[uint64][]uint64 // location id -> function ids, innermost first
	functions map[uint64]int64    // function id -> name string index
	strings   []string
}

type wireSample struct {
	locations []uint64
	values    []int64
}

// Field numbers of profile.proto.
const (
	profSampleType  = 1
	profSample      = 2
	profLocation    = 4
	profFunction    = 5
	profStringTable = 6

	sampleLocation = 1
	sampleValue    = 2

	locationID   = 1
	locationLine = 4
	lineFunction = 1

	functionID   = 1
	functionName = 2

	valueTypeType = 1
	valueTypeUnit = 2
)

var errMalformed = errors.New("malformed profile")

func decode(b []byte) (*Profile, error) {
	w := wire{locations: map[uint64][]uint64{}, functions: map[uint64]int64{}}
	err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch num {
		case profSampleType:
			var t [2]int64
			err := fields(v, func(n protowire.Number, _ protowire.Type, _ []byte, x uint64) error {
				if n == valueTypeType || n == valueTypeUnit {
					t[n-1] = int64(x)
				}
				return nil
			})
			w.types = append(w.types, t)
			return err
		case profSample:
			var s wireSample
			err := fields(v, func(n protowire.Number, t protowire.Type, v []byte, x uint64) error {
				switch n {
				case sampleLocation:
					return varints(t, v, x, func(u uint64) { s.locations = append(s.locations, u) })
				case sampleValue:
					return varints(t, v, x, func(u uint64) { s.values = append(s.values, int64(u)) })
				}
				return nil
			})
			w.samples = append(w.samples, s)
			return err
		case profLocation:
			var id uint64
			var funcs []uint64
			err := fields(v, func(n protowire.Number, _ protowire.Type, v []byte, x uint64) error {
				switch n {
				case locationID:
					id = x
				case locationLine:
					return fields(v, func(n protowire.Number, _ protowire.Type, _ []byte, x uint64) error {
						if n == lineFunction {
							funcs = append(funcs, x)
						}
						return nil
					})
				}
				return nil
			})
			w.locations[id] = funcs
			return err
		case profFunction:
			var id uint64
			var name int64
			err := fields(v, func(n protowire.Number, _ protowire.Type, _ []byte, x uint64) error {
				switch n {
				case functionID:
					id = x
				case functionName:
					name = int64(x)
				}
				return nil
			})
			w.functions[id] = name
			return err
		case profStringTable:
			w.strings = append(w.strings, string(v))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return w.resolve()
}

func (w *wire) str(i int64) string {
	if i < 0 || i >= int64(len(w.strings)) {
		return ""
	}
	return w.strings[i]
}

func (w *wire) resolve() (*Profile, error) {
	p := &Profile{}
	for _, t := range w.types {
		p.Types = append(p.Types, w.str(t[0])+"/"+w.str(t[1]))
	}
	for _, s := range w.samples {
		if len(s.values) != len(p.Types) {
			return nil, fmt.Errorf("%w: a sample has %d values for %d types", errMalformed, len(s.values), len(p.Types))
		}
		var stack []string
		for _, loc := range s.locations {
			for _, fn := range w.locations[loc] {
				stack = append(stack, w.str(w.functions[fn]))
			}
		}
		p.Samples = append(p.Samples, Sample{Stack: stack, Values: s.values})
	}
	return p, nil
}

// fields calls f for each field of a message: v holds a length-delimited
// field's bytes, x a varint's value.
func fields(b []byte, f func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: %v", errMalformed, protowire.ParseError(n))
		}
		b = b[n:]
		var (
			v []byte
			x uint64
		)
		switch typ {
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("%w: %v", errMalformed, protowire.ParseError(n))
		}
		b = b[n:]
		if err := f(num, typ, v, x); err != nil {
			return err
		}
	}
	return nil
}

// varints calls f for a repeated varint field, packed or not.
func varints(typ protowire.Type, v []byte, x uint64, f func(uint64)) error {
	if typ == protowire.VarintType {
		f(x)
		return nil
	}
	for len(v) > 0 {
		u, n := protowire.ConsumeVarint(v)
		if n < 0 {
			return fmt.Errorf("%w: %v", errMalformed, protowire.ParseError(n))
		}
		f(u)
		v = v[n:]
	}
	return nil
}

// Index returns the index of the value type named like "cpu/nanoseconds",
// or -1.
func (p *Profile) Index(name string) int { return slices.Index(p.Types, name) }

// Total is the sum of value i over the samples.
func (p *Profile) Total(i int) int64 {
	var t int64
	for _, s := range p.Samples {
		t += s.Values[i]
	}
	return t
}

// Sub subtracts base, a profile of the same process taken earlier, from a
// cumulative profile (allocations), stack by stack.
func (p *Profile) Sub(base *Profile) *Profile {
	key := func(s Sample) string { return strings.Join(s.Stack, "\n") }
	before := map[string][]int64{}
	for _, s := range base.Samples {
		k := key(s)
		if len(s.Values) != len(p.Types) {
			continue
		}
		acc := before[k]
		if acc == nil {
			acc = make([]int64, len(s.Values))
		}
		for i, v := range s.Values {
			acc[i] += v
		}
		before[k] = acc
	}
	out := &Profile{Types: p.Types}
	for _, s := range p.Samples {
		vals := slices.Clone(s.Values)
		if b := before[key(s)]; b != nil {
			for i := range vals {
				d := min(vals[i], b[i])
				vals[i] -= d
				b[i] -= d
			}
		}
		out.Samples = append(out.Samples, Sample{Stack: s.Stack, Values: vals})
	}
	return out
}

// Top returns the n functions with the most of value i, by flat or by
// cumulative value.
func (p *Profile) Top(i, n int, byCum bool) []Entry {
	m := map[string]*Entry{}
	get := func(name string) *Entry {
		e := m[name]
		if e == nil {
			e = &Entry{Name: name}
			m[name] = e
		}
		return e
	}
	for _, s := range p.Samples {
		v := s.Values[i]
		if v == 0 || len(s.Stack) == 0 {
			continue
		}
		get(s.Stack[0]).Flat += v
		seen := map[string]bool{}
		for _, fn := range s.Stack {
			if !seen[fn] {
				seen[fn] = true
				get(fn).Cum += v
			}
		}
	}
	return topOf(m, n, byCum)
}

// Components attributes each sample of value i to the component classify
// names for its stack (leaf first), or to other when it names none.
func (p *Profile) Components(i int, classify func(stack []string) string, other string) []Entry {
	m := map[string]*Entry{}
	for _, s := range p.Samples {
		v := s.Values[i]
		if v == 0 {
			continue
		}
		name := classify(s.Stack)
		if name == "" {
			name = other
		}
		e := m[name]
		if e == nil {
			e = &Entry{Name: name}
			m[name] = e
		}
		e.Flat += v
		e.Cum += v
	}
	return topOf(m, len(m), false)
}

func topOf(m map[string]*Entry, n int, byCum bool) []Entry {
	out := make([]Entry, 0, len(m))
	for _, e := range m {
		out = append(out, *e)
	}
	slices.SortFunc(out, func(a, b Entry) int {
		x, y := a.Flat, b.Flat
		if byCum {
			x, y = a.Cum, b.Cum
		}
		if x != y {
			if x > y {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out[:min(n, len(out))]
}
