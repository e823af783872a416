package main

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert"
)

// TunedRules is the shipped rule set changed by two principles, measured on
// two worlds and fitted to neither (no threshold moves):
//
//  1. The scorecard decides whether an account is at risk; a risk rule says
//     why, and when to act. So risk rules fire only on accounts the score
//     calls at risk, the red band (Rule.red_only). Onboarding-stalled is
//     the exception: it judges accounts whose score means little yet.
//  2. A CSM acts on an account within a month: a risk rule that fired on an
//     account does not page about it again within 30 days (the cooldown; a
//     recurrence within it reopens the alert quietly).
//
// A first candidate made only the gradual and calendar rules (usage drop,
// renewal near) red-only, keeping sudden changes on yellow accounts; its
// alerts flagged contracting accounts too, and their lift over the churn
// rate stayed under the red band's (docs/alert-quality.md).
func TunedRules() []*alertv1.Rule {
	rs := churnalert.DefaultRules()
	for _, r := range rs {
		if !churnalert.Risk(r.GetKind()) {
			continue
		}
		if r.GetKind() != alertv1.RuleKind_RULE_KIND_ONBOARDING_STALLED {
			r.RedOnly = true
		}
		if r.GetCooldown().AsDuration() < 30*day {
			r.Cooldown = durationpb.New(30 * 24 * time.Hour)
		}
	}
	return rs
}
