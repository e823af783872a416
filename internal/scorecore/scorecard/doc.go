// Package scorecard loads, validates and compiles health scorecards.
//
// A scorecard is data, a *scoringv1.Scorecard: the tenant's core events, its measures
// with their piecewise-linear normalisation and weights, the red / yellow / green bands
// and per-lifecycle-stage overrides. Tenants write it in YAML whose schema is exactly
// the proto's JSON mapping (proto names such as core_events or JSON names such as
// coreEvents); enum values are their proto names (MEASURE_KIND_RECENCY,
// LIFECYCLE_STAGE_ONBOARDING) or the short forms (recency, onboarding, pre-renewal).
//
// Validate lists every problem of a scorecard with the path of the offending field;
// Compile turns a valid scorecard into the form the engine evaluates.
//
// # Event conventions
//
// Most measures count the events a scorecard names. A few read signals that support,
// survey and billing tools send under fixed names (as Segment track events, attributed
// to the account like any other event); the default scorecard relies on them:
//
//   - Surveys: "NPS Submitted" with property score, a number from 0 to 10. The SURVEY
//     measure averages the answers over its window. Other surveys (CSAT, CES) are not
//     read: their scales differ, and surveys are weak evidence anyway.
//   - Support: "Ticket Opened" and "Ticket Closed" with property ticket_id (string or
//     number) and, on opening, severity; "high", "urgent", "critical", "p1" and "sev1"
//     count as severe. SUPPORT_LOAD is the number of tickets open at the watermark. A
//     ticket open longer than the measure's window is taken as closed, so that a lost
//     close event does not haunt an account for ever.
//   - Billing: "Payment Failed" and "Subscription Downgraded" are trouble (the BILLING
//     measure's events, when it names none); a later "Payment Succeeded" clears earlier
//     failed payments. BILLING counts the trouble events in its window that are not
//     cleared.
//   - Onboarding: the ONBOARDING_MILESTONES measure names its first-value milestone
//     events (the demo product's are "Account Configured", "Teammate Invited" and
//     "First Report Created"). A milestone counts as reached when its event occurred in
//     the measure's window.
//   - Stakeholders: identify calls carry the user's level (S, A or B) in the trait named
//     by level_trait ("stakeholder_level" by default), or a role or title trait that
//     role_levels maps to a level (matched without regard to case).
//
// The default scorecard (Default) works on any product's events without
// configuration: it names no core events, so every product event counts as core
// use, and its recency, regularity, trend and seat measures take their scales from
// the tenant's own accounts (SCALE_TENANT_RANK), over horizons up to a year
// (MaxWindowDays; daily counts for DailyDays, weekly counts beyond). An account is
// watched, not judged, for its first MinHistoryDays. Tenants refine it with their
// own core events and measures; the demo product's scorecard
// (tools/loadgen/sim/scorecard.yaml) is an example that names them.
package scorecard
