// Package segment serves Segment's HTTP Tracking API, so that product
// backends and Segment's own libraries send usage events to Lodestar
// unchanged: POST /v1/track, /v1/identify, /v1/group, /v1/page, /v1/screen,
// /v1/alias, /v1/batch and /v1/import (an alias of batch), and the short
// paths of analytics.js (/v1/t, /v1/i, /v1/g, /v1/p, /v1/s, /v1/a, /v1/b),
// with CORS for browser pages (see browser.go).
//
// The write key is the Basic-auth user name with an empty password, or
// "writeKey" in the body; the tenant always comes from it. As Segment's own
// API, any Content-Type is taken as long as the body is JSON (analytics.js
// sends text/plain, axios-based SDKs application/x-www-form-urlencoded).
// Bodies may be gzip-compressed (Content-Encoding: gzip); the size limits
// apply to the decompressed body too.
//
// Every answer is JSON: {"success":true} for a single call, and
// {"success":true,"accepted":N,"errors":[...]} for a batch; failures are
// {"success":false,"code":"...","message":"...","errors":[...]}, each entry
// of errors naming an event by its index, with the field at fault and why.
//
// A 200 means every accepted event is stored in JetStream. A batch whose
// events are partly invalid stores the valid ones and answers 200 listing
// the others: Segment's libraries retry any non-2xx answer with the same
// body, so anything but 200 would resend, and never fix, the invalid
// events. An event repeating the messageId of an earlier one of the batch is
// listed with code duplicate: it is stored once. A batch with no valid event
// answers 400. A 503 (publish failed)
// or 429 (rate limit) is meant to be retried; the retry is deduplicated
// (see package publish). The answers:
//
//	200                         stored; a batch lists its rejected events
//	400 invalid_json            malformed JSON
//	400 invalid_request         a batch body of the wrong shape (batch not an array, bad sentAt)
//	400 empty_batch             a batch without events
//	400 invalid_event(s)        the call, or every event of the batch, is invalid (see errors)
//	400 invalid_gzip            Content-Encoding: gzip on a body that is not gzip
//	400 invalid_body            the body could not be read
//	401 missing_write_key       no write key in the header or the body
//	401 invalid_write_key       a write key of no tenant
//	403 origin_not_allowed      a browser page of an origin the tenant does not allow
//	404 not_found               no such endpoint
//	405 method_not_allowed      not POST
//	408 body_timeout            the body did not arrive within -http.read-timeout
//	413 event_too_large         a single call's body over the event limit
//	413 batch_too_large         a batch body, compressed or not, over the batch limit
//	415 unsupported_encoding    Content-Encoding neither gzip nor identity
//	429 rate_limited            the tenant's event rate is exceeded; see Retry-After
//	429 account_limit           the request's new accounts exceed the tenant's accounts in all,
//	                            or new accounts an hour (then with Retry-After)
//	503 unavailable             starting, or JetStream did not acknowledge; see Retry-After
package segment

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/lodestar-cs/lodestar/pkg/auth"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
	"github.com/lodestar-cs/lodestar/services/ingest/internal/intake"
	"github.com/lodestar-cs/lodestar/services/ingest/internal/quota"
)

// api labels this API's metrics.
const api = "http"

// Config bounds request sizes and event times.
type Config struct {
	// MaxEventBytes bounds one event: the body of a single call, or one
	// element of a batch.
	MaxEventBytes int
	// MaxBatchBytes bounds a batch body, compressed and decompressed.
	MaxBatchBytes int
	// EventTimes bound the events' times.
	EventTimes intake.TimeBounds
}

// API is the Segment-compatible HTTP API.
type API struct {
	cfg        Config
	tenants    *auth.Registry
	pipeline   func() *intake.Pipeline
	logger     *slog.Logger
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
	requests   metric.Int64Counter
}

// New returns the API. pipeline returns nil until events can be stored;
// until then every request answers 503.
func New(cfg Config, tenants *auth.Registry, pipeline func() *intake.Pipeline, logger *slog.Logger, meter metric.Meter, tracer trace.Tracer, propagator propagation.TextMapPropagator) (*API, error) {
	requests, err := meter.Int64Counter("lodestar.ingest.http.requests",
		metric.WithDescription("Segment API requests, by endpoint and answer code."), metric.WithUnit("{request}"))
	if err != nil {
		return nil, fmt.Errorf("requests counter: %w", err)
	}
	return &API{cfg: cfg, tenants: tenants, pipeline: pipeline, logger: logger, tracer: tracer, propagator: propagator, requests: requests}, nil
}

