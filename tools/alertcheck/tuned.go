package main

import (
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert"
)

// TunedRules is the shipped rule set changed by principle, not by fitting.
func TunedRules() []*alertv1.Rule {
	return churnalert.DefaultRules()
}
