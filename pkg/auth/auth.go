// Package auth maps credentials to tenants. Tenants and their keys come from a
// YAML file; keys are held only as SHA-256 hashes and compared in constant
// time. The tenant of a request always comes from its credential.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
	_ "time/tzdata" // tenants' time zones on machines without a zone database

	"gopkg.in/yaml.v3"
)

// HashPrefix marks a key given in the tenants file as its SHA-256 hash.
const HashPrefix = "sha256:"

// DemoTenant is the tenant a local run gets when no tenants file is given.
const DemoTenant = "demo"

var tenantIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidateTenantID reports whether id is usable as a NATS subject token and a
// Redis hash tag: 1-63 characters of a-z, 0-9, '_' and '-', starting with a
// letter or digit.
func ValidateTenantID(id string) error {
	if !tenantIDPattern.MatchString(id) {
		return fmt.Errorf("tenant id %q: want 1-63 characters of a-z, 0-9, _ and -, starting with a letter or digit", id)
	}
	return nil
}

// RateLimit bounds a tenant's event intake. Zero values mean no limit.
type RateLimit struct {
	EventsPerSecond float64 `yaml:"events_per_second"`
	Burst           int     `yaml:"burst"`
}

// Tenant is one tenant as configured.
type Tenant struct {
	ID        string    `yaml:"id"`
	WriteKeys []string  `yaml:"write_keys"`
	APIKeys   []string  `yaml:"api_keys"`
	RateLimit RateLimit `yaml:"rate_limit"`
	// AllowedOrigins are the web origins ("https://app.example.com") whose
	// pages may send events with the tenant's write keys (browser
	// tracking, CORS). Empty allows every origin: write keys are public in
	// every page that uses them, so an origin check only keeps other sites'
	// pages from sending, never a non-browser client. "*" allows every
	// origin explicitly.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// TimeZone is the IANA zone ("Europe/Paris") the console shows the
	// tenant's dates in; empty is UTC.
	TimeZone string `yaml:"time_zone"`
	loc      *time.Location
}

// Location is the tenant's time zone, UTC unless TimeZone names one.
func (t Tenant) Location() *time.Location {
	if t.loc == nil {
		return time.UTC
	}
	return t.loc
}

type keyEntry struct {
	hash   [sha256.Size]byte
	tenant string
}

// Registry resolves keys to tenants. It is immutable and safe for concurrent use.
type Registry struct {
	tenants   map[string]Tenant
	writeKeys []keyEntry
	apiKeys   []keyEntry
	// origins holds every origin some tenant allows; anyOrigin is whether
	// one of them allows all.
	origins   map[string]bool
	anyOrigin bool
}

type file struct {
	Tenants []Tenant `yaml:"tenants"`
}

// Load reads a tenants file.
func Load(path string) (*Registry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read tenants file: %w", err)
	}
	var f file
	if err := yaml.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("parse tenants file %s: %w", path, err)
	}
	r, err := NewRegistry(f.Tenants)
	if err != nil {
		return nil, fmt.Errorf("tenants file %s: %w", path, err)
	}
	return r, nil
}

