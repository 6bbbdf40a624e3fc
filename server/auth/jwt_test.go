package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/bale-build/bale/testsupport/fakeclock"
)

const (
	testIss = "https://idp.example"
	testAud = "bale"
)

// testKeys are real keys of every allowed kind, made once.
type testKeys struct {
	ec, ecOther *ecdsa.PrivateKey
	ed          ed25519.PrivateKey
	rsa         *rsa.PrivateKey
}

var keysOnce = sync.OnceValue(func() *testKeys {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecOther, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	r, _ := rsa.GenerateKey(rand.Reader, 2048)
	return &testKeys{ec: ec, ecOther: ecOther, ed: ed, rsa: r}
})

// jwksOf is the public JWK Set of keys, by kid.
func jwksOf(t testing.TB, keys map[string]crypto.PublicKey) []byte {
	t.Helper()
	var set jose.JSONWebKeySet
	for kid, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k, KeyID: kid, Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (k *testKeys) jwks(t testing.TB) []byte {
	return jwksOf(t, map[string]crypto.PublicKey{"ec": k.ec.Public(), "ed": k.ed.Public(), "rsa": k.rsa.Public()})
}

// sign makes a compact JWS of claims with key under alg and kid.
func sign(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	jk := jose.JSONWebKey{Key: key, KeyID: kid}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jk}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// claims are a valid token's claims, changed by edits.
func claims(edits ...func(map[string]any)) map[string]any {
	now := time.Now()
	c := map[string]any{
		"iss": testIss, "aud": []string{"other", testAud}, "sub": "ci",
		"exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix(), "nbf": now.Unix(),
		"tenant": "acme", "scope": "export:read export:write openid",
	}
	for _, e := range edits {
		e(c)
	}
	return c
}

func set(k string, v any) func(map[string]any) { return func(c map[string]any) { c[k] = v } }
func del(k string) func(map[string]any)        { return func(c map[string]any) { delete(c, k) } }

// unsigned is a token with alg none.
func unsigned(c map[string]any) string {
	h, _ := json.Marshal(map[string]any{"alg": "none", "typ": "JWT", "kid": "ec"})
	p, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p) + "."
}

// jwksServer serves a JWKS on loopback and counts its fetches.
type jwksServer struct {
	*httptest.Server
	body    atomic.Pointer[[]byte]
	delay   atomic.Int64
	fetches atomic.Int64
}

func newJWKSServer(t testing.TB, body []byte) *jwksServer {
	js := &jwksServer{}
	js.body.Store(&body)
	js.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		js.fetches.Add(1)
		switch d := time.Duration(js.delay.Load()); {
		case d < 0: // never answer: only the client's timeout ends it
			<-r.Context().Done()
			return
		case d > 0:
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Write(*js.body.Load())
	}))
	t.Cleanup(js.Close)
	return js
}

func newVerifier(t testing.TB, jwks string, edits ...func(*JWTConfig)) *JWT {
	t.Helper()
	cfg := JWTConfig{JWKS: jwks, Issuer: testIss, Audience: testAud}
	for _, e := range edits {
		e(&cfg)
	}
	v, err := NewJWT(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewJWT: %v", err)
	}
	return v
}

