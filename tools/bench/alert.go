package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/lodestar-cs/lodestar/app"
	"github.com/lodestar-cs/lodestar/pkg/auth"
	"github.com/lodestar-cs/lodestar/pkg/config"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert"
	"github.com/lodestar-cs/lodestar/tools/bench/internal/stats"
)

// The alert tenant: its accounts are the alert probes, and its one channel
// is a signed webhook to the bench's receiver. The keys and the secret only
// ever travel over loopback to the bench's own all-in-one.
const (
	alertTenant   = "alert"
	alertWriteKey = "wk_alert_0123456789"
	alertAPIKey   = "ak_alert_0123456789"
	alertSecret   = "whsec-bench-0123456789"
	alertChannel  = "bench-webhook"
	alertRule     = "bench-silent"
	// alertShare is the share of the sustained rate the background load
	// offers while alerts are probed, as for the event-to-score target.
	alertShare = latencyTargetShare
	// alertSettle is how long the last probes may take to alert.
	alertSettle = 15 * time.Second
)

// metricAlertApplied counts the score and account changes churn-alert
// applied: still for a while means it has caught up.
const metricAlertApplied = "lodestar_alert_messages_total"

// withTarget returns targets with target added, and whether it had to be
// added ("all" runs every target).
func withTarget(targets config.StringList, target string) (config.StringList, bool) {
	if slices.Contains(targets, app.TargetAll) || slices.Contains(targets, target) {
		return targets, false
	}
	return append(slices.Clone(targets), target), true
}

// alertAlone reports whether the alert phase is the only phase that runs on
// the main all-in-one, which can then start with churn-alert at once.
func alertAlone(phases []string) bool {
	return slices.Contains(phases, phaseAlert) && !slices.ContainsFunc(phases, func(p string) bool {
		return p == phaseBaseline || p == phaseE2E || p == phaseLatency || p == phaseReads
	})
}

// arrival is the first webhook of one probe account.
type arrival struct {
	At      time.Time // when it arrived
	Created time.Time // when churn-alert opened the alert
	Rule    string
}

// receiver is the alert channel's endpoint: it checks every webhook's
// signature and keeps the first one of each account.
type receiver struct {
	srv    *http.Server
	url    string
	secret []byte

	mu       sync.Mutex
	first    map[string]arrival
	received int
	bad      int // bad signatures or bodies
	firstBad error
}

func startReceiver(secret string) (*receiver, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("webhook receiver: %w", err)
	}
	r := &receiver{url: "http://" + l.Addr().String() + "/hook", secret: []byte(secret), first: map[string]arrival{}}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go r.srv.Serve(l) //nolint:errcheck // ends with ErrServerClosed at close
	return r, nil
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	at := time.Now()
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err == nil {
		err = churnalert.VerifyWebhook(r.secret, req.Header.Get("Lodestar-Signature"), body, at, time.Minute)
	}
	var d alertv1.Delivery
	if err == nil {
		err = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(body, &d)
	}
	r.mu.Lock()
	r.received++
	if err != nil {
		r.bad++
		if r.firstBad == nil {
			r.firstBad = err
		}
	} else if a := d.GetEvent().GetAlert(); a.GetTenantId() == alertTenant {
		if _, seen := r.first[a.GetAccountId()]; !seen {
			r.first[a.GetAccountId()] = arrival{At: at, Created: a.GetCreateTime().AsTime(), Rule: a.GetRuleId()}
		}
	}
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) arrived(account string) (arrival, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.first[account]
	return a, ok
}

// problems returns how many webhooks failed the signature check or did not
// decode, and the first such error.
func (r *receiver) problems() (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bad, r.firstBad
}

func (r *receiver) close() { r.srv.Close() }

