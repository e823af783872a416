// Package natsx holds what every Lodestar service shares about NATS: how to
// connect, the subjects, the streams and buckets with their limits, trace
// context in headers, and publishing with bounded in-flight acks.
package natsx

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Connect dials an external NATS server and keeps reconnecting for ever:
// JetStream is the source of truth, so a service waits for it rather than exits.
func Connect(ctx context.Context, url, name string, logger *slog.Logger) (*nats.Conn, error) {
	nc, err := nats.Connect(url,
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(500*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { logger.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			logger.Error("nats async error", "subject", subj, "err", err)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", url, err)
	}
	// RetryOnFailedConnect returns at once; wait for the first connection.
	for !nc.IsConnected() {
		select {
		case <-ctx.Done():
			nc.Close()
			return nil, fmt.Errorf("connect to nats %s: %w", url, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nc, nil
}

// Subject prefixes and names, as in docs/architecture.md.
const (
	EventsSubjectPrefix   = "lodestar.events"
	AccountsSubjectPrefix = "lodestar.accounts"
	ScoresSubjectPrefix   = "lodestar.scores"
	// DeadLetterSubjectPrefix.<source>.<tenant>: see DeadLetterSubject.
	DeadLetterSubjectPrefix = "lodestar.deadletter"
)

// EventSubject is the subject of a tenant's events in one partition.
func EventSubject(tenant string, partition uint32) string {
	return EventsSubjectPrefix + "." + tenant + "." + strconv.FormatUint(uint64(partition), 10)
}

// DeadLetterSubject is the subject of a tenant's dead letters from a
// stream (its name in lower case, "events" for EVENTS).
func DeadLetterSubject(source, tenant string) string {
	return DeadLetterSubjectPrefix + "." + source + "." + tenant
}

// AccountChangeSubject is the subject of an account's changes,
// lodestar.accounts.<tenant>.<partition>.<account token>, of partitions
// partitions.
func AccountChangeSubject(tenant, account string, partitions uint32) string {
	return accountSubject(AccountsSubjectPrefix, tenant, account, partitions)
}

// ScoreSubject is the subject of an account's score changes,
// lodestar.scores.<tenant>.<partition>.<account token>.
func ScoreSubject(tenant, account string, partitions uint32) string {
	return accountSubject(ScoresSubjectPrefix, tenant, account, partitions)
}

func accountSubject(prefix, tenant, account string, partitions uint32) string {
	return prefix + "." + tenant + "." + strconv.FormatUint(uint64(Partition(tenant, account, partitions)), 10) + "." + Token(account)
}

// PartitionFilter is the filter subject of one partition's messages in the
// stream of prefix: EVENTS (prefix.<tenant>.<partition>) or a per-account
// stream (prefix.<tenant>.<partition>.<account token>).
func PartitionFilter(prefix string, partition uint32) string {
	f := prefix + ".*." + strconv.FormatUint(uint64(partition), 10)
	if prefix != EventsSubjectPrefix {
		f += ".*"
	}
	return f
}

// ParseAccountSubject returns the tenant and account of an
// AccountChangeSubject or ScoreSubject.
func ParseAccountSubject(subject string) (tenant, account string, err error) {
	parts := strings.Split(subject, ".")
	if len(parts) != 5 {
		return "", "", fmt.Errorf("subject %q: want <prefix>.<tenant>.<partition>.<account>", subject)
	}
	account, err = ParseToken(parts[4])
	return parts[2], account, err
}

// DefaultPartitions is the default number of logical partitions: above the
// replica count any deployment here needs (a replica scores tens of
// thousands of events a second), while every partition keeps enough of a
// tenant's accounts for the tenant-rank scales scoring computes within it,
// and each costs a consumer and a snapshot per owner.
const DefaultPartitions = 16

// MaxPartitions bounds -nats.partitions.
const MaxPartitions = 1024

// Partition maps an account to one of n partitions, stably, so one account's
// events stay ordered in one partition.
func Partition(tenant, account string, n uint32) uint32 {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(tenant))
	h.Write([]byte{0})
	h.Write([]byte(account))
	return h.Sum32() % n
}

var plainToken = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// tokenEscape marks an escaped token; plain tokens never start with it.
const tokenEscape = "="

// Token turns an id chosen by a customer (an account or user id) into a NATS
// subject token and KV key that is safe, unique and reversible: plain ids of
// [A-Za-z0-9_-] are kept, anything else is "=" + base64url of the id.
func Token(id string) string {
	if plainToken.MatchString(id) {
		return id
	}
	return tokenEscape + base64.RawURLEncoding.EncodeToString([]byte(id))
}

// ParseToken reverses Token.
func ParseToken(tok string) (string, error) {
	enc, ok := strings.CutPrefix(tok, tokenEscape)
	if !ok {
		return tok, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return "", fmt.Errorf("parse token %q: %w", tok, err)
	}
	return string(b), nil
}

// MsgID is the JetStream Nats-Msg-Id for a message identified by parts (a
// tenant and one or more message ids): short, fixed-length and collision-safe.
func MsgID(tenant string, ids ...string) string {
	if len(ids) == 1 && len(tenant)+len(ids[0]) < 120 {
		return tenant + ":" + ids[0]
	}
	h := sha256.New()
	for _, id := range ids {
		h.Write([]byte(id))
		h.Write([]byte{0})
	}
	return tenant + ":" + hex.EncodeToString(h.Sum(nil)[:16])
}
