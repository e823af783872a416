package main

import (
	"strings"
	"testing"
)

// TestReport runs a small world through both rule sets: the tuned set keeps
// recall, and no alert is early, stale or open on a green account.
func TestReport(t *testing.T) {
	var b strings.Builder
	o := options{seeds: "3", accounts: 60, beforeDays: 60, afterDays: 30, leadDays: 90}
	if err := o.report(t.Context(), &b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"| shipped | **all risk rules** |", "| tuned | **all risk rules** |", "| baseline | score in the red band |",
		"(0 stale, 0 risk alerts on green accounts), 0 alerts in an account's first 14 days", "(0 stale, 0 on green), 0 early"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
