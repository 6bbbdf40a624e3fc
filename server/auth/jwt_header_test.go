package auth

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// signRaw signs payload as a compact JWS with the extra protected headers
// given, so a test can send what a well-behaved library would not.
func signRaw(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, extra map[string]any, payload []byte) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	for k, v := range extra {
		opts = opts.WithHeader(jose.HeaderKey(k), v)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestJWTHostileHeaders: a token cannot choose the key it is checked
// with (jku, x5u and jwk headers pointing at the attacker's key are
// ignored, and the URLs are never fetched), a kid is only ever compared,
// never used as a path, a crit header the verifier does not understand
// refuses the token, and claims of the wrong type or a claim name given
// twice (which two parsers could read differently) refuse it too; each
// refusal says which check failed, not always "bad signature".
func TestJWTHostileHeaders(t *testing.T) {
	k := keysOnce()
	attacker := jwksOf(t, map[string]crypto.PublicKey{"ec": k.ecOther.Public(), "evil": k.ecOther.Public()})
	evil := newJWKSServer(t, attacker)
	attackerJWK := jose.JSONWebKey{Key: k.ecOther.Public(), KeyID: "ec"}
	payload := func(edits ...func(map[string]any)) []byte {
		b, err := json.Marshal(claims(edits...))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	now := time.Now()
	cases := []struct {
		name, token string
		want        string // error substring; "" for a valid token
		tenant      string
	}{
		{"jku to the attacker's JWKS, known kid", signRaw(t, jose.ES256, k.ecOther, "ec", map[string]any{"jku": evil.URL + "/jwks"}, payload()), "bad signature", ""},
		{"jku to the attacker's JWKS, its kid", signRaw(t, jose.ES256, k.ecOther, "evil", map[string]any{"jku": evil.URL + "/jwks"}, payload()), "unknown signing key", ""},
		{"x5u to the attacker", signRaw(t, jose.ES256, k.ecOther, "ec", map[string]any{"x5u": evil.URL + "/cert.pem"}, payload()), "bad signature", ""},
		{"embedded jwk of the attacker", signRaw(t, jose.ES256, k.ecOther, "ec", map[string]any{"jwk": attackerJWK}, payload()), "", ""},
		{"crit exp", signRaw(t, jose.ES256, k.ec, "ec", map[string]any{"crit": []string{"exp"}, "exp": now.Unix()}, payload()), "unsupported crit", ""},
		{"kid path traversal", signRaw(t, jose.ES256, k.ec, "../../../../etc/passwd", nil, payload()), "unknown signing key", ""},
		{"kid of 8 KiB", signRaw(t, jose.ES256, k.ec, strings.Repeat("k", 8<<10), nil, payload()), "unknown signing key", ""},
		{"typ at+jwt is not a reason to skip checks", signRaw(t, jose.ES256, k.ec, "ec", map[string]any{"typ": "at+jwt"}, payload(set("exp", now.Add(-time.Hour).Unix()))), "token expired", ""},
		{"exp as a string", signRaw(t, jose.ES256, k.ec, "ec", nil, payload(set("exp", "9999999999"))), "malformed claims", ""},
		{"aud as a number", signRaw(t, jose.ES256, k.ec, "ec", nil, payload(set("aud", 7))), "malformed claims", ""},
		{"aud array without ours", signRaw(t, jose.ES256, k.ec, "ec", nil, payload(set("aud", []string{"a", "b", testAud + " "}))), "wrong audience", ""},
		{"tenant twice", signRaw(t, jose.ES256, k.ec, "ec", nil,
			[]byte(strings.Replace(string(payload()), `"tenant":"acme"`, `"tenant":"acme","tenant":"globex"`, 1))), "malformed claims", ""},
		{"exp twice", signRaw(t, jose.ES256, k.ec, "ec", nil,
			[]byte(strings.Replace(string(payload()), `"iat":`, `"exp":9999999999,"iat":`, 1))), "malformed claims", ""},
	}
	js := newJWKSServer(t, k.jwks(t))
	v := newVerifier(t, js.URL+"/jwks")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := v.Authenticate(context.Background(), c.token)
			var te *TokenError
			switch {
			case c.name == "embedded jwk of the attacker":
				// go-jose refuses a JWS with an embedded jwk header outright
				// or verification fails: either way not accepted.
				if err == nil {
					t.Fatalf("accepted a token signed by the key in its own jwk header: %+v", p)
				}
			case c.want == "":
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if p.Tenant != c.tenant {
					t.Fatalf("tenant %q, want %q", p.Tenant, c.tenant)
				}
			case !errors.As(err, &te) || !strings.Contains(te.Reason, c.want):
				t.Fatalf("error %v, want a TokenError containing %q", err, c.want)
			}
		})
	}
	if n := evil.fetches.Load(); n != 0 {
		t.Fatalf("the attacker's jku/x5u was fetched %d times", n)
	}
}
