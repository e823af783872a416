// Package streams names the streams, subjects and KV buckets the churn-alert
// service owns, with their configurations.
package streams

import (
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/lodestar-cs/lodestar/pkg/natsx"
)

// Stream and bucket names.
const (
	Alerts      = "ALERTS"
	Deliveries  = "DELIVERIES"
	DeadLetters = "DELIVERIES_DEAD"
	// BucketState holds one AccountAlertState per account.
	BucketState = "ALERT_STATE"
	// BucketSettings holds the tenants' rules, schedules and channels.
	BucketSettings = "ALERT_SETTINGS"
	// BucketDeliveries holds delivery outcomes (idempotence) and digests.
	BucketDeliveries = "ALERT_DELIVERIES"
)

// Subject prefixes.
const (
	AlertsPrefix     = "lodestar.alerts"
	DeliveriesPrefix = "lodestar.deliveries"
	// DeadPrefix is one token longer than delivery subjects, so that
	// DELIVERIES (lodestar.deliveries.*) and DELIVERIES_DEAD do not overlap.
	DeadPrefix = DeliveriesPrefix + ".dead"
)

// AlertSubject is the subject of an account's alert events.
func AlertSubject(tenant, account string) string {
	return AlertsPrefix + "." + tenant + "." + natsx.Token(account)
}

// TenantAlerts matches every alert event of a tenant.
func TenantAlerts(tenant string) string { return AlertsPrefix + "." + tenant + ".>" }

// DeliverySubject is the work-queue subject of a channel kind.
func DeliverySubject(kind string) string { return DeliveriesPrefix + "." + kind }

// DeadSubject is where deliveries of a channel kind go after the last try.
func DeadSubject(kind string) string { return DeadPrefix + "." + kind }

// StateKey is an account's key in BucketState.
func StateKey(tenant, account string) string { return tenant + "." + natsx.Token(account) }

// PositionPrefix starts the keys of consumer positions in BucketState; no
// tenant id starts with "_".
const PositionPrefix = "_position."

// PositionKey is where a consumer's position is kept in BucketState.
func PositionKey(name string) string { return PositionPrefix + name }

// Scope names partition p of n in the keys a partition's pipeline stores
// (its positions and clocks).
func Scope(p, n uint32) string {
	return strconv.FormatUint(uint64(p), 10) + "of" + strconv.FormatUint(uint64(n), 10)
}

// PartitionPositionKey is where the pipeline of partition p of n keeps its
// position in stream.
func PartitionPositionKey(stream string, p, n uint32) string {
	return PositionKey(stream + "." + Scope(p, n))
}

// ClockKey is where a tenant's clock in a partition (scope) is kept in
// BucketState.
func ClockKey(scope, tenant string) string { return "_clock." + scope + "." + tenant }

// ParseStateKey reverses StateKey.
func ParseStateKey(key string) (tenant, account string, err error) {
	tenant, tok, _ := strings.Cut(key, ".")
	account, err = natsx.ParseToken(tok)
	return tenant, account, err
}

// Limits are the retention limits of the service's streams.
type Limits struct {
	AlertsMaxAge      time.Duration
	DeliveriesMaxAge  time.Duration
	DeadLettersMaxAge time.Duration
	// DuplicateWindow and Replicas come from natsx.Limits.
	DuplicateWindow time.Duration
	Replicas        int
}

// AlertsStream is the audit trail: every alert transition.
func (l Limits) AlertsStream() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        Alerts,
		Description: "Alert transitions (lodestar.alert.v1.AlertEvent)",
		Subjects:    []string{AlertsPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		MaxAge:      l.AlertsMaxAge,
		Duplicates:  l.DuplicateWindow,
		Replicas:    l.Replicas,
	}
}

// DeliveriesStream is the work queue of messages to send: a message is
// removed once a worker acknowledges it.
func (l Limits) DeliveriesStream() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        Deliveries,
		Description: "Alert deliveries to send (lodestar.alert.v1.Delivery)",
		Subjects:    []string{DeliveriesPrefix + ".*"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      l.DeliveriesMaxAge,
		Duplicates:  l.DuplicateWindow,
		Replicas:    l.Replicas,
	}
}

// DeadLettersStream keeps the deliveries that failed their last try, for
// inspection and replay.
func (l Limits) DeadLettersStream() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        DeadLetters,
		Description: "Alert deliveries that failed for good (lodestar.alert.v1.Delivery; headers Lodestar-Error, Lodestar-Attempts)",
		Subjects:    []string{DeadPrefix + ".*"},
		Storage:     jetstream.FileStorage,
		MaxAge:      l.DeadLettersMaxAge,
		Duplicates:  l.DuplicateWindow,
		Replicas:    l.Replicas,
	}
}

// StateBucket holds the per-account state.
func (l Limits) StateBucket() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      BucketState,
		Description: "Churn-alert state by tenant.<account> (lodestar.alert.v1.AccountAlertState)",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    l.Replicas,
	}
}

// SettingsBucket holds rules, schedules and channels, key
// tenant.<rule|schedule|channel>.<id>.
func (l Limits) SettingsBucket() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      BucketSettings,
		Description: "Alert rules, on-call schedules and channels by tenant.<kind>.<id>",
		History:     5,
		Storage:     jetstream.FileStorage,
		Replicas:    l.Replicas,
	}
}

// DeliveriesBucket remembers delivery outcomes for longer than a delivery can
// stay in DELIVERIES, so a redelivered message is never sent twice.
func (l Limits) DeliveriesBucket() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      BucketDeliveries,
		Description: "Delivery outcomes (sent.tenant.<id>) and pending digests (digest.tenant.<channel>.<recipient>.<window>)",
		History:     1,
		TTL:         l.DeliveriesMaxAge + 24*time.Hour,
		Storage:     jetstream.FileStorage,
		Replicas:    l.Replicas,
	}
}
