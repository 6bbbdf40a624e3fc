package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/bale-build/bale/internal/capread"
)

// JWTConfig configures JWT bearer tokens verified against a JWKS. The zero
// value of every field but JWKS, Issuer and Audience is a working default.
type JWTConfig struct {
	// JWKS is the path of a JWK Set file, read once by NewJWT, or its
	// https:// URL (http:// only to a loopback address), fetched by NewJWT
	// and again as keys rotate.
	JWKS string
	// Issuer and Audience must equal the token's iss and one of its aud.
	Issuer, Audience string
	// TenantClaim names the claim holding the tenant; "" means "tenant".
	TenantClaim string
	// ScopeClaims name the claims holding the scopes, the first present
	// wins: a space-separated string (RFC 8693, RFC 9068) or an array of
	// strings. Nil means "scope", then "scp".
	ScopeClaims []string
	// Leeway is the clock skew allowed on exp, nbf and iat; 0 means 30s.
	Leeway time.Duration
	// RefreshMin is the least time between two fetches of a JWKS URL for a
	// token naming an unknown key id, so tokens with random kids cannot
	// make the server hammer the endpoint; 0 means 1m.
	RefreshMin time.Duration
	// MaxAge is how old fetched keys may grow before a request fetches
	// them again (a failed fetch keeps the last good keys); 0 means 15m.
	MaxAge time.Duration
	// FetchTimeout bounds one fetch of a JWKS URL; 0 means 10s.
	FetchTimeout time.Duration
	// MaxJWKS caps a JWKS document; 0 means 1 MiB.
	MaxJWKS int64
	// Client fetches a JWKS URL; nil means a client that follows
	// redirects only to URLs JWKS itself could be.
	Client *http.Client
	// Logger receives JWKS fetch failures; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock that token times and the key cache's ages
	// (RefreshMin, MaxAge) are read from; nil means time.Now.
	Now func() time.Time
}

// algorithms are the signature algorithms a token may use: each is bound
// to one key type below, so a key can never verify another algorithm.
var algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA, jose.RS256}

// maxToken caps a JWT before it is parsed.
const maxToken = 16 << 10

// TokenError is why a bearer token was refused, in words that are safe to
// send back to the client: they never quote the token.
type TokenError struct{ Reason string }

func (e *TokenError) Error() string { return "invalid token: " + e.Reason }

func refuse(reason string) error { return &TokenError{Reason: reason} }

// JWT authenticates JWT bearer tokens against a JWKS.
type JWT struct {
	cfg   JWTConfig
	url   *url.URL // nil for a file
	log   *slog.Logger
	keys  atomic.Pointer[keySet]
	fetch sync.Mutex // held while fetching; guards lastFetch
	// lastFetch is when the JWKS URL was last fetched, successfully or not.
	lastFetch time.Time
}

// keySet is one fetched JWKS.
type keySet struct {
	keys    []jose.JSONWebKey
	fetched time.Time
}

// NewJWT loads the JWKS and returns the verifier; a JWKS that cannot be
// read, or holds no usable key, is an error: the server must not start
// refusing every token, or trusting keys it could not check.
func NewJWT(ctx context.Context, cfg JWTConfig) (*JWT, error) {
	if cfg.JWKS == "" {
		return nil, errors.New("jwt: no JWKS")
	}
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("jwt: an issuer and an audience are required")
	}
	if cfg.TenantClaim == "" {
		cfg.TenantClaim = "tenant"
	}
	if cfg.ScopeClaims == nil {
		cfg.ScopeClaims = []string{"scope", "scp"}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.Leeway, 30*time.Second)
	def(&cfg.RefreshMin, time.Minute)
	def(&cfg.MaxAge, 15*time.Minute)
	def(&cfg.FetchTimeout, 10*time.Second)
	if cfg.MaxJWKS <= 0 {
		cfg.MaxJWKS = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	v := &JWT{cfg: cfg, log: cfg.Logger}
	if strings.Contains(cfg.JWKS, "://") {
		u, err := url.Parse(cfg.JWKS)
		if err != nil {
			return nil, fmt.Errorf("jwks: %w", err)
		}
		if err := jwksURLAllowed(u); err != nil {
			return nil, fmt.Errorf("jwks %s: %w", u.Redacted(), err)
		}
		v.url = u
		if v.cfg.Client == nil {
			v.cfg.Client = &http.Client{CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= 5 {
					return errors.New("too many redirects")
				}
				return jwksURLAllowed(req.URL)
			}}
		}
		v.fetch.Lock()
		defer v.fetch.Unlock()
		if err := v.fetchLocked(ctx); err != nil {
			return nil, err
		}
		return v, nil
	}
	b, err := capread.ReadFile(cfg.JWKS, cfg.MaxJWKS)
	if err != nil {
		return nil, fmt.Errorf("jwks %s: %w", cfg.JWKS, err)
	}
	keys, err := parseJWKS(b)
	if err != nil {
		return nil, fmt.Errorf("jwks %s: %w", cfg.JWKS, err)
	}
	v.keys.Store(&keySet{keys: keys, fetched: cfg.Now()})
	return v, nil
}

