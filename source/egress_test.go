package source

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner/spec"
)

// TestPublicAddr is the verdict table of the public-only dial check:
// addresses in, public or not out, IPv4-mapped and IPv6 forms included.
func TestPublicAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"93.184.215.14":          true,
		"8.8.8.8":                true,
		"2606:4700:4700::1111":   true,
		"::ffff:93.184.215.14":   true,
		"127.0.0.1":              false,
		"127.255.0.9":            false,
		"::1":                    false,
		"::ffff:127.0.0.1":       false,
		"10.0.0.1":               false,
		"::ffff:10.0.0.1":        false,
		"172.16.0.1":             false,
		"172.31.255.255":         false,
		"192.168.1.1":            false,
		"::ffff:192.168.1.1":     false,
		"100.64.0.1":             false,
		"100.127.255.254":        false,
		"169.254.169.254":        false,
		"::ffff:169.254.169.254": false,
		"fe80::1":                false,
		"fc00::1":                false,
		"fd00:ec2::254":          false,
		"0.0.0.0":                false,
		"0.1.2.3":                false,
		"::":                     false,
		"224.0.0.1":              false,
		"ff02::1":                false,
		"255.255.255.255":        false,
		"240.0.0.1":              false,
		"::10.0.0.1":             false, // IPv4-compatible
		"64:ff9b::a00:1":         false, // NAT64 of 10.0.0.1
		"2002:a00:1::1":          false, // 6to4 of 10.0.0.1
		"fec0::1":                false,
		"172.32.0.1":             true,
		"100.128.0.1":            true,
		"2001:4860:4860::8888":   true,
		"::ffff:100.64.0.1":      false,
		"::ffff:0.0.0.0":         false,
		"fe80::1%eth0":           false,
	} {
		ip := netip.MustParseAddr(addr)
		if got := PublicAddr(ip); got != want {
			t.Errorf("PublicAddr(%s) = %v, want %v", addr, got, want)
		}
	}
}

// countingListener accepts on loopback and counts the connections made
// to it, so a test can tell "refused before connecting" from "refused
// after".
func countingListener(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	return ln.Addr().String(), &n
}

// TestPublicDialer: internal addresses, and names resolving to them, are
// refused before a connection is made; an allowed host:port connects.
func TestPublicDialer(t *testing.T) {
	addr, accepted := countingListener(t)
	_, port, _ := net.SplitHostPort(addr)
	// Every connection the dialer makes goes through connecting: a
	// refusal must come before it, not after a connection attempt.
	var mu sync.Mutex
	var dialed []string
	hook := func(d *publicDialer) *publicDialer {
		d.connecting = func(address string) {
			mu.Lock()
			defer mu.Unlock()
			dialed = append(dialed, address)
		}
		return d
	}
	took := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := dialed
		dialed = nil
		return out
	}
	d := hook(newPublicDialer([]string{"allowed.invalid", "127.0.0.2:1"}))
	for _, tc := range []struct {
		addr, want string
	}{
		{addr, "refusing to connect to " + addr + ": not a public address; an operator may allow it with --inline-allow-host"},
		{"localhost:" + port, "refusing to connect to localhost:" + port + ": not a public address"},
		{"[::ffff:127.0.0.1]:" + port, "not a public address"},
		{"169.254.169.254:80", "refusing to connect to 169.254.169.254:80: not a public address"},
		{"10.0.0.1:5000", "refusing to connect to 10.0.0.1:5000: not a public address"},
		{"100.64.0.1:443", "not a public address"},
		{"[fd00::1]:443", "not a public address"},
	} {
		c, err := d.DialContext(bg, "tcp", tc.addr)
		if err == nil {
			c.Close()
			t.Errorf("dial %s: connected", tc.addr)
			continue
		}
		var ee *egressError
		if !errors.As(err, &ee) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("dial %s: %v, want an egress refusal with %q", tc.addr, err, tc.want)
		}
		// What a name resolved to stays the server's.
		if strings.HasPrefix(tc.addr, "localhost") && strings.Contains(err.Error(), "127.0.0.1") {
			t.Errorf("dial %s: %v names the address localhost resolved to", tc.addr, err)
		}
		// 10.0.0.1 and 169.254.169.254 do not answer here: an attempt
		// would have gone through connecting before timing out.
		if got := took(); len(got) != 0 {
			t.Errorf("dial %s: connections attempted to %v", tc.addr, got)
		}
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("%d connections reached the loopback listener", n)
	}
	// A name that cannot be resolved: the refusal does not name the
	// server's DNS resolver ("lookup NAME on 10.0.0.2:53").
	var asked []string
	var askedMu sync.Mutex
	d.d.Resolver = &net.Resolver{PreferGo: true, Dial: func(_ context.Context, _, address string) (net.Conn, error) {
		askedMu.Lock()
		asked = append(asked, address)
		askedMu.Unlock()
		return nil, errors.New("no answer")
	}}
	if c, err := d.DialContext(bg, "tcp", "registry.bale-test.example:443"); err == nil {
		c.Close()
		t.Fatal("dial of an unresolvable name connected")
	} else {
		askedMu.Lock()
		for _, a := range asked {
			if strings.Contains(err.Error(), a) {
				t.Errorf("dial of an unresolvable name: %v names the resolver %s", err, a)
			}
		}
		askedMu.Unlock()
		if len(asked) == 0 {
			t.Fatalf("dial of an unresolvable name: %v, without asking the resolver", err)
		}
	}
	d.d.Resolver = nil
	// On the allow list by host:port, the listener is reached.
	d = hook(newPublicDialer([]string{addr}))
	c, err := d.DialContext(bg, "tcp", addr)
	if err != nil {
		t.Fatalf("dial allowed %s: %v", addr, err)
	}
	c.Close()
	if got := took(); !slices.Equal(got, []string{addr}) {
		t.Errorf("dial allowed %s: connections attempted to %v", addr, got)
	}
	// By name and port, as a request names it.
	d = hook(newPublicDialer([]string{"LOCALHOST:" + port}))
	if c, err = d.DialContext(bg, "tcp", "localhost:"+port); err != nil {
		t.Fatalf("dial allowed localhost:%s: %v", port, err)
	}
	c.Close()
	if got := took(); len(got) == 0 {
		t.Errorf("dial allowed localhost:%s: no connection attempted", port)
	}
	// Another port of an allowed host:port is not allowed.
	d = hook(newPublicDialer([]string{"127.0.0.1:1"}))
	if c, err = d.DialContext(bg, "tcp", addr); err == nil {
		c.Close()
		t.Fatalf("dial %s allowed by 127.0.0.1:1", addr)
	}
	if got := took(); len(got) != 0 {
		t.Errorf("dial %s, not allowed: connections attempted to %v", addr, got)
	}
}

