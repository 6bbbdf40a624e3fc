package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/bale-build/bale/server/auth"
)

// jwtIssuer signs test JWTs with a P-256 key whose JWKS it serves on
// loopback.
type jwtIssuer struct {
	key *ecdsa.PrivateKey
	url string
}

func newJWTIssuer(t testing.TB) *jwtIssuer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.Public(), KeyID: "k1", Use: "sig"}}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(set) }))
	t.Cleanup(srv.Close)
	return &jwtIssuer{key: k, url: srv.URL + "/jwks.json"}
}

// token signs a JWT for tenant with scopes (space-separated), valid for
// ttl from now (negative: expired).
func (ji *jwtIssuer) token(t testing.TB, tenant, scope string, ttl time.Duration) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: ji.key, KeyID: "k1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := jwt.Signed(s).Claims(map[string]any{
		"iss": "https://idp.test", "aud": "bale", "exp": now.Add(ttl).Unix(), "iat": now.Add(-time.Minute).Unix(),
		"tenant": tenant, "scope": scope,
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestJWTAuth: JWTs from a JWKS on loopback alongside the token file: the
// scopes and tenant of the claims decide, as for file tokens.
func TestJWTAuth(t *testing.T) {
	t.Parallel()
	ji := newJWTIssuer(t)
	v, err := auth.NewJWT(context.Background(), auth.JWTConfig{JWKS: ji.url, Issuer: "https://idp.test", Audience: "bale"})
	if err != nil {
		t.Fatal(err)
	}
	h := startServer(t, "", func(c *Config) { c.JWT = v })
	rw := ji.token(t, "acme", "export:read export:write", 5*time.Minute)
	r := h.post(rw, `{"spec":"airgap"}`)
	if r.StatusCode != http.StatusAccepted {
		t.Fatalf("POST with a JWT: %d %s", r.StatusCode, r.body)
	}
	st := h.wait(h.export(r).ExportID) // polled with the token file's "rw"
	if st.Status != statusSucceeded {
		t.Fatalf("export: %s %s", st.Status, st.Reason)
	}
	h.tokens["jwt-read"] = ji.token(t, "acme", "export:read", 5*time.Minute)
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"k1"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"https://idp.test","aud":"bale","exp":9999999999,"tenant":"acme","scope":"export:read"}`)) + "."
	cases := []struct {
		name, method, path, token, body string
		code                            int
		problem, wwwAuth                string
	}{
		{"read scope downloads", "GET", st.DownloadURI, h.tokens["jwt-read"], "", 200, "", ""},
		{"read scope POSTs", "POST", exportsPath, h.tokens["jwt-read"], `{"spec":"airgap"}`, 403, "forbidden", `error="insufficient_scope"`},
		{"no known scope", "GET", exportsPath + "/" + st.ExportID, ji.token(t, "acme", "openid profile", 5*time.Minute), "", 403, "forbidden", `scope="export:read"`},
		{"another tenant's export", "GET", exportsPath + "/" + st.ExportID, ji.token(t, "other", "export:read", 5*time.Minute), "", 404, "not-found", ""},
		{"another tenant's download", "GET", st.DownloadURI, ji.token(t, "other", "export:read", 5*time.Minute), "", 404, "not-found", ""},
		{"expired", "GET", exportsPath + "/" + st.ExportID, ji.token(t, "acme", "export:read", -time.Hour), "", 401, "unauthorized", `error="invalid_token", error_description="token expired"`},
		{"alg none", "GET", exportsPath + "/" + st.ExportID, none, "", 401, "unauthorized", `error_description="algorithm not allowed`},
		{"invalid tenant", "GET", exportsPath + "/" + st.ExportID, ji.token(t, "../acme", "export:read", 5*time.Minute), "", 401, "unauthorized", `error_description="no valid tenant claim"`},
		{"token file still works", "GET", exportsPath + "/" + st.ExportID, h.tokens["read"], "", 200, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body []byte
			if c.body != "" {
				body = []byte(c.body)
			}
			r := h.do(c.method, c.path, c.token, body)
			if r.StatusCode != c.code {
				t.Fatalf("%d, want %d: %s", r.StatusCode, c.code, r.body)
			}
			if c.problem != "" {
				if p := problemType(t, r); p != c.problem {
					t.Errorf("problem %q, want %q", p, c.problem)
				}
				if strings.Contains(string(r.body), c.token) || strings.Contains(r.Header.Get("WWW-Authenticate"), c.token[:30]) {
					t.Error("the response quotes the token")
				}
			}
			if !strings.Contains(r.Header.Get("WWW-Authenticate"), c.wwwAuth) {
				t.Errorf("WWW-Authenticate %q, want it to contain %q", r.Header.Get("WWW-Authenticate"), c.wwwAuth)
			}
		})
	}
	logs := h.logs.String()
	for _, c := range cases {
		if strings.Contains(logs, c.token[:30]) {
			t.Fatalf("the log holds a token (%s)", c.name)
		}
	}
	if !strings.Contains(logs, `"tenant":"acme"`) {
		t.Error("the log does not name the JWT's tenant")
	}
}

// TestJWTOnly: a server with a JWKS and no token file starts, and refuses
// a token-file token.
func TestJWTOnly(t *testing.T) {
	t.Parallel()
	ji := newJWTIssuer(t)
	v, err := auth.NewJWT(context.Background(), auth.JWTConfig{JWKS: ji.url, Issuer: "https://idp.test", Audience: "bale"})
	if err != nil {
		t.Fatal(err)
	}
	h := startServer(t, "", func(c *Config) { c.JWT, c.Tokens = v, nil })
	if r := h.do(http.MethodGet, exportsPath+"/"+strings.Repeat("a", 32), "rw", nil); r.StatusCode != 401 {
		t.Fatalf("a token-file token on a JWT-only server: %d", r.StatusCode)
	}
	if r := h.do(http.MethodGet, exportsPath+"/"+strings.Repeat("a", 32), ji.token(t, "acme", "export:read", time.Minute), nil); r.StatusCode != 404 {
		t.Fatalf("a JWT on a JWT-only server: %d %s", r.StatusCode, r.body)
	}
}

// BenchmarkStatusJWT is BenchmarkStatus with a JWT (ES256) for a token:
// the cost of verifying a signature on every request.
func BenchmarkStatusJWT(b *testing.B) {
	ji := newJWTIssuer(b)
	v, err := auth.NewJWT(context.Background(), auth.JWTConfig{JWKS: ji.url, Issuer: "https://idp.test", Audience: "bale"})
	if err != nil {
		b.Fatal(err)
	}
	h := startServer(b, "", func(c *Config) { c.Rate, c.Burst, c.JWT = 1e9, 1e9, v })
	st := h.wait(h.export(h.post("rw", `{"spec":"airgap"}`)).ExportID)
	url := h.base + exportsPath + "/" + st.ExportID
	tok := "Bearer " + ji.token(b, "acme", "export:read", time.Hour)
	loadBench(b, 8, func(c *http.Client) error {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", tok)
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
		return nil
	})
}
