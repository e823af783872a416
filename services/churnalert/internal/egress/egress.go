// Package egress guards the connections Lodestar opens to endpoints a
// tenant configures (Slack and generic webhooks): a tenant must not reach
// the operator's internal network, the machine itself or a cloud metadata
// service through them.
//
// The real guard is at dial time: the dialer's Control function checks the
// address each connection is about to use, after DNS resolution, so a host
// name that resolves (or re-resolves, DNS rebinding) to a private address is
// refused, and so is any numeric host form (0x7f000001, 2130706433) the
// resolver turns into one. Validation of a URL at channel creation only
// gives an early, clear error for literal addresses.
//
// Refused: loopback, RFC 1918 and unique-local, link-local (169.254/16, the
// metadata address, fe80::/10), unspecified, multicast and broadcast,
// CGNAT (100.64/10), "this network" 0/8, reserved 240/4, the IETF, benchmark
// and documentation ranges, and IPv6 forms embedding an IPv4 address
// (IPv4-mapped, NAT64 64:ff9b::/96, 6to4 2002::/16), which are judged by
// that address. An allow-list of CIDRs and host names opens the way to
// on-premises receivers.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// blocked lists the ranges a tenant's endpoint may not use beyond what
// netip.Addr's predicates cover, with why.
var blocked = []struct {
	prefix netip.Prefix
	why    string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "\"this network\" address"},
	{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT address"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol address"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation address"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking address"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation address"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation address"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved address"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation address"},
	{netip.MustParsePrefix("100::/64"), "discard-only address"},
}

var (
	nat64  = netip.MustParsePrefix("64:ff9b::/96")
	sixTo4 = netip.MustParsePrefix("2002::/16")
)

// metadataHosts are names of cloud metadata services; they resolve to
// link-local addresses the dialer refuses anyway, but naming them at
// validation gives a clear error.
var metadataHosts = map[string]bool{
	"metadata":                 true,
	"metadata.google.internal": true,
	"metadata.azure.internal":  true,
	"instance-data":            true,
}

// Policy decides which addresses may be reached. The zero value (and nil)
// allows public addresses only. A Policy is immutable and safe for
// concurrent use.
type Policy struct {
	prefixes []netip.Prefix
	hosts    map[string]bool
}

