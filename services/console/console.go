// Package console is the CSM console: web pages for the portfolio, an
// account, the alert inbox, renewals and forecast, and the scorecard,
// served on the HTTP port at /. It calls the services through their gRPC
// APIs, never around them: a session carries the API key it signed in with,
// and the services take the tenant from that key as from any client.
package console

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"google.golang.org/grpc"

	"github.com/lodestar-cs/lodestar/pkg/auth"
	"github.com/lodestar-cs/lodestar/services/console/internal/web"
)

// Target is the console's name as a -target and flag prefix.
const Target = "console"

// Config configures the console.
type Config struct {
	// APIAddr is the gRPC address of the services; empty uses this
	// process's own gRPC server, in process.
	APIAddr string
	// PublicURL is where browsers reach the console, for links in alerts;
	// empty is the address the process serves HTTP on.
	PublicURL string
	// SessionTTL is how long a sign-in lasts.
	SessionTTL time.Duration
	// MaxSessions bounds the in-memory session store.
	MaxSessions int
	// SecureCookies marks the session cookie Secure although this hop has
	// no TLS (TLS ended at a proxy in front).
	SecureCookies bool
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{SessionTTL: 12 * time.Hour, MaxSessions: 10000}
}

// RegisterFlags registers the -<prefix>.* flags with c's values as defaults.
func (c *Config) RegisterFlags(prefix string, fs *flag.FlagSet) {
	fs.StringVar(&c.APIAddr, prefix+".api-addr", c.APIAddr, "gRPC address of the services the console shows; empty uses this process's own (the all-in-one).")
	fs.StringVar(&c.PublicURL, prefix+".public-url", c.PublicURL, "URL browsers reach the console at (https://lodestar.example.com), for the links in alerts; empty is the address this process serves HTTP on.")
	fs.DurationVar(&c.SessionTTL, prefix+".session-ttl", c.SessionTTL, "How long a console sign-in lasts.")
	fs.IntVar(&c.MaxSessions, prefix+".max-sessions", c.MaxSessions, "Most console sessions held in memory; the oldest ends first.")
	fs.BoolVar(&c.SecureCookies, prefix+".secure-cookies", c.SecureCookies, "Mark the session cookie Secure although this process serves plain HTTP (TLS ends at a proxy in front).")
}

// Validate reports every setting that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.SessionTTL < time.Minute {
		errs = append(errs, fmt.Errorf("-console.session-ttl %s: want at least 1m", c.SessionTTL))
	}
	if c.MaxSessions < 1 {
		errs = append(errs, fmt.Errorf("-console.max-sessions %d: want at least 1", c.MaxSessions))
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("-console.public-url %q: want an absolute http(s) URL", c.PublicURL))
		}
	}
	return errors.Join(errs...)
}

// AccountURL is the link template of an account page for the alerts,
// {account} replaced by the account id, given the console's base URL.
func AccountURL(base string) string {
	return base + "/accounts/{account}"
}

// Deps are what the console needs from the process.
type Deps struct {
	// Conn reaches the services' gRPC APIs.
	Conn    grpc.ClientConnInterface
	Tenants *auth.Registry
	Logger  *slog.Logger
	// Stopping closes when the process begins to stop: live streams end.
	Stopping <-chan struct{}
}

// Console is the console service.
type Console struct {
	web *web.Server
}

// New builds the console.
func New(cfg Config, deps Deps) (*Console, error) {
	w, err := web.New(web.Options{
		Conn:            deps.Conn,
		TenantForAPIKey: deps.Tenants.TenantForAPIKey,
		Location: func(tenant string) *time.Location {
			t, _ := deps.Tenants.Tenant(tenant)
			return t.Location()
		},
		Logger:        deps.Logger,
		SessionTTL:    cfg.SessionTTL,
		MaxSessions:   cfg.MaxSessions,
		SecureCookies: cfg.SecureCookies,
		Stopping:      deps.Stopping,
	})
	if err != nil {
		return nil, err
	}
	return &Console{web: w}, nil
}

// Handler serves the console's pages; mount it at /.
func (c *Console) Handler() http.Handler { return c.web }

// Register registers nothing: the console serves no gRPC service.
func (c *Console) Register(grpc.ServiceRegistrar) {}

// Run drops ended sessions until ctx is done.
func (c *Console) Run(ctx context.Context) error {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			c.web.SweepSessions()
		}
	}
}

// Ready reports true: the console has nothing to wait for; a page whose
// service is not ready says so.
func (c *Console) Ready() bool { return true }
