package alertrules

import (
	"testing"
	"time"

	"github.com/lodestar-cs/lodestar/services/churnalert"
)

// TestPrevious: the previous set is the shipped one, rule for rule, with
// the two principles undone on the risk rules and nothing else changed.
func TestPrevious(t *testing.T) {
	shipped, prev := churnalert.DefaultRules(), Previous()
	if len(prev) != len(shipped) {
		t.Fatalf("%d rules, shipped has %d", len(prev), len(shipped))
	}
	undone := 0
	for i, p := range prev {
		s := shipped[i]
		if p.GetRuleId() != s.GetRuleId() || p.GetKind() != s.GetKind() {
			t.Fatalf("rule %d: %s/%v, shipped %s/%v", i, p.GetRuleId(), p.GetKind(), s.GetRuleId(), s.GetKind())
		}
		if p.GetRedOnly() {
			t.Errorf("%s: red_only still set", p.GetRuleId())
		}
		if d := p.GetCooldown().AsDuration(); d != s.GetCooldown().AsDuration() {
			undone++
			if d != 7*24*time.Hour && d != 14*24*time.Hour {
				t.Errorf("%s: cooldown %s, want 7 or 14 days", p.GetRuleId(), d)
			}
		}
	}
	if undone != 7 {
		t.Errorf("%d cooldowns differ from the shipped set's, want the 7 risk rules'", undone)
	}
}