// jwksURLAllowed refuses a JWKS URL an attacker on the path could answer:
// keys must come over https, or from this machine.
func jwksURLAllowed(u *url.URL) error {
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if ip := net.ParseIP(h); (ip != nil && ip.IsLoopback()) || h == "localhost" {
			return nil
		}
	}
	return errors.New("want an https:// URL (http:// only to a loopback address)")
}

// fetchLocked fetches the JWKS URL and keeps its keys; v.fetch is held.
func (v *JWT) fetchLocked(ctx context.Context) error {
	v.lastFetch = v.cfg.Now()
	ctx, cancel := context.WithTimeout(ctx, v.cfg.FetchTimeout)
	defer cancel()
	keys, err := v.get(ctx)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return fmt.Errorf("fetch jwks %s: %w", v.url.Redacted(), err)
	}
	v.keys.Store(&keySet{keys: keys, fetched: v.lastFetch})
	return nil
}

func (v *JWT) get(ctx context.Context) ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.url.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := v.cfg.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	if resp.ContentLength > v.cfg.MaxJWKS {
		return nil, fmt.Errorf("larger than %d bytes", v.cfg.MaxJWKS)
	}
	b, err := capread.ReadAll(resp.Body, v.cfg.MaxJWKS)
	if err != nil {
		return nil, err
	}
	return parseJWKS(b)
}

// parseJWKS returns the signature verification keys of a JWK Set. Keys of
// other kinds (encryption keys, types or curves no allowed algorithm
// uses) are skipped, as RFC 7517 asks; a private or symmetric key means
// the set is not a public one, and it is refused whole.
func parseJWKS(b []byte) ([]jose.JSONWebKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("not a JWK Set: %w", err)
	}
	var (
		keys    []jose.JSONWebKey
		skipped []string
	)
	for i, raw := range set.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			skipped = append(skipped, fmt.Sprintf("keys[%d]: %v", i, err))
			continue
		}
		switch k.Key.(type) {
		case []byte:
			return nil, fmt.Errorf("keys[%d] (kid %q) is a symmetric key: a JWKS must hold public keys only", i, k.KeyID)
		case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
			return nil, fmt.Errorf("keys[%d] (kid %q) is a private key: a JWKS must hold public keys only", i, k.KeyID)
		}
		if k.Use != "" && k.Use != "sig" {
			skipped = append(skipped, fmt.Sprintf("keys[%d]: use %q", i, k.Use))
			continue
		}
		alg := keyAlgorithm(k.Key)
		if alg == "" {
			skipped = append(skipped, fmt.Sprintf("keys[%d]: not a P-256, Ed25519 or RSA (2048 bits or more) public key", i))
			continue
		}
		if k.Algorithm != "" && k.Algorithm != string(alg) {
			skipped = append(skipped, fmt.Sprintf("keys[%d]: alg %q does not fit its key (%s)", i, k.Algorithm, alg))
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		if len(skipped) == 0 {
			return nil, errors.New("no keys")
		}
		return nil, fmt.Errorf("no usable key: %s", strings.Join(skipped, "; "))
	}
	return keys, nil
}

// keyAlgorithm is the one algorithm key may verify, or "" for a key no
// allowed algorithm uses.
func keyAlgorithm(key any) jose.SignatureAlgorithm {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return jose.ES256
		}
	case ed25519.PublicKey:
		return jose.EdDSA
	case *rsa.PublicKey:
		if k.N.BitLen() >= 2048 {
			return jose.RS256
		}
	}
	return ""
}

// LooksLikeJWT reports whether token has the form of a JWS in compact
// serialization (three base64url parts, the last possibly empty): such a
// token is checked as a JWT, any other against the token file.
func LooksLikeJWT(token string) bool {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return false
	}
	for _, p := range parts {
		if strings.Trim(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			return false
		}
	}
	return true
}

