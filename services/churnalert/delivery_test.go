package churnalert_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/internal/testenv/receivers"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/channel"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/delivery"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/streams"
)

// TestRetriesAndDeadLetters: a failing endpoint is retried with growing
// delays and gets the delivery once it answers; a permanent failure and the
// last failed try land in the dead letters, with the error.
func TestRetriesAndDeadLetters(t *testing.T) {
	tenant := testenv.Tenant(t)
	cfg := testConfig() // 3 attempts, 50 ms first backoff
	e := newEnv(t, cfg, tenant)
	e.only(tenant, "red-band", nil)
	flaky, secret := e.webhook(tenant, "flaky", func(n int, _ []byte) int {
		if n < 2 {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	broken, _ := e.webhook(tenant, "broken", func(int, []byte) int { return http.StatusBadRequest })
	down, _ := e.webhook(tenant, "down", func(int, []byte) int { return http.StatusServiceUnavailable })
	publish(t, e.js, tenant, scored("acct", time.Now(), 30))

	reqs := flaky.Wait(t, 3, 20*time.Second)
	down.Wait(t, 3, 20*time.Second)
	e.drained()
	time.Sleep(200 * time.Millisecond) // longer than any backoff left: nothing more may come
	if n := len(flaky.Requests()); n != 3 {
		t.Fatalf("flaky endpoint got %d requests, want 2 failures and 1 success", n)
	}
	ds := e.received(flaky, secret)
	if ds[0].GetDeliveryId() != ds[2].GetDeliveryId() {
		t.Fatal("a retry must carry the same delivery id")
	}
	// Backoff: 50 ms, then 100 ms at least (NakWithDelay is a lower bound).
	if d1, d2 := reqs[1].At.Sub(reqs[0].At), reqs[2].At.Sub(reqs[1].At); d1 < 45*time.Millisecond || d2 < 95*time.Millisecond {
		t.Errorf("retry delays %s, %s; want at least 50ms, 100ms", d1, d2)
	}
	if n := len(broken.Requests()); n != 1 {
		t.Errorf("a 400 answer was retried: %d requests", n)
	}
	if n := len(down.Requests()); n != cfg.DeliveryAttempts {
		t.Errorf("down endpoint got %d tries, want %d", n, cfg.DeliveryAttempts)
	}

	ctx := context.Background()
	cons, err := e.js.OrderedConsumer(ctx, streams.DeadLetters, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(2, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	dead := map[string]jetstream.Msg{}
	for m := range batch.Messages() {
		if m.Subject() != streams.DeadSubject(channel.KindWebhook) {
			t.Errorf("dead letter on %s", m.Subject())
		}
		var d alertv1.Delivery
		if err := proto.Unmarshal(m.Data(), &d); err != nil {
			t.Fatal(err)
		}
		dead[d.GetChannelId()] = m
	}
	if len(dead) != 2 {
		t.Fatalf("dead letters for %d channels, want broken and down", len(dead))
	}
	for ch, want := range map[string]struct{ attempts, err string }{"broken": {"1", "400"}, "down": {"3", "503"}} {
		h := dead[ch].Headers()
		if h.Get(delivery.HeaderAttempts) != want.attempts || !strings.Contains(h.Get(delivery.HeaderError), want.err) {
			t.Errorf("%s dead letter: attempts %q error %q", ch, h.Get(delivery.HeaderAttempts), h.Get(delivery.HeaderError))
		}
	}
}

// TestRateLimitAndDigest: nobody gets five pages at once. Slack with a
// digest gets the first page, then one digest of the rest; a webhook
// without one gets the first page only. Follow-ups are never limited.
func TestRateLimitAndDigest(t *testing.T) {
	tenant := testenv.Tenant(t)
	e := newEnv(t, testConfig(), tenant)
	ctx := e.as(tenant)
	e.only(tenant, "red-band", nil)
	slack := receivers.NewHTTP(t, func(int, []byte) int { return http.StatusOK })
	limit := &alertv1.RateLimit{MaxPerHour: 1, Burst: 1, DigestInterval: durationpb.New(time.Second)}
	if _, err := e.client.CreateChannel(ctx, &alertv1.CreateChannelRequest{Channel: &alertv1.Channel{ChannelId: "slack", RateLimit: limit,
		Config: &alertv1.Channel_Slack{Slack: &alertv1.SlackChannel{WebhookUrl: slack.URL}}}}); err != nil {
		t.Fatal(err)
	}
	hook := receivers.NewHTTP(t, nil)
	if _, err := e.client.CreateChannel(ctx, &alertv1.CreateChannelRequest{Channel: &alertv1.Channel{ChannelId: "hook",
		RateLimit: &alertv1.RateLimit{MaxPerHour: 1},
		Config:    &alertv1.Channel_Webhook{Webhook: &alertv1.WebhookChannel{Url: hook.URL, Secret: "0123456789abcdef"}}}}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var steps []step
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		steps = append(steps, scored(id, now, 30))
	}
	publish(t, e.js, tenant, steps...)
	// One alert goes out, the other four are held back into digests: one
	// when the five changes are applied within the 1 s digest window, more
	// when a loaded machine spreads them over two windows. Every held-back
	// alert is counted once.
	var first channel.SlackMessage
	var held []string
	for n, total := 2, 0; total < 4; n++ {
		msgs := slack.Wait(t, n, 20*time.Second)
		if err := json.Unmarshal(msgs[0].Body, &first); err != nil {
			t.Fatal(err)
		}
		var digest channel.SlackMessage
		if err := json.Unmarshal(msgs[n-1].Body, &digest); err != nil {
			t.Fatal(err)
		}
		var k int
		if _, err := fmt.Sscanf(digest.Text, "%d churn alerts held back by the rate limit or the daily page budget", &k); err != nil || k < 1 {
			t.Fatalf("slack message %d is %q, want a digest", n, digest.Text)
		}
		held, total = append(held, digest.Text), total+k
		if total > 4 {
			t.Fatalf("digests %q hold back %d alerts, want 4", held, total)
		}
	}
	settle(t, e.js)
	e.drained()
	if !strings.HasPrefix(first.Text, ":red_circle: New alert") {
		t.Fatalf("slack got %q first", first.Text)
	}
	if n := len(hook.Requests()); n != 1 {
		t.Fatalf("rate-limited webhook got %d pages, want 1", n)
	}

	// A resolution goes through although the limit is used up.
	alerts := e.alerts(tenant)
	if _, err := e.client.ResolveAlert(ctx, &alertv1.ResolveAlertRequest{AlertId: alerts[0].GetAlertId(), Actor: "dana"}); err != nil {
		t.Fatal(err)
	}
	slack.Wait(t, 2+len(held), 20*time.Second)
	hook.Wait(t, 2, 20*time.Second)
}

// TestDailyPageBudget: with one page a day, the CSM is paged about the
// first alert and the next one goes to the digest, which says why.
func TestDailyPageBudget(t *testing.T) {
	tenant := testenv.Tenant(t)
	cfg := testConfig()
	if err := cfg.DailyPages.Set("1"); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, cfg, tenant)
	ctx := e.as(tenant)
	e.only(tenant, "red-band", nil)
	slack := receivers.NewHTTP(t, func(int, []byte) int { return http.StatusOK })
	if _, err := e.client.CreateChannel(ctx, &alertv1.CreateChannelRequest{Channel: &alertv1.Channel{ChannelId: "slack",
		RateLimit: &alertv1.RateLimit{DigestInterval: durationpb.New(time.Second)},
		Config:    &alertv1.Channel_Slack{Slack: &alertv1.SlackChannel{WebhookUrl: slack.URL}}}}); err != nil {
		t.Fatal(err)
	}
	owned := func(id string, arr int64) step {
		return account(&accountv1.Account{AccountId: id, Owner: &accountv1.Owner{CsmId: "dana", ChatHandle: "U1"},
			Arr: &accountv1.Money{CurrencyCode: "USD", Units: arr}})
	}
	// The accounts first: their changes and scores are separate streams.
	publish(t, e.js, tenant, owned("big", 500_000), owned("small", 1_000))
	settle(t, e.js)
	publish(t, e.js, tenant, scored("big", time.Now(), 30))
	first := slack.Wait(t, 1, 20*time.Second)[0]
	if !strings.Contains(string(first.Body), "page 1 of 1 today") {
		t.Fatalf("first page lacks its priority: %s", first.Body)
	}
	publish(t, e.js, tenant, scored("small", time.Now(), 30))
	var digest channel.SlackMessage
	if err := json.Unmarshal(slack.Wait(t, 2, 20*time.Second)[1].Body, &digest); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(digest)
	if !strings.HasPrefix(digest.Text, "1 churn alerts held back") || !strings.Contains(string(body), "the 1 pages of today are spent") {
		t.Fatalf("second message %s, want a digest saying the budget is spent", body)
	}
}
