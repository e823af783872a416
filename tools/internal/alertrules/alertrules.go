// Package alertrules holds alert rule sets the measuring tools compare with
// the shipped one (churnalert.DefaultRules): tools/alertcheck on the
// simulated product, tools/predict on the real invoices.
package alertrules

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert"
)

// Previous is the rule set shipped before the two principles of
// churnalert.DefaultRules (risk rules fire only on red accounts and cool
// down for 30 days): the same rules and thresholds, its risk rules firing
// on yellow accounts too, with their earlier cooldowns.
func Previous() []*alertv1.Rule {
	cooldownDays := map[string]int{
		"onboarding-stalled": 14, "red-band": 7, "renewal-at-risk": 14, "score-drop": 7,
		"silent-account": 7, "stakeholders-disengaged": 14, "usage-drop": 7,
	}
	rs := churnalert.DefaultRules()
	for _, r := range rs {
		if d, ok := cooldownDays[r.GetRuleId()]; ok {
			r.RedOnly = false
			r.Cooldown = durationpb.New(time.Duration(d) * 24 * time.Hour)
		}
	}
	return rs
}