// NewRegistry builds a registry, checking every tenant; keys may be plain or
// "sha256:<hex>".
func NewRegistry(tenants []Tenant) (*Registry, error) {
	r := &Registry{tenants: make(map[string]Tenant, len(tenants)), origins: map[string]bool{}}
	seen := map[[sha256.Size]byte]string{}
	var errs []error
	add := func(list *[]keyEntry, tenant, kind string, i int, key string) {
		h, err := hashKey(key)
		if err != nil {
			errs = append(errs, fmt.Errorf("tenant %q %s[%d]: %w", tenant, kind, i, err))
			return
		}
		if other, dup := seen[h]; dup {
			errs = append(errs, fmt.Errorf("tenant %q %s[%d]: key already used by tenant %q", tenant, kind, i, other))
			return
		}
		seen[h] = tenant
		*list = append(*list, keyEntry{hash: h, tenant: tenant})
	}
	for i, t := range tenants {
		if err := ValidateTenantID(t.ID); err != nil {
			errs = append(errs, fmt.Errorf("tenants[%d]: %w", i, err))
			continue
		}
		if _, dup := r.tenants[t.ID]; dup {
			errs = append(errs, fmt.Errorf("tenants[%d]: duplicate tenant %q", i, t.ID))
			continue
		}
		if len(t.WriteKeys)+len(t.APIKeys) == 0 {
			errs = append(errs, fmt.Errorf("tenant %q: no write_keys or api_keys", t.ID))
		}
		if t.RateLimit.EventsPerSecond < 0 || t.RateLimit.Burst < 0 {
			errs = append(errs, fmt.Errorf("tenant %q: negative rate_limit", t.ID))
		}
		loc, err := time.LoadLocation(t.TimeZone)
		if err != nil {
			errs = append(errs, fmt.Errorf("tenant %q time_zone: %w", t.ID, err))
		}
		t.loc = loc
		for j, o := range t.AllowedOrigins {
			if err := validOrigin(o); err != nil {
				errs = append(errs, fmt.Errorf("tenant %q allowed_origins[%d]: %w", t.ID, j, err))
			}
			r.origins[o] = true
		}
		r.anyOrigin = r.anyOrigin || len(t.AllowedOrigins) == 0 || slices.Contains(t.AllowedOrigins, "*")
		for j, k := range t.WriteKeys {
			add(&r.writeKeys, t.ID, "write_keys", j, k)
		}
		for j, k := range t.APIKeys {
			add(&r.apiKeys, t.ID, "api_keys", j, k)
		}
		t.WriteKeys, t.APIKeys = nil, nil // keep no plain keys around
		r.tenants[t.ID] = t
	}
	if len(r.tenants) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("no tenants"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

func hashKey(key string) ([sha256.Size]byte, error) {
	var h [sha256.Size]byte
	if hexed, ok := strings.CutPrefix(key, HashPrefix); ok {
		b, err := hex.DecodeString(hexed)
		if err != nil || len(b) != sha256.Size {
			return h, errors.New("want sha256: followed by 64 hex digits")
		}
		copy(h[:], b)
		return h, nil
	}
	if len(key) < 16 {
		return h, errors.New("key shorter than 16 characters")
	}
	return sha256.Sum256([]byte(key)), nil
}

// HashKey returns the "sha256:<hex>" form of a key, for the tenants file.
func HashKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return HashPrefix + hex.EncodeToString(h[:])
}

func lookup(list []keyEntry, key string) (string, bool) {
	if key == "" {
		return "", false
	}
	h := sha256.Sum256([]byte(key))
	// Compare against every entry, in constant time each, so timing reveals
	// neither which key matched nor how much of it.
	tenant, found := "", 0
	for _, e := range list {
		eq := subtle.ConstantTimeCompare(h[:], e.hash[:])
		if eq == 1 {
			tenant = e.tenant
		}
		found |= eq
	}
	return tenant, found == 1
}

// TenantForWriteKey resolves a Segment write key.
func (r *Registry) TenantForWriteKey(key string) (string, bool) { return lookup(r.writeKeys, key) }

// TenantForAPIKey resolves a gRPC API key.
func (r *Registry) TenantForAPIKey(key string) (string, bool) { return lookup(r.apiKeys, key) }

// Tenant returns a tenant's configuration (without its keys).
func (r *Registry) Tenant(id string) (Tenant, bool) {
	t, ok := r.tenants[id]
	return t, ok
}

// TenantIDs lists the configured tenants.
func (r *Registry) TenantIDs() []string {
	ids := make([]string, 0, len(r.tenants))
	for id := range r.tenants {
		ids = append(ids, id)
	}
	return ids
}

// DemoKeys are the keys of the demo tenant of a local run.
type DemoKeys struct {
	WriteKey string
	APIKey   string
}

// Demo returns a registry with the one demo tenant and fresh random keys.
// When fixed is non-empty, the keys derive from it instead, so a demo can be
// restarted with the same keys.
func Demo(fixed string) (*Registry, DemoKeys, error) {
	keys := DemoKeys{WriteKey: "wk_demo_" + fixed, APIKey: "ak_demo_" + fixed}
	if fixed == "" {
		keys = DemoKeys{WriteKey: "wk_demo_" + randomHex(16), APIKey: "ak_demo_" + randomHex(16)}
	}
	r, err := NewRegistry([]Tenant{{ID: DemoTenant, WriteKeys: []string{keys.WriteKey}, APIKeys: []string{keys.APIKey}}})
	return r, keys, err
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms.
	return hex.EncodeToString(b)
}

type tenantKey struct{}

// WithTenant returns a context carrying the authenticated tenant.
func WithTenant(ctx context.Context, tenant string) context.Context {
	return context.WithValue(ctx, tenantKey{}, tenant)
}

// TenantFrom returns the authenticated tenant of a context.
func TenantFrom(ctx context.Context) (string, bool) {
	t, ok := ctx.Value(tenantKey{}).(string)
	return t, ok && t != ""
}

// validOrigin accepts "*", "null" or scheme://host[:port], as browsers send
// in the Origin header.
func validOrigin(o string) error {
	if o == "*" || o == "null" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil || o != strings.ToLower(o) {
		return fmt.Errorf("origin %q: want scheme://host[:port] in lower case, \"null\" or \"*\"", o)
	}
	return nil
}

// OriginAllowed reports whether pages of origin may send events with the
// tenant's write keys.
func (r *Registry) OriginAllowed(tenant, origin string) bool {
	t, ok := r.tenants[tenant]
	return ok && (len(t.AllowedOrigins) == 0 || slices.Contains(t.AllowedOrigins, "*") || slices.Contains(t.AllowedOrigins, origin))
}

// SomeTenantAllowsOrigin reports whether any tenant allows origin: the
// answer to a CORS preflight, which carries no credential.
func (r *Registry) SomeTenantAllowsOrigin(origin string) bool {
	return r.anyOrigin || r.origins[origin]
}
