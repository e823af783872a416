// Package web is the console: server-rendered pages over the services'
// gRPC APIs, with htmx for partial updates and uPlot for the score chart,
// both embedded.
package web

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/lodestar-cs/lodestar/pkg/humanize"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	forecastv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/forecast/v1"
	opsv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/ops/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options configure the console.
type Options struct {
	// Conn reaches the services' gRPC APIs.
	Conn grpc.ClientConnInterface
	// TenantForAPIKey checks a key at sign-in.
	TenantForAPIKey func(key string) (tenant string, ok bool)
	// Location is the time zone a tenant's dates are shown in.
	Location func(tenant string) *time.Location
	Logger   *slog.Logger
	// SessionTTL is how long a sign-in lasts; MaxSessions bounds the store.
	SessionTTL  time.Duration
	MaxSessions int
	// SecureCookies marks the session cookie Secure even without TLS on
	// this hop (TLS ended at a proxy).
	SecureCookies bool
	// Stopping closes when the process stops: live streams end.
	Stopping <-chan struct{}
}

// Server serves the console.
type Server struct {
	scoring  scoringv1.ScoringServiceClient
	alerts   alertv1.AlertServiceClient
	forecast forecastv1.ForecastServiceClient
	accounts accountv1.AccountServiceClient
	ops      opsv1.OpsServiceClient

	tenantForAPIKey func(string) (string, bool)
	location        func(string) *time.Location
	logger          *slog.Logger
	sessions        *sessions
	secureCookies   bool
	stopping        <-chan struct{}

	pages map[string]*template.Template
	mux   *http.ServeMux
}

// New builds the console.
func New(o Options) (*Server, error) {
	srv := &Server{
		scoring:         scoringv1.NewScoringServiceClient(o.Conn),
		alerts:          alertv1.NewAlertServiceClient(o.Conn),
		forecast:        forecastv1.NewForecastServiceClient(o.Conn),
		accounts:        accountv1.NewAccountServiceClient(o.Conn),
		ops:             opsv1.NewOpsServiceClient(o.Conn),
		tenantForAPIKey: o.TenantForAPIKey,
		location:        o.Location,
		logger:          o.Logger,
		sessions:        newSessions(o.SessionTTL, o.MaxSessions),
		secureCookies:   o.SecureCookies,
		stopping:        o.Stopping,
		pages:           map[string]*template.Template{},
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if n == "templates/layout.html" {
			continue
		}
		t, err := template.New("layout.html").Funcs(srv.funcs()).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", n, err)
		}
		srv.pages[n[len("templates/"):]] = t
	}
	static, _ := fs.Sub(staticFS, "static")
	m := http.NewServeMux()
	m.Handle("GET /static/", cacheForever(http.StripPrefix("/static/", http.FileServerFS(static))))
	m.HandleFunc("GET /signin", srv.signInPage)
	m.HandleFunc("POST /signin", srv.signIn)
	m.HandleFunc("POST /signout", srv.requireSession(srv.signOut))
	m.HandleFunc("GET /{$}", srv.requireSession(srv.portfolio))
	m.HandleFunc("GET /accounts/{account}", srv.requireSession(srv.account))
	m.HandleFunc("GET /alerts", srv.requireSession(srv.alertsPage))
	m.HandleFunc("GET /alerts/stream", srv.requireSession(srv.alertStream))
	m.HandleFunc("POST /alerts/{alert}/{action}", srv.requireSession(srv.alertAction))
	m.HandleFunc("GET /renewals", srv.requireSession(srv.renewals))
	m.HandleFunc("GET /scorecard", srv.requireSession(srv.scorecardPage))
	m.HandleFunc("POST /scorecard", srv.requireSession(srv.scorecardPost))
	m.HandleFunc("GET /deployment", srv.requireSession(srv.deployment))
	srv.mux = m
	return srv, nil
}

// ServeHTTP serves the console's pages, with headers that keep other sites
// from framing them and scripts to this site.
func (srv *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	srv.mux.ServeHTTP(w, r)
}

