package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/app"
	"github.com/lodestar-cs/lodestar/internal/scorecore/scorecard"
	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/pkg/auth"
	"github.com/lodestar-cs/lodestar/pkg/config"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// consoleTenant is one tenant of the console tests. Both tenants hold the
// same account ids (the fates'), named after the tenant, plus one account
// of their own: a page showing the other tenant's name has leaked.
type consoleTenant struct {
	id, apiKey, writeKey string
	name                 string // in every account name of the tenant
	own                  string // the account only this tenant has
	keyEvent             string // a key event of its account "healthy" only
	grpc                 *grpc.ClientConn
}

func (ct consoleTenant) alerts() alertv1.AlertServiceClient {
	return alertv1.NewAlertServiceClient(ct.grpc)
}

type consoleEnv struct {
	url  string
	a, b consoleTenant
}

// startConsole runs the all-in-one for two tenants, each fed the fates'
// histories and CRM records (renewal in 60 days), and waits until each has
// at least three open alerts.
func startConsole(t *testing.T) *consoleEnv {
	t.Helper()
	env := &consoleEnv{}
	mk := func(name, keyEvent string) consoleTenant {
		id := testenv.Tenant(t)
		return consoleTenant{id: id, name: name, own: "only-" + strings.ToLower(name), keyEvent: keyEvent,
			writeKey: "wk_test_" + id + "_0123456789", apiKey: "ak_test_" + id + "_0123456789"}
	}
	// Key events of the healthy account, by a user active that day: a
	// ticket closed unopened, a payment; they nudge its score (one more
	// feature used, support load has data) but raise no alert.
	env.a, env.b = mk("Acme", scorecard.EventTicketClosed), mk("Borealis", scorecard.EventPaymentSucceeded)
	var yaml strings.Builder
	yaml.WriteString("tenants:\n")
	for _, ct := range []consoleTenant{env.a, env.b} {
		fmt.Fprintf(&yaml, "  - id: %s\n    write_keys: [%q]\n    api_keys: [%q]\n    time_zone: Europe/Paris\n", ct.id, ct.writeKey, auth.HashKey(ct.apiKey))
	}
	tenants := filepath.Join(t.TempDir(), "tenants.yaml")
	if err := os.WriteFile(tenants, []byte(yaml.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := app.DefaultConfig()
	cfg.HTTPListenAddr, cfg.GRPCListenAddr, cfg.HTTP.AdminListenAddr = freeAddr(t), freeAddr(t), ""
	cfg.DataDir, cfg.TenantsFile = t.TempDir(), tenants
	cfg.Targets = config.StringList{app.TargetAll}
	cfg.Scoring.ScorecardFile = demoScorecard
	// Small streams: the embedded server reserves their bounds from the free
	// disk, which parallel test runs share (the 20 GiB default of EVENTS once
	// failed "insufficient storage resources" on this machine).
	cfg.Limits.EventsMaxBytes, cfg.Limits.ScoresMaxBytes = 256<<20, 256<<20
	// Empty: the runner links alerts to the console it serves.
	cfg.ChurnAlert.AccountURL = ""
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg, slog.New(slog.DiscardHandler), &bytes.Buffer{}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("lodestar stopped with: %v", err)
		}
	})
	env.url = "http://" + cfg.HTTPListenAddr
	testenv.WaitReady(t, env.url, 30*time.Second)
	for _, ct := range []*consoleTenant{&env.a, &env.b} {
		conn, err := grpc.NewClient(cfg.GRPCListenAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(auth.BearerCredentials{Key: ct.apiKey, Insecure: true}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		ct.grpc = conn
		feedConsoleTenant(t, env.url, *ct)
	}
	const hangGuard = 2 * time.Minute
	for _, ct := range []consoleTenant{env.a, env.b} {
		start := time.Now()
		for {
			resp, err := ct.alerts().ListAlerts(context.Background(), &alertv1.ListAlertsRequest{States: []alertv1.AlertState{alertv1.AlertState_ALERT_STATE_OPEN}})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.GetAlerts()) >= 3 {
				break
			}
			if time.Since(start) > hangGuard {
				t.Fatalf("tenant %s: %d open alerts after %v, want 3", ct.name, len(resp.GetAlerts()), hangGuard)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return env
}

func feedConsoleTenant(t *testing.T, base string, ct consoleTenant) {
	t.Helper()
	ctx := context.Background()
	var accs []*accountv1.Account
	for i, id := range []string{"healthy", "declining", "dead", ct.own} {
		accs = append(accs, &accountv1.Account{
			AccountId: id, Name: ct.name + " " + id, SeatsPurchased: 20,
			Arr:               &accountv1.Money{CurrencyCode: "USD", Units: int64(100_000 * (i + 1))},
			Owner:             &accountv1.Owner{CsmId: "csm-" + strings.ToLower(ct.name), Name: ct.name + " CSM"},
			Tier:              accountv1.Tier_TIER_GROWTH,
			Segment:           "mid-market",
			ContractStartTime: timestamppb.New(time.Now().Add(-305 * 24 * time.Hour)),
			RenewalTime:       timestamppb.New(time.Now().Add(60 * 24 * time.Hour)),
		})
	}
	if _, err := accountv1.NewAccountServiceClient(ct.grpc).UpsertAccounts(ctx, &accountv1.UpsertAccountsRequest{Accounts: accs}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	key := []map[string]any{{
		"type": "track", "event": ct.keyEvent, "userId": "healthy-u0",
		"timestamp":  now.Add(-25 * time.Hour).Format(time.RFC3339Nano), // within the history: the watermark stays
		"context":    map[string]any{"groupId": "healthy"},
		"properties": map[string]any{"ticket_id": "T-1"},
	}}
	for _, b := range append(segmentBatches(now), key) {
		testenv.PostBatch(t, base, ct.writeKey, b, now)
	}
}

// browserSession is a signed-in HTTP client of the console.
type browserSession struct {
	t    *testing.T
	base string
	c    *http.Client
	csrf string
}

var csrfRE = regexp.MustCompile(`data-csrf="([0-9a-f]+)"`)

func signIn(t *testing.T, base, apiKey string) *browserSession {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	s := &browserSession{t: t, base: base, c: &http.Client{Jar: jar}}
	resp, err := s.c.PostForm(base+"/signin", url.Values{"api_key": {apiKey}, "csm": {"csm-test"}, "next": {"/"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign in: HTTP %d: %s", resp.StatusCode, body)
	}
	m := csrfRE.FindSubmatch(body)
	if m == nil {
		t.Fatal("no CSRF token on the portfolio page")
	}
	s.csrf = string(m[1])
	return s
}

func (s *browserSession) get(path string) (int, string) {
	s.t.Helper()
	resp, err := s.c.Get(s.base + path)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func (s *browserSession) post(path string, form url.Values) (int, string) {
	s.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", s.csrf)
	}
	resp, err := s.c.PostForm(s.base+path, form)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func openAlerts(t *testing.T, ct consoleTenant) []*alertv1.Alert {
	t.Helper()
	resp, err := ct.alerts().ListAlerts(context.Background(), &alertv1.ListAlertsRequest{
		States: []alertv1.AlertState{alertv1.AlertState_ALERT_STATE_OPEN, alertv1.AlertState_ALERT_STATE_ACKNOWLEDGED, alertv1.AlertState_ALERT_STATE_SNOOZED}})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetAlerts()
}

// TestConsole runs the console's tests on one all-in-one with two tenants:
// isolation (every page and action), the alert links, and the pages in a
// real headless Chromium.
func TestConsole(t *testing.T) {
	env := startConsole(t)
	t.Run("sign-in", func(t *testing.T) { testConsoleSignIn(t, env) })
	t.Run("isolation", func(t *testing.T) { testConsoleIsolation(t, env) })
	t.Run("alert links", func(t *testing.T) { testConsoleAlertLinks(t, env) })
	t.Run("browser", func(t *testing.T) { testConsoleBrowser(t, env) })
	// Last: a new scorecard rescores the tenant.
	t.Run("scorecard", func(t *testing.T) { testConsoleScorecard(t, env) })
}

// testConsoleScorecard edits A's scorecard: problems are shown beside the
// text, which is kept as typed; a backtest answers; activating makes a new
// version for A and changes nothing of B's.
func testConsoleScorecard(t *testing.T, env *consoleEnv) {
	version := func(ct consoleTenant) *scoringv1.Scorecard {
		resp, err := scoringv1.NewScoringServiceClient(ct.grpc).GetScorecard(context.Background(), &scoringv1.GetScorecardRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetScorecard()
	}
	a, b := version(env.a), version(env.b)
	s := signIn(t, env.url, env.a.apiKey)
	_, page := s.get("/scorecard")
	m := regexp.MustCompile(`(?s)<textarea name="yaml" id="yaml"[^>]*>(.*?)</textarea>`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no scorecard editor")
	}
	active := html.UnescapeString(m[1])
	broken := strings.Replace(active, "weight: ", "weight: -", 1)
	code, body := s.post("/scorecard", url.Values{"action": {"activate"}, "yaml": {broken}})
	if code != http.StatusBadRequest || !strings.Contains(body, `id="problems"`) || !strings.Contains(body, "weight") ||
		!strings.Contains(body, html.EscapeString(broken)[:200]) {
		t.Errorf("activate a negative weight: HTTP %d; want 400 with the problem beside the text as typed", code)
	}
	if code, body := s.post("/scorecard", url.Values{"action": {"validate"}, "yaml": {"measures: [oops"}}); code != http.StatusBadRequest || !strings.Contains(body, "yaml") {
		t.Errorf("validate broken YAML: HTTP %d, want 400 naming the YAML problem", code)
	}
	if code, body := s.post("/scorecard", url.Values{"action": {"backtest"}, "yaml": {active}}); code != http.StatusOK && !strings.Contains(body, "backtest:") {
		t.Errorf("backtest: HTTP %d without a message", code)
	}
	renamed := strings.Replace(active, "name: ", "name: console-edit-", 1)
	if code, body := s.post("/scorecard", url.Values{"action": {"activate"}, "yaml": {renamed}}); code != http.StatusOK || !strings.Contains(body, "Activated as version") {
		t.Fatalf("activate: HTTP %d", code)
	}
	if got := version(env.a); got.GetVersion() <= a.GetVersion() || !strings.HasPrefix(got.GetName(), "console-edit-") {
		t.Errorf("A's scorecard after activation: v%d %q, was v%d", got.GetVersion(), got.GetName(), a.GetVersion())
	}
	if got := version(env.b); got.GetVersion() != b.GetVersion() || got.GetName() != b.GetName() {
		t.Errorf("B's scorecard changed: v%d %q, was v%d %q", got.GetVersion(), got.GetName(), b.GetVersion(), b.GetName())
	}
}

func testConsoleSignIn(t *testing.T, env *consoleEnv) {
	// Signed out, pages send to the sign-in page and actions are refused.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, p := range []string{"/", "/alerts", "/renewals", "/scorecard", "/accounts/dead"} {
		resp, err := noRedirect.Get(env.url + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/signin?next=") {
			t.Errorf("GET %s signed out: HTTP %d to %q, want 303 to the sign-in page", p, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	resp, err := noRedirect.PostForm(env.url+"/signin", url.Values{"api_key": {env.a.writeKey}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Errorf("sign in with a write key: HTTP %d, cookies %v; want 401 and none", resp.StatusCode, resp.Cookies())
	}
	resp, err = noRedirect.PostForm(env.url+"/signin", url.Values{"api_key": {env.a.apiKey}, "next": {"//evil.example/"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Errorf("sign in with next=//evil.example/: HTTP %d to %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "lodestar_session" {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Secure {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, not Secure without TLS", cookie)
	}

	s := signIn(t, env.url, env.a.apiKey)
	alert := openAlerts(t, env.a)[0]
	// A state change without the CSRF token, with a wrong one, or sent
	// from another site is refused and changes nothing.
	for name, form := range map[string]url.Values{
		"no token":    {"csrf": {""}},
		"wrong token": {"csrf": {strings.Repeat("0", 64)}},
	} {
		if code, _ := s.post("/alerts/"+alert.GetAlertId()+"/acknowledge", form); code != http.StatusForbidden {
			t.Errorf("acknowledge with %s: HTTP %d, want 403", name, code)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, env.url+"/alerts/"+alert.GetAlertId()+"/acknowledge", strings.NewReader(url.Values{"csrf": {s.csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	resp, err = s.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("acknowledge from another origin: HTTP %d, want 403", resp.StatusCode)
	}
	got, err := env.a.alerts().GetAlert(context.Background(), &alertv1.GetAlertRequest{AlertId: alert.GetAlertId()})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetAlert().GetVersion() != alert.GetVersion() {
		t.Errorf("refused requests changed the alert: version %d, was %d", got.GetAlert().GetVersion(), alert.GetVersion())
	}
	// Signing out ends the session on the server, not only in the browser.
	u, _ := url.Parse(env.url)
	old := s.c.Jar.Cookies(u)
	if code, _ := s.post("/signout", nil); code != http.StatusOK {
		t.Errorf("sign out: HTTP %d", code)
	}
	req, _ = http.NewRequest(http.MethodGet, env.url+"/", nil)
	for _, c := range old {
		req.AddCookie(c)
	}
	resp, err = noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(old) == 0 || resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the session cookie after sign-out: HTTP %d, want 303 to the sign-in page", resp.StatusCode)
	}
}

// testConsoleIsolation signs in as each tenant and proves it sees nothing
// of the other on every page, and can act on nothing of the other's.
func testConsoleIsolation(t *testing.T, env *consoleEnv) {
	pages := []string{"/", "/?mine=1", "/?owner=csm-acme", "/?owner=csm-borealis", "/?tier=growth&segment=mid-market&stage=adoption",
		"/alerts", "/alerts?mine=1", "/alerts?n=5000", "/renewals", "/renewals?owner=csm-borealis", "/scorecard",
		"/accounts/dead", "/accounts/healthy", "/accounts/declining", "/deployment"}
	for _, pair := range [][2]consoleTenant{{env.a, env.b}, {env.b, env.a}} {
		me, other := pair[0], pair[1]
		s := signIn(t, env.url, me.apiKey)
		for _, p := range pages {
			// A tenant named in the request changes nothing: the tenant
			// comes from the session.
			for _, path := range []string{p, p + sep(p) + "tenant=" + other.id} {
				code, body := s.get(path)
				if code != http.StatusOK {
					t.Errorf("%s GET %s: HTTP %d", me.name, path, code)
				}
				if strings.Contains(body, other.name) || strings.Contains(body, other.id) || strings.Contains(body, other.own) {
					t.Errorf("%s GET %s shows tenant %s's data", me.name, path, other.name)
				}
			}
		}
		for _, p := range []string{"/", "/alerts", "/renewals", "/accounts/dead"} {
			if _, body := s.get(p); !strings.Contains(body, me.name+" dead") {
				t.Errorf("%s GET %s does not show its own account %q", me.name, p, me.name+" dead")
			}
		}
		testActivityIsolation(t, s, me, other)
		testDeploymentIsolation(t, s, me)
		if code, body := s.get("/accounts/" + other.own); code != http.StatusNotFound || strings.Contains(body, other.name) {
			t.Errorf("%s GET the other tenant's account: HTTP %d, want 404 without its data", me.name, code)
		}
		// Every action on the other tenant's alerts is refused and changes
		// nothing.
		for _, a := range openAlerts(t, other) {
			for action, form := range map[string]url.Values{
				"acknowledge": {},
				"resolve":     {"note": {"not mine"}},
				"snooze":      {"until": {time.Now().Add(48 * time.Hour).Format("2006-01-02T15:04")}, "reason": {"not mine"}},
			} {
				if code, _ := s.post("/alerts/"+a.GetAlertId()+"/"+action, form); code != http.StatusNotFound {
					t.Errorf("%s %s the other tenant's alert: HTTP %d, want 404", me.name, action, code)
				}
			}
			got, err := other.alerts().GetAlert(context.Background(), &alertv1.GetAlertRequest{AlertId: a.GetAlertId()})
			if err != nil {
				t.Fatal(err)
			}
			if got.GetAlert().GetVersion() != a.GetVersion() {
				t.Errorf("%s changed the other tenant's alert %s", me.name, a.GetAlertId())
			}
		}
		// Validating and backtesting a scorecard read nothing of the other
		// tenant either.
		if code, body := s.post("/scorecard", url.Values{"action": {"validate"}, "yaml": {"name: probe\n"}}); code == http.StatusOK || strings.Contains(body, other.name) {
			t.Errorf("%s validate an empty scorecard: HTTP %d, want its problems", me.name, code)
		}
		_, page := s.get("/scorecard")
		if m := regexp.MustCompile(`(?s)<textarea name="yaml" id="yaml"[^>]*>(.*?)</textarea>`).FindStringSubmatch(page); m != nil {
			if _, body := s.post("/scorecard", url.Values{"action": {"backtest"}, "yaml": {html.UnescapeString(m[1])}}); strings.Contains(body, other.name) || strings.Contains(body, other.id) {
				t.Errorf("%s backtest shows the other tenant", me.name)
			}
		} else {
			t.Errorf("%s: no scorecard editor", me.name)
		}
	}
	testConsoleStreamIsolation(t, env)
}

// mineRE finds the partitions the deployment page marks as the tenant's.
var mineRE = regexp.MustCompile(`<tr id="([a-z-]+)-p(\d+)" class="lease-[a-z]+ mine">`)

// testDeploymentIsolation checks that the deployment page marks exactly
// the partitions of the signed-in tenant's accounts, in every partitioned
// service: not the other tenant's, whose same account ids hash elsewhere.
func testDeploymentIsolation(t *testing.T, s *browserSession, me consoleTenant) {
	want := map[string]bool{}
	for _, acct := range []string{"healthy", "declining", "dead", me.own} {
		want[strconv.FormatUint(uint64(natsx.Partition(me.id, acct, natsx.DefaultPartitions)), 10)] = true
	}
	code, body := s.get("/deployment")
	if code != http.StatusOK {
		t.Fatalf("%s GET /deployment: HTTP %d", me.name, code)
	}
	got := map[string]map[string]bool{"scoring": {}, "churn-alert": {}}
	for _, m := range mineRE.FindAllStringSubmatch(body, -1) {
		if got[m[1]] == nil {
			t.Errorf("%s /deployment: a partition of an unknown service %q", me.name, m[1])
			continue
		}
		got[m[1]][m[2]] = true
	}
	// Scoring's owners report their partitions' lag in their leases,
	// churn-alert's is computed: every partition shows one.
	for _, svc := range []string{"scoring", "churn-alert"} {
		_, table, ok := strings.Cut(body, `id="partitions-`+svc+`"`)
		table, _, _ = strings.Cut(table, "</table>")
		if !ok {
			t.Errorf("%s /deployment: no partitions table of %s", me.name, svc)
			continue
		}
		rows, unknown := strings.Count(table, `<tr id="`), strings.Count(table, `<td class="num">-</td></tr>`)
		if rows != natsx.DefaultPartitions || unknown != 0 {
			t.Errorf("%s /deployment: %s shows %d partitions, %d without lag; want %d, all with lag", me.name, svc, rows, unknown, natsx.DefaultPartitions)
		}
	}
	for svc, marked := range got {
		if !maps.Equal(marked, want) {
			t.Errorf("%s /deployment marks %s partitions %v as the tenant's, want %v", me.name, svc, slices.Sorted(maps.Keys(marked)), slices.Sorted(maps.Keys(want)))
		}
	}
}

func sep(p string) string {
	if strings.Contains(p, "?") {
		return "&"
	}
	return "?"
}

// testConsoleStreamIsolation reads A's live alert stream while both tenants'
// alerts change, B's first in each round: every event A receives is A's.
func testConsoleStreamIsolation(t *testing.T, env *consoleEnv) {
	s := signIn(t, env.url, env.a.apiKey)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, env.url+"/alerts/stream", nil)
	resp, err := s.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: HTTP %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := make(chan string, 100)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				events <- d
			}
		}
	}()
	mine := map[string]bool{}
	for _, a := range openAlerts(t, env.a) {
		mine[a.GetAlertId()] = true
	}
	aAlert, bAlert := openAlerts(t, env.a)[0], openAlerts(t, env.b)[0]
	snooze := func(ct consoleTenant, a *alertv1.Alert, i int) {
		_, err := ct.alerts().SnoozeAlert(context.Background(), &alertv1.SnoozeAlertRequest{AlertId: a.GetAlertId(),
			SnoozeEndTime: timestamppb.New(time.Now().Add(time.Hour + time.Duration(i)*time.Minute)), Reason: "stream test", Actor: "test"})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Until A's stream has seen one of A's events, the watch may not be
	// subscribed yet; one more round after it proves B's events, published
	// first, never arrive.
	got := 0
	for round := 0; got < 2; round++ {
		snooze(env.b, bAlert, round)
		snooze(env.a, aAlert, round)
		select {
		case d, ok := <-events:
			if !ok {
				t.Fatal("the stream ended")
			}
			var ev struct {
				AlertID string `json:"alert_id"`
			}
			if err := json.Unmarshal([]byte(d), &ev); err != nil {
				t.Fatal(err)
			}
			if !mine[ev.AlertID] {
				t.Fatalf("A's stream carried alert %s, not A's", ev.AlertID)
			}
			got++
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
			t.Fatal("A's stream carried no event of A's within a minute")
		}
	}
	// Back to open for the browser test.
	for _, ct := range []consoleTenant{env.a, env.b} {
		for _, a := range openAlerts(t, ct) {
			if a.GetState() == alertv1.AlertState_ALERT_STATE_SNOOZED {
				// There is no un-snooze: acknowledge makes it actionable.
				_, _ = ct.alerts().AcknowledgeAlert(context.Background(), &alertv1.AcknowledgeAlertRequest{AlertId: a.GetAlertId(), Actor: "test"})
			}
		}
	}
}

// testConsoleAlertLinks follows the link of an alert: it is the console's
// account page on the address the process serves.
func testConsoleAlertLinks(t *testing.T, env *consoleEnv) {
	s := signIn(t, env.url, env.a.apiKey)
	for _, a := range openAlerts(t, env.a) {
		want := env.url + "/accounts/" + url.PathEscape(a.GetAccountId())
		if a.GetLink() != want {
			t.Errorf("alert %s links to %q, want %q", a.GetAlertId(), a.GetLink(), want)
			continue
		}
		resp, err := s.c.Get(a.GetLink())
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), env.a.name+" "+a.GetAccountId()) {
			t.Errorf("GET %s: HTTP %d, or not the account's page", a.GetLink(), resp.StatusCode)
		}
	}
}

// scoreOf is the tenant's score of an account.
// testActivityIsolation checks the account page's activity is the signed-in
// tenant's: its core events as its API counts them and its own key event,
// never the other tenant's (both hold an account "healthy").
func testActivityIsolation(t *testing.T, s *browserSession, me, other consoleTenant) {
	t.Helper()
	act := activityOf(t, me, "healthy")
	_, body := s.get("/accounts/healthy")
	_, data, _ := strings.Cut(body, `<script type="application/json" id="activity-data">`)
	data, _, _ = strings.Cut(data, "</script>")
	var chart struct{ N []int64 }
	if err := json.Unmarshal([]byte(data), &chart); err != nil {
		t.Fatalf("%s account page: activity data %q: %v", me.name, data, err)
	}
	var want, got int64
	for _, d := range act.GetDays() {
		want += d.GetCoreEvents()
	}
	for _, n := range chart.N {
		got += n
	}
	if got != want || want == 0 || len(chart.N) != len(act.GetDays()) {
		t.Errorf("%s account page: %d core events over %d days, the API says %d over %d", me.name, got, len(chart.N), want, len(act.GetDays()))
	}
	if !strings.Contains(body, me.keyEvent) || strings.Contains(body, other.keyEvent) {
		t.Errorf("%s account page: key events are not its own (%q) alone: the other's is %q", me.name, me.keyEvent, other.keyEvent)
	}
}

// activityOf waits until the account's activity holds the tenant's key
// event (sent last) and returns it.
func activityOf(t *testing.T, ct consoleTenant, account string) *scoringv1.GetAccountActivityResponse {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := scoringv1.NewScoringServiceClient(ct.grpc).GetAccountActivity(context.Background(),
			&scoringv1.GetAccountActivityRequest{AccountId: account, Days: 90})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range resp.GetKeyEvents() {
			if k.GetName() == ct.keyEvent {
				return resp
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s in the activity of %s: %v", ct.name, ct.keyEvent, account, resp.GetKeyEvents())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func scoreOf(t *testing.T, ct consoleTenant, account string) *scoringv1.HealthScore {
	t.Helper()
	resp, err := scoringv1.NewScoringServiceClient(ct.grpc).GetHealthScore(context.Background(), &scoringv1.GetHealthScoreRequest{AccountId: account})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetScore()
}