// TestJWT: every way a JWT can be good or bad, against a JWKS from a URL on
// loopback and from a file.
func TestJWT(t *testing.T) {
	k := keysOnce()
	pubDER, err := x509.MarshalPKIXPublicKey(k.rsa.Public())
	if err != nil {
		t.Fatal(err)
	}
	rsaJWK, _ := json.Marshal(jose.JSONWebKey{Key: k.rsa.Public(), KeyID: "rsa"})
	past := time.Now().Add(-time.Hour).Unix()
	future := time.Now().Add(time.Hour).Unix()
	cases := []struct {
		name, token string
		want        string // error substring; "" for a valid token
		scopes      []string
	}{
		{"ES256", sign(t, jose.ES256, k.ec, "ec", claims()), "", []string{ScopeRead, ScopeWrite}},
		{"EdDSA", sign(t, jose.EdDSA, k.ed, "ed", claims()), "", []string{ScopeRead, ScopeWrite}},
		{"RS256", sign(t, jose.RS256, k.rsa, "rsa", claims()), "", []string{ScopeRead, ScopeWrite}},
		{"audience as a string", sign(t, jose.ES256, k.ec, "ec", claims(set("aud", testAud))), "", []string{ScopeRead, ScopeWrite}},
		{"scp array", sign(t, jose.ES256, k.ec, "ec", claims(del("scope"), set("scp", []string{"export:read", "admin"}))), "", []string{ScopeRead}},
		{"unknown scopes only", sign(t, jose.ES256, k.ec, "ec", claims(set("scope", "admin export:delete"))), "", nil},
		{"no scope claim", sign(t, jose.ES256, k.ec, "ec", claims(del("scope"))), "", nil},
		{"expired", sign(t, jose.ES256, k.ec, "ec", claims(set("exp", past))), "token expired", nil},
		{"expired within the leeway", sign(t, jose.ES256, k.ec, "ec", claims(set("exp", time.Now().Add(-10*time.Second).Unix()))), "", []string{ScopeRead, ScopeWrite}},
		{"not yet valid", sign(t, jose.ES256, k.ec, "ec", claims(set("nbf", future))), "not valid yet", nil},
		{"issued in the future", sign(t, jose.ES256, k.ec, "ec", claims(set("iat", future))), "issued in the future", nil},
		{"no exp", sign(t, jose.ES256, k.ec, "ec", claims(del("exp"))), "no exp", nil},
		{"wrong issuer", sign(t, jose.ES256, k.ec, "ec", claims(set("iss", "https://evil.example"))), "wrong issuer", nil},
		{"issuer prefix", sign(t, jose.ES256, k.ec, "ec", claims(set("iss", testIss+"/"))), "wrong issuer", nil},
		{"wrong audience", sign(t, jose.ES256, k.ec, "ec", claims(set("aud", "bale-staging"))), "wrong audience", nil},
		{"no audience", sign(t, jose.ES256, k.ec, "ec", claims(del("aud"))), "wrong audience", nil},
		{"alg none", unsigned(claims()), "algorithm not allowed", nil},
		{"HS256 keyed with the RSA public key (DER)", sign(t, jose.HS256, pubDER, "rsa", claims()), "algorithm not allowed", nil},
		{"HS256 keyed with the RSA public JWK", sign(t, jose.HS256, rsaJWK, "rsa", claims()), "algorithm not allowed", nil},
		{"ES384", sign(t, jose.ES384, mustEC(t, elliptic.P384()), "ec", claims()), "algorithm not allowed", nil},
		{"ES256 under the RSA key's kid", sign(t, jose.ES256, k.ec, "rsa", claims()), "does not fit", nil},
		{"RS256 under the EC key's kid", sign(t, jose.RS256, k.rsa, "ec", claims()), "does not fit", nil},
		{"signed by another key with a known kid", sign(t, jose.ES256, k.ecOther, "ec", claims()), "bad signature", nil},
		{"unknown kid", sign(t, jose.ES256, k.ec, "nope", claims()), "unknown signing key", nil},
		{"no kid, several keys", sign(t, jose.ES256, k.ec, "", claims()), "no kid", nil},
		{"no tenant", sign(t, jose.ES256, k.ec, "ec", claims(del("tenant"))), "tenant claim", nil},
		{"tenant as a path", sign(t, jose.ES256, k.ec, "ec", claims(set("tenant", "../etc"))), "tenant claim", nil},
		{"tenant not a string", sign(t, jose.ES256, k.ec, "ec", claims(set("tenant", 7))), "tenant claim", nil},
		{"not a JWT", "bale_abc", "not a JWT", nil},
		{"garbage header", "e30.e30.AAAA", "algorithm not allowed", nil},
		{"too large", strings.Repeat("a", maxToken) + ".e30.", "too large", nil},
	}
	js := newJWKSServer(t, k.jwks(t))
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, k.jwks(t), 0o644); err != nil {
		t.Fatal(err)
	}
	tls := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(k.jwks(t)) }))
	defer tls.Close()
	for _, src := range []struct {
		name, jwks string
		client     *http.Client
	}{{"loopback", js.URL + "/jwks", nil}, {"https", tls.URL + "/jwks", tls.Client()}, {"file", file, nil}} {
		v := newVerifier(t, src.jwks, func(c *JWTConfig) { c.Client = src.client })
		for _, c := range cases {
			t.Run(src.name+"/"+c.name, func(t *testing.T) {
				p, err := v.Authenticate(context.Background(), c.token)
				if c.want == "" {
					if err != nil {
						t.Fatalf("refused: %v", err)
					}
					if p.Tenant != "acme" || !slices.Equal(p.Scopes, c.scopes) {
						t.Fatalf("principal %+v, want tenant acme, scopes %v", p, c.scopes)
					}
					return
				}
				var te *TokenError
				if !errors.As(err, &te) || !strings.Contains(te.Reason, c.want) {
					t.Fatalf("error %v, want a TokenError containing %q", err, c.want)
				}
				if strings.Contains(te.Reason, c.token) || (len(c.token) > 20 && strings.Contains(te.Reason, c.token[:20])) {
					t.Fatal("the error quotes the token")
				}
			})
		}
	}
}

