package cache

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protowire"
)

// GetScoreEncoded returns an account's score as the protobuf wire encoding
// of its HealthScore, or an error wrapping ErrNotFound: what GetScore
// decodes, for a reader that only passes the score on (the gRPC API writes
// it into its response as it is, without decoding and encoding it again).
//
// The value is checked to be well-formed protobuf at its top level (tags,
// lengths); the fields of nested messages are left to whoever decodes it.
func (r *Redis) GetScoreEncoded(ctx context.Context, tenant, accountID string) ([]byte, error) {
	b, err := r.gets.Get(ctx, r.scoreKey(tenant, accountID)).Bytes()
	if errors.Is(err, redis.Nil) {
		err = ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get score of %q: %w", accountID, err)
	}
	if err := checkWire(b); err != nil {
		return nil, fmt.Errorf("get score of %q: decode score: %w", accountID, err)
	}
	return b, nil
}

// checkWire reports whether b is a sequence of well-formed protobuf fields.
func checkWire(b []byte) error {
	for len(b) > 0 {
		_, _, n := protowire.ConsumeField(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
}
