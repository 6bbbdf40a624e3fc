// Package kittest builds offline kits for tests: the AOC release of
// specs/aoc over the committed fixtures, signed with the repository's
// development key or an unrelated one.
package kittest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/encrypted"

	"github.com/bale-build/bale/internal/fixtures"
	"github.com/bale-build/bale/internal/sums"
	"github.com/bale-build/bale/kit"
	"github.com/bale-build/bale/kit/assemble"
	"github.com/bale-build/bale/sign"
	"github.com/bale-build/bale/testsupport/testrepo"
)

// BuildTime is the AOC kit's build timestamp.
var BuildTime = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// Fixtures returns the repository's testdata directory.
func Fixtures(t testing.TB) string {
	t.Helper()
	root, err := testrepo.Root()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "testdata")
}

// DevKeyPath and DevPubPath are the development key pair's files.
func DevKeyPath(t testing.TB) string { return filepath.Join(Fixtures(t), "keys", "cosign.dev.key") }

// DevPubPath is the development public key's file.
func DevPubPath(t testing.TB) string { return filepath.Join(Fixtures(t), "keys", "cosign.dev.pub") }

// DevKey opens the repository's development key, as a spec's
// signing.devKey with COSIGN_ALLOW_DEV_KEY=1.
func DevKey(t testing.TB) *sign.Key {
	t.Helper()
	l, err := sign.Locate(DevKeyPath(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Dev = true
	pub, err := os.ReadFile(DevPubPath(t))
	if err != nil {
		t.Fatal(err)
	}
	k, err := l.Open([]byte(fixtures.DevKeyPassword), pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// OtherKeyPEM returns an unrelated ECDSA P-256 key in cosign's encrypted
// format, with its password.
func OtherKeyPEM(t testing.TB) (pemText []byte, password string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), nil)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := encrypted.Encrypt(der, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: sign.SigstorePrivateKeyPEMType, Bytes: enc}), "x"
}

// OtherKey is an unrelated key, a production key as far as bale knows.
func OtherKey(t testing.TB) *sign.Key {
	t.Helper()
	text, password := OtherKeyPEM(t)
	k, err := sign.ParsePrivateKey(text, []byte(password))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// AOCInput is the AOC release of specs/aoc over the committed fixtures.
func AOCInput(t testing.TB, key *sign.Key) assemble.Input {
	t.Helper()
	fx := Fixtures(t)
	rf := func(p, dest string, mode int64) assemble.FileInput {
		return assemble.FileInput{Path: filepath.Join(fx, "aoc", "runner", p), Dest: dest, Mode: mode, Source: "testdata/aoc/runner/" + p}
	}
	df := func(p string) assemble.FileInput {
		return assemble.FileInput{Path: filepath.Join(fx, "aoc", "dataset", p), Dest: p, Source: "testdata/aoc/dataset/" + p}
	}
	return assemble.Input{
		Release:        "aoc-backfill-release",
		Name:           "aoc-offline-kit",
		Time:           BuildTime,
		PlanID:         "sha256:" + strings.Repeat("1", 64),
		SpecDigest:     "sha256:" + strings.Repeat("2", 64),
		Tool:           "bale-v0.0.0-test",
		BuilderVersion: map[string]string{"bale": "v0.0.0-test"},
		Key:            key,
		Runner: assemble.Runner{
			Name: "aoc-backfill-runner", Version: "19.5.0",
			Supplier: "Organization: StellaOps", License: "AGPL-3.0-or-later",
			Files: []assemble.FileInput{
				rf("bin/aoc-backfill", "bin/aoc-backfill", 0o755),
				rf("scripts/package-backfill-release.sh", "scripts/package-backfill-release.sh", 0o755),
				rf("config/backfill.yaml", "config/backfill.yaml", 0),
				rf("README.md", "README.md", 0),
			},
		},
		Dataset: &assemble.Dataset{
			Name:  "aoc-dataset",
			Files: []assemble.FileInput{df("dataset.json"), df("advisories.ndjson"), df("observations.ndjson"), df("linksets.ndjson")},
		},
	}
}

// Build assembles in into a fresh directory and returns it and the kit's
// manifest.
func Build(t testing.TB, in assemble.Input) (string, *kit.Manifest) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "out")
	m, err := assemble.Kit(context.Background(), dir, in)
	if err != nil {
		t.Fatalf("assemble.Kit: %v", err)
	}
	return dir, m
}

// HexSum is the hex sha256 of b.
func HexSum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// OpenKey opens the PEM text of a key encrypted with the development
// key's password, as a release key (not a spec's devKey).
func OpenKey(t testing.TB, pemText []byte) *sign.Key {
	t.Helper()
	k, err := sign.ParsePrivateKey(pemText, []byte(fixtures.DevKeyPassword))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Resign plays an attacker who holds key: after files of the kit in dir
// were edited it rewrites offline-kit.json's digests (after edit, if not
// nil, changes the manifest), SHA256SUMS and its signature, so only the
// check under test can catch the edit.
func Resign(t testing.TB, dir string, key *sign.Key, edit func(*kit.Manifest)) {
	t.Helper()
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m, err := kit.ParseManifest(read(kit.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range m.Artifacts {
		data := read(a.Name)
		m.Artifacts[i].Size, m.Artifacts[i].SHA256 = int64(len(data)), HexSum(data)
	}
	if edit != nil {
		edit(m)
	}
	mj, err := kit.MarshalManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	write(kit.ManifestName, mj)
	list := []sums.Sum{{Name: kit.ManifestName, SHA256: HexSum(mj)}}
	for _, a := range m.Artifacts {
		list = append(list, sums.Sum{Name: a.Name, SHA256: a.SHA256})
	}
	st, err := kit.MarshalSums(list)
	if err != nil {
		t.Fatal(err)
	}
	write(kit.SumsName, st)
	sig, err := key.SignBlob(sha256.Sum256(st))
	if err != nil {
		t.Fatal(err)
	}
	write(kit.SumsSignatureName, sig)
}

// Reencrypt rewrites a cosign encrypted private key (PEM text) under
// another password: other text, the same key.
func Reencrypt(t testing.TB, pemText []byte, password, newPassword string) []byte {
	t.Helper()
	block, _ := pem.Decode(pemText)
	if block == nil {
		t.Fatal("reencrypt: no PEM block")
	}
	der, err := encrypted.Decrypt(block.Bytes, []byte(password))
	if err != nil {
		t.Fatal(err)
	}
	enc, err := encrypted.Encrypt(der, []byte(newPassword))
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: enc})
}
