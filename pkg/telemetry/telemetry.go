// Package telemetry sets up OpenTelemetry metrics, traces and context
// propagation for a Lodestar process, and the structured logger that goes
// with them.
//
// One process may run several Lodestar services (the all-in-one), so Setup
// builds providers that are owned by the caller and registers nothing
// globally: the process's main decides whether to call SetGlobal.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Standard OpenTelemetry environment variables that decide whether traces
// are exported. See the OpenTelemetry SDK environment variable specification.
const (
	envOTLPEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envOTLPTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envOTLPProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envOTLPTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	envTracesExporter     = "OTEL_TRACES_EXPORTER"
)

// Config configures Setup.
type Config struct {
	// ServiceName is the OpenTelemetry service.name, e.g. "lodestar" for the
	// all-in-one or "churn-alert". OTEL_SERVICE_NAME overrides it.
	ServiceName string
	// ServiceVersion is the service.version resource attribute; empty omits it.
	ServiceVersion string
	// Logger receives setup and telemetry error messages. Nil discards them.
	Logger *slog.Logger
}

// Telemetry owns a process's meter provider, tracer provider and
// propagator. Create it with Setup and call Shutdown last at process exit.
type Telemetry struct {
	logger         *slog.Logger
	registry       *prometheus.Registry
	meterProvider  *sdkmetric.MeterProvider
	tracerProvider *sdktrace.TracerProvider
	propagator     propagation.TextMapPropagator
	metricsHandler http.Handler

	shutdownOnce sync.Once
	shutdownErr  error
}

// Setup builds the telemetry of one process.
//
// Metrics go to a Prometheus registry private to the returned Telemetry
// (together with the Go runtime and process collectors) and are served by
// MetricsHandler. Traces are exported over OTLP gRPC only when
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set
// (or OTEL_TRACES_EXPORTER=otlp); otherwise spans are still sampled, so
// trace ids reach logs and propagate to downstream calls, but are exported
// nowhere. OTEL_TRACES_EXPORTER=none disables export in every case. All
// other standard OTEL_* variables (resource, sampler, batch processor,
// exporter settings) are honoured by the SDK.
//
// Setup registers nothing globally; see SetGlobal.
func Setup(ctx context.Context, cfg Config) (*Telemetry, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	res, err := newResource(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}

	t := &Telemetry{
		logger:   logger,
		registry: prometheus.NewRegistry(),
		// W3C trace context and baggage: the format carried in gRPC metadata
		// and NATS headers between Lodestar services.
		propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}

	if err := t.registry.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("telemetry: register Go collector: %w", err)
	}
	if err := t.registry.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("telemetry: register process collector: %w", err)
	}

	exporter, err := otelprom.New(
		otelprom.WithRegisterer(t.registry),
		// Explicit so the metric names do not change with the global
		// validation scheme of prometheus/common.
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: create Prometheus exporter: %w", err)
	}
	t.meterProvider = sdkmetric.NewMeterProvider(
		sdkmetric.WithResource(res),
		sdkmetric.WithReader(exporter),
	)
	t.metricsHandler = promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{
		ErrorLog: promLogger{logger},
		// A failing collector should not hide every other metric.
		ErrorHandling: promhttp.ContinueOnError,
		// Exposes promhttp_metric_handler_errors_total.
		Registry: t.registry,
	})

	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if endpoint, ok := otlpTracesEnabled(); ok {
		if p := otlpProtocol(); p != "" && p != "grpc" {
			logger.WarnContext(ctx, "only OTLP over gRPC is supported for traces; ignoring protocol", "protocol", p)
		}
		// New does not dial: the connection is made lazily, so an absent
		// collector never blocks start-up.
		exp, err := otlptracegrpc.New(ctx)
		if err != nil {
			_ = t.meterProvider.Shutdown(ctx)
			return nil, fmt.Errorf("telemetry: create OTLP trace exporter: %w", err)
		}
		tpOpts = append(tpOpts, sdktrace.WithBatcher(exp))
		logger.InfoContext(ctx, "exporting traces over OTLP gRPC", "endpoint", endpoint)
	} else {
		logger.DebugContext(ctx, "trace export disabled: no OTLP endpoint configured")
	}
	t.tracerProvider = sdktrace.NewTracerProvider(tpOpts...)

	return t, nil
}

