package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/lodestar-cs/lodestar/app"
	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/pkg/cache"
	"github.com/lodestar-cs/lodestar/pkg/config"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert"
)

// BenchmarkEventToAlert measures event-to-alert latency through the whole
// all-in-one: from the HTTP 200 of a Segment batch whose event turns a new
// account red, through JetStream, scoring, the SCORES stream and churn-alert,
// to its signed webhook arriving at a local receiver; while a steady stream
// of other accounts' events keeps every stage busy. It reports p50 and p99.
//
//	go test -run '^$' -bench EventToAlert -benchtime 200x ./app/
func BenchmarkEventToAlert(b *testing.B) {
	const (
		backgroundEvents = 500 // per second
		secret           = "whsec-bench-0123456789"
	)
	in := start(b, cache.RedisConfig{Addrs: config.StringList{testenv.RedisAddr()}}, func(c *app.Config) {
		c.ChurnAlert.AllowHTTPEndpoints = true
		c.ChurnAlert.EndpointAllowList = config.StringList{"127.0.0.1"}
	})
	ctx := context.Background()

	var mu sync.Mutex
	arrived := map[string]time.Time{} // first webhook per account
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		body, _ := io.ReadAll(r.Body)
		if err := churnalert.VerifyWebhook([]byte(secret), r.Header.Get("Lodestar-Signature"), body, at, time.Minute); err != nil {
			b.Errorf("webhook signature: %v", err)
		}
		var d alertv1.Delivery
		if err := protojson.Unmarshal(body, &d); err == nil {
			mu.Lock()
			if _, seen := arrived[d.GetEvent().GetAlert().GetAccountId()]; !seen {
				arrived[d.GetEvent().GetAlert().GetAccountId()] = at
			}
			mu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(rcv.Close)
	alerts := alertv1.NewAlertServiceClient(in.grpc)
	// The probes score yellow with the built-in scorecard (about 50: a new
	// account's recency and regularity rank low among the tenant's, the
	// trouble measures weigh little), and the shipped risk rules wait for
	// red; a tenant rule as the shipped silent-account rule was before it
	// became red-only fires on them, through the same path.
	if _, err := alerts.CreateRule(ctx, &alertv1.CreateRuleRequest{Rule: &alertv1.Rule{RuleId: "bench-silent", Kind: alertv1.RuleKind_RULE_KIND_SILENT_ACCOUNT,
		Threshold: 14, Severity: alertv1.Severity_SEVERITY_HIGH}}); err != nil {
		b.Fatal(err)
	}
	if _, err := alerts.CreateChannel(ctx, &alertv1.CreateChannelRequest{Channel: &alertv1.Channel{
		ChannelId: "bench", Config: &alertv1.Channel_Webhook{Webhook: &alertv1.WebhookChannel{Url: rcv.URL, Secret: secret}},
	}}); err != nil {
		b.Fatal(err)
	}
	send := func(events []map[string]any) time.Time {
		body, _ := json.Marshal(map[string]any{"batch": events})
		req, _ := http.NewRequest(http.MethodPost, in.http+"/v1/batch", bytes.NewReader(body))
		req.SetBasicAuth(in.writeKey, "")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Error(err)
			return time.Time{}
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Errorf("batch: HTTP %d", resp.StatusCode)
		}
		return time.Now()
	}
	track := func(account, user, event string, props ...any) map[string]any {
		p := map[string]any{}
		for i := 0; i+1 < len(props); i += 2 {
			p[props[i].(string)] = props[i+1]
		}
		return map[string]any{"type": "track", "event": event, "userId": user, "properties": p,
			"context": map[string]any{"groupId": account}}
	}

	// The steady load: calm accounts' users creating reports, 10 batches a second.
	stop := make(chan struct{})
	var load sync.WaitGroup
	load.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			batch := make([]map[string]any, backgroundEvents/10)
			for j := range batch {
				k := n*len(batch) + j
				batch[j] = track(fmt.Sprintf("calm-%03d", k%300), fmt.Sprintf("calm-%03d-u%d", k%300, k%7), "Report Created")
			}
			send(batch)
		}
	})
	b.Cleanup(func() { close(stop); load.Wait() })
	time.Sleep(time.Second)

	accepted := make(map[string]time.Time, b.N)
	b.ResetTimer()
	for i := range b.N {
		// An account whose new events are all trouble. Its report of three
		// weeks ago gives it the history the scorecard wants before it
		// judges (no rule fires on an account it does not judge);
		// it comes last, so that it does not move the tenant's clock back
		// and make the probes a catch-up rather than news (as tools/bench's
		// alert probes).
		id, user := fmt.Sprintf("hot-%06d", i), fmt.Sprintf("hot-%06d-u0", i)
		history := track(id, user, "Report Created")
		history["timestamp"] = time.Now().Add(-21 * 24 * time.Hour).UTC().Format(time.RFC3339Nano)
		accepted[id] = send([]map[string]any{
			track(id, user, "Payment Failed"),
			track(id, user, "Ticket Opened", "ticket_id", "t1", "severity", "urgent"),
			track(id, user, "NPS Submitted", "score", 0),
			history,
		})
		time.Sleep(20 * time.Millisecond) // a steady pace, not a burst
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		n := 0
		for id := range accepted {
			if _, ok := arrived[id]; ok {
				n++
			}
		}
		mu.Unlock()
		if n == b.N {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d alerts arrived within 60 s", n, b.N)
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.StopTimer()

	lat := make([]float64, 0, b.N)
	mu.Lock()
	for id, at := range accepted {
		lat = append(lat, float64(arrived[id].Sub(at).Microseconds())/1000)
	}
	mu.Unlock()
	slices.Sort(lat)
	b.ReportMetric(lat[len(lat)/2], "p50-ms")
	b.ReportMetric(lat[min(len(lat)-1, len(lat)*99/100)], "p99-ms")
	b.ReportMetric(backgroundEvents, "background-events/s")
	b.ReportMetric(0, "ns/op") // per-iteration time is the pacing, not a result
}
