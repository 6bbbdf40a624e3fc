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
