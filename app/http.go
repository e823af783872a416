package app

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"time"
)

// HTTPConfig bounds the HTTP servers: the public one (the Segment API and
// /healthz, where anyone holding a browser's public write key can connect)
// and the admin one (/metrics and /healthz), so that slow or idle clients
// cannot hold connections and memory.
type HTTPConfig struct {
	// AdminListenAddr serves /metrics, which lists tenants and their
	// volumes; keep it off the public network. Empty serves no metrics.
	AdminListenAddr string
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included: a body
	// trickled in a byte at a time is cut off.
	ReadTimeout time.Duration
	// WriteTimeout bounds a request from the end of its headers to the end
	// of the answer; above ReadTimeout and the ingest publish timeout.
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections without a request.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers.
	MaxHeaderBytes int
}

// DefaultHTTPConfig returns the defaults: a 500 KB Segment batch over a slow
// mobile link (about 20 KB/s) still fits in ReadTimeout.
func DefaultHTTPConfig() HTTPConfig {
	return HTTPConfig{
		AdminListenAddr:   "127.0.0.1:9091",
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      45 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}

// RegisterFlags registers the -http.* server flags.
func (c *HTTPConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.AdminListenAddr, "http.admin-listen-addr", c.AdminListenAddr, "Address of the admin HTTP server: /metrics (which names tenants and their volumes) and /healthz. Keep it private; empty serves no metrics.")
	fs.DurationVar(&c.ReadHeaderTimeout, "http.read-header-timeout", c.ReadHeaderTimeout, "Time limit for reading a request's headers.")
	fs.DurationVar(&c.ReadTimeout, "http.read-timeout", c.ReadTimeout, "Time limit for reading a whole request, body included (slow clients are cut off).")
	fs.DurationVar(&c.WriteTimeout, "http.write-timeout", c.WriteTimeout, "Time limit from a request's headers to the end of its answer; keep it above -http.read-timeout and -ingest.publish-timeout.")
	fs.DurationVar(&c.IdleTimeout, "http.idle-timeout", c.IdleTimeout, "How long an idle keep-alive connection stays open.")
	fs.IntVar(&c.MaxHeaderBytes, "http.max-header-bytes", c.MaxHeaderBytes, "Largest request headers accepted.")
}

// Validate reports every setting that cannot work.
func (c HTTPConfig) Validate() error {
	var errs []error
	for name, d := range map[string]time.Duration{
		"read-header-timeout": c.ReadHeaderTimeout, "read-timeout": c.ReadTimeout,
		"write-timeout": c.WriteTimeout, "idle-timeout": c.IdleTimeout,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("-http.%s must be positive", name))
		}
	}
	if c.WriteTimeout < c.ReadTimeout {
		errs = append(errs, errors.New("-http.write-timeout must be at least -http.read-timeout: it starts first"))
	}
	if c.MaxHeaderBytes < 4<<10 {
		errs = append(errs, fmt.Errorf("-http.max-header-bytes %d: want at least 4096", c.MaxHeaderBytes))
	}
	return errors.Join(errs...)
}

// server returns an HTTP server for h with the configured limits.
func (c HTTPConfig) server(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: c.ReadHeaderTimeout,
		ReadTimeout:       c.ReadTimeout,
		WriteTimeout:      c.WriteTimeout,
		IdleTimeout:       c.IdleTimeout,
		MaxHeaderBytes:    c.MaxHeaderBytes,
	}
}
