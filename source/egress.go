package source

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
)

// nonPublic are the address ranges netip's predicates leave out that a
// public-only resolver must not dial either: they reach the server's own
// networks, not the internet.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),  // RFC 6598 carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),   // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),  // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved, and broadcast
	netip.MustParsePrefix("::/96"),          // IPv4-compatible IPv6
	netip.MustParsePrefix("64:ff9b::/96"),   // NAT64: reaches an IPv4 address
	netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64
	netip.MustParsePrefix("fec0::/10"),      // site-local (deprecated)
	netip.MustParsePrefix("2001::/32"),      // Teredo: tunnels to an IPv4 address
	netip.MustParsePrefix("2002::/16"),      // 6to4: tunnels to an IPv4 address
	netip.MustParsePrefix("100::/64"),       // discard-only
}

// PublicAddr reports whether ip is a public unicast address: not loopback,
// private (RFC 1918, fc00::/7), shared (RFC 6598), link-local, unspecified,
// multicast, reserved, nor an IPv4-mapped or tunnelled form of one. It is
// the verdict Options.PublicOnly applies to every address dialled.
func PublicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || !ip.IsGlobalUnicast() || ip.IsPrivate() || ip.IsLoopback() ||
		ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified() || ip.Zone() != "" {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// egressError is a connection refused because its address is not public.
// It names the host and port as the request named them, never the address
// a name resolved to: a client must not learn the server's internal
// addresses, or that a name of its choosing resolves to one.
type egressError struct {
	addr string // host:port as requested
}

func (e *egressError) Error() string {
	return fmt.Sprintf("refusing to connect to %s: not a public address; an operator may allow it with --inline-allow-host", e.addr)
}

// publicDialer dials only public addresses, unless the request's host or
// host:port is allowed. The check runs in the dialer's Control func, on
// the address actually connected to after name resolution, so a name
// resolving to an internal address (or changing to one between two
// lookups, DNS rebinding) is refused too.
type publicDialer struct {
	d     net.Dialer
	allow map[string]bool // lowercase host and host:port
	// connecting, if set, is called with every address a connection is
	// about to be made to, after the check passed: tests see every dial
	// that went out, and none that was refused.
	connecting func(address string)
}

func newPublicDialer(allow []string) *publicDialer {
	p := &publicDialer{allow: make(map[string]bool, len(allow))}
	for _, h := range allow {
		p.allow[strings.ToLower(h)] = true
	}
	return p
}

// allowed reports whether addr (host:port, as the transport dials it) is
// on the allow list by host:port or by host alone.
func (p *publicDialer) allowed(addr string) bool {
	addr = strings.ToLower(addr)
	if p.allow[addr] {
		return true
	}
	h, _, err := net.SplitHostPort(addr)
	return err == nil && (p.allow[h] || p.allow["["+h+"]"])
}

// DialContext dials addr, refusing a non-public address unless addr's
// host is allowed.
func (p *publicDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	allowed := p.allowed(addr)
	d := p.d
	d.Control = func(_, address string, _ syscall.RawConn) error {
		if !allowed {
			if err := checkPublic(address, addr); err != nil {
				return err
			}
		}
		if p.connecting != nil {
			p.connecting(address)
		}
		return nil
	}
	c, err := d.DialContext(ctx, network, addr)
	// The dial error names the address dialled ("dial tcp 10.0.0.5:443:
	// …"), and a lookup's the resolver ("lookup NAME on 10.0.0.2:53"):
	// neither is the client's to know.
	var ee *egressError
	if errors.As(err, &ee) {
		return nil, ee
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		dnsErr.Server = ""
	}
	return c, err
}

// checkPublic is the Control verdict on the address being dialled;
// requested is the host and port the request named, for the error.
func checkPublic(address, requested string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("refusing to connect to %s: not an IP address and port", requested)
	}
	if PublicAddr(ap.Addr()) {
		return nil
	}
	return &egressError{addr: requested}
}

// publicTransport returns base made public-only: every connection through
// the public dialer and none through a proxy, which would make the dial
// check see only the proxy's address.
func publicTransport(base http.RoundTripper, allow []string) (http.RoundTripper, error) {
	t, ok := base.(*http.Transport)
	if !ok {
		return nil, fmt.Errorf("resolve: PublicOnly needs an *http.Transport to dial through, got %T", base)
	}
	t = t.Clone()
	t.Proxy = nil
	t.DialTLSContext = nil
	t.DialContext = newPublicDialer(allow).DialContext
	return t, nil
}