// Authenticate verifies token and returns the principal it acts as. A
// refused token's error is a *TokenError.
func (v *JWT) Authenticate(ctx context.Context, token string) (Principal, error) {
	if len(token) > maxToken {
		return Principal{}, refuse("token too large")
	}
	if !LooksLikeJWT(token) {
		return Principal{}, refuse("not a JWT")
	}
	if alg, ok := headerAlg(token); !ok {
		return Principal{}, refuse("malformed token")
	} else if !slices.Contains(algorithms, jose.SignatureAlgorithm(alg)) {
		return Principal{}, refuse("algorithm not allowed (want ES256, EdDSA or RS256)")
	}
	tok, err := jwt.ParseSigned(token, algorithms)
	if err != nil || len(tok.Headers) != 1 {
		return Principal{}, refuse("malformed token")
	}
	hdr := tok.Headers[0]
	key, err := v.key(ctx, hdr.KeyID, jose.SignatureAlgorithm(hdr.Algorithm))
	if err != nil {
		return Principal{}, err
	}
	var (
		std   jwt.Claims
		extra map[string]any
	)
	if err := tok.Claims(key.Key, &std, &extra); err != nil {
		// Tell the client which check failed: a signature that does not
		// verify, a crit header naming an extension not understood, or
		// claims of the wrong type (exp as a string, a duplicated name).
		switch {
		case errors.Is(err, jose.ErrCryptoFailure):
			return Principal{}, refuse("bad signature")
		case errors.Is(err, jose.ErrUnsupportedCriticalHeader):
			return Principal{}, refuse("unsupported crit header")
		}
		return Principal{}, refuse("malformed claims")
	}
	if std.Expiry == nil {
		return Principal{}, refuse("no exp claim")
	}
	err = std.ValidateWithLeeway(jwt.Expected{Issuer: v.cfg.Issuer, AnyAudience: jwt.Audience{v.cfg.Audience}, Time: v.cfg.Now()}, v.cfg.Leeway)
	switch {
	case errors.Is(err, jwt.ErrExpired):
		return Principal{}, refuse("token expired")
	case errors.Is(err, jwt.ErrNotValidYet):
		return Principal{}, refuse("token not valid yet (nbf)")
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return Principal{}, refuse("token issued in the future (iat)")
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return Principal{}, refuse("wrong issuer")
	case errors.Is(err, jwt.ErrInvalidAudience):
		return Principal{}, refuse("wrong audience")
	case err != nil:
		return Principal{}, refuse("invalid claims")
	}
	tenant, _ := extra[v.cfg.TenantClaim].(string)
	if !ValidTenant(tenant) {
		return Principal{}, refuse("no valid " + v.cfg.TenantClaim + " claim")
	}
	return Principal{Tenant: tenant, Scopes: v.scopes(extra)}, nil
}

// headerAlg returns the alg of a compact JWS's protected header.
func headerAlg(token string) (string, bool) {
	seg, _, _ := strings.Cut(token, ".")
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return "", false
	}
	var h struct {
		Alg string `json:"alg"`
	}
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&h); err != nil {
		return "", false
	}
	return h.Alg, true
}

// scopes returns the known scopes the claims grant; others are dropped.
func (v *JWT) scopes(claims map[string]any) []string {
	for _, name := range v.cfg.ScopeClaims {
		c, ok := claims[name]
		if !ok {
			continue
		}
		var all []string
		switch c := c.(type) {
		case string:
			all = strings.Fields(c)
		case []any:
			for _, s := range c {
				if s, ok := s.(string); ok {
					all = append(all, s)
				}
			}
		}
		var out []string
		for _, s := range []string{ScopeRead, ScopeWrite} {
			if slices.Contains(all, s) {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// key returns the key that verifies a token with key id kid and algorithm
// alg: the kid's key, or the only key of a JWKS with one; it must be of
// the type alg is bound to. An unknown kid fetches a JWKS URL again, at
// most once per RefreshMin.
func (v *JWT) key(ctx context.Context, kid string, alg jose.SignatureAlgorithm) (jose.JSONWebKey, error) {
	ks := v.keys.Load()
	if v.url != nil && v.cfg.Now().Sub(ks.fetched) > v.cfg.MaxAge {
		// Keys grown old are fetched again so a revoked key goes; one
		// request does it while the others go on with the keys they have,
		// and a failing endpoint is tried at most once per RefreshMin.
		if v.fetch.TryLock() {
			if v.cfg.Now().Sub(v.lastFetch) >= v.cfg.RefreshMin {
				if err := v.fetchLocked(ctx); err != nil {
					v.log.Warn("jwks refresh failed; keeping the last keys", "err", err.Error())
				}
			}
			v.fetch.Unlock()
			ks = v.keys.Load()
		}
	}
	match := ks.find(kid)
	if len(match) == 0 && kid != "" && v.url != nil {
		v.fetch.Lock()
		if v.cfg.Now().Sub(v.lastFetch) >= v.cfg.RefreshMin {
			if err := v.fetchLocked(ctx); err != nil {
				v.log.Warn("jwks refresh for an unknown key id failed", "err", err.Error())
			}
		}
		v.fetch.Unlock()
		ks = v.keys.Load()
		match = ks.find(kid)
	}
	if len(match) == 0 {
		if kid == "" {
			return jose.JSONWebKey{}, refuse("no kid in the token header, and the JWKS holds several keys")
		}
		return jose.JSONWebKey{}, refuse("unknown signing key (kid)")
	}
	for _, k := range match {
		if keyAlgorithm(k.Key) == alg {
			return k, nil
		}
	}
	return jose.JSONWebKey{}, refuse("the algorithm does not fit the signing key")
}

// find returns the keys with key id kid; with no kid, the set's only key.
func (ks *keySet) find(kid string) []jose.JSONWebKey {
	if kid == "" {
		if len(ks.keys) == 1 {
			return ks.keys
		}
		return nil
	}
	var out []jose.JSONWebKey
	for _, k := range ks.keys {
		if k.KeyID == kid {
			out = append(out, k)
		}
	}
	return out
}
