package inspect

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/bale-build/bale/kit"
)

// TestKit inspects a kit directory and its archive, and refuses an
// archive that is neither a pack nor a kit, or holds a path outside the
// kit's directory.
func TestKit(t *testing.T) {
	m := &kit.Manifest{
		FormatVersion: kit.FormatVersion, Kind: kit.ManifestKind, Name: "k", Release: "r",
		SourceDateEpoch: "2025-01-01T00:00:00Z", PublicKey: kit.PublicKeyName,
		Checksums: kit.SumsName, ChecksumsSignature: kit.SumsSignatureName,
		Artifacts: []kit.Artifact{
			{Name: "small.json", Kind: kit.KindSBOM, Size: 2, SHA256: zeros},
			{Name: "big.tar.gz", Kind: kit.KindRunner, Size: 5, SHA256: zeros},
			{Name: "gone.tar.gz", Kind: kit.KindDataset, Size: 1, SHA256: zeros},
		},
	}
	mj, err := kit.MarshalManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kit.ParseManifest(mj); err != nil {
		t.Fatalf("hand-made manifest not accepted by kit.ParseManifest: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "k")
	os.Mkdir(dir, 0o755)
	files := map[string]string{kit.ManifestName: string(mj), "small.json": "{}", "big.tar.gz": "12345"}
	var entries []tarEntry
	for name, body := range files {
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
		entries = append(entries, tarEntry{name: "k/" + name, body: body})
	}
	archivePath := filepath.Join(t.TempDir(), "k.tar.gz")
	os.WriteFile(archivePath, tarGz(t, entries), 0o644)
	for _, p := range []string{dir, archivePath} {
		rep, err := Kit(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Artifacts[0].Name != "big.tar.gz" || rep.Totals.Artifacts != 3 || rep.Totals.Bytes != 8 {
			t.Errorf("%s: %+v", p, rep)
		}
		if len(rep.Missing) != 1 || rep.Missing[0] != "gone.tar.gz" {
			t.Errorf("%s: missing %v, want gone.tar.gz", p, rep.Missing)
		}
	}
	// An archive without a pack index is not a pack; Kit then says it is
	// not a kit either.
	neither := filepath.Join(t.TempDir(), "x.tar.gz")
	os.WriteFile(neither, tarGz(t, []tarEntry{{name: "x/a", body: "1"}}), 0o644)
	if _, err := Scan(context.Background(), neither); !errors.Is(err, ErrNotPack) {
		t.Errorf("Scan: %v, want ErrNotPack", err)
	}
	if _, err := Kit(context.Background(), neither); err == nil || !strings.Contains(err.Error(), "neither a bootstrap pack") {
		t.Errorf("Kit: %v", err)
	}
	escape := filepath.Join(t.TempDir(), "e.tar.gz")
	os.WriteFile(escape, tarGz(t, []tarEntry{{name: "k/a", body: "1"}, {name: "other/offline-kit.json", body: string(mj)}}), 0o644)
	if _, err := Kit(context.Background(), escape); err == nil || !strings.Contains(err.Error(), "top directory") {
		t.Errorf("Kit: %v, want a refusal of a second top directory", err)
	}
}

// TestKitFIFO: a FIFO named offline-kit.json in a kit directory is refused
// before it is opened, not read (which blocked for ever: issue 23 point
// 11); so is a link to /dev/zero.
func TestKitFIFO(t *testing.T) {
	for name, mk := range map[string]func(p string) error{
		"fifo":      func(p string) error { return syscall.Mkfifo(p, 0o644) },
		"/dev/zero": func(p string) error { return os.Symlink("/dev/zero", p) },
	} {
		dir := t.TempDir()
		if err := mk(filepath.Join(dir, kit.ManifestName)); err != nil {
			t.Skipf("%s: %v", name, err)
		}
		if _, err := Kit(context.Background(), dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("%s: Kit = %v, want a refusal naming a non-regular file", name, err)
		}
	}
}
