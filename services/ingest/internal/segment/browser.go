package segment

import (
	"net/http"
)

// shortPaths are analytics.js's (and @segment/analytics-next's) names of
// the single-call endpoints; /v1/b is its batch.
var shortPaths = map[string]string{
	"t": "track",
	"i": "identify",
	"g": "group",
	"p": "page",
	"s": "screen",
	"a": "alias",
}

// preflightMaxAge is how long a browser may cache a preflight answer, in
// seconds (Chrome caps it at two hours).
const preflightMaxAge = "7200"

// cors answers CORS preflights and marks answers readable by the page that
// sent the request. A preflight carries no credential, so it passes when
// some tenant allows the origin; the request itself is then checked against
// its tenant's allowed origins (checkOrigin). Requests without an Origin
// (servers, SDKs) are untouched.
func (a *API) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		allowed := a.tenants.SomeTenantAllowsOrigin(origin)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			if !allowed {
				writeJSON(w, http.StatusForbidden, response{Code: "origin_not_allowed", Message: "no tenant allows origin " + origin})
				return
			}
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Methods", http.MethodPost)
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Content-Encoding")
			h.Set("Access-Control-Max-Age", preflightMaxAge)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if allowed {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Expose-Headers", "Retry-After")
		}
		next.ServeHTTP(w, r)
	})
}

// checkOrigin refuses a browser request from an origin the tenant does not
// allow. Only browsers send Origin; a tenant's list keeps other sites'
// pages from using its public write key, not a client that omits it.
func (a *API) checkOrigin(r *http.Request, tenant string) *apiError {
	origin := r.Header.Get("Origin")
	if origin == "" || a.tenants.OriginAllowed(tenant, origin) {
		return nil
	}
	return &apiError{status: http.StatusForbidden, code: "origin_not_allowed", message: "the tenant does not allow pages of origin " + origin + " to send events (allowed_origins)"}
}