// newResource describes the process. Later sources win: SDK defaults, then
// Config, then OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME, as the
// OpenTelemetry specification asks.
func newResource(ctx context.Context, cfg Config, logger *slog.Logger) (*resource.Resource, error) {
	attrs := []attribute.KeyValue{}
	if cfg.ServiceName != "" {
		attrs = append(attrs, semconv.ServiceName(cfg.ServiceName))
	}
	if cfg.ServiceVersion != "" {
		attrs = append(attrs, semconv.ServiceVersion(cfg.ServiceVersion))
	}
	res, err := resource.New(ctx,
		// service.instance.id (random per process) and a default service.name.
		resource.WithService(),
		resource.WithAttributes(attrs...),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithProcessPID(),
		resource.WithFromEnv(),
	)
	if errors.Is(err, resource.ErrPartialResource) {
		// A malformed OTEL_RESOURCE_ATTRIBUTES should not stop the process;
		// what could be parsed is kept.
		logger.WarnContext(ctx, "partial OpenTelemetry resource", "err", err)
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: build resource: %w", err)
	}
	return res, nil
}

// otlpTracesEnabled reports whether traces should be exported over OTLP
// and, for logging, the endpoint configured.
func otlpTracesEnabled() (string, bool) {
	switch strings.ToLower(strings.TrimSpace(os.Getenv(envTracesExporter))) {
	case "none":
		return "", false
	case "otlp":
		// Explicitly asked for: export even to the default endpoint.
		return firstEnv(envOTLPTracesEndpoint, envOTLPEndpoint, "default"), true
	}
	if ep := firstEnv(envOTLPTracesEndpoint, envOTLPEndpoint, ""); ep != "" {
		return ep, true
	}
	return "", false
}

func otlpProtocol() string {
	return strings.ToLower(firstEnv(envOTLPTracesProtocol, envOTLPProtocol, ""))
}

// firstEnv returns the value of the first non-empty variable of a and b,
// or def.
func firstEnv(a, b, def string) string {
	if v := strings.TrimSpace(os.Getenv(a)); v != "" {
		return v
	}
	if v := strings.TrimSpace(os.Getenv(b)); v != "" {
		return v
	}
	return def
}

// MeterProvider returns the provider whose instruments appear on
// MetricsHandler.
func (t *Telemetry) MeterProvider() metric.MeterProvider { return t.meterProvider }

// TracerProvider returns the provider for this process's spans.
func (t *Telemetry) TracerProvider() trace.TracerProvider { return t.tracerProvider }

// Propagator returns the W3C trace-context and baggage propagator.
func (t *Telemetry) Propagator() propagation.TextMapPropagator { return t.propagator }

// MetricsHandler returns the handler to mount at /metrics. It serves the
// Prometheus text format (or what the scraper negotiates).
func (t *Telemetry) MetricsHandler() http.Handler { return t.metricsHandler }

// SetGlobal registers the providers and propagator as the OpenTelemetry
// globals, for libraries that only use them, and routes OpenTelemetry's
// internal errors to the logger. Only a process's main should call it.
func (t *Telemetry) SetGlobal() {
	otel.SetMeterProvider(t.meterProvider)
	otel.SetTracerProvider(t.tracerProvider)
	otel.SetTextMapPropagator(t.propagator)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		t.logger.Warn("opentelemetry error", "err", err)
	}))
}

// Shutdown flushes pending spans and stops the providers. Call it last at
// process exit, after the services that produce telemetry have stopped;
// ctx bounds the flush. Later calls return the first call's result.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	t.shutdownOnce.Do(func() {
		var errs []error
		if err := t.tracerProvider.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("telemetry: shut down tracer provider: %w", err))
		}
		if err := t.meterProvider.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("telemetry: shut down meter provider: %w", err))
		}
		t.shutdownErr = errors.Join(errs...)
	})
	return t.shutdownErr
}

// promLogger adapts slog to promhttp's error logger.
type promLogger struct{ l *slog.Logger }

func (p promLogger) Println(v ...any) {
	p.l.Error("serving metrics", "err", strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
}
