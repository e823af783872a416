package telemetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel/trace"
)

// Log attribute keys for the span a log line was written in.
const (
	TraceIDKey = "trace_id"
	SpanIDKey  = "span_id"
)

// Log formats accepted by NewLogger.
const (
	FormatJSON = "json"
	FormatText = "text"
)

// NewLogger returns a logger writing to w in format ("json" or "text";
// anything else is JSON, the production format) at level and above. level
// may be a *slog.LevelVar to change it at run time. Records logged with a
// context that holds a valid span carry its trace_id and span_id.
func NewLogger(w io.Writer, level slog.Leveler, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if strings.EqualFold(format, FormatText) {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(NewTraceHandler(h))
}

// ParseLevel parses a level name: debug, info, warn (or warning) and error,
// in any case, with an optional offset as slog accepts it ("debug-2").
func ParseLevel(s string) (slog.Level, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "warning") {
		return slog.LevelWarn, nil
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("telemetry: parse log level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// NewTraceHandler wraps next so that records logged with a context holding
// a valid span carry its trace and span ids as top-level attributes, which
// lets a log line be joined with its trace.
func NewTraceHandler(next slog.Handler) slog.Handler {
	return &traceHandler{root: next, next: next}
}

// traceHandler adds the span's ids to each record. The ids must stay at the
// top level even under WithGroup, so the handler remembers the root handler
// and the WithAttrs/WithGroup calls made since; only the (rare) grouped case
// pays for replaying them.
type traceHandler struct {
	root    slog.Handler
	next    slog.Handler
	ops     []handlerOp
	grouped bool
}

// handlerOp is one WithAttrs (group == "") or WithGroup call.
type handlerOp struct {
	group string
	attrs []slog.Attr
}

func (h *traceHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

func (h *traceHandler) Handle(ctx context.Context, r slog.Record) error {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return h.next.Handle(ctx, r)
	}
	ids := []slog.Attr{
		slog.String(TraceIDKey, sc.TraceID().String()),
		slog.String(SpanIDKey, sc.SpanID().String()),
	}
	if !h.grouped {
		// Clone: the record is shared with the caller and other handlers.
		r = r.Clone()
		r.AddAttrs(ids...)
		return h.next.Handle(ctx, r)
	}
	next := h.root.WithAttrs(ids)
	for _, op := range h.ops {
		if op.group != "" {
			next = next.WithGroup(op.group)
		} else {
			next = next.WithAttrs(op.attrs)
		}
	}
	return next.Handle(ctx, r)
}

func (h *traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	return h.with(handlerOp{attrs: attrs}, h.next.WithAttrs(attrs))
}

func (h *traceHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := h.with(handlerOp{group: name}, h.next.WithGroup(name))
	c.grouped = true
	return c
}

func (h *traceHandler) with(op handlerOp, next slog.Handler) *traceHandler {
	ops := make([]handlerOp, len(h.ops), len(h.ops)+1)
	copy(ops, h.ops)
	return &traceHandler{
		root:    h.root,
		next:    next,
		ops:     append(ops, op),
		grouped: h.grouped,
	}
}
