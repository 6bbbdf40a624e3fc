package auth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadRefuses(t *testing.T) {
	good := strings.Repeat("a", 64)
	cases := []struct{ name, file, want string }{
		{"unknown field", `{"tokens":[],"admin":true}`, "unknown field"},
		{"upper-case hash", `{"tokens":[{"sha256":"` + strings.Repeat("A", 64) + `","tenant":"acme","scopes":["export:read"]}]}`, "lowercase hex"},
		{"short hash", `{"tokens":[{"sha256":"abc","tenant":"acme","scopes":["export:read"]}]}`, "lowercase hex"},
		{"tenant as a path", `{"tokens":[{"sha256":"` + good + `","tenant":"../etc","scopes":["export:read"]}]}`, "tenant"},
		{"empty tenant", `{"tokens":[{"sha256":"` + good + `","tenant":"","scopes":["export:read"]}]}`, "tenant"},
		{"no scopes", `{"tokens":[{"sha256":"` + good + `","tenant":"acme","scopes":[]}]}`, "no scopes"},
		{"unknown scope", `{"tokens":[{"sha256":"` + good + `","tenant":"acme","scopes":["admin"]}]}`, "scope"},
		{"duplicate", `{"tokens":[{"sha256":"` + good + `","tenant":"acme","scopes":["export:read"]},{"sha256":"` + good + `","tenant":"b","scopes":["export:read"]}]}`, "twice"},
		{"trailing data", `{"tokens":[]} {}`, "trailing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tokens.json")
			os.WriteFile(path, []byte(c.file), 0o600)
			_, err := Load(path)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Load: %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestAddAndAuthenticate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	tok, e, err := NewToken("acme", []string{ScopeRead}, "ci")
	if err != nil {
		t.Fatal(err)
	}
	if err := Add(path, e); err != nil {
		t.Fatal(err)
	}
	tok2, e2, _ := NewToken("other", []string{ScopeRead, ScopeWrite}, "")
	if err := Add(path, e2); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), tok) || strings.Contains(string(b), tok2) {
		t.Fatal("the token file holds a token, not its hash")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	ts, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		tok, tenant string
		write, ok   bool
	}{{tok, "acme", false, true}, {tok2, "other", true, true}, {tok + "x", "", false, false}, {"", "", false, false}} {
		p, err := ts.Authenticate(c.tok)
		if (err == nil) != c.ok || p.Tenant != c.tenant || p.Has(ScopeWrite) != c.write {
			t.Errorf("Authenticate(%q): %+v, %v", c.tok, p, err)
		}
	}
	if err := Add(path, e); err == nil {
		t.Error("adding the same token twice succeeded")
	}
}
