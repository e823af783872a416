package scorecard_test

import (
	"os"
	"testing"

	"github.com/lodestar-cs/lodestar/internal/scorecore/scorecard"
)

// FuzzParse feeds YAML to the scorecard decoder, and what it accepts to
// validation and, when valid, to the compiler: a tenant's scorecard is
// bad input or a scorecard, never a panic. An accepted scorecard must also
// survive Marshal and Parse again.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"default.yaml", "testdata/bad.yaml", "testdata/nocore.yaml"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("measures: [{kind: recency, weight: 1}]"))
	f.Add([]byte("&a [*a]"))
	f.Add([]byte("bands: {red: .nan}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sc, err := scorecard.Parse(data)
		if err != nil {
			return
		}
		if len(scorecard.Validate(sc)) == 0 {
			if _, err := scorecard.Compile(sc); err != nil {
				t.Fatalf("valid scorecard does not compile: %v", err)
			}
		}
		out, err := scorecard.Marshal(sc)
		if err != nil {
			t.Fatalf("marshal an accepted scorecard: %v", err)
		}
		if _, err := scorecard.Parse(out); err != nil {
			t.Fatalf("a marshalled scorecard does not parse: %v\n%s", err, out)
		}
	})
}
