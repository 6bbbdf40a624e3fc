package source

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bale-build/bale/planner/spec"
)

// TestPublicOnlyIndirect: an allowed host cannot lead a public-only
// resolver inward. A registry that redirects to an internal address (in
// any spelling: loopback, IPv6 loopback, IPv4-mapped, decimal or octal
// IPv4), one whose Bearer token realm is internal, and a chart repository
// whose index.yaml points its chart at an internal address are all
// refused before a connection reaches the internal listener.
func TestPublicOnlyIndirect(t *testing.T) {
	t.Parallel()
	inner, hits := countingListener(t)
	_, port, _ := net.SplitHostPort(inner)

	front := func(t *testing.T, h http.HandlerFunc) string {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	redirect := func(to string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, to+r.URL.Path, http.StatusTemporaryRedirect)
		}
	}
	for _, tc := range []struct {
		name string
		h    http.HandlerFunc
	}{
		{"redirect to loopback", redirect("http://" + inner)},
		{"redirect to localhost over https", redirect("https://localhost:" + port)},
		{"redirect to IPv6 loopback", redirect("https://[::1]:" + port)},
		{"redirect to IPv4-mapped loopback", redirect("https://[::ffff:127.0.0.1]:" + port)},
		{"redirect to decimal IPv4", redirect("https://2130706433:" + port)},
		{"redirect to octal IPv4", redirect("https://0177.0.0.1:" + port)},
		{"redirect to the metadata address", redirect("https://169.254.169.254")},
		{"token realm on loopback", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="http://`+inner+`/token",service="registry"`)
			w.WriteHeader(http.StatusUnauthorized)
		}},
		{"token realm on an IPv4-mapped address", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="https://[::ffff:127.0.0.1]:`+port+`/token",service="registry"`)
			w.WriteHeader(http.StatusUnauthorized)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := front(t, tc.h)
			r := newResolver(t, Options{PublicOnly: true, AllowHosts: []string{host}, Retries: -1})
			_, err := r.Image(bg, "/", spec.Image{Name: "app", Ref: host + "/team/app:1"})
			if err == nil {
				t.Fatal("resolved through an allowed host to an internal one")
			}
			if !strings.Contains(err.Error(), "image app") {
				t.Errorf("error does not name the input: %v", err)
			}
			if n := hits.Load(); n != 0 {
				t.Fatalf("%d connections reached the internal listener: %v", n, err)
			}
		})
	}

	t.Run("chart index pointing inward", func(t *testing.T) {
		_, tgz := demoChart(t, "c")
		index := "apiVersion: v1\nentries:\n  c:\n  - apiVersion: v2\n    name: c\n    version: 1.0.0\n    digest: " +
			strings.TrimPrefix(digestOf(tgz), "sha256:") + "\n    urls:\n    - http://" + inner + "/c-1.0.0.tgz\n"
		host := front(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/charts/index.yaml" {
				_, _ = w.Write([]byte(index))
				return
			}
			http.NotFound(w, r)
		})
		r := newResolver(t, Options{PublicOnly: true, AllowHosts: []string{host}, Retries: -1})
		_, err := r.Chart(bg, "/", spec.Chart{Name: "c", Repository: "http://" + host + "/charts", Version: "1.0.0"})
		if err == nil || !strings.Contains(err.Error(), "not a public address") {
			t.Errorf("chart from an inward URL: %v", err)
		}
		if n := hits.Load(); n != 0 {
			t.Fatalf("%d connections reached the internal listener", n)
		}
	})
}