func mustEC(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestJWTOneKey: a JWKS of one key verifies a token without a kid.
func TestJWTOneKey(t *testing.T) {
	k := keysOnce()
	file := filepath.Join(t.TempDir(), "jwks.json")
	os.WriteFile(file, jwksOf(t, map[string]crypto.PublicKey{"ed": k.ed.Public()}), 0o644)
	v := newVerifier(t, file, func(c *JWTConfig) { c.TenantClaim, c.ScopeClaims = "org", []string{"permissions"} })
	p, err := v.Authenticate(context.Background(), sign(t, jose.EdDSA, k.ed, "", claims(set("org", "team-1"), set("permissions", []string{"export:write"}))))
	if err != nil || p.Tenant != "team-1" || !slices.Equal(p.Scopes, []string{ScopeWrite}) {
		t.Fatalf("%+v %v", p, err)
	}
}

// TestJWKSRandomKids: tokens naming random key ids make at most one fetch
// of the JWKS per RefreshMin, however many arrive; a key rotated in is
// found by that fetch.
func TestJWKSRandomKids(t *testing.T) {
	k := keysOnce()
	js := newJWKSServer(t, k.jwks(t))
	clock := fakeclock.New(time.Now())
	const refresh = time.Minute
	v := newVerifier(t, js.URL, func(c *JWTConfig) { c.RefreshMin, c.Now = refresh, clock.Now })
	if n := js.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches at start, want 1", n)
	}
	attack := func() {
		var wg sync.WaitGroup
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var b [8]byte
				rand.Read(b[:])
				if _, err := v.Authenticate(context.Background(), sign(t, jose.ES256, k.ec, hex.EncodeToString(b[:]), claims())); err == nil {
					t.Error("a token with a random kid was accepted")
				}
			}()
		}
		wg.Wait()
	}
	attack() // within RefreshMin of the start: no fetch
	clock.Advance(refresh - time.Second)
	attack()
	if n := js.fetches.Load(); n != 1 {
		t.Fatalf("100 random kids within RefreshMin of the start made %d fetches, want 0", n-1)
	}
	clock.Advance(time.Second)
	attack()
	attack()
	if n := js.fetches.Load(); n != 2 {
		t.Fatalf("100 random kids after RefreshMin made %d fetches, want 1", n-1)
	}
	// Rotation: a new key appears in the JWKS; once RefreshMin has passed,
	// the first token naming it fetches the set again and is accepted.
	ec2 := mustEC(t, elliptic.P256())
	rotated := jwksOf(t, map[string]crypto.PublicKey{"ec2": ec2.Public()})
	js.body.Store(&rotated)
	clock.Advance(refresh)
	if _, err := v.Authenticate(context.Background(), sign(t, jose.ES256, ec2, "ec2", claims())); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	if _, err := v.Authenticate(context.Background(), sign(t, jose.ES256, k.ec, "ec", claims())); err == nil {
		t.Fatal("a key removed from the JWKS still verifies")
	}
}

