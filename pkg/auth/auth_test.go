package auth

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func TestLoad(t *testing.T) {
	r, err := Load("testdata/tenants.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, key, tenant string
		write             bool
	}{
		{"write key", "wk_live_acme_0123456789", "acme", true},
		{"hashed api key", "ak_live_acme_0123456789", "acme", false},
		{"other tenant", "ak_live_globex_0123456789", "globex", false},
		{"api key is no write key", "ak_live_globex_0123456789", "", true},
		{"write key is no api key", "wk_live_acme_0123456789", "", false},
		{"unknown", "wk_live_nobody_0123456789", "", true},
		{"empty", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lookup := r.TenantForAPIKey
			if tt.write {
				lookup = r.TenantForWriteKey
			}
			got, ok := lookup(tt.key)
			if got != tt.tenant || ok != (tt.tenant != "") {
				t.Fatalf("got (%q, %v), want %q", got, ok, tt.tenant)
			}
		})
	}
	acme, _ := r.Tenant("acme")
	if acme.RateLimit.EventsPerSecond != 1000 || acme.RateLimit.Burst != 2000 {
		t.Fatalf("rate limit = %+v", acme.RateLimit)
	}
	if len(acme.WriteKeys) != 0 || len(acme.APIKeys) != 0 {
		t.Fatal("registry keeps plain keys")
	}
}

// TestAllowedOrigins: a tenant without allowed_origins takes every origin,
// one with a list only those; a preflight (no credential) passes when any
// tenant allows the origin.
func TestAllowedOrigins(t *testing.T) {
	r, err := Load("testdata/tenants.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		tenant, origin string
		want           bool
	}{
		{"acme", "https://anything.example", true},
		{"globex", "https://app.globex.example", true},
		{"globex", "http://localhost:3000", true},
		{"globex", "https://evil.example", false},
		{"globex", "https://app.globex.example.evil.example", false},
		{"globex", "null", false},
		{"nobody", "https://app.globex.example", false},
	} {
		if got := r.OriginAllowed(tc.tenant, tc.origin); got != tc.want {
			t.Errorf("%s from %s: %v, want %v", tc.tenant, tc.origin, got, tc.want)
		}
	}
	only, err := NewRegistry([]Tenant{{ID: "t", WriteKeys: []string{"wk_0123456789abcdef"}, AllowedOrigins: []string{"https://a.example"}}})
	if err != nil {
		t.Fatal(err)
	}
	if !only.SomeTenantAllowsOrigin("https://a.example") || only.SomeTenantAllowsOrigin("https://b.example") {
		t.Error("preflight answer wrong")
	}
	for _, bad := range []string{"https://A.example", "https://a.example/", "a.example", "ftp://a.example", "https://u@a.example"} {
		if _, err := NewRegistry([]Tenant{{ID: "t", WriteKeys: []string{"wk_0123456789abcdef"}, AllowedOrigins: []string{bad}}}); err == nil {
			t.Errorf("origin %q accepted", bad)
		}
	}
}

func TestNewRegistryErrors(t *testing.T) {
	_, err := NewRegistry([]Tenant{
		{ID: "Bad.Tenant", WriteKeys: []string{"wk_0123456789abcdef"}},
		{ID: "a", WriteKeys: []string{"short"}},
		{ID: "b", APIKeys: []string{"sha256:zz"}},
		{ID: "c"},
		{ID: "d", WriteKeys: []string{"wk_0123456789abcdef"}},
		{ID: "e", WriteKeys: []string{"wk_0123456789abcdef"}},
		{ID: "e", WriteKeys: []string{"wk_other_0123456789"}},
	})
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{"Bad.Tenant", "shorter than 16", "64 hex digits", `"c": no write_keys`, `already used by tenant "d"`, `duplicate tenant "e"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestDemo(t *testing.T) {
	r, keys, err := Demo("")
	if err != nil {
		t.Fatal(err)
	}
	if tn, ok := r.TenantForWriteKey(keys.WriteKey); !ok || tn != DemoTenant {
		t.Fatalf("demo write key resolves to %q", tn)
	}
	_, again, _ := Demo("")
	if again.APIKey == keys.APIKey {
		t.Fatal("demo keys are not random")
	}
	_, fixed, _ := Demo("0123456789abcdef")
	if fixed.APIKey != "ak_demo_0123456789abcdef" {
		t.Fatalf("fixed demo key = %q", fixed.APIKey)
	}
}

func TestUnaryServerInterceptor(t *testing.T) {
	r, keys, err := Demo("")
	if err != nil {
		t.Fatal(err)
	}
	ic := r.UnaryServerInterceptor(func(m string) bool { return strings.HasPrefix(m, "/grpc.health") })
	handler := func(ctx context.Context, _ any) (any, error) {
		tn, _ := TenantFrom(ctx)
		return tn, nil
	}
	tests := []struct {
		name, method, auth, tenant string
		code                       codes.Code
	}{
		{"valid", "/x.Svc/M", "Bearer " + keys.APIKey, DemoTenant, codes.OK},
		{"missing", "/x.Svc/M", "", "", codes.Unauthenticated},
		{"not bearer", "/x.Svc/M", "Basic " + keys.APIKey, "", codes.Unauthenticated},
		{"write key", "/x.Svc/M", "Bearer " + keys.WriteKey, "", codes.Unauthenticated},
		{"exempt", "/grpc.health.v1.Health/Check", "", "", codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.auth != "" {
				ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", tt.auth))
			}
			got, err := ic(ctx, nil, &grpc.UnaryServerInfo{FullMethod: tt.method}, handler)
			if status.Code(err) != tt.code {
				t.Fatalf("code = %v, want %v", status.Code(err), tt.code)
			}
			if err == nil && got != tt.tenant {
				t.Fatalf("tenant = %q, want %q", got, tt.tenant)
			}
		})
	}
}

// TestBearerKeyExact: a key with white space around it is refused, as any
// other string that is not the key.
func TestBearerKeyExact(t *testing.T) {
	r, keys, err := Demo("")
	if err != nil {
		t.Fatal(err)
	}
	ic := r.UnaryServerInterceptor(nil)
	handler := func(context.Context, any) (any, error) { return nil, nil }
	for _, auth := range []string{
		"Bearer " + keys.APIKey + " ",
		"Bearer  " + keys.APIKey,
		"Bearer " + keys.APIKey + "\t",
		"Bearer \t" + keys.APIKey,
		"Bearer " + keys.APIKey + "\n",
	} {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", auth))
		if _, err := ic(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/x.Svc/M"}, handler); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%q: %v, want Unauthenticated", auth, err)
		}
	}
}

func TestValidateTenantID(t *testing.T) {
	for id, ok := range map[string]bool{"acme": true, "a-1_b": true, "": false, "Acme": false, "a.b": false, "a*": false, "-a": false, strings.Repeat("a", 64): false} {
		if err := ValidateTenantID(id); (err == nil) != ok {
			t.Errorf("ValidateTenantID(%q) = %v", id, err)
		}
	}
}
