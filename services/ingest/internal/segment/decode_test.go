package segment

import (
	"fmt"
	"strings"
	"testing"
)

// testBatch is a Segment batch as analytics libraries send it: 100 events of
// 20 users in 10 accounts, mostly track calls with properties, some
// identify, group and page calls, the account in context.groupId, and the
// library in the batch's context.
func testBatch() []byte {
	var events []string
	for i := range 100 {
		user, account := fmt.Sprint("user-", i%20), fmt.Sprint("acct-", i%10)
		common := fmt.Sprintf(`"messageId":"m-%d","userId":%q,"timestamp":"2026-03-01T10:00:%02d.000Z","context":{"groupId":%q,"ip":"10.1.2.3"}`, i, user, i%60, account)
		switch i % 10 {
		case 0:
			events = append(events, `{"type":"identify",`+common+`,"traits":{"name":"Ada Lovelace","email":"ada@example.com","role":"VP Sales","stakeholder_level":"A"}}`)
		case 1:
			events = append(events, `{"type":"group",`+common+`,"groupId":"`+account+`","traits":{"name":"Acme","industry":"Software","plan":"enterprise","seats":40}}`)
		case 2, 3:
			events = append(events, `{"type":"page",`+common+`,"name":"Dashboard","properties":{"path":"/dashboard","referrer":"https://example.com/"}}`)
		default:
			events = append(events, `{"type":"track",`+common+`,"event":"Report Created","properties":{"report_type":"pipeline","amount":1234.5,"currency":"USD","items":3}}`)
		}
	}
	return []byte(`{"batch":[` + strings.Join(events, ",") + `],"sentAt":"2026-03-01T10:00:01.000Z","context":{"library":{"name":"analytics-go","version":"3.3.0"}}}`)
}

func TestDecodeBatchOfTheBenchmark(t *testing.T) {
	r, fail := decodeBatch(testBatch(), 32<<10)
	if fail != nil || len(r.violations) > 0 || len(r.events) != 100 {
		t.Fatalf("decode: %v, %v, %d events", fail, r.violations, len(r.events))
	}
	ev := r.events[4]
	if ev.GetEvent() != "Report Created" || ev.GetProperties().GetFields()["amount"].GetNumberValue() != 1234.5 ||
		ev.GetContext().GetFields()["library"].GetStructValue().GetFields()["name"].GetStringValue() != "analytics-go" {
		t.Errorf("event 4 decoded as %v", ev)
	}
}

func TestBatchContext(t *testing.T) {
	body := []byte(`{"context":{"library":{"name":"analytics-go"},"ip":"10.0.0.1"},"batch":[` +
		`{"type":"track","userId":"u","event":"e","context":{"ip":"10.9.9.9","groupId":"g"}},` +
		`{"type":"track","userId":"u","event":"e"}]}`)
	r, fail := decodeBatch(body, 32<<10)
	if fail != nil || len(r.events) != 2 {
		t.Fatalf("decode: %v, %d events", fail, len(r.events))
	}
	own, none := r.events[0].GetContext().GetFields(), r.events[1].GetContext().GetFields()
	if own["ip"].GetStringValue() != "10.9.9.9" || own["groupId"].GetStringValue() != "g" ||
		own["library"].GetStructValue().GetFields()["name"].GetStringValue() != "analytics-go" {
		t.Errorf("an event's own context keys win, the batch's fill in: %v", own)
	}
	if len(none) != 2 || none["ip"].GetStringValue() != "10.0.0.1" {
		t.Errorf("an event without context takes the batch's: %v", none)
	}
	// An empty batch context still gives every event a context, as before.
	r, _ = decodeBatch([]byte(`{"context":{},"batch":[{"type":"track","userId":"u","event":"e"}]}`), 32<<10)
	if r.events[0].GetContext() == nil || len(r.events[0].GetContext().GetFields()) != 0 {
		t.Errorf("empty batch context: got %v, want an empty context", r.events[0].GetContext())
	}
	r, _ = decodeBatch([]byte(`{"batch":[{"type":"track","userId":"u","event":"e"}]}`), 32<<10)
	if r.events[0].GetContext() != nil {
		t.Errorf("no context anywhere: got %v, want none", r.events[0].GetContext())
	}
}

// BenchmarkDecodeBatch measures decoding a 100-event Segment batch into
// events: JSON into maps, then google.protobuf.Structs. Encoding them for
// JetStream is publish's BenchmarkMarshalBatch.
func BenchmarkDecodeBatch(b *testing.B) {
	body := testBatch()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, fail := decodeBatch(body, 32<<10); fail != nil {
			b.Fatal(fail.message)
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "events/s")
}
