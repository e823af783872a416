package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

const (
	sessionCookie = "lodestar_session"
	csrfField     = "csrf"
	csrfHeader    = "X-CSRF-Token"
)

// session is one signed-in browser. It holds the API key it signed in
// with: every call to the services carries it, so the tenant always comes
// from the credential, as for any other client.
type session struct {
	id      string
	tenant  string
	apiKey  string
	csm     string // the CSM id the user says they are, for "my accounts"
	csrf    string
	expires time.Time
}

// sessions is the in-memory session store. Sessions do not survive a
// restart of the console: signing in again takes one paste of the key.
type sessions struct {
	mu  sync.Mutex
	m   map[string]*session
	ttl time.Duration
	max int
	now func() time.Time
}

func newSessions(ttl time.Duration, max int) *sessions {
	return &sessions{m: map[string]*session{}, ttl: ttl, max: max, now: time.Now}
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// create starts a session; when the store is full the session closest to
// its end makes room.
func (s *sessions) create(tenant, apiKey, csm string) *session {
	sess := &session{id: randomToken(), tenant: tenant, apiKey: apiKey, csm: csm, csrf: randomToken()}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	sess.expires = now.Add(s.ttl)
	if len(s.m) >= s.max {
		s.sweepLocked(now)
	}
	if len(s.m) >= s.max {
		var oldest *session
		for _, o := range s.m {
			if oldest == nil || o.expires.Before(oldest.expires) {
				oldest = o
			}
		}
		delete(s.m, oldest.id)
	}
	s.m[sess.id] = sess
	return sess
}

func (s *sessions) get(id string) (*session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.m[id]
	if !ok {
		return nil, false
	}
	if !s.now().Before(sess.expires) {
		delete(s.m, id)
		return nil, false
	}
	return sess, true
}

func (s *sessions) delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

func (s *sessions) sweep() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(s.now())
}

func (s *sessions) sweepLocked(now time.Time) {
	for id, sess := range s.m {
		if !now.Before(sess.expires) {
			delete(s.m, id)
		}
	}
}

type sessionKey struct{}

func sessionFrom(ctx context.Context) *session {
	sess, _ := ctx.Value(sessionKey{}).(*session)
	return sess
}

// setCookie writes the session cookie: HttpOnly (no script reads it),
// SameSite=Strict (no other site's page sends it), Secure under TLS.
func (srv *Server) setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name:     sessionCookie,
		Value:    value,
		Path:     "/",
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   r.TLS != nil || srv.secureCookies,
		SameSite: http.SameSiteStrictMode,
	})
}

// requireSession serves h to signed-in browsers; others are sent to the
// sign-in page (or answered 401 for partial and streaming requests). Every
// state change must carry the session's CSRF token.
func (srv *Server) requireSession(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var sess *session
		if c, err := r.Cookie(sessionCookie); err == nil {
			sess, _ = srv.sessions.get(c.Value)
		}
		if sess == nil {
			if r.Method == http.MethodGet && r.Header.Get("HX-Request") == "" && !strings.HasSuffix(r.URL.Path, "/stream") {
				http.Redirect(w, r, "/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			srv.fail(w, r, http.StatusUnauthorized, "not signed in, or the session ended: sign in again")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !sameOrigin(r) {
				srv.fail(w, r, http.StatusForbidden, "cross-site request refused")
				return
			}
			tok := r.Header.Get(csrfHeader)
			if tok == "" {
				tok = r.PostFormValue(csrfField)
			}
			if subtle.ConstantTimeCompare([]byte(tok), []byte(sess.csrf)) != 1 {
				srv.fail(w, r, http.StatusForbidden, "missing or wrong CSRF token: reload the page and try again")
				return
			}
		}
		h(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, sess)))
	}
}

// sameOrigin refuses requests a browser marks as sent from another site;
// requests without those headers (non-browser clients) still need the
// session cookie and the CSRF token.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	return true
}

// safeNext keeps a post-sign-in redirect on this site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}
