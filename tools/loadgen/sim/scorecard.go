package sim

import (
	_ "embed"
)

// ScorecardYAML is the simulated product's scorecard: its core events,
// onboarding milestones and role titles. The demo runs Lodestar with it; tests
// that read what the simulated product's scorecard makes of its accounts use it.
//
//go:embed scorecard.yaml
var ScorecardYAML []byte