// TestJWKSFailsClosed: a JWKS that cannot be had or trusted stops the
// server at start with the reason; at request time a slow endpoint costs
// one FetchTimeout and the token is refused.
func TestJWKSFailsClosed(t *testing.T) {
	k := keysOnce()
	ecPriv, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.ec, KeyID: "ec"}}})
	oct, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "hs"}}})
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	cases := []struct {
		name  string
		body  []byte
		delay time.Duration
		url   string // overrides the server's
		want  string
	}{
		{"oversize", []byte(`{"keys":[],"pad":"` + strings.Repeat("x", 2048) + `"}`), 0, "", "more than 1024 bytes"},
		{"never answers", k.jwks(t), -1, "", "deadline exceeded"},
		{"plain http to another host", nil, 0, "http://jwks.example/keys", "want an https:// URL"},
		{"not JSON", []byte("<html>"), 0, "", "not a JWK Set"},
		{"empty", []byte(`{"keys":[]}`), 0, "", "no keys"},
		{"private key", ecPriv, 0, "", "private key"},
		{"symmetric key", oct, 0, "", "symmetric key"},
		{"only unusable keys", jwksOf(t, map[string]crypto.PublicKey{"p384": mustEC(t, elliptic.P384()).Public(), "rsa1024": small.Public()}), 0, "", "no usable key"},
		{"not found", nil, 0, "/missing", "status 404"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			js := newJWKSServer(t, c.body)
			js.delay.Store(int64(c.delay))
			mux := http.NewServeMux()
			mux.Handle("/jwks", js.Config.Handler)
			js.Config.Handler = mux
			u := js.URL + "/jwks"
			if strings.HasPrefix(c.url, "/") {
				u = js.URL + c.url
			} else if c.url != "" {
				u = c.url
			}
			// An endpoint that never answers ends only by FetchTimeout:
			// without it NewJWT would not return.
			_, err := NewJWT(context.Background(), JWTConfig{JWKS: u, Issuer: testIss, Audience: testAud, MaxJWKS: 1024, FetchTimeout: 300 * time.Millisecond})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("NewJWT: %v, want an error containing %q", err, c.want)
			}
		})
	}
	t.Run("redirect to plain http", func(t *testing.T) {
		srv := httptest.NewServer(http.RedirectHandler("http://jwks.example/keys", http.StatusFound))
		defer srv.Close()
		_, err := NewJWT(context.Background(), JWTConfig{JWKS: srv.URL, Issuer: testIss, Audience: testAud})
		if err == nil || !strings.Contains(err.Error(), "want an https:// URL") {
			t.Fatalf("NewJWT through a redirect to http://: %v", err)
		}
	})
	t.Run("file", func(t *testing.T) {
		_, err := NewJWT(context.Background(), JWTConfig{JWKS: filepath.Join(t.TempDir(), "none.json"), Issuer: testIss, Audience: testAud})
		if err == nil || !strings.Contains(err.Error(), "none.json") {
			t.Fatalf("NewJWT of a missing file: %v", err)
		}
	})
	t.Run("old keys and a failing endpoint", func(t *testing.T) {
		js := newJWKSServer(t, k.jwks(t))
		clock := fakeclock.New(time.Now())
		v := newVerifier(t, js.URL, func(c *JWTConfig) { c.MaxAge, c.RefreshMin, c.Now = time.Minute, time.Hour, clock.Now })
		broken := []byte("{")
		js.body.Store(&broken)
		clock.Advance(2 * time.Minute) // past MaxAge, within RefreshMin
		for i := 0; i < 50; i++ {
			if _, err := v.Authenticate(context.Background(), sign(t, jose.ES256, k.ec, "ec", claims())); err != nil {
				t.Fatalf("known key while the JWKS endpoint is broken: %v", err)
			}
		}
		if n := js.fetches.Load(); n != 1 {
			t.Fatalf("50 requests with old keys made %d fetches within RefreshMin, want 0", n-1)
		}
	})
	t.Run("old keys are fetched again", func(t *testing.T) {
		js := newJWKSServer(t, k.jwks(t))
		clock := fakeclock.New(time.Now())
		v := newVerifier(t, js.URL, func(c *JWTConfig) { c.MaxAge, c.RefreshMin, c.Now = 2*time.Minute, time.Minute, clock.Now })
		only := jwksOf(t, map[string]crypto.PublicKey{"ed": k.ed.Public()})
		js.body.Store(&only)
		clock.Advance(2*time.Minute - time.Second)
		if _, err := v.Authenticate(context.Background(), sign(t, jose.ES256, k.ec, "ec", claims())); err != nil {
			t.Fatalf("a key within MaxAge of its fetch: %v", err)
		}
		if n := js.fetches.Load(); n != 1 {
			t.Fatalf("keys within MaxAge were fetched again (%d fetches)", n)
		}
		clock.Advance(2 * time.Second)
		if _, err := v.Authenticate(context.Background(), sign(t, jose.ES256, k.ec, "ec", claims())); err == nil {
			t.Fatal("a key revoked from the JWKS still verifies after MaxAge")
		}
	})
	t.Run("slow at request time", func(t *testing.T) {
		js := newJWKSServer(t, k.jwks(t))
		clock := fakeclock.New(time.Now())
		v := newVerifier(t, js.URL, func(c *JWTConfig) { c.RefreshMin, c.FetchTimeout, c.Now = time.Minute, 300*time.Millisecond, clock.Now })
		js.delay.Store(-1) // never answers: only FetchTimeout ends the fetch
		clock.Advance(time.Minute)
		_, err := v.Authenticate(context.Background(), sign(t, jose.ES256, k.ec, "new", claims()))
		var te *TokenError
		if !errors.As(err, &te) || !strings.Contains(te.Reason, "unknown signing key") {
			t.Fatalf("unknown kid with a JWKS endpoint that never answers: %v", err)
		}
		if n := js.fetches.Load(); n != 2 {
			t.Fatalf("%d fetches, want the start's and one for the unknown kid", n)
		}
		// The keys already fetched still verify.
		if _, err := v.Authenticate(context.Background(), sign(t, jose.ES256, k.ec, "ec", claims())); err != nil {
			t.Fatalf("known key after a failed refresh: %v", err)
		}
	})
}

