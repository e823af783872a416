package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestLoggerTraceIDs(t *testing.T) {
	clearOTelEnv(t)
	tel := setup(t, Config{ServiceName: "log-test"})
	ctx, span := tel.TracerProvider().Tracer("test").Start(t.Context(), "work")
	defer span.End()
	sc := span.SpanContext()
	if !sc.IsSampled() {
		t.Fatal("span not sampled without an exporter: trace context would not propagate")
	}
	traceID, spanID := sc.TraceID().String(), sc.SpanID().String()

	tests := []struct {
		name string
		log  func(l *slog.Logger)
		// want: top-level keys and values the JSON line must hold; a value
		// of "" means the key must be absent.
		want map[string]any
	}{
		{
			name: "span in context",
			log:  func(l *slog.Logger) { l.InfoContext(ctx, "hello", "k", "v") },
			want: map[string]any{TraceIDKey: traceID, SpanIDKey: spanID, "k": "v", "msg": "hello"},
		},
		{
			name: "no span",
			log:  func(l *slog.Logger) { l.InfoContext(context.Background(), "hello") },
			want: map[string]any{TraceIDKey: "", SpanIDKey: ""},
		},
		{
			name: "with attrs",
			log:  func(l *slog.Logger) { l.With("svc", "scoring").InfoContext(ctx, "hello") },
			want: map[string]any{TraceIDKey: traceID, "svc": "scoring"},
		},
		{
			name: "ids stay top level under a group",
			log: func(l *slog.Logger) {
				l.With("a", 1).WithGroup("req").With("b", 2).InfoContext(ctx, "hello", "c", 3)
			},
			want: map[string]any{
				TraceIDKey: traceID, SpanIDKey: spanID, "a": float64(1),
				"req": map[string]any{"b": float64(2), "c": float64(3)},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			tt.log(NewLogger(&buf, slog.LevelInfo, FormatJSON))
			var line map[string]any
			if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
				t.Fatalf("log line %q is not JSON: %v", buf.String(), err)
			}
			for k, want := range tt.want {
				got, ok := line[k]
				if want == "" {
					if ok {
						t.Errorf("%s = %v, want absent", k, got)
					}
					continue
				}
				if g, w := mustJSON(t, got), mustJSON(t, want); g != w {
					t.Errorf("%s = %s, want %s (line %s)", k, g, w, buf.String())
				}
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLoggerFormatAndLevel(t *testing.T) {
	clearOTelEnv(t)
	tel := setup(t, Config{ServiceName: "log-test"})
	ctx, span := tel.TracerProvider().Tracer("test").Start(t.Context(), "work")
	defer span.End()

	tests := []struct {
		name   string
		format string
		level  slog.Level
		log    func(l *slog.Logger)
		want   string // substring; "" means no output
	}{
		{name: "text", format: FormatText, level: slog.LevelInfo, log: func(l *slog.Logger) { l.InfoContext(ctx, "hi") },
			want: "trace_id=" + span.SpanContext().TraceID().String()},
		{name: "json", format: FormatJSON, level: slog.LevelInfo, log: func(l *slog.Logger) { l.InfoContext(ctx, "hi") },
			want: `"trace_id":"` + span.SpanContext().TraceID().String() + `"`},
		{name: "unknown format is json", format: "yaml", level: slog.LevelInfo, log: func(l *slog.Logger) { l.Info("hi") },
			want: `"msg":"hi"`},
		{name: "below level", format: FormatJSON, level: slog.LevelWarn, log: func(l *slog.Logger) { l.InfoContext(ctx, "hi") }},
		{name: "debug enabled", format: FormatJSON, level: slog.LevelDebug, log: func(l *slog.Logger) { l.Debug("hi") },
			want: `"level":"DEBUG"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			tt.log(NewLogger(&buf, tt.level, tt.format))
			got := buf.String()
			if tt.want == "" {
				if got != "" {
					t.Errorf("got output %q, want none", got)
				}
				return
			}
			if !strings.Contains(got, tt.want) {
				t.Errorf("output %q lacks %q", got, tt.want)
			}
		})
	}
}

func TestParseLevel(t *testing.T) {
	tests := []struct {
		in      string
		want    slog.Level
		wantErr bool
	}{
		{in: "debug", want: slog.LevelDebug},
		{in: "INFO", want: slog.LevelInfo},
		{in: " info ", want: slog.LevelInfo},
		{in: "warn", want: slog.LevelWarn},
		{in: "Warning", want: slog.LevelWarn},
		{in: "error", want: slog.LevelError},
		{in: "debug-2", want: slog.LevelDebug - 2},
		{in: "", wantErr: true},
		{in: "verbose", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseLevel(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseLevel(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("ParseLevel(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}
