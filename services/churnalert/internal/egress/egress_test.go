package egress_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lodestar-cs/lodestar/services/churnalert/internal/egress"
)

func TestCheckAddr(t *testing.T) {
	for addr, blocked := range map[string]bool{
		"127.0.0.1":            true,
		"127.8.9.10":           true,
		"::1":                  true,
		"10.1.2.3":             true,
		"172.16.0.1":           true,
		"192.168.1.1":          true,
		"169.254.169.254":      true, // AWS, GCP, Azure metadata
		"fd00:ec2::254":        true, // AWS metadata over IPv6
		"100.100.100.200":      true, // Alibaba metadata, in CGNAT space
		"100.64.0.1":           true,
		"0.0.0.0":              true,
		"0.1.2.3":              true,
		"::":                   true,
		"224.0.0.1":            true,
		"255.255.255.255":      true,
		"ff02::1":              true,
		"fe80::1":              true,
		"240.0.0.1":            true,
		"::ffff:127.0.0.1":     true,
		"::ffff:10.0.0.1":      true,
		"64:ff9b::a9fe:a9fe":   true, // NAT64 of 169.254.169.254
		"2002:7f00:1::1":       true, // 6to4 of 127.0.0.1
		"8.8.8.8":              false,
		"52.1.2.3":             false,
		"2606:4700::1111":      false,
		"::ffff:8.8.8.8":       false,
		"64:ff9b::808:808":     false,
		"2002:808:808::1":      false,
		"100.128.0.1":          false, // just past CGNAT
		"172.32.0.1":           false, // just past 172.16/12
		"2001:4860:4860::8888": false,
	} {
		err := (*egress.Policy)(nil).CheckAddr(netip.MustParseAddr(addr))
		if got := err != nil; got != blocked {
			t.Errorf("%s: blocked %v, want %v (%v)", addr, got, blocked, err)
		}
		if err != nil && !errors.Is(err, egress.ErrBlocked) {
			t.Errorf("%s: %v does not wrap ErrBlocked", addr, err)
		}
	}
}

func TestAllowList(t *testing.T) {
	p, err := egress.NewPolicy([]string{"10.20.0.0/16", "192.168.1.7", "alerts.corp.example"})
	if err != nil {
		t.Fatal(err)
	}
	for addr, allowed := range map[string]bool{
		"10.20.3.4":          true,
		"::ffff:10.20.3.4":   true,
		"10.21.0.1":          false,
		"192.168.1.7":        true,
		"192.168.1.8":        false,
		"127.0.0.1":          false,
		"8.8.8.8":            true,
		"::ffff:192.168.1.7": true,
	} {
		if got := p.CheckAddr(netip.MustParseAddr(addr)) == nil; got != allowed {
			t.Errorf("%s: allowed %v, want %v", addr, got, allowed)
		}
	}
	if err := p.CheckHost("alerts.corp.example"); err != nil {
		t.Errorf("allow-listed host: %v", err)
	}
	for _, bad := range []string{"10.0.0.0/33", "not a host!", "0x7f000001", ""} {
		if _, err := egress.NewPolicy([]string{bad}); err == nil {
			t.Errorf("allow-list entry %q accepted", bad)
		}
	}
}

func TestCheckHost(t *testing.T) {
	for host, blocked := range map[string]bool{
		"127.0.0.1":                true,
		"[::1]":                    true,
		"::ffff:127.0.0.1":         true,
		"169.254.169.254":          true,
		"0x7f000001":               true,
		"2130706433":               true,
		"0177.0.0.1":               true,
		"127.1":                    true,
		"localhost":                true,
		"LOCALHOST.":               true,
		"api.localhost":            true,
		"metadata.google.internal": true,
		"metadata":                 true,
		"hooks.slack.com":          false,
		"cafe.be":                  false,
		"8.8.8.8":                  false,
		"deadbeef":                 false,
	} {
		if got := (*egress.Policy)(nil).CheckHost(host) != nil; got != blocked {
			t.Errorf("%s: blocked %v, want %v", host, got, blocked)
		}
	}
}

// TestDialRefusesAfterResolution: the check is on the address a connection
// is about to use, so a name resolving to loopback is refused, while the
// same server is reached once the allow-list names it.
func TestDialRefusesAfterResolution(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	get := func(p *egress.Policy, host string) error {
		c := &http.Client{Transport: p.Transport(5 * time.Second)}
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/", nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	for _, host := range []string{"localhost", "127.0.0.1", "::ffff:127.0.0.1"} {
		if err := get(nil, host); !errors.Is(err, egress.ErrBlocked) {
			t.Errorf("%s: %v, want ErrBlocked", host, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the server was reached %d times", n)
	}
	byAddr, _ := egress.NewPolicy([]string{"127.0.0.0/8"})
	byName, _ := egress.NewPolicy([]string{"localhost"})
	for _, c := range []struct {
		p    *egress.Policy
		host string
	}{{byAddr, "127.0.0.1"}, {byAddr, "localhost"}, {byName, "localhost"}} {
		if err := get(c.p, c.host); err != nil {
			t.Errorf("allow-listed %s: %v", c.host, err)
		}
	}
	if n := hits.Load(); n != 3 {
		t.Fatalf("allow-listed requests reached the server %d times, want 3", n)
	}
	if err := get(byName, "127.0.0.1"); !errors.Is(err, egress.ErrBlocked) {
		t.Errorf("a host name on the allow-list must not open its address to other names: %v", err)
	}
}
