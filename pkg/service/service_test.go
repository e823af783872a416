package service_test

import (
	"context"
	"testing"

	"github.com/lodestar-cs/lodestar/pkg/service"
)

func TestWithDefaults(t *testing.T) {
	d := service.Deps{}.WithDefaults()
	if d.Logger == nil || d.MeterProvider == nil || d.TracerProvider == nil {
		t.Fatalf("WithDefaults left a nil: %+v", d)
	}
	if d.Propagator != nil {
		t.Error("WithDefaults set a propagator: messages would carry headers they did not before")
	}
	// Usable as they are.
	d.Logger.Info("discarded")
	c, err := d.MeterProvider.Meter("test").Int64Counter("n")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(context.Background(), 1)
	_, span := d.TracerProvider.Tracer("test").Start(context.Background(), "span")
	span.End()

	given := service.Deps{Logger: d.Logger}.WithDefaults()
	if given.Logger != d.Logger {
		t.Error("WithDefaults replaced a given logger")
	}
}
