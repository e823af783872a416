package channel

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
)

// Webhook headers.
const (
	HeaderSignature  = "Lodestar-Signature"
	HeaderDeliveryID = "Lodestar-Delivery-Id"
	HeaderEvent      = "Lodestar-Event"
)

// Sign returns the Lodestar-Signature header value for a body sent at t:
// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<unix seconds>.<body>")>".
// The timestamp is signed with the body, so a captured request cannot be
// replayed later with a fresh timestamp.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a Lodestar-Signature header against the raw body: the
// signature must match and its timestamp lie within tolerance of now.
// Receivers should also drop a Lodestar-Delivery-Id they have already seen
// within the tolerance: together that makes a replay useless.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			if b, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return errors.New("malformed signature header")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("signature timestamp %s off by %s, more than %s", time.Unix(sec, 0).UTC().Format(time.RFC3339), d.Round(time.Second), tolerance)
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return errors.New("signature mismatch")
}

// webhook POSTs the delivery as proto3 JSON, signed.
func (s *Sender) webhook(ctx context.Context, cfg *alertv1.WebhookChannel, d *alertv1.Delivery) error {
	body, err := protojson.Marshal(d)
	if err != nil {
		return &PermanentError{fmt.Errorf("encode delivery: %w", err)}
	}
	h := http.Header{}
	h.Set(HeaderSignature, Sign([]byte(cfg.GetSecret()), s.Now(), body))
	h.Set(HeaderDeliveryID, d.GetDeliveryId())
	h.Set(HeaderEvent, d.GetEvent().GetType().String())
	return s.post(ctx, cfg.GetUrl(), "application/json", body, h)
}