// TestLooksLikeJWT: what goes to the JWT verifier and what to the token
// file.
func TestLooksLikeJWT(t *testing.T) {
	for tok, want := range map[string]bool{
		"eyJhbGciOiJub25lIn0.e30.":  true,
		"eyJhbGciOiJub25lIn0.e30.x": true,
		"bale_abcDEF-_123":          false,
		"a.b":                       false,
		".e30.x":                    false,
		"a.b.c.d":                   false,
		"a+b.c.d":                   false,
	} {
		if got := LooksLikeJWT(tok); got != want {
			t.Errorf("LooksLikeJWT(%q) = %v", tok, got)
		}
	}
}

// BenchmarkJWTAuthenticate: verifying one token of each algorithm.
func BenchmarkJWTAuthenticate(b *testing.B) {
	k := keysOnce()
	file := filepath.Join(b.TempDir(), "jwks.json")
	os.WriteFile(file, k.jwks(b), 0o644)
	v := newVerifier(b, file)
	for _, c := range []struct {
		alg jose.SignatureAlgorithm
		key any
		kid string
	}{{jose.ES256, k.ec, "ec"}, {jose.EdDSA, k.ed, "ed"}, {jose.RS256, k.rsa, "rsa"}} {
		tok := sign(b, c.alg, c.key, c.kid, claims())
		b.Run(string(c.alg), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := v.Authenticate(context.Background(), tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