// alertResult is what the alert phase measured.
type alertResult struct {
	Rate float64 // background events/s
	// Total is from the probe's 200 to its first webhook; ToOpen to the
	// alert's creation in churn-alert (scoring's flush, SCORES, churn-alert
	// reading and evaluating it); ToWebhook from there to the webhook
	// (ALERT_STATE write, ALERTS and DELIVERIES publish, delivery worker,
	// signed HTTP POST).
	Total, ToOpen, ToWebhook stats.Summary
	Lost                     int            // probes answered 200 with no webhook in time
	Failed                   int            // probes not answered 200
	Rules                    map[string]int // rule of each first webhook
	Flush                    time.Duration  // -scoring.flush-interval
	// ScoresIn is the score changes scoring published to SCORES per second
	// while the probes ran, and Applied the changes churn-alert applied
	// per second (score and account changes, every tenant).
	ScoresIn, Applied float64
	// CatchUp is how churn-alert caught up with the load before the probes.
	CatchUp catchUp
}

// keptUp reports whether churn-alert applied the score changes as fast as
// scoring published them (within 5%).
func (r alertResult) keptUp() bool { return r.Applied >= 0.95*r.ScoresIn }

// alertProber sends alert probes: each a fresh account of the alert tenant
// whose new events are all trouble, after three silent weeks.
type alertProber struct {
	d      *driver
	rcv    *receiver
	prefix string // makes the run's accounts fresh
}

// alertProbeBody is the batch of one alert probe: a failed payment, an
// urgent ticket and an NPS of 0 (as app's BenchmarkEventToAlert sends):
// billing, support and survey measures at their worst; and a report
// created three weeks ago, so that the account has the history the
// scorecard wants before it judges (no rule fires on an account it does
// not judge yet), and the tenant's silent rule fires (setupAlerts).
// The old event comes last: first, it would move a new tenant's watermark
// three weeks back, and the probes would be a catch-up, not news.
func alertProbeBody(account string, at time.Time) []byte {
	user := account + "-u0"
	ev := func(name, props string, t time.Time) string {
		return fmt.Sprintf(`{"type":"track","messageId":%q,"userId":%q,"event":%q,"properties":{%s},"timestamp":%q,"context":{"groupId":%q}}`,
			account+"-"+strings.ToLower(strings.ReplaceAll(name, " ", "-")), user, name, props, t.UTC().Format(timeLayout), account)
	}
	return []byte(`{"batch":[` + ev("Payment Failed", "", at) + "," +
		ev("Ticket Opened", `"ticket_id":"t1","severity":"urgent"`, at) + "," +
		ev("NPS Submitted", `"score":0`, at) + "," + ev("Report Created", "", at.Add(-alertProbeHistory)) +
		`],"sentAt":"` + at.UTC().Format(timeLayout) + `"}`)
}

// alertProbeHistory is how far back a probe's first event lies: past the
// 14 days of history the shipped scorecards want before they judge.
const alertProbeHistory = 21 * 24 * time.Hour

