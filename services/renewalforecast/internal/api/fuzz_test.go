package api

import (
	"math"
	"testing"

	forecastv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/forecast/v1"
)

// FuzzParseToken: any ListRenewals page token is a position of the call's
// order or an error, and a token read back prints as itself.
func FuzzParseToken(f *testing.F) {
	risk := forecastv1.ListRenewalsOrder_LIST_RENEWALS_ORDER_RISK
	f.Add(pageToken{order: risk, key: 0.25, id: "acct-1"}.String())
	f.Add(pageToken{order: risk, key: math.Inf(-1), id: "a:b"}.String())
	f.Add(pageToken{order: risk + 1, key: 1e300, id: ""}.String())
	f.Add("")
	f.Add("MTpOYU46eA")
	f.Fuzz(func(t *testing.T, tok string) {
		p, err := parseToken(tok, risk)
		if err != nil || p == nil {
			return
		}
		if p.order != risk {
			t.Fatalf("token %q of order %v accepted for %v", tok, p.order, risk)
		}
		again, err := parseToken(p.String(), risk)
		if err != nil || again.id != p.id || (again.key != p.key && !(math.IsNaN(again.key) && math.IsNaN(p.key))) {
			t.Fatalf("token %q: %+v reads back as %+v (%v)", tok, p, again, err)
		}
	})
}
