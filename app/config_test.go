package app_test

import (
	"flag"
	"strconv"
	"strings"
	"testing"

	"github.com/lodestar-cs/lodestar/app"
	"github.com/lodestar-cs/lodestar/pkg/cache"
	"github.com/lodestar-cs/lodestar/pkg/config"
)

// TestFlags checks that every module's flags follow its name, that parsing
// no flags leaves the defaults of DefaultConfig (one default per setting,
// whether Lodestar runs from flags or from a Config), and that the cache's
// history length is the cache's own default.
func TestFlags(t *testing.T) {
	cfg := app.DefaultConfig()
	fs := flag.NewFlagSet("lodestar", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := config.Parse(fs, nil, func(string) (string, bool) { return "", false }); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the defaults do not validate: %v", err)
	}
	for _, prefix := range []string{"nats", "cache", "ingest", "scoring", "churn-alert", "renewal-forecast"} {
		n := 0
		fs.VisitAll(func(f *flag.Flag) {
			if strings.HasPrefix(f.Name, prefix+".") {
				n++
			}
		})
		if n == 0 {
			t.Errorf("no -%s.* flag", prefix)
		}
	}
	for _, old := range []string{"alert.workers", "forecast.seed"} {
		if fs.Lookup(old) != nil {
			t.Errorf("-%s is registered; flags follow the target names", old)
		}
	}
	f := fs.Lookup("cache.history-length")
	if f == nil || f.DefValue != strconv.Itoa(cache.DefaultHistoryLength) || cfg.Cache.HistoryLength != cache.DefaultHistoryLength {
		t.Errorf("-cache.history-length: flag %v, config %d; want %d", f, cfg.Cache.HistoryLength, cache.DefaultHistoryLength)
	}
}
