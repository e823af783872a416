// Package service holds what every Lodestar service is given by the runner
// besides its own configuration and backends: where its logs, metrics and
// traces go.
package service

import (
	"log/slog"

	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Deps are a service's telemetry. Every field is optional: see WithDefaults.
type Deps struct {
	Logger         *slog.Logger
	MeterProvider  metric.MeterProvider
	TracerProvider trace.TracerProvider
	// Propagator carries trace context across NATS messages; none is carried
	// when nil.
	Propagator propagation.TextMapPropagator
}

// WithDefaults returns d with a discarding logger and no-op meter and tracer
// providers where d has none, so a service never checks them for nil.
func (d Deps) WithDefaults() Deps {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.MeterProvider == nil {
		d.MeterProvider = metricnoop.NewMeterProvider()
	}
	if d.TracerProvider == nil {
		d.TracerProvider = tracenoop.NewTracerProvider()
	}
	return d
}
