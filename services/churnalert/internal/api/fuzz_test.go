package api

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
)

// FuzzParsePageToken: any ListAlerts page token is a position or an error,
// and a token this server issued reads back as the alert it names.
func FuzzParsePageToken(f *testing.F) {
	for _, a := range []*alertv1.Alert{
		{AlertId: "al-1", CreateTime: timestamppb.New(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))},
		{AlertId: "a|b|c", CreateTime: timestamppb.New(time.Unix(0, 0))},
	} {
		f.Add(pageToken(a))
	}
	f.Add("")
	f.Add("!!")
	f.Add("LTE|")
	f.Fuzz(func(t *testing.T, tok string) {
		a, err := parsePageToken(tok)
		if err != nil || a == nil {
			return
		}
		if again, err := parsePageToken(pageToken(a)); err != nil || again.GetAlertId() != a.GetAlertId() ||
			!again.GetCreateTime().AsTime().Equal(a.GetCreateTime().AsTime()) {
			t.Fatalf("token %q: %v reads back as %v (%v)", tok, a, again, err)
		}
	})
}