// TestPublicOnlyResolver: with PublicOnly, a registry, a chart repository
// and a URL file on loopback are refused without a request reaching them,
// naming the input; no proxy is used and loopback loses plain HTTP;
// AllowHosts lets the registry through again.
func TestPublicOnlyResolver(t *testing.T) {
	var hits atomic.Int64
	host := startRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			h.ServeHTTP(w, r)
		})
	})
	push(t, host+"/team/app:1", randomImage(t, "linux", "amd64", ""))
	hits.Store(0)
	_, port, _ := net.SplitHostPort(host)

	r := newResolver(t, Options{PublicOnly: true, Retries: -1})
	if tr := r.rt.(*guardTransport).next.(*retryTransport).next.(*limitTransport).next.(*http.Transport); tr.Proxy != nil {
		t.Fatal("public-only transport uses a proxy")
	}
	if r.allowHTTP(host) || r.allowHTTP("localhost:"+port) {
		t.Fatal("public-only resolver grants loopback plain HTTP")
	}
	for _, ref := range []string{host + "/team/app:1", "localhost:" + port + "/team/app:1"} {
		_, err := r.Image(bg, "/", spec.Image{Name: "app", Ref: ref})
		if err == nil || !strings.Contains(err.Error(), "not a public address") || !strings.Contains(err.Error(), "image app") {
			t.Errorf("image %s: %v, want a refusal naming image app", ref, err)
		}
	}
	_, err := r.Chart(bg, "/", spec.Chart{Name: "c", Repository: "https://" + host, Version: "1.0.0"})
	if err == nil || !strings.Contains(err.Error(), "not a public address") {
		t.Errorf("chart repository: %v", err)
	}
	// A URL file pinned by digest is fetched by the build.
	fin, err := r.File(bg, "/", plan.KindFile, "f", spec.File{URL: "https://" + host + "/f", Digest: digestOf(nil)})
	if err == nil {
		_, _, err = r.OpenFile(bg, fin)
	}
	if err == nil || !strings.Contains(err.Error(), "not a public address") {
		t.Errorf("url file: %v", err)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("%d requests reached the loopback registry", n)
	}

	allowed := newResolver(t, Options{PublicOnly: true, AllowHosts: []string{host}})
	in, err := allowed.Image(bg, "/", spec.Image{Name: "app", Ref: host + "/team/app:1"})
	if err != nil {
		t.Fatalf("allowed registry: %v", err)
	}
	// A build's blob fetch of the pinned input takes the same transport:
	// without the allow list it is refused too.
	hits.Store(0)
	if _, _, err := r.OpenRawBlob(bg, in, in.Image.Manifests[0].Layers[0].Digest); err == nil || !strings.Contains(err.Error(), "not a public address") {
		t.Errorf("blob fetch: %v", err)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("%d requests reached the loopback registry", n)
	}
}
