package churnalert_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
)

// TestChannelTargets is issue 13's SSRF probe: a tenant's API key cannot
// aim a channel at the operator's network, and TestChannel does not read
// back what an endpoint answers.
func TestChannelTargets(t *testing.T) {
	tenant := testenv.Tenant(t)
	cfg := testConfig()
	cfg.EndpointAllowList = nil
	e := newEnv(t, cfg, tenant)
	ctx := e.as(tenant)
	for i, u := range []string{
		"http://127.0.0.1:6379/", "http://169.254.169.254/latest/meta-data/", "http://[::1]:8080/",
		"http://10.0.0.1/", "http://192.168.0.1/", "http://0x7f000001/", "http://[::ffff:127.0.0.1]/",
		"http://metadata.google.internal/computeMetadata/v1/", "http://localhost:9090/", "http://2130706433/",
	} {
		for _, c := range []*alertv1.Channel{
			{ChannelId: "w" + string(rune('a'+i)), Config: &alertv1.Channel_Webhook{Webhook: &alertv1.WebhookChannel{Url: u, Secret: "a-secret-of-16-chars"}}},
			{ChannelId: "s" + string(rune('a'+i)), Config: &alertv1.Channel_Slack{Slack: &alertv1.SlackChannel{WebhookUrl: u}}},
		} {
			_, err := e.client.CreateChannel(ctx, &alertv1.CreateChannelRequest{Channel: c})
			field := "channel.webhook.url"
			if c.GetSlack() != nil {
				field = "channel.slack.webhook_url"
			}
			wantInvalid(t, err, field)
		}
	}

	// With the receiver allowed, TestChannel gets through, and reports the
	// status code only.
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("INTERNAL: db password is hunter2"))
	}))
	t.Cleanup(internal.Close)
	e.stop()
	e.cfg.EndpointAllowList = testConfig().EndpointAllowList
	e.start()
	if _, err := e.client.CreateChannel(ctx, &alertv1.CreateChannelRequest{Channel: &alertv1.Channel{ChannelId: "internal",
		Config: &alertv1.Channel_Webhook{Webhook: &alertv1.WebhookChannel{Url: internal.URL, Secret: "a-secret-of-16-chars"}}}}); err != nil {
		t.Fatal(err)
	}
	got, err := e.client.TestChannel(ctx, &alertv1.TestChannelRequest{ChannelId: "internal"})
	if err != nil || got.GetOk() || !strings.Contains(got.GetDetail(), "500") || strings.Contains(got.GetDetail(), "hunter2") {
		t.Fatalf("TestChannel answered %v %v: want not ok, the status code and none of the answer", got, err)
	}
}
