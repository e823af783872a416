package app_test

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/lodestar-cs/lodestar/pkg/humanize"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
)

// chromium finds the headless browser the browser tests drive: Debian's
// chromium (scripts/ensure-chromium.sh installs it), or $CHROMIUM.
func chromium() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browser drives one tab of a fresh headless Chromium; it records what
// the pages write to the console as errors, and saves a screenshot when
// a step fails.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string

	mu     sync.Mutex
	errors []string
}

func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	path := chromium()
	if path == "" {
		t.Skip("no Chromium: run scripts/ensure-chromium.sh (make test does) or set $CHROMIUM")
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
	)
	t.Cleanup(cancel)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(cancelCtx)
	b := &browser{t: t, ctx: ctx, base: base}
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				b.mu.Lock()
				b.errors = append(b.errors, m.String())
				b.mu.Unlock()
			}
		}
	}()
	return b
}

// do runs the steps of one page within a time limit; on failure it saves a
// screenshot and stops the test.
func (b *browser) do(name string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.fail(name, err.Error())
	}
}

func (b *browser) fail(name, msg string) {
	b.t.Helper()
	dir := os.Getenv("CONSOLE_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "lodestar-console-failures")
	}
	if err := os.MkdirAll(dir, 0o755); err == nil {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		defer cancel()
		if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
			file := filepath.Join(dir, strings.NewReplacer("/", "_", " ", "_").Replace(b.t.Name()+"-"+name)+".png")
			if os.WriteFile(file, png, 0o644) == nil {
				msg += " (screenshot " + file + ")"
			}
		}
	}
	b.t.Fatalf("%s: %s", name, msg)
}

// text is the text of the first element matching sel.
func (b *browser) text(name, sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.fail(name, err.Error())
	}
	return s
}

// expect waits until the text of sel contains want.
func (b *browser) expect(name, sel, want string) {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		if got = b.text(name, sel); strings.Contains(got, want) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.fail(name, "the text of "+sel+" does not contain "+want+": "+got)
}

// noErrors checks that no page has written an error to the console.
func (b *browser) noErrors(name string) {
	b.t.Helper()
	b.mu.Lock()
	errs := b.errors
	b.errors = nil
	b.mu.Unlock()
	if len(errs) > 0 {
		b.fail(name, "console errors: "+strings.Join(errs, "; "))
	}
}

// act clicks sel until the alert is in the state: a live update may
// replace the inbox between finding the button and clicking it, as it may
// under a CSM's mouse, and then the click finds no node.
func (b *browser) act(name string, ct consoleTenant, id string, want alertv1.AlertState, steps ...chromedp.Action[chromedp.Void]) *alertv1.Alert {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		got, err := ct.alerts().GetAlert(context.Background(), &alertv1.GetAlertRequest{AlertId: id})
		if err != nil {
			b.t.Fatal(err)
		}
		if got.GetAlert().GetState() == want {
			return got.GetAlert()
		}
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		if last = chromedp.Do(ctx, steps...); last == nil {
			// Give the request its time before looking again.
			time.Sleep(200 * time.Millisecond)
		}
		cancel()
	}
	b.fail(name, fmt.Sprintf("alert %s never became %v: %v", id, want, last))
	return nil
}

