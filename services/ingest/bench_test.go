package ingest_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/lodestar-cs/lodestar/pkg/natsx"
)

// Both benchmarks run this many concurrent clients per GOMAXPROCS, like the
// many product backends of a real deployment.
const benchParallelism = 4

// batchEvents is the number of events of a benchmark batch.
const batchEvents = 100

// benchBatch returns a 100-event Segment batch, ~40 KB, whose message ids
// contain "ITER" for the caller to make unique: 20 users of 10 accounts
// named by context.groupId, except every fourth event, attributed from the
// user's last known account, and four group calls.
func benchBatch() []byte {
	var events []string
	for i := range batchEvents {
		user, account := fmt.Sprint("user-", i%20), fmt.Sprint("acct-", i%10)
		groupID := `,"groupId":"` + account + `"`
		if i%4 == 0 {
			groupID = ""
		}
		if i%25 == 0 {
			events = append(events, fmt.Sprintf(`{"type":"group","messageId":"ITER-%d","userId":%q,"groupId":%q,"timestamp":"2026-03-01T10:00:00.000Z","traits":{"name":"Account %d","plan":"enterprise","employees":250}}`, i, user, account, i%10))
			continue
		}
		events = append(events, fmt.Sprintf(`{"type":"track","messageId":"ITER-%d","userId":%q,"event":"Opportunity Created","timestamp":"2026-03-01T10:00:00.000Z",`+
			`"properties":{"plan":"pro","amount":1234.5,"currency":"USD","items":3,"source":"web","stage":"qualified"},`+
			`"context":{"ip":"10.1.2.3","userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36","locale":"en-US"%s}}`, i, user, groupID))
	}
	return []byte(`{"sentAt":"2026-03-01T10:00:01.000Z","context":{"library":{"name":"analytics-go","version":"3.0.0"}},"batch":[` + strings.Join(events, ",") + `]}`)
}

// post sends a batch with acme's write key and fails b unless it is stored.
func post(b *testing.B, client *http.Client, url string, body []byte) {
	req, err := http.NewRequest(http.MethodPost, url+"/v1/batch", bytes.NewReader(body))
	if err != nil {
		b.Error(err)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(acmeWriteKey, "")
	res, err := client.Do(req)
	if err != nil {
		b.Error(err)
		return
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(res.Body)
		b.Errorf("status %d: %s", res.StatusCode, msg)
		return
	}
	_, _ = io.Copy(io.Discard, res.Body)
}

// streamMsgs returns how many messages EVENTS holds.
func streamMsgs(b *testing.B, js jetstream.JetStream) uint64 {
	s, err := js.Stream(context.Background(), natsx.StreamEvents)
	if err != nil {
		b.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return info.State.Msgs
}

// BenchmarkHTTPBatch measures Segment batches of 100 events through Handler()
// into the embedded JetStream: decode, validate, attribute, pack, publish and
// wait for every PubAck.
func BenchmarkHTTPBatch(b *testing.B) {
	e := startWith(b, nil, unlimited())
	template := benchBatch()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	b.Cleanup(client.CloseIdleConnections)
	post(b, client, e.http.URL, bytes.ReplaceAll(template, []byte("ITER"), []byte("warm")))
	msgsBefore := streamMsgs(b, e.js)

	var iter atomic.Int64
	b.SetBytes(int64(len(template)))
	b.SetParallelism(benchParallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			body := bytes.ReplaceAll(template, []byte("ITER"), strconv.AppendInt(nil, iter.Add(1), 10))
			post(b, client, e.http.URL, body)
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N*batchEvents)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(streamMsgs(b, e.js)-msgsBefore)/float64(b.N), "msgs/op")
}

// BenchmarkRawJetStreamAsyncPublish is the baseline of BenchmarkHTTPBatch:
// raw async publishes, with the same JetStream settings and concurrency,
// waiting for every PubAck, no HTTP, JSON or validation.
//
//   - packed: per op, the very messages (subjects and sizes) that one
//     100-event batch of BenchmarkHTTPBatch becomes: the ratio of the two
//     is ingest's own cost.
//   - per-event: per op, 100 messages of one event each (the average packed
//     event size): what the pipeline would do without packing.
func BenchmarkRawJetStreamAsyncPublish(b *testing.B) {
	// Learn the layout of one batch from the real handler, on its own server.
	setup := start(b, nil)
	post(b, http.DefaultClient, setup.http.URL, bytes.ReplaceAll(benchBatch(), []byte("ITER"), []byte("layout")))
	type shape struct {
		subject string
		size    int
	}
	var packed, perEvent []shape
	total := 0
	for _, m := range setup.messages(b, natsx.StreamEvents) {
		packed = append(packed, shape{m.Subject, len(m.Data)})
		total += len(m.Data)
	}
	for i := range batchEvents {
		perEvent = append(perEvent, shape{packed[i%len(packed)].subject, total / batchEvents})
	}

	for _, mode := range []struct {
		name   string
		shapes []shape
	}{{"packed", packed}, {"per-event", perEvent}} {
		b.Run(mode.name, func(b *testing.B) {
			e := start(b, nil)
			payload := bytes.Repeat([]byte("x"), total)
			var iter atomic.Int64
			b.SetBytes(int64(total))
			b.SetParallelism(benchParallelism)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					op := strconv.FormatInt(iter.Add(1), 10)
					msgs := make([]*nats.Msg, len(mode.shapes))
					for i, s := range mode.shapes {
						msgs[i] = &nats.Msg{Subject: s.subject, Data: payload[:s.size], Header: nats.Header{
							jetstream.MsgIDHeader: []string{natsx.MsgID("acme", op, strconv.Itoa(i))}}}
					}
					if err := natsx.PublishAll(context.Background(), e.js, msgs); err != nil {
						b.Error(err)
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N*batchEvents)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(len(mode.shapes)), "msgs/op")
		})
	}
}
