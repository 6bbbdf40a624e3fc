// Package auth authenticates the export API's bearer tokens against a token
// file: each entry holds the sha256 of a token, never the token itself, with
// the tenant the token acts for and the scopes it grants.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/bale-build/bale/internal/strictjson"
)

// The scopes the API knows.
const (
	ScopeRead  = "export:read"
	ScopeWrite = "export:write"
)

// tenantRE is a tenant name: it becomes a directory name in the export
// storage layout (exports/{tenant}/...), so it is kept to a safe alphabet.
var tenantRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidTenant reports whether t is a well-formed tenant name.
func ValidTenant(t string) bool { return tenantRE.MatchString(t) }

// maxFile caps the token file; it is read once at start.
const maxFile = 16 << 20

// Entry is one token in the token file.
type Entry struct {
	// SHA256 is the lowercase hex sha256 of the token.
	SHA256 string `json:"sha256"`
	// Tenant is the tenant the token acts for.
	Tenant string `json:"tenant"`
	// Scopes are the scopes the token grants.
	Scopes []string `json:"scopes"`
	// Name is a label for people (which CI job holds the token).
	Name string `json:"name,omitempty"`
}

// File is the token file's format.
type File struct {
	Tokens []Entry `json:"tokens"`
}

// Principal is who a request acts as.
type Principal struct {
	Tenant string
	Scopes []string
}

// Has reports whether p holds scope.
func (p Principal) Has(scope string) bool { return slices.Contains(p.Scopes, scope) }

// Tokens authenticates bearer tokens. The zero value knows no token.
type Tokens struct {
	byHash map[[sha256.Size]byte]Principal
}

// ErrUnknownToken is returned for a token the file does not hold.
var ErrUnknownToken = errors.New("unknown token")

// Load reads and checks the token file at path. A missing file is an error:
// a server started without tokens would refuse every request.
func Load(path string) (*Tokens, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read token file: %w", err)
	}
	var f File
	if err := strictjson.Unmarshal(b, maxFile, &f); err != nil {
		return nil, fmt.Errorf("token file %s: %w", path, err)
	}
	t, err := New(f.Tokens)
	if err != nil {
		return nil, fmt.Errorf("token file %s: %w", path, err)
	}
	return t, nil
}

// New checks entries and returns the Tokens they describe.
func New(entries []Entry) (*Tokens, error) {
	t := &Tokens{byHash: make(map[[sha256.Size]byte]Principal, len(entries))}
	for i, e := range entries {
		if err := e.check(); err != nil {
			return nil, fmt.Errorf("tokens[%d]: %w", i, err)
		}
		var h [sha256.Size]byte
		hex.Decode(h[:], []byte(e.SHA256))
		if _, dup := t.byHash[h]; dup {
			return nil, fmt.Errorf("tokens[%d]: the same token is listed twice", i)
		}
		t.byHash[h] = Principal{Tenant: e.Tenant, Scopes: slices.Clone(e.Scopes)}
	}
	return t, nil
}

func (e Entry) check() error {
	if len(e.SHA256) != 64 || strings.ToLower(e.SHA256) != e.SHA256 {
		return fmt.Errorf("sha256 %q: want 64 lowercase hex digits", e.SHA256)
	}
	if _, err := hex.DecodeString(e.SHA256); err != nil {
		return fmt.Errorf("sha256 %q: want 64 lowercase hex digits", e.SHA256)
	}
	if !ValidTenant(e.Tenant) {
		return fmt.Errorf("tenant %q: want %s", e.Tenant, tenantRE)
	}
	if len(e.Scopes) == 0 {
		return errors.New("no scopes")
	}
	for _, s := range e.Scopes {
		if s != ScopeRead && s != ScopeWrite {
			return fmt.Errorf("scope %q: want %s or %s", s, ScopeRead, ScopeWrite)
		}
	}
	return nil
}

// Authenticate returns the principal token acts as.
func (t *Tokens) Authenticate(token string) (Principal, error) {
	if t == nil || token == "" {
		return Principal{}, ErrUnknownToken
	}
	// The map is keyed by the token's hash, so a lookup compares hashes:
	// timing reveals nothing about the token.
	p, ok := t.byHash[sha256.Sum256([]byte(token))]
	if !ok {
		return Principal{}, ErrUnknownToken
	}
	return p, nil
}

// NewToken returns a fresh random token ("bale_" and 43 base64url
// characters, 256 bits) and its file entry.
func NewToken(tenant string, scopes []string, name string) (string, Entry, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", Entry{}, fmt.Errorf("make token: %w", err)
	}
	tok := "bale_" + base64.RawURLEncoding.EncodeToString(b[:])
	sum := sha256.Sum256([]byte(tok))
	e := Entry{SHA256: hex.EncodeToString(sum[:]), Tenant: tenant, Scopes: slices.Clone(scopes), Name: name}
	if err := e.check(); err != nil {
		return "", Entry{}, err
	}
	return tok, e, nil
}

// Add appends e to the token file at path, creating it if missing. The file
// is replaced atomically, mode 0600.
func Add(path string, e Entry) error {
	var f File
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := strictjson.Unmarshal(b, maxFile, &f); err != nil {
			return fmt.Errorf("token file %s: %w", path, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("read token file: %w", err)
	}
	f.Tokens = append(f.Tokens, e)
	if _, err := New(f.Tokens); err != nil {
		return fmt.Errorf("token file %s: %w", path, err)
	}
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	// os.CreateTemp makes the file 0600: the hashes are not secrets, but
	// who holds which scope is nobody else's business.
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write token file: %w", err)
	}
	_, err = tmp.Write(append(out, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write token file %s: %w", path, err)
	}
	return nil
}