// SweepSessions drops ended sessions.
func (srv *Server) SweepSessions() { srv.sessions.sweep() }

func cacheForever(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Vendored files carry their version in their name; ours change
		// with the binary, so they are revalidated.
		w.Header().Set("Cache-Control", "public, max-age=300")
		h.ServeHTTP(w, r)
	})
}

// rpc is the context of a call to the services on behalf of the session:
// it carries the session's API key, from which the services take the tenant.
func rpc(r *http.Request) context.Context {
	sess := sessionFrom(r.Context())
	return metadata.AppendToOutgoingContext(r.Context(), "authorization", "Bearer "+sess.apiKey)
}

// page is what every page template gets.
type page struct {
	Title  string
	Nav    string
	Tenant string
	CSM    string
	CSRF   string
	Loc    *time.Location
	Chart  bool // the page draws a chart: load uPlot
	Data   any
}

func (srv *Server) render(w http.ResponseWriter, r *http.Request, status int, name, title, nav string, data any) {
	p := page{Title: title, Nav: nav, Data: data, Loc: time.UTC, Chart: name == "account.html"}
	if sess := sessionFrom(r.Context()); sess != nil {
		p.Tenant, p.CSM, p.CSRF, p.Loc = sess.tenant, sess.csm, sess.csrf, srv.location(sess.tenant)
	}
	t, ok := srv.pages[name]
	if !ok {
		srv.logger.Error("console: no template", "name", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	// Partial (htmx) requests get the page's "main" block only.
	root := "layout.html"
	if r.Header.Get("HX-Request") != "" && r.Header.Get("HX-Target") != "" {
		root = "main"
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, root, p); err != nil {
		srv.logger.Error("console: render", "page", name, "err", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// fail answers an error: a page for browsers, the message alone for
// partial requests.
func (srv *Server) fail(w http.ResponseWriter, r *http.Request, code int, msg string) {
	if r.Header.Get("HX-Request") != "" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		fmt.Fprintln(w, msg)
		return
	}
	srv.render(w, r, code, "error.html", http.StatusText(code), "", msg)
}

// failRPC answers a failed call to the services with the status it maps to.
func (srv *Server) failRPC(w http.ResponseWriter, r *http.Request, what string, err error) {
	st, _ := status.FromError(err)
	code := http.StatusBadGateway
	switch st.Code() {
	case codes.NotFound:
		code = http.StatusNotFound
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		code = http.StatusBadRequest
	case codes.Unauthenticated:
		code = http.StatusUnauthorized
	case codes.PermissionDenied:
		code = http.StatusForbidden
	case codes.Unavailable, codes.DeadlineExceeded:
		code = http.StatusServiceUnavailable
	case codes.Canceled:
		if errors.Is(r.Context().Err(), context.Canceled) {
			return // the browser went away
		}
	}
	if code >= 500 {
		srv.logger.Warn("console: call failed", "what", what, "err", err)
	}
	srv.fail(w, r, code, what+": "+st.Message())
}

func (srv *Server) funcs() template.FuncMap {
	return template.FuncMap{
		"amount":      humanize.MoneyCompact,
		"money":       money,
		"percent":     humanize.Percent,
		"score":       humanize.Score,
		"signed":      humanize.ScoreDelta,
		"number":      number,
		"date":        dateIn,
		"datetime":    dateTimeIn,
		"lastday":     lastDayIn,
		"keytime":     keyEventTime,
		"band":        bandName,
		"tier":        tierName,
		"stage":       stageName,
		"severity":    severityName,
		"state":       stateName,
		"rulekind":    ruleKindName,
		"measurekind": measureKindName,
		"outcome":     func(t accountv1.OutcomeType) string { return enumName(t.String(), "OUTCOME_TYPE_") },
		"model":       func(k forecastv1.ModelKind) string { return enumName(k.String(), "MODEL_KIND_") },
		"acct":        func(id string) string { return "/accounts/" + url.PathEscape(id) },
		"epoch":       epoch,
	}
}