// NewPolicy returns the policy allowing, beyond public addresses, every
// entry of allow: a CIDR (10.1.0.0/16), a single address, or a host name
// (alerts.corp.example), which is then reached at whatever it resolves to.
func NewPolicy(allow []string) (*Policy, error) {
	p := &Policy{hosts: map[string]bool{}}
	var errs []error
	for _, a := range allow {
		a = strings.TrimSpace(a)
		if pr, err := netip.ParsePrefix(a); err == nil {
			p.prefixes = append(p.prefixes, pr.Masked())
			continue
		}
		if ip, err := netip.ParseAddr(a); err == nil {
			p.prefixes = append(p.prefixes, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
			continue
		}
		if !validHostName(a) {
			errs = append(errs, fmt.Errorf("allow-list entry %q: want a CIDR, an IP address or a host name", a))
			continue
		}
		p.hosts[strings.ToLower(a)] = true
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// ErrBlocked is wrapped by every refusal.
var ErrBlocked = errors.New("destination not allowed")

// Why returns why an address is not public, or "" when it is.
func Why(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is6() && (nat64.Contains(ip) || sixTo4.Contains(ip)) {
		b := ip.As16()
		var v4 [4]byte
		if nat64.Contains(ip) {
			copy(v4[:], b[12:])
		} else {
			copy(v4[:], b[2:6])
		}
		if why := Why(netip.AddrFrom4(v4)); why != "" {
			return why + " (embedded in " + ip.String() + ")"
		}
		return ""
	}
	switch {
	case !ip.IsValid():
		return "invalid address"
	case ip.IsLoopback():
		return "loopback address"
	case ip.IsPrivate():
		return "private address"
	case ip.IsLinkLocalUnicast():
		return "link-local address (cloud metadata lives here)"
	case ip.IsUnspecified():
		return "unspecified address"
	case ip.IsMulticast(), ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "multicast or broadcast address"
	}
	for _, b := range blocked {
		if b.prefix.Contains(ip) {
			return b.why
		}
	}
	return ""
}

// allowedAddr reports whether the allow-list names ip.
func (p *Policy) allowedAddr(ip netip.Addr) bool {
	if p == nil {
		return false
	}
	ip = ip.Unmap()
	for _, pr := range p.prefixes {
		if pr.Contains(ip) {
			return true
		}
	}
	return false
}

// allowedHost reports whether the allow-list names host.
func (p *Policy) allowedHost(host string) bool {
	return p != nil && p.hosts[strings.ToLower(strings.TrimSuffix(host, "."))]
}

// CheckAddr returns an error wrapping ErrBlocked when ip may not be reached.
func (p *Policy) CheckAddr(ip netip.Addr) error {
	if why := Why(ip); why != "" && !p.allowedAddr(ip) {
		return fmt.Errorf("%w: %s is a %s (an operator can allow it with -churn-alert.endpoint-allow-list)", ErrBlocked, ip.Unmap(), why)
	}
	return nil
}

// CheckHost checks a URL's host (without port) before any connection: a
// literal address must be allowed, and names that can only mean this
// machine or a metadata service, or numeric forms some resolvers read as
// addresses, are refused unless allow-listed. Names resolving to private
// addresses pass here and are refused at dial time.
func (p *Policy) CheckHost(host string) error {
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if ip, err := netip.ParseAddr(host); err == nil {
		return p.CheckAddr(ip)
	}
	if p.allowedHost(host) {
		return nil
	}
	lower := strings.ToLower(host)
	switch {
	case lower == "localhost" || strings.HasSuffix(lower, ".localhost"):
		return fmt.Errorf("%w: %s names this machine", ErrBlocked, host)
	case metadataHosts[lower]:
		return fmt.Errorf("%w: %s is a cloud metadata service", ErrBlocked, host)
	case numericHost(lower):
		return fmt.Errorf("%w: %s is a numeric address form; write the address in dotted or bracketed form", ErrBlocked, host)
	}
	return nil
}

// numericHost reports whether a host's last label is a number (decimal,
// octal or 0x hex): resolvers such as glibc's read 0x7f000001, 2130706433
// or 127.1 as addresses, and no top-level domain is numeric.
func numericHost(host string) bool {
	last := host[strings.LastIndexByte(host, '.')+1:]
	if last == "" {
		return false
	}
	if h, ok := strings.CutPrefix(last, "0x"); ok {
		last = h
		return strings.Trim(last, "0123456789abcdef") == ""
	}
	return strings.Trim(last, "0123456789") == ""
}

func validHostName(h string) bool {
	if h == "" || len(h) > 253 || numericHost(strings.ToLower(h)) {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || strings.Trim(strings.ToLower(label), "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			return false
		}
	}
	return true
}

// DialContext returns a dial function for an http.Transport that refuses,
// after resolution, every address the policy does not allow. A host name
// on the allow-list may connect to any address.
func (p *Policy) DialContext(timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		d := &net.Dialer{Timeout: timeout}
		if !p.allowedHost(host) {
			d.Control = func(_, address string, _ syscall.RawConn) error {
				ap, err := netip.ParseAddrPort(address)
				if err != nil {
					return fmt.Errorf("%w: unparsable address %q", ErrBlocked, address)
				}
				return p.CheckAddr(ap.Addr())
			}
		}
		return d.DialContext(ctx, network, addr)
	}
}

// Transport returns an HTTP transport whose connections obey the policy.
// It uses no proxy: through a proxy the dialer would only see the proxy's
// address, not the endpoint's.
func (p *Policy) Transport(dialTimeout time.Duration) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DialContext = p.DialContext(dialTimeout)
	return t
}