// run sends probes at rate per second, open loop, for d, waits up to settle
// for their webhooks, and summarises each probe's latency from its 200 to
// its account's first webhook.
func (p *alertProber) run(ctx context.Context, rate float64, d, settle time.Duration) (alertResult, error) {
	var (
		mu     sync.Mutex
		acked  = map[string]time.Time{}
		failed int
	)
	sent, err := openLoop(ctx, rate, d, func(k int) {
		account := fmt.Sprintf("%s%06d", p.prefix, k)
		if err := p.d.post(ctx, alertProbeBody(account, time.Now())); err != nil {
			mu.Lock()
			failed++
			mu.Unlock()
			return
		}
		now := time.Now()
		mu.Lock()
		acked[account] = now
		mu.Unlock()
	})
	if err != nil {
		return alertResult{}, err
	}
	waitFor := func() int {
		n := 0
		for a := range acked {
			if _, ok := p.rcv.arrived(a); ok {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(settle); time.Now().Before(deadline) && waitFor() < len(acked); {
		select {
		case <-ctx.Done():
			return alertResult{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	res := alertResult{Failed: failed, Rules: map[string]int{}}
	var total, toOpen, toHook []time.Duration
	for account, ack := range acked {
		a, ok := p.rcv.arrived(account)
		if !ok {
			res.Lost++
			continue
		}
		res.Rules[a.Rule]++
		total = append(total, max(0, a.At.Sub(ack)))
		toOpen = append(toOpen, max(0, a.Created.Sub(ack)))
		toHook = append(toHook, max(0, a.At.Sub(a.Created)))
	}
	res.Total, res.ToOpen, res.ToWebhook = stats.Summarize(total), stats.Summarize(toOpen), stats.Summarize(toHook)
	if sent != len(acked)+failed {
		return res, fmt.Errorf("alert probes: %d sent, %d answered", sent, len(acked)+failed)
	}
	return res, nil
}

// lastSeq is the last sequence of a stream.
func (b *bench) lastSeq(ctx context.Context, stream string) (uint64, error) {
	s, err := b.js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", stream, err)
	}
	return info.State.LastSeq, nil
}

// alertClient dials the all-in-one's AlertService as the alert tenant.
func (b *bench) alertClient() (alertv1.AlertServiceClient, func(), error) {
	c, err := grpc.NewClient(b.ls.cfg.GRPCListenAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(auth.BearerCredentials{Key: alertAPIKey, Insecure: true}))
	if err != nil {
		return nil, nil, fmt.Errorf("dial gRPC: %w", err)
	}
	return alertv1.NewAlertServiceClient(c), func() { c.Close() }, nil
}

// setupAlerts creates the alert tenant's webhook channel to url and the
// rule that fires on its probes: the routing and rules a tenant would set up
// through AlertService. The probes do not score red (a new account's
// recency and regularity rank low among the tenant's, and the trouble
// measures weigh little), and the shipped risk rules wait for red; the
// tenant's rule is the shipped silent-account rule as it was before it
// became red-only, which fires on them through the same path.
func (b *bench) setupAlerts(ctx context.Context, url string) error {
	client, closeClient, err := b.alertClient()
	if err != nil {
		return err
	}
	defer closeClient()
	r := &alertv1.Rule{RuleId: alertRule, DisplayName: "Silent (bench probes)", Kind: alertv1.RuleKind_RULE_KIND_SILENT_ACCOUNT,
		Threshold: 14, Severity: alertv1.Severity_SEVERITY_HIGH}
	if _, err := client.CreateRule(ctx, &alertv1.CreateRuleRequest{Rule: r}); err != nil {
		// A rule left by an earlier run on the same NATS: set it again.
		if _, uerr := client.UpdateRule(ctx, &alertv1.UpdateRuleRequest{Rule: r}); uerr != nil {
			return fmt.Errorf("create rule: %w; update it: %w", err, uerr)
		}
	}
	ch := &alertv1.Channel{ChannelId: alertChannel, DisplayName: "bench receiver",
		Config: &alertv1.Channel_Webhook{Webhook: &alertv1.WebhookChannel{Url: url, Secret: alertSecret}}}
	if _, err := client.CreateChannel(ctx, &alertv1.CreateChannelRequest{Channel: ch}); err != nil {
		// A channel left by an earlier run on the same NATS: point it here.
		if _, uerr := client.UpdateChannel(ctx, &alertv1.UpdateChannelRequest{Channel: ch}); uerr != nil {
			return fmt.Errorf("create channel: %w; update it: %w", err, uerr)
		}
	}
	return nil
}

// withChurnAlert makes sure the main all-in-one runs churn-alert. When it
// does not, it replaces it by a fresh one with churn-alert added, on a fresh
// embedded NATS server and data directory with the product's accounts
// pushed again: the very state -phases alert alone starts from, rather than
// churn-alert reading every score change of the earlier phases first. With
// -nats.url the streams stay, and churn-alert reads SCORES from the start.
// It returns a note saying what it did.
func (b *bench) withChurnAlert(ctx context.Context) (string, error) {
	targets, added := withTarget(b.ls.cfg.Targets, churnalert.Target)
	if !added {
		return "", nil
	}
	cfg := b.ls.cfg
	cfg.Targets = targets
	if err := b.ls.Stop(); err != nil {
		return "", err
	}
	b.ls = nil
	for _, d := range []*driver{b.load, b.probe.driver()} {
		d.client.CloseIdleConnections() // their server is gone
	}
	fresh := b.natsSrv != nil
	if fresh {
		b.nc.Close()
		b.natsSrv.Shutdown()
		b.nc, b.natsSrv = nil, nil
		if err := b.startNATS(ctx, true, "alert-nats"); err != nil {
			return "", err
		}
		cfg.NATSURL, cfg.DataDir = b.lcfg.NATSURL, filepath.Join(b.dir, "alert-lodestar")
		for _, t := range []string{benchTenant, probeTenant, alertTenant} {
			if err := deleteKeys(ctx, b.rc, cachePrefix+":{"+t+"}:*"); err != nil {
				return "", err
			}
		}
	}
	ls, err := startLodestar(ctx, cfg, b.lsLog, 2*time.Minute)
	if err != nil {
		return "", err
	}
	b.ls = ls
	b.alertTargets = targets.String()
	b.logger.Info("all-in-one restarted with churn-alert", "targets", b.alertTargets, "fresh", fresh, "started_in", ls.Started)
	if !fresh {
		return fmt.Sprintf("The all-in-one ran %s in the phases before this one; it was restarted with %s on the same NATS (-nats.url), so churn-alert first read every score change in SCORES.",
			b.lcfg.Targets.String(), b.alertTargets), nil
	}
	if err := pushAccounts(ctx, cfg.GRPCListenAddr, benchAPIKey, b.product); err != nil {
		return "", err
	}
	return fmt.Sprintf("The all-in-one ran %s in the phases before this one; this phase replaced it by a fresh one with %s (a new embedded NATS store and data directory, the bench keys cleared from Redis, the product's accounts pushed again): the state `-phases alert` alone starts from.",
		b.lcfg.Targets.String(), b.alertTargets), nil
}

// alertPending is the messages of SCORES and ACCOUNT_CHANGES that their
// consumers (churn-alert's; scoring's of account changes) have yet to read.
func (b *bench) alertPending(ctx context.Context) (uint64, error) {
	var n uint64
	for _, name := range []string{natsx.StreamScores, natsx.StreamAccountChanges} {
		s, err := b.js.Stream(ctx, name)
		if err != nil {
			return 0, fmt.Errorf("stream %s: %w", name, err)
		}
		l := s.ListConsumers(ctx)
		for ci := range l.Info() {
			n += ci.NumPending
		}
		if err := l.Err(); err != nil {
			return 0, fmt.Errorf("consumers of %s: %w", name, err)
		}
	}
	return n, nil
}

// alertSettled waits, with no load, until scoring has no backlog and
// churn-alert has nothing pending and has applied nothing new for a second;
// at most timeout.
func (b *bench) alertSettled(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	if err := b.ls.drain(ctx, timeout); err != nil {
		return err
	}
	last, still := -1.0, 0
	for still < 4 {
		c, err := b.ls.counters(ctx, metricAlertApplied)
		if err != nil {
			return err
		}
		pending, err := b.alertPending(ctx)
		if err != nil {
			return err
		}
		if c[0] == last && pending == 0 {
			still++
		} else {
			last, still = c[0], 0
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("churn-alert still applying changes after %s (%d pending)", timeout, pending)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return nil
}

// catchUp is how churn-alert caught up under load.
type catchUp struct {
	Took    time.Duration
	Pending uint64  // changes pending when it ended
	PerSec  float64 // score changes published per second then
	OK      bool
}

// caughtUp reports whether pending changes are less than a second of those
// published: churn-alert is keeping up.
func caughtUp(pending uint64, publishedPerSec float64) bool {
	return float64(pending) < max(publishedPerSec, 1)
}

// catchUpUnderLoad waits while the load runs until churn-alert is less than
// a second of score changes behind, twice in a row half a second apart: the
// first scores of the product's accounts come in a burst that churn-alert
// works off before it keeps pace. At most timeout; not catching up is a
// finding, not an error.
func (b *bench) catchUpUnderLoad(ctx context.Context, timeout time.Duration) (catchUp, error) {
	start := time.Now()
	var c catchUp
	prevSeq, err := b.lastSeq(ctx, natsx.StreamScores)
	if err != nil {
		return c, err
	}
	prevAt, good := time.Now(), 0
	for {
		select {
		case <-ctx.Done():
			return c, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		seq, err := b.lastSeq(ctx, natsx.StreamScores)
		if err != nil {
			return c, err
		}
		if c.Pending, err = b.alertPending(ctx); err != nil {
			return c, err
		}
		now := time.Now()
		c.PerSec, c.Took = float64(seq-prevSeq)/now.Sub(prevAt).Seconds(), now.Sub(start)
		prevSeq, prevAt = seq, now
		if caughtUp(c.Pending, c.PerSec) {
			good++
		} else {
			good = 0
		}
		if good >= 2 {
			c.OK = true
			return c, nil
		}
		if c.Took >= timeout {
			return c, nil
		}
	}
}

// alert measures event-to-alert latency under background load at half the
// sustained throughput: probes sent open loop, each a fresh account whose
// events make it red, measured from the 200 of its batch to its first signed
// webhook at a local receiver.
func (b *bench) alert(ctx context.Context) error {
	sec := b.report.section(phaseAlert, "Event-to-alert latency (HTTP 200 -> signed webhook at a local receiver)")
	if b.sustained <= 0 {
		return errors.New("alert needs the sustained rate: run the e2e phase or give -e2e.rate")
	}
	restarted, err := b.withChurnAlert(ctx)
	if err != nil {
		return err
	}
	rcv, err := startReceiver(alertSecret)
	if err != nil {
		return err
	}
	defer rcv.close()
	if err := b.setupAlerts(ctx, rcv.url); err != nil {
		return err
	}
	if err := b.alertSettled(ctx, b.cfg.alertCatchUp); err != nil {
		return err
	}
	p := &alertProber{d: newDriver(b.ls.cfg.HTTPListenAddr, alertWriteKey, 16), rcv: rcv, prefix: "a" + b.runID + "-"}
	defer p.d.client.CloseIdleConnections()
	rate := alertShare * b.sustained
	var res alertResult
	var cu catchUp
	load, err := b.underLoad(ctx, rate, "alert latency", func(ctx context.Context) (err error) {
		cu, err = b.catchUpUnderLoad(ctx, b.cfg.alertCatchUp)
		b.logger.Info("churn-alert under load", "caught_up", cu.OK, "took", cu.Took.Round(time.Millisecond), "pending", cu.Pending, "scores_s", int(cu.PerSec))
		return err
	}, func(ctx context.Context) (err error) {
		scoresBefore, err := b.lastSeq(ctx, natsx.StreamScores)
		if err != nil {
			return err
		}
		before, err := b.ls.counters(ctx, metricAlertApplied)
		if err != nil {
			return err
		}
		start := time.Now()
		if res, err = p.run(ctx, b.cfg.probeRate, b.cfg.latencyDuration, alertSettle); err != nil {
			return err
		}
		after, err := b.ls.counters(ctx, metricAlertApplied)
		if err != nil {
			return err
		}
		scoresAfter, err := b.lastSeq(ctx, natsx.StreamScores)
		if err != nil {
			return err
		}
		span := time.Since(start).Seconds()
		res.Applied, res.ScoresIn = (after[0]-before[0])/span, float64(scoresAfter-scoresBefore)/span
		return nil
	})
	if err != nil {
		return err
	}
	res.Rate, res.Flush, res.CatchUp = rate, b.ls.cfg.Scoring.FlushInterval, cu
	b.alertResult = &res
	b.logger.Info("event-to-alert latency", "events_s", int(rate), "p50", res.Total.P50, "p99", res.Total.P99, "p999", res.Total.P999,
		"n", res.Total.N, "lost", res.Lost, "failed", res.Failed, "to_open_p99", res.ToOpen.P99, "to_webhook_p99", res.ToWebhook.P99)

	note := fmt.Sprintf("%d probes at %.0f/s over %s, each a new account in trouble; %s",
		res.Total.N, b.cfg.probeRate, b.cfg.latencyDuration, load.note())
	if res.Lost > 0 {
		note += fmt.Sprintf("; %d probes without a webhook within %s", res.Lost, alertSettle)
	}
	if res.Failed > 0 {
		note += fmt.Sprintf("; %d probe batches not answered 200", res.Failed)
	}
	if bad, why := rcv.problems(); bad > 0 {
		note += fmt.Sprintf("; %d webhooks failed the signature check or did not decode: %v", bad, why)
	}
	pct := fmt.Sprintf("%.0f%%", 100*alertShare)
	sec.add(Figure{Name: "p50 at " + pct + " of sustained", Value: ms(res.Total.P50), Unit: "ms", Note: note})
	sec.add(Figure{Name: "p99 at " + pct + " of sustained", Value: ms(res.Total.P99), Unit: "ms"})
	sec.add(Figure{Name: "p99.9 at " + pct + " of sustained", Value: ms(res.Total.P999), Unit: "ms"})
	sec.add(Figure{Name: "200 -> alert opened, p50", Value: ms(res.ToOpen.P50), Unit: "ms",
		Note: "to the alert's create_time: scoring's flush, the SCORES publish, churn-alert reading and evaluating the change"})
	sec.add(Figure{Name: "200 -> alert opened, p99", Value: ms(res.ToOpen.P99), Unit: "ms"})
	sec.add(Figure{Name: "alert opened -> webhook, p50", Value: ms(res.ToWebhook.P50), Unit: "ms",
		Note: "the ALERT_STATE write, the ALERTS and DELIVERIES publishes, the delivery worker and the signed POST"})
	sec.add(Figure{Name: "alert opened -> webhook, p99", Value: ms(res.ToWebhook.P99), Unit: "ms"})
	sec.add(Figure{Name: "score changes published to SCORES", Value: ptr(res.ScoresIn), Unit: "changes/s",
		Note: "every tenant's, over the probes and their settling"})
	sec.add(Figure{Name: "changes churn-alert applied", Value: ptr(res.Applied), Unit: "changes/s",
		Baseline: "published to SCORES", BaselineValue: ptr(res.ScoresIn),
		Note: fmt.Sprintf("score and account changes; below 1 churn-alert fell behind and the probes queued behind the backlog (-churn-alert.workers %d)", b.ls.cfg.ChurnAlert.Workers)})
	if restarted != "" {
		sec.note("%s", restarted)
	}
	if cu.OK {
		sec.note("Before the probes the load ran until churn-alert kept pace (fewer changes pending in SCORES and ACCOUNT_CHANGES than scoring publishes in a second): %s after the %s warm-up, the first scores of the product's accounts being a burst it works off first; then %d pending at %.0f score changes/s.",
			cu.Took.Round(100*time.Millisecond), b.cfg.warmup, cu.Pending, cu.PerSec)
	} else {
		sec.note("churn-alert did not keep pace with the load within -alert.catch-up %s: %d changes still pending at %.0f score changes/s published; the probes queued behind that backlog.",
			b.cfg.alertCatchUp, cu.Pending, cu.PerSec)
	}
	sec.note("Each probe is one Segment batch for a new account of the %q tenant: a failed payment, an urgent ticket and an NPS of 0, after a report three weeks before; the tenant adds a silent-account rule that fires on yellow accounts too, as the shipped one did before it became red-only, since the probes do not score red (first webhook by rule: %s). The tenant's one channel is a signed webhook (created through AlertService) to a receiver in the bench process, which checks every signature. Probes are sent open loop, each measured from its 200 to the first webhook for its account. The score part is bounded below by scoring's flush (-scoring.flush-interval %s), as for event-to-score; churn-alert adds its processing and delivery.",
		alertTenant, ruleCounts(res.Rules), res.Flush)
	return nil
}

// ruleCounts lists rules by how many first webhooks they sent, most first.
func ruleCounts(rules map[string]int) string {
	ids := make([]string, 0, len(rules))
	for id := range rules {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		if rules[ids[i]] != rules[ids[j]] {
			return rules[ids[i]] > rules[ids[j]]
		}
		return ids[i] < ids[j]
	})
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprintf("%s %d", id, rules[id])
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
