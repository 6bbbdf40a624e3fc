package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bale-build/bale/server/auth"
)

// TestServeTokenAdd: token add prints a token once and writes only its
// hash; a bad tenant or scope is refused and leaves the file as it was.
func TestServeTokenAdd(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens.json")
	out, errs, code := bale(t, "", "serve", "token", "add", "--tokens", file, "--tenant", "acme", "--scope", "export:read", "--scope", "export:write")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	tok := strings.TrimSpace(out)
	b, _ := os.ReadFile(file)
	if !strings.HasPrefix(tok, "bale_") || strings.Contains(string(b), tok) {
		t.Fatalf("token %q; file holds it: %v", tok, strings.Contains(string(b), tok))
	}
	toks, err := auth.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := toks.Authenticate(tok); err != nil || p.Tenant != "acme" || !p.Has(auth.ScopeWrite) {
		t.Fatalf("Authenticate: %+v %v", p, err)
	}
	for _, args := range [][]string{
		{"--tenant", "../etc"},
		{"--tenant", "acme", "--scope", "admin"},
	} {
		_, errs, code := bale(t, "", append([]string{"serve", "token", "add", "--tokens", file}, args...)...)
		if code == 0 {
			t.Errorf("%v: accepted", args)
		}
		if after, _ := os.ReadFile(file); string(after) != string(b) {
			t.Errorf("%v: file changed (%s)", args, errs)
		}
	}
}

// TestServeJWTFlags: a JWKS that cannot be had stops serve at start with
// the reason, before anything listens or a token file is made.
func TestServeJWTFlags(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--jwt-issuer", "https://idp", "--jwt-audience", "bale"}, "need --jwks"},
		{[]string{"--jwks", filepath.Join(dir, "none.json"), "--jwt-issuer", "https://idp", "--jwt-audience", "bale"}, "none.json"},
		{[]string{"--jwks", "http://idp.example/jwks", "--jwt-issuer", "https://idp", "--jwt-audience", "bale"}, "https://"},
		{[]string{"--jwks", filepath.Join(dir, "none.json")}, "issuer and an audience"},
	} {
		data := filepath.Join(dir, "data")
		_, errs, code := bale(t, "", append([]string{"serve", "--data", data, "--addr", "127.0.0.1:0"}, c.args...)...)
		if code == 0 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, stderr %q, want it to contain %q", c.args, code, errs, c.want)
		}
		if _, err := os.Stat(filepath.Join(data, "tokens.json")); err == nil {
			t.Errorf("%v: a token file was made", c.args)
		}
	}
}
