package pprofsum

import (
	"bytes"
	"compress/gzip"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// encode builds a profile.proto with one value type and the given stacks
// (leaf first) and values; the second stack's location inlines two
// functions, as the runtime writes inlined calls.
func encode(t *testing.T) []byte {
	t.Helper()
	strs := []string{"", "cpu", "nanoseconds", "runtime.mallocgc", "encoding/json.(*decodeState).object", "main.handler", "runtime.gcBgMarkWorker"}
	msg := func(build func(b []byte) []byte) []byte { return build(nil) }
	var p []byte
	p = protowire.AppendTag(p, profSampleType, protowire.BytesType)
	p = protowire.AppendBytes(p, msg(func(b []byte) []byte {
		b = protowire.AppendTag(b, valueTypeType, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
		b = protowire.AppendTag(b, valueTypeUnit, protowire.VarintType)
		return protowire.AppendVarint(b, 2)
	}))
	sample := func(value uint64, locs ...uint64) {
		p = protowire.AppendTag(p, profSample, protowire.BytesType)
		p = protowire.AppendBytes(p, msg(func(b []byte) []byte {
			var packed []byte
			for _, l := range locs {
				packed = protowire.AppendVarint(packed, l)
			}
			b = protowire.AppendTag(b, sampleLocation, protowire.BytesType)
			b = protowire.AppendBytes(b, packed)
			b = protowire.AppendTag(b, sampleValue, protowire.VarintType) // unpacked
			return protowire.AppendVarint(b, value)
		}))
	}
	sample(30, 1, 3) // mallocgc <- handler
	sample(50, 2, 3) // (mallocgc inlined in json) <- handler
	sample(20, 4)    // GC worker
	location := func(id uint64, funcs ...uint64) {
		p = protowire.AppendTag(p, profLocation, protowire.BytesType)
		p = protowire.AppendBytes(p, msg(func(b []byte) []byte {
			b = protowire.AppendTag(b, locationID, protowire.VarintType)
			b = protowire.AppendVarint(b, id)
			for _, f := range funcs {
				b = protowire.AppendTag(b, locationLine, protowire.BytesType)
				b = protowire.AppendBytes(b, protowire.AppendVarint(protowire.AppendTag(nil, lineFunction, protowire.VarintType), f))
			}
			return b
		}))
	}
	location(1, 1)
	location(2, 1, 2)
	location(3, 3)
	location(4, 4)
	for id, name := range []uint64{3, 4, 5, 6} {
		p = protowire.AppendTag(p, profFunction, protowire.BytesType)
		p = protowire.AppendBytes(p, msg(func(b []byte) []byte {
			b = protowire.AppendTag(b, functionID, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(id+1))
			b = protowire.AppendTag(b, functionName, protowire.VarintType)
			return protowire.AppendVarint(b, name)
		}))
	}
	for _, s := range strs {
		p = protowire.AppendTag(p, profStringTable, protowire.BytesType)
		p = protowire.AppendString(p, s)
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(p)
	zw.Close()
	return z.Bytes()
}

func TestParseAndSummarise(t *testing.T) {
	p, err := Parse(bytes.NewReader(encode(t)))
	if err != nil {
		t.Fatal(err)
	}
	i := p.Index("cpu/nanoseconds")
	if i != 0 || p.Total(i) != 100 {
		t.Fatalf("index %d total %d, want 0 and 100", i, p.Total(i))
	}
	if got := p.Samples[1].Stack; len(got) != 3 || got[0] != "runtime.mallocgc" || got[1] != "encoding/json.(*decodeState).object" || got[2] != "main.handler" {
		t.Errorf("inlined stack %q, want mallocgc, json, handler", got)
	}
	flat := p.Top(i, 2, false)
	if flat[0].Name != "runtime.mallocgc" || flat[0].Flat != 80 {
		t.Errorf("top flat %+v, want mallocgc with 80", flat[0])
	}
	cum := p.Top(i, 1, true)
	if cum[0].Name != "main.handler" && cum[0].Name != "runtime.mallocgc" || cum[0].Cum != 80 {
		t.Errorf("top cum %+v, want 80", cum[0])
	}
	// The innermost frame a component claims decides: a malloc called by
	// the JSON decoder counts as JSON decoding.
	comps := p.Components(i, func(stack []string) string {
		for _, fn := range stack {
			switch fn {
			case "encoding/json.(*decodeState).object":
				return "json"
			case "main.handler":
				return "handler"
			}
		}
		return ""
	}, "other")
	want := map[string]int64{"json": 50, "handler": 30, "other": 20}
	for _, c := range comps {
		if want[c.Name] != c.Flat {
			t.Errorf("component %s: %d, want %d", c.Name, c.Flat, want[c.Name])
		}
	}
}

func TestSub(t *testing.T) {
	p, err := Parse(bytes.NewReader(encode(t)))
	if err != nil {
		t.Fatal(err)
	}
	d := p.Sub(p)
	if d.Total(0) != 0 {
		t.Errorf("profile minus itself: %d, want 0", d.Total(0))
	}
	half := &Profile{Types: p.Types, Samples: []Sample{{Stack: p.Samples[2].Stack, Values: []int64{5}}}}
	if got := p.Sub(half).Total(0); got != 95 {
		t.Errorf("minus 5 of one stack: %d, want 95", got)
	}
}

func TestParseRejectsGarbage(t *testing.T) {
	if _, err := Parse(bytes.NewReader([]byte{0x0a, 0xff})); err == nil {
		t.Error("want an error for a truncated message")
	}
}