// Handler serves the API's paths.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	for name, typ := range types {
		mux.Handle("/v1/"+name, a.endpoint(typ))
	}
	for short, name := range shortPaths {
		mux.Handle("/v1/"+short, a.endpoint(types[name]))
	}
	batch := a.endpoint(eventv1.EventType_EVENT_TYPE_UNSPECIFIED)
	mux.Handle("/v1/batch", batch)
	mux.Handle("/v1/import", batch)
	mux.Handle("/v1/b", batch)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, response{Code: "not_found", Message: "no such endpoint: " + r.URL.Path})
	})
	return a.cors(mux)
}

// apiError is a request-level failure.
type apiError struct {
	status     int
	code       string
	message    string
	retryAfter time.Duration
	violations []intake.Violation
}

func errInvalidJSON(err error) *apiError {
	return &apiError{status: http.StatusBadRequest, code: "invalid_json", message: "malformed JSON: " + err.Error()}
}

// response is the JSON body of every answer.
type response struct {
	Success  bool         `json:"success"`
	Code     string       `json:"code,omitempty"`
	Message  string       `json:"message,omitempty"`
	Accepted *int         `json:"accepted,omitempty"`
	Errors   []eventError `json:"errors,omitempty"`
}

// eventError says why one event was rejected.
type eventError struct {
	Index     int    `json:"index"`
	MessageID string `json:"messageId,omitempty"`
	Field     string `json:"field,omitempty"`
	Code      string `json:"code"`
	Reason    string `json:"reason"`
}

func eventErrors(vs []intake.Violation) []eventError {
	if len(vs) == 0 {
		return nil
	}
	out := make([]eventError, len(vs))
	for i, v := range vs {
		out[i] = eventError{Index: v.Index, MessageID: v.MessageID, Field: v.Field.Segment(), Code: v.Code, Reason: v.Reason}
	}
	return out
}

// endpoint serves one path: a single call of type typ, or a batch when typ
// is UNSPECIFIED.
func (a *API) endpoint(typ eventv1.EventType) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if a.propagator != nil {
			ctx = a.propagator.Extract(ctx, propagation.HeaderCarrier(r.Header))
		}
		ctx, span := a.tracer.Start(ctx, r.Method+" "+r.URL.Path, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()

		status, resp := a.serve(ctx, w, r, typ)
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= 500 {
			span.SetStatus(codes.Error, resp.Message)
		}
		code := resp.Code
		if resp.Success {
			code = "ok"
		}
		a.requests.Add(ctx, 1, metric.WithAttributes(attribute.String("endpoint", r.URL.Path), attribute.String("code", code)))
		writeJSON(w, status, resp)
	})
}

// serve handles one request and returns the answer to write.
func (a *API) serve(ctx context.Context, w http.ResponseWriter, r *http.Request, typ eventv1.EventType) (int, response) {
	tenant, valid, bad, fail := a.accept(ctx, w, r, typ)
	if fail == nil {
		fail = a.store(ctx, tenant, valid)
	}
	if fail != nil {
		if fail.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(fail.retryAfter.Seconds()))))
		}
		switch fail.status {
		case http.StatusUnauthorized:
			w.Header().Set("WWW-Authenticate", `Basic realm="lodestar"`)
		case http.StatusMethodNotAllowed:
			w.Header().Set("Allow", http.MethodPost)
		}
		return fail.status, response{Code: fail.code, Message: fail.message, Errors: eventErrors(fail.violations)}
	}
	if typ != eventv1.EventType_EVENT_TYPE_UNSPECIFIED {
		return http.StatusOK, response{Success: true}
	}
	n := len(valid)
	return http.StatusOK, response{Success: true, Accepted: &n, Errors: eventErrors(bad)}
}

