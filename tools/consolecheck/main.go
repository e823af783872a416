// Command consolecheck measures the console of a running Lodestar: for each
// page, its weight (the HTML and every script and style it loads, in bytes)
// and the server's time to answer it (median and worst of -n requests, to
// the last byte, on this machine); with -shots it also saves a screenshot of
// each page (the first 1280x900 pixels) taken by a headless Chromium.
//
//	consolecheck -url http://127.0.0.1:8080 -api-key KEY [-n 20] [-shots docs/console]
//	consolecheck -url ... -api-key KEY -write-key KEY -grpc-addr ... -seed 100000
//
// The second form fills a tenant with accounts to measure at scale.
// It prints a Markdown table.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"time"

	"github.com/chromedp/chromedp"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "consolecheck:", err)
		os.Exit(1)
	}
}

type page struct{ name, path string }

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("consolecheck", flag.ContinueOnError)
	base := fs.String("url", "http://127.0.0.1:8080", "Base URL of the console.")
	apiKey := fs.String("api-key", os.Getenv("LODESTAR_API_KEY"), "API key to sign in with (default $LODESTAR_API_KEY).")
	n := fs.Int("n", 20, "Requests per page for the server time.")
	shots := fs.String("shots", "", "Directory to save a PNG screenshot of each page in; empty takes none.")
	account := fs.String("account", "", "Account whose page to measure; empty takes the worst one.")
	seedN := fs.Int("seed", 0, "First fill the tenant with this many accounts and 21 days of events (needs -write-key and -grpc-addr), then exit.")
	writeKey := fs.String("write-key", "", "Write key for -seed.")
	grpcAddr := fs.String("grpc-addr", "127.0.0.1:9090", "gRPC address for -seed.")
	seedCRM := fs.Bool("seed-crm", true, "With -seed: upsert the CRM records first (100,000 take about 10 minutes here); false sends the events only.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *apiKey == "" {
		return errors.New("-api-key is required")
	}
	if *seedN > 0 {
		return seed(context.Background(), *base, *grpcAddr, *writeKey, *apiKey, *seedN, *seedCRM)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: time.Minute}
	resp, err := c.PostForm(*base+"/signin", url.Values{"api_key": {*apiKey}})
	if err != nil {
		return err
	}
	home, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("sign in: HTTP %d", resp.StatusCode)
	}
	if *account == "" {
		m := regexp.MustCompile(`href="/accounts/([^"]+)"`).FindSubmatch(home)
		if m == nil {
			return errors.New("no account on the portfolio page: is there data?")
		}
		*account, _ = url.PathUnescape(string(m[1]))
	}
	pages := []page{{"portfolio", "/"}, {"account", "/accounts/" + url.PathEscape(*account)}, {"alerts", "/alerts"}, {"renewals", "/renewals"}, {"scorecard", "/scorecard"}, {"deployment", "/deployment"}}
	fmt.Fprintf(out, "| page | HTML bytes | page weight (HTML + scripts + styles) | server time median | worst |\n|---|---:|---:|---:|---:|\n")
	assets := regexp.MustCompile(`(?:src|href)="(/static/[^"]+)"`)
	for _, p := range pages {
		var times []time.Duration
		var html []byte
		for range *n {
			start := time.Now()
			resp, err := c.Get(*base + p.path)
			if err != nil {
				return err
			}
			html, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: HTTP %d", p.path, resp.StatusCode)
			}
			times = append(times, time.Since(start))
		}
		weight := len(html)
		for _, m := range assets.FindAllSubmatch(html, -1) {
			resp, err := c.Get(*base + string(m[1]))
			if err != nil {
				return err
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			weight += len(b)
		}
		slices.Sort(times)
		fmt.Fprintf(out, "| %s | %d | %d | %s | %s |\n", p.name, len(html), weight,
			times[len(times)/2].Round(100*time.Microsecond), times[len(times)-1].Round(100*time.Microsecond))
	}
	if *shots != "" {
		return screenshots(*base, *apiKey, *shots, pages)
	}
	return nil
}

// screenshots saves a PNG of each page, signed in through the form.
func screenshots(base, apiKey, dir string, pages []page) error {
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		return errors.New("no Chromium: run scripts/ensure-chromium.sh")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	profile, err := os.MkdirTemp("", "consolecheck-chromium")
	if err != nil {
		return err
	}
	defer os.RemoveAll(profile)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), chromedp.ExecPath(path), chromedp.Headless,
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(profile), chromedp.WindowSize(1280, 900))
	defer cancel()
	ctx, cancelCtx := chromedp.NewContext(actx)
	defer cancelCtx()
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/signin"), chromedp.SendKeys(chromedp.CSS("#api_key"), apiKey),
		chromedp.Click(chromedp.CSS("#signin")), chromedp.WaitVisible(chromedp.CSS("#bands"))); err != nil {
		return fmt.Errorf("sign in: %w", err)
	}
	for _, p := range pages {
		tctx, cancel := context.WithTimeout(ctx, time.Minute)
		png, err := chromedp.Run(tctx, func(ctx context.Context, t *chromedp.Target) ([]byte, error) {
			if err := chromedp.Do(ctx, chromedp.Navigate(base+p.path), chromedp.WaitVisible(chromedp.CSS("main"))); err != nil {
				return nil, err
			}
			time.Sleep(500 * time.Millisecond)          // the chart draws after load
			return chromedp.CaptureScreenshot()(ctx, t) // the viewport: what a CSM sees first
		})
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %w", p.path, err)
		}
		file := filepath.Join(dir, p.name+".png")
		if err := os.WriteFile(file, png, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "%s: %d bytes\n", file, len(png))
	}
	return nil
}
