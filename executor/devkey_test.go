package executor_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bale-build/bale/executor"
	"github.com/bale-build/bale/executor/cas"
	"github.com/bale-build/bale/internal/fixtures"
	"github.com/bale-build/bale/kit"
	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/sign"
	"github.com/bale-build/bale/testsupport/kittest"
)

// env is a signing environment: the go command's locations and kv.
func env(kv ...string) func(string) string {
	m := map[string]string{"PATH": os.Getenv("PATH"), "HOME": os.Getenv("HOME"), "GOCACHE": os.Getenv("GOCACHE")}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// TestReleaseDevKeyRecognised: the repository's development key is the
// development key however it is given (issue 23 point 19): as COSIGN_KEY
// (its file or its text) or encrypted anew under another password, it is
// refused without COSIGN_ALLOW_DEV_KEY=1 and, with it, builds a kit whose
// offline-kit.json says devKey true, which the build's Result carries
// (issue 17 point 8). A result built with the permission is not reused
// without it.
func TestReleaseDevKeyRecognised(t *testing.T) {
	root := aocWorkspace(t)
	// The content hash pinned, so that the key alone decides: a
	// placeholder is refused without the permission too.
	pinDatasetHash(t, root)
	run := aocBuilds(t, root)
	devFile := filepath.Join(root, "testdata", "keys", "cosign.dev.key")
	devText, err := os.ReadFile(devFile)
	if err != nil {
		t.Fatal(err)
	}
	// The development key encrypted anew: other text, same public key.
	reencrypted := filepath.Join(t.TempDir(), "renamed.key")
	if err := os.WriteFile(reencrypted, kittest.Reencrypt(t, devText, fixtures.DevKeyPassword, "another-password"), 0o600); err != nil {
		t.Fatal(err)
	}
	const refused = "is a development key"
	for _, tc := range []struct {
		name     string
		key      string
		password string
	}{
		{"dev key file as COSIGN_KEY", devFile, fixtures.DevKeyPassword},
		{"dev key text as COSIGN_KEY", string(devText), fixtures.DevKeyPassword},
		{"dev key encrypted anew", reencrypted, "another-password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := run(executor.Options{Getenv: env("COSIGN_KEY", tc.key, "COSIGN_PASSWORD", tc.password)})
			if err == nil || !strings.Contains(err.Error(), refused) || !strings.Contains(err.Error(), "COSIGN_ALLOW_DEV_KEY=1") {
				t.Fatalf("without COSIGN_ALLOW_DEV_KEY: %v, want a refusal", err)
			}
			res, err := run(executor.Options{Getenv: env("COSIGN_KEY", tc.key, "COSIGN_PASSWORD", tc.password, "COSIGN_ALLOW_DEV_KEY", "1")})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Kits) != 1 || res.Kits[0].Manifest == nil || !res.Kits[0].Manifest.DevKey {
				t.Fatalf("kits %+v: want one, its manifest saying devKey true", res.Kits)
			}
			// Warm, without the permission: refused, not served from the
			// cache.
			if _, err := run(executor.Options{Getenv: env("COSIGN_KEY", tc.key, "COSIGN_PASSWORD", tc.password)}); err == nil || !strings.Contains(err.Error(), refused) {
				t.Fatalf("warm rebuild without COSIGN_ALLOW_DEV_KEY: %v, want a refusal", err)
			}
		})
	}
}

// TestReleaseGivenKey: a key given opened (Options.SigningKey, as bale
// serve passes its --signing-key) signs in place of the spec's key, the
// spec's key reference and the environment's COSIGN_KEY are not read, and
// the development key given so still needs COSIGN_ALLOW_DEV_KEY=1.
func TestReleaseGivenKey(t *testing.T) {
	root := aocWorkspace(t)
	pinDatasetHash(t, root)
	run := aocBuilds(t, root)
	key := kittest.OtherKey(t)
	// COSIGN_KEY names a file that does not exist: reading it would fail.
	res, err := run(executor.Options{SigningKey: key, IgnoreSpecKey: true, Getenv: env("COSIGN_KEY", filepath.Join(root, "absent.key"))})
	if err != nil {
		t.Fatal(err)
	}
	if k := res.Kits[0]; k.SigningKey != executor.KeyGiven || k.Manifest.DevKey {
		t.Errorf("kit %+v: want signing key %q, devKey false", k, executor.KeyGiven)
	}
	if a, ok := res.Kits[0].Manifest.Artifact(kit.PublicKeyName); !ok || a.SHA256 != kittest.HexSum(key.PublicKeyPEM()) {
		t.Errorf("the kit's cosign.pub (%+v) is not the given key", a)
	}
	// No key given and the spec's key ignored: only the development key,
	// with the permission.
	if _, err := run(executor.Options{IgnoreSpecKey: true, Getenv: env("COSIGN_KEY", string(key.PublicKeyPEM()))}); !errors.Is(err, sign.ErrNoKey) {
		t.Errorf("no key given, spec key ignored: %v, want ErrNoKey", err)
	}
	if _, err := run(executor.Options{SigningKey: kittest.DevKey(t), IgnoreSpecKey: true, Getenv: env()}); err == nil || !strings.Contains(err.Error(), "is a development key") {
		t.Errorf("the development key given without COSIGN_ALLOW_DEV_KEY: %v", err)
	}
}

// pinDatasetHash pins the AOC dataset's content hash in the workspace's
// spec, as a release with a production key must.
func pinDatasetHash(t *testing.T, root string) {
	t.Helper()
	spec := filepath.Join(root, "specs", "aoc", "release.cue")
	data, err := os.ReadFile(spec)
	if err != nil {
		t.Fatal(err)
	}
	pinned := strings.Replace(string(data), `hash: "dev-rehearsal-placeholder"`, `hash: "6034e64dc816c857c1a9ab3da6bcb13c2711264f6b1cdafc2dc66f411899f770"`, 1)
	if pinned == string(data) {
		t.Fatal("the spec no longer has its placeholder hash")
	}
	if err := os.WriteFile(spec, []byte(pinned), 0o644); err != nil {
		t.Fatal(err)
	}
}

// aocBuilds plans the workspace's AOC spec once and returns a function
// building it, each time into a new directory, with one store.
func aocBuilds(t *testing.T, root string) func(executor.Options) (*executor.Result, error) {
	t.Helper()
	p, r, err := planAOC(t, root)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := plan.Seal(p)
	if err != nil {
		t.Fatal(err)
	}
	store, err := cas.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return func(opts executor.Options) (*executor.Result, error) {
		opts.OutDir, opts.Store = filepath.Join(t.TempDir(), "out"), store
		return executor.Execute(context.Background(), sp, r, opts)
	}
}