// accept checks, reads, authenticates and decodes a request, and returns
// its tenant, its valid events and the violations of the others.
func (a *API) accept(ctx context.Context, w http.ResponseWriter, r *http.Request, typ eventv1.EventType) (string, []*eventv1.Event, []intake.Violation, *apiError) {
	single := typ != eventv1.EventType_EVENT_TYPE_UNSPECIFIED
	if r.Method != http.MethodPost {
		return "", nil, nil, &apiError{status: http.StatusMethodNotAllowed, code: "method_not_allowed", message: r.Method + " not allowed: use POST"}
	}
	if a.pipeline() == nil {
		return "", nil, nil, &apiError{status: http.StatusServiceUnavailable, code: "unavailable", message: "ingest is starting", retryAfter: time.Second}
	}
	// A key in the header is checked before the body is read.
	tenant, key, inHeader := "", "", false
	if key, _, inHeader = r.BasicAuth(); inHeader {
		var fail *apiError
		if tenant, fail = a.tenant(key); fail != nil {
			return "", nil, nil, fail
		}
	}
	limit, tooLarge := a.cfg.MaxBatchBytes, "batch_too_large"
	if single {
		limit, tooLarge = a.cfg.MaxEventBytes, "event_too_large"
	}
	body, fail := readBody(w, r, limit, tooLarge)
	if fail != nil {
		return "", nil, nil, fail
	}
	received := time.Now()
	var req request
	if single {
		req, fail = decodeSingle(body, typ)
	} else {
		req, fail = decodeBatch(body, a.cfg.MaxEventBytes)
	}
	if fail != nil {
		return "", nil, nil, fail
	}
	if !inHeader {
		if tenant, fail = a.tenant(req.writeKey); fail != nil {
			return "", nil, nil, fail
		}
	}
	if fail := a.checkOrigin(r, tenant); fail != nil {
		return "", nil, nil, fail
	}
	valid, bad := intake.Prepare(tenant, received, a.cfg.EventTimes, req.events, body)
	bad = append(req.violations, bad...)
	slices.SortFunc(bad, func(x, y intake.Violation) int { return x.Index - y.Index })
	a.pipeline().RejectViolations(ctx, api, tenant, bad)
	if len(valid) == 0 {
		if single {
			return "", nil, nil, &apiError{status: http.StatusBadRequest, code: "invalid_event", message: "the event is invalid", violations: bad}
		}
		return "", nil, nil, &apiError{status: http.StatusBadRequest, code: "invalid_events", message: "no event of the batch is valid", violations: bad}
	}
	return tenant, valid, bad, nil
}

// tenant resolves a write key.
func (a *API) tenant(key string) (string, *apiError) {
	if key == "" {
		return "", &apiError{status: http.StatusUnauthorized, code: "missing_write_key", message: "send the write key as the Basic-auth user name or as writeKey in the body"}
	}
	t, ok := a.tenants.TenantForWriteKey(key)
	if !ok {
		return "", &apiError{status: http.StatusUnauthorized, code: "invalid_write_key", message: "unknown write key"}
	}
	return t, nil
}

// store stores valid events of tenant.
func (a *API) store(ctx context.Context, tenant string, valid []*eventv1.Event) *apiError {
	err := a.pipeline().Store(ctx, api, tenant, valid)
	if err == nil {
		return nil
	}
	var rl *intake.RateLimitError
	if errors.As(err, &rl) {
		return &apiError{status: http.StatusTooManyRequests, code: "rate_limited", message: "the tenant's event rate is exceeded", retryAfter: rl.RetryAfter}
	}
	var ql *quota.Error
	if errors.As(err, &ql) {
		return &apiError{status: http.StatusTooManyRequests, code: "account_limit", message: ql.Error(), retryAfter: ql.RetryAfter}
	}
	a.logger.WarnContext(ctx, "storing events failed", "tenant", tenant, "events", len(valid), "err", err)
	return &apiError{status: http.StatusServiceUnavailable, code: "unavailable", message: "events could not be stored; retry", retryAfter: time.Second}
}

// readBody reads a body of at most limit bytes, decompressed when it is
// gzip-encoded. Both the bytes on the wire and the decompressed bytes are
// bounded, so a small gzip bomb inflates to at most limit+1 bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int, tooLarge string) ([]byte, *apiError) {
	errTooLarge := &apiError{status: http.StatusRequestEntityTooLarge, code: tooLarge, message: fmt.Sprintf("body over the %d-byte limit", limit)}
	var rd io.Reader = http.MaxBytesReader(w, r.Body, int64(limit))
	gzipped := false
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		gzipped = true
	default:
		return nil, &apiError{status: http.StatusUnsupportedMediaType, code: "unsupported_encoding", message: fmt.Sprintf("Content-Encoding %q: want gzip or none", enc)}
	}
	readErr := func(err error) *apiError {
		if mbe := new(http.MaxBytesError); errors.As(err, &mbe) {
			return errTooLarge
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return &apiError{status: http.StatusRequestTimeout, code: "body_timeout", message: "the body did not arrive within the server's read timeout"}
		}
		if gzipped {
			return &apiError{status: http.StatusBadRequest, code: "invalid_gzip", message: "body is not valid gzip: " + err.Error()}
		}
		return &apiError{status: http.StatusBadRequest, code: "invalid_body", message: "reading body: " + err.Error()}
	}
	if gzipped {
		zr, err := gzip.NewReader(rd)
		if err != nil {
			return nil, readErr(err)
		}
		defer zr.Close()
		rd = io.LimitReader(zr, int64(limit)+1)
	}
	// The buffer grows as bytes arrive: a Content-Length is only a claim,
	// and a client trickling its body must not hold memory it never sends.
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(rd); err != nil {
		return nil, readErr(err)
	}
	if buf.Len() > limit {
		return nil, errTooLarge
	}
	return buf.Bytes(), nil
}

func writeJSON(w http.ResponseWriter, status int, resp response) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(resp) // The client may have gone; nothing to do.
}
