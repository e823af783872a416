package main

import (
	"strings"
	"testing"
)

// TestReport runs a small world through both rule sets, the previous and
// the shipped one: no alert is early, stale or open on a green account.
func TestReport(t *testing.T) {
	var b strings.Builder
	o := options{seeds: "3", accounts: 30, beforeDays: 40, afterDays: 20, leadDays: 90}
	if err := o.report(t.Context(), &b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"| previous | **all risk rules** |", "| shipped | **all risk rules** |", "| baseline | score in the red band |",
		"(0 stale, 0 risk alerts on green accounts), 0 alerts in an account's first 14 days", "(0 stale, 0 on green), 0 early"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
