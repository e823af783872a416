package config

import (
	"flag"
	"testing"
	"time"
)

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{
		"target":           "LODESTAR_TARGET",
		"scoring.window":   "LODESTAR_SCORING_WINDOW",
		"http.listen-addr": "LODESTAR_HTTP_LISTEN_ADDR",
	} {
		if got := EnvName(in); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParsePrecedence(t *testing.T) {
	env := map[string]string{
		"LODESTAR_A":              "from-env",
		"LODESTAR_B":              "from-env",
		"LODESTAR_SCORING_WINDOW": "48h",
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	a := fs.String("a", "default", "")
	b := fs.String("b", "default", "")
	c := fs.String("c", "default", "")
	w := fs.Duration("scoring.window", time.Hour, "")
	if err := Parse(fs, []string{"-a=from-flag"}, lookup); err != nil {
		t.Fatal(err)
	}
	if *a != "from-flag" || *b != "from-env" || *c != "default" || *w != 48*time.Hour {
		t.Fatalf("got a=%q b=%q c=%q w=%v", *a, *b, *c, *w)
	}
}

func TestParseBadEnv(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Int("n", 1, "")
	err := Parse(fs, nil, func(k string) (string, bool) { return "x", k == "LODESTAR_N" })
	if err == nil {
		t.Fatal("want error for a malformed environment value")
	}
}

func TestStringList(t *testing.T) {
	var l StringList
	if err := l.Set(" ingest, scoring ,,"); err != nil {
		t.Fatal(err)
	}
	if len(l) != 2 || l[0] != "ingest" || l[1] != "scoring" || l.String() != "ingest,scoring" {
		t.Fatalf("got %q", l)
	}
}
