package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
	ingestv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/ingest/v1"
	"github.com/lodestar-cs/lodestar/tools/loadgen/sim"
)

// retryError is a failure worth retrying: the server is rate limiting
// (429, RESOURCE_EXHAUSTED with retry info) or briefly unavailable (5xx,
// UNAVAILABLE, a broken connection). Ingest deduplicates by message id, so
// a retry of a request that was in fact stored stores nothing twice.
type retryError struct {
	// after is how long the server asked to wait, when told is set.
	after time.Duration
	told  bool
	err   error
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

// fatalError means that no request can succeed: the key is unknown or not
// allowed. The run stops.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

// withRetries calls attempt until it returns anything but a *retryError or
// retries run out. Between attempts it waits as long as the server asked,
// or else backs off exponentially (100 ms doubling to 5 s) with full
// jitter, so that many clients do not come back at once.
func withRetries(ctx context.Context, retries int, attempt func() error, retried func()) error {
	for n := 0; ; n++ {
		err := attempt()
		var re *retryError
		if !errors.As(err, &re) || n >= retries {
			return err
		}
		wait := re.after
		if !re.told {
			wait = time.Duration(1 + rand.Int64N(int64(min(100*time.Millisecond<<n, 5*time.Second))))
		}
		retried()
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// request is one request of a batch.
type request interface {
	// do makes the request once and returns why the server rejected any of
	// its events as invalid.
	do(ctx context.Context) (rejected []string, err error)
	// len is the number of events.
	len() int
}

// transport turns the events of a batch into requests within the size
// limit.
type transport interface {
	requests(t *tenant, evs []sim.Event) ([]request, error)
}

// envelopeBytes bounds what a Segment batch body holds besides its events:
// {"batch":[...],"sentAt":"<RFC 3339 time>"}.
const envelopeBytes = 64

// httpTransport sends Segment batches: POST /v1/batch, the write key as the
// Basic-auth user with an empty password.
type httpTransport struct {
	client *http.Client
	url    string
	gzip   bool
	// maxBytes bounds a body before compression; the Segment API checks
	// both the compressed and the decompressed size.
	maxBytes int
}

func (h *httpTransport) requests(t *tenant, evs []sim.Event) ([]request, error) {
	var out []request
	cur, size := &httpRequest{h: h, writeKey: t.writeKey}, envelopeBytes
	for _, ev := range evs {
		b, err := json.Marshal(ev.Segment())
		if err != nil {
			return nil, fmt.Errorf("encode event %s: %w", ev.MessageID, err)
		}
		if len(cur.events) > 0 && size+len(b)+1 > h.maxBytes {
			out = append(out, cur)
			cur, size = &httpRequest{h: h, writeKey: t.writeKey}, envelopeBytes
		}
		cur.events = append(cur.events, b)
		size += len(b) + 1
	}
	if len(cur.events) > 0 {
		out = append(out, cur)
	}
	return out, nil
}

// httpRequest is one batch body's worth of encoded events.
type httpRequest struct {
	h        *httpTransport
	writeKey string
	events   [][]byte
}

func (r *httpRequest) len() int { return len(r.events) }

// do posts the batch. sentAt is set anew on each attempt: ingest corrects
// event times by received - sentAt, so a stale sentAt on a retry would
// shift every event by the time spent waiting.
func (r *httpRequest) do(ctx context.Context) ([]string, error) {
	var body bytes.Buffer
	body.WriteString(`{"batch":[`)
	for i, e := range r.events {
		if i > 0 {
			body.WriteByte(',')
		}
		body.Write(e)
	}
	body.WriteString(`],"sentAt":"` + time.Now().UTC().Format(time.RFC3339Nano) + `"}`)
	if r.h.gzip {
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		if _, err := zw.Write(body.Bytes()); err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		if err := zw.Close(); err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		body = zb
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.h.url, &body)
	if err != nil {
		return nil, fmt.Errorf("new request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if r.h.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	req.SetBasicAuth(r.writeKey, "")
	resp, err := r.h.client.Do(req)
	if err != nil {
		return nil, &retryError{err: err}
	}
	defer resp.Body.Close()
	var answer struct {
		Message string `json:"message"`
		Errors  []struct {
			Field  string `json:"field"`
			Reason string `json:"reason"`
		} `json:"errors"`
	}
	// The answer is small; a body that is not JSON leaves it empty.
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&answer)
	var rejected []string
	for _, e := range answer.Errors {
		rejected = append(rejected, e.Field+": "+e.Reason)
	}
	failure := fmt.Errorf("%s: HTTP %d: %s", r.h.url, resp.StatusCode, answer.Message)
	switch code := resp.StatusCode; {
	case code == http.StatusOK:
		return rejected, nil
	case code == http.StatusTooManyRequests || code >= 500:
		after, told := retryAfter(resp.Header.Get("Retry-After"))
		return nil, &retryError{after: after, told: told, err: failure}
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return nil, &fatalError{failure}
	}
	return rejected, failure
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(v string) (time.Duration, bool) {
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
}

// grpcTransport sends IngestService.Batch calls.
type grpcTransport struct {
	client   ingestv1.IngestServiceClient
	maxBytes int
}

func (g *grpcTransport) requests(t *tenant, evs []sim.Event) ([]request, error) {
	var out []request
	cur, size := &grpcRequest{g: g, creds: t.creds}, 0
	for _, ev := range evs {
		pe, err := ev.Proto()
		if err != nil {
			return nil, err
		}
		// A repeated field costs a tag and a length besides the message;
		// sentTime, set on sending, a dozen bytes more.
		n := proto.Size(pe) + 16
		if len(cur.events) > 0 && size+n > g.maxBytes {
			out = append(out, cur)
			cur, size = &grpcRequest{g: g, creds: t.creds}, 0
		}
		cur.events = append(cur.events, pe)
		size += n
	}
	if len(cur.events) > 0 {
		out = append(out, cur)
	}
	return out, nil
}

type grpcRequest struct {
	g      *grpcTransport
	creds  grpc.CallOption
	events []*eventv1.Event
}

func (r *grpcRequest) len() int { return len(r.events) }

func (r *grpcRequest) do(ctx context.Context) ([]string, error) {
	now := timestamppb.Now()
	for _, e := range r.events {
		e.SentTime = now
	}
	resp, err := r.g.client.Batch(ctx, &ingestv1.BatchRequest{Events: r.events}, r.creds)
	if err != nil {
		return nil, grpcError("IngestService.Batch", err)
	}
	var rejected []string
	for _, e := range resp.Errors {
		rejected = append(rejected, e.Field+": "+e.Reason)
	}
	return rejected, nil
}

// grpcError classifies a failed call.
func grpcError(method string, err error) error {
	st := status.Convert(err)
	err = fmt.Errorf("%s: %s: %s", method, st.Code(), st.Message())
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded:
		return &retryError{err: err}
	case codes.ResourceExhausted:
		// Rate limited when the server says when to come back; a batch
		// over the size limit otherwise.
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok {
				return &retryError{after: ri.GetRetryDelay().AsDuration(), told: true, err: err}
			}
		}
	case codes.Unauthenticated, codes.PermissionDenied:
		return &fatalError{err}
	}
	return err
}

// maxUpsert is the most accounts one UpsertAccounts call may carry.
const maxUpsert = 1000

// pushAccounts sends the tenant's accounts as a CRM integration would.
func pushAccounts(ctx context.Context, client accountv1.AccountServiceClient, t *tenant, retries int, timeout time.Duration) error {
	accts := t.product.Accounts()
	for start := 0; start < len(accts); start += maxUpsert {
		req := &accountv1.UpsertAccountsRequest{}
		for _, a := range accts[start:min(start+maxUpsert, len(accts))] {
			req.Accounts = append(req.Accounts, a.CRM())
		}
		err := withRetries(ctx, retries, func() error {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			if _, err := client.UpsertAccounts(ctx, req, t.creds); err != nil {
				return grpcError("AccountService.UpsertAccounts", err)
			}
			return nil
		}, func() {})
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
	}
	return nil
}