// testConsoleBrowser signs in with a real headless Chromium, loads every
// page, checks it shows what the API holds without a console error, and
// acts on alerts through the inbox.
func testConsoleBrowser(t *testing.T, env *consoleEnv) {
	b := newBrowser(t, env.url)
	me := env.a
	b.do("sign in",
		chromedp.Navigate(env.url+"/"),
		chromedp.WaitVisible(chromedp.CSS("#api_key")),
		chromedp.SendKeys(chromedp.CSS("#api_key"), me.apiKey),
		chromedp.SendKeys(chromedp.CSS("#csm"), "csm-acme"),
		chromedp.Click(chromedp.CSS("#signin")),
		chromedp.WaitVisible(chromedp.CSS("#bands")),
	)
	b.expect("portfolio", "#worst", me.name+" dead")
	b.expect("portfolio", "#count-red", "1")
	b.noErrors("portfolio")

	b.do("my accounts", chromedp.Navigate(env.url+"/?mine=1"), chromedp.WaitVisible(chromedp.CSS("#worst")))
	b.expect("my accounts", "#worst", me.name+" healthy")
	b.noErrors("my accounts")

	before := scoreOf(t, me, "dead")
	b.do("account", chromedp.Navigate(env.url+"/accounts/dead"), chromedp.WaitVisible(chromedp.CSS("#chart canvas")))
	dead := scoreOf(t, me, "dead")
	// The periodic tick may rescore between the reads: either score is right.
	if shown := b.text("account", "#score"); shown != humanize.Score(before.GetScore()) && shown != humanize.Score(dead.GetScore()) {
		b.fail("account", fmt.Sprintf("score %s shown, the API says %s", shown, humanize.Score(dead.GetScore())))
	}
	b.expect("account", "#measures", dead.GetMeasures()[0].GetName())
	b.expect("account", "#crm", me.name+" dead")
	b.expect("account", "#account-alerts", "renewal-at-risk")
	activityOf(t, me, "healthy")
	b.do("account activity", chromedp.Navigate(env.url+"/accounts/healthy"), chromedp.WaitVisible(chromedp.CSS("#activity canvas")))
	b.expect("account activity", "#key-events", me.keyEvent)
	b.noErrors("account")

	b.do("renewals", chromedp.Navigate(env.url+"/renewals"), chromedp.WaitVisible(chromedp.CSS("#renewals")))
	b.expect("renewals", "#renewals", me.name+" dead")
	b.expect("renewals", "#by-owner", "csm-acme")
	b.noErrors("renewals")

	// The deployment page, through its nav link: the all-in-one holds
	// every partition of both partitioned services, and marks the
	// tenant's.
	b.do("deployment", chromedp.Click(chromedp.CSS(`nav a[href="/deployment"]`)), chromedp.WaitVisible(chromedp.CSS("#partitions-scoring")))
	b.expect("deployment", "#service-scoring h2", "16 of 16 partitions held")
	b.expect("deployment", "#service-churn-alert h2", "16 of 16 partitions held")
	mine := "#scoring-p" + strconv.FormatUint(uint64(natsx.Partition(me.id, "dead", natsx.DefaultPartitions)), 10)
	b.expect("deployment", mine, "yours")
	b.expect("deployment", mine, "held, expires in")
	b.noErrors("deployment")

	b.do("scorecard", chromedp.Navigate(env.url+"/scorecard"), chromedp.WaitVisible(chromedp.CSS("#yaml")))
	b.do("scorecard validate", chromedp.Click(chromedp.CSS("#validate")), chromedp.WaitVisible(chromedp.CSS("#message")))
	b.expect("scorecard validate", "#message", "Valid")
	b.noErrors("scorecard")

	// The inbox: one alert changed elsewhere shows up live, then the
	// three actions through the page.
	// Open ones last: acknowledging needs an open alert.
	alerts := openAlerts(t, me)
	slices.SortStableFunc(alerts, func(x, y *alertv1.Alert) int {
		return cmp.Compare(y.GetState(), x.GetState())
	})
	if len(alerts) < 3 || alerts[1].GetState() != alertv1.AlertState_ALERT_STATE_OPEN {
		t.Fatalf("%d alerts, want 3 of which 2 open", len(alerts))
	}
	live, ack, snooze := alerts[0], alerts[1], alerts[2]
	b.do("alerts", chromedp.Navigate(env.url+"/alerts"), chromedp.WaitVisible(chromedp.CSS("#live.on")))
	if _, err := me.alerts().ResolveAlert(context.Background(), &alertv1.ResolveAlertRequest{AlertId: live.GetAlertId(), Actor: "test", Note: "live"}); err != nil {
		t.Fatal(err)
	}
	// The refreshed inbox still shows the stream as connected.
	b.do("alerts live", chromedp.WaitNotPresent(chromedp.CSS("#alert-"+live.GetAlertId())), chromedp.WaitVisible(chromedp.CSS("#live.on")))

	b.act("acknowledge", me, ack.GetAlertId(), alertv1.AlertState_ALERT_STATE_ACKNOWLEDGED,
		chromedp.Click(chromedp.CSS("#alert-"+ack.GetAlertId()+" button.ack")))
	b.expect("acknowledge", "#alert-"+ack.GetAlertId(), "acknowledged")
	row := "#alert-" + snooze.GetAlertId()
	got := b.act("snooze", me, snooze.GetAlertId(), alertv1.AlertState_ALERT_STATE_SNOOZED,
		// Idempotent steps: a retry must not type the reason twice.
		chromedp.SetAttributeValue(chromedp.CSS(row+" details"), "open", ""),
		chromedp.SetValue(chromedp.CSS(row+` input[name="reason"]`), "customer on holiday"),
		chromedp.Click(chromedp.CSS(row+" button.snooze")),
	)
	if got.GetSnoozeReason() != "customer on holiday" {
		t.Errorf("snooze reason %q", got.GetSnoozeReason())
	}
	b.expect("snooze", row, "customer on holiday")
	b.act("resolve", me, ack.GetAlertId(), alertv1.AlertState_ALERT_STATE_RESOLVED,
		chromedp.Click(chromedp.CSS("#alert-"+ack.GetAlertId()+" button.resolve")))
	b.do("resolve", chromedp.WaitNotPresent(chromedp.CSS("#alert-"+ack.GetAlertId())))
	b.noErrors("alerts")
}
