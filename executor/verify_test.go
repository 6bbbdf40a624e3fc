package executor

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/pack"
	"github.com/bale-build/bale/verify"
)

// repack rewrites a pack with bale's own writer after edit changes its
// files, so metadata stays uniform and only the edit is wrong.
func repack(t *testing.T, files map[string][]byte, dst string) {
	t.Helper()
	var entries []archive.Entry
	for name, b := range files {
		entries = append(entries, fileEntry(name, b))
	}
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw, err := archive.NewGzipWriter(f, 1, buildTime)
	if err != nil {
		t.Fatal(err)
	}
	if err := archive.WriteTar(context.Background(), zw, entries, buildTime); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyFindsTampering builds a good pack, damages it one way at a
// time, and checks bale verify names the entry and check at fault.
func TestVerifyFindsTampering(t *testing.T) {
	fx := makeFixture(t, t.TempDir(), fixtureOpts{})
	out := t.TempDir()
	build(t, fx, out, t.TempDir(), 0)
	good := filepath.Join(out, packName+".tar")
	goodBytes, _ := os.ReadFile(good)
	agent, _ := fx.plan.Input("image/agent")
	layerPath := pack.BlobPath(agent.Image.Manifests[0].Layers[1].Digest)

	t.Run("good pack", func(t *testing.T) {
		rep, err := verify.Pack(context.Background(), good)
		if err != nil {
			t.Fatal(err)
		}
		if err := rep.Err(); err != nil {
			t.Fatal(err)
		}
		for _, c := range []string{verify.CheckGzip, verify.CheckArchive, verify.CheckMetadata, verify.CheckEntries, verify.CheckBlobs, verify.CheckOCILayout, verify.CheckChecksum, verify.CheckIndex} {
			if !strings.Contains(strings.Join(rep.Checks, ","), c) {
				t.Errorf("check %s did not run: %v", c, rep.Checks)
			}
		}
		if rep.Entries < 20 {
			t.Errorf("read %d entries", rep.Entries)
		}
	})

	type want struct{ entry, check, detail string }
	tests := []struct {
		name string
		// edit changes the files; nil edit means the pack is written by
		// write instead.
		edit  func(files map[string][]byte)
		write func(dir string) string
		want  []want
	}{
		{name: "flipped byte in a layer blob", edit: func(files map[string][]byte) {
			b := bytes.Clone(files[layerPath])
			b[len(b)/2] ^= 1
			files[layerPath] = b
		}, want: []want{{layerPath, verify.CheckBlobs, "not the digest"}, {layerPath, verify.CheckEntries, "sha256"}}},
		{name: "entry added", edit: func(files map[string][]byte) {
			files["signatures/extra.json"] = []byte("{}\n")
		}, want: []want{{"signatures/extra.json", verify.CheckEntries, "not listed"}}},
		{name: "entry removed", edit: func(files map[string][]byte) {
			delete(files, "signatures/root.json")
		}, want: []want{{"signatures/root.json", verify.CheckEntries, "missing"}}},
		{name: "layer removed", edit: func(files map[string][]byte) {
			delete(files, layerPath)
		}, want: []want{{layerPath, verify.CheckEntries, "missing"}, {"", verify.CheckOCILayout, "not in the pack"}}},
		{name: "edited pack index", edit: func(files map[string][]byte) {
			ix, err := pack.ParseIndex(files[pack.IndexPath])
			if err != nil {
				t.Fatal(err)
			}
			for i := range ix.Entries {
				if ix.Entries[i].Path == "signatures/root.json" {
					ix.Entries[i].SHA256 = strings.Repeat("0", 64)
				}
			}
			files[pack.IndexPath], _ = pack.MarshalIndex(ix)
		}, want: []want{{"signatures/root.json", verify.CheckEntries, "the pack index says 0000"}}},
		{name: "pack index not canonical", edit: func(files map[string][]byte) {
			files[pack.IndexPath] = append(bytes.TrimSuffix(files[pack.IndexPath], []byte("\n")), ' ', '\n')
		}, want: []want{{pack.IndexPath, verify.CheckIndex, "canonical"}}},
		{name: "manifest.json disagrees", edit: func(files map[string][]byte) {
			files[pack.DockerManifestPath] = bytes.Replace(files[pack.DockerManifestPath], []byte(agent.Image.Tags[0]), []byte("other/name:1"), 1)
		}, want: []want{{pack.DockerManifestPath, verify.CheckEntries, "size"}, {pack.DockerManifestPath, verify.CheckOCILayout, "RepoTags"}}},
		{name: "wrong sha256 file", write: func(dir string) string {
			p := filepath.Join(dir, packName+".tar")
			os.WriteFile(p, goodBytes, 0o644)
			os.WriteFile(p+".sha256", []byte(strings.Repeat("ab", 32)+"  "+packName+".tar\n"), 0o644)
			return p
		}, want: []want{{packName + ".tar.sha256", verify.CheckChecksum, "the pack's sha256 is"}}},
		{name: "sha256 file names another file", write: func(dir string) string {
			p := filepath.Join(dir, packName+".tar")
			os.WriteFile(p, goodBytes, 0o644)
			os.WriteFile(p+".sha256", []byte(sha(goodBytes)+"  other.tar\n"), 0o644)
			return p
		}, want: []want{{packName + ".tar.sha256", verify.CheckChecksum, "names"}}},
		{name: "truncated gzip stream", write: func(dir string) string {
			p := filepath.Join(dir, packName+".tar")
			os.WriteFile(p, goodBytes[:len(goodBytes)/2], 0o644)
			return p
		}, want: []want{{"", verify.CheckArchive, "truncated"}}},
		{name: "gzip trailer cut", write: func(dir string) string {
			p := filepath.Join(dir, packName+".tar")
			os.WriteFile(p, goodBytes[:len(goodBytes)-4], 0o644)
			return p
		}, want: []want{{"", verify.CheckArchive, "truncated"}}},
		{name: "foreign owner and time", write: func(dir string) string {
			p := filepath.Join(dir, packName+".tar")
			files, _ := readPack(t, good)
			var buf bytes.Buffer
			zw, _ := archive.NewGzipWriter(&buf, 1, buildTime)
			tw := tar.NewWriter(zw)
			for _, d := range []string{"charts/", "images/", "images/blobs/", "images/blobs/sha256/", "signatures/"} {
				tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: buildTime, Format: tar.FormatUSTAR})
			}
			// Not sorted as a whole: directories first, then files.
			for _, name := range sortedNames(files) {
				h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(files[name])), ModTime: buildTime, Format: tar.FormatUSTAR}
				if name == "signatures/root.json" {
					h.Uid, h.Uname, h.Mode, h.ModTime = 1000, "builder", 0o600, buildTime.Add(1)
					h.ModTime = buildTime.Add(3600e9)
				}
				tw.WriteHeader(h)
				tw.Write(files[name])
			}
			tw.Close()
			zw.Close()
			os.WriteFile(p, buf.Bytes(), 0o644)
			return p
		}, want: []want{
			{"signatures/root.json", verify.CheckMetadata, "owner 1000/0"},
			{"signatures/root.json", verify.CheckMetadata, "user/group names"},
			{"signatures/root.json", verify.CheckMetadata, "file mode 0600"},
			{"signatures/root.json", verify.CheckMtime, "differs"},
			{"charts/web-0.1.0.tgz", verify.CheckOrder, "sorted"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var p string
			if tt.edit != nil {
				files, _ := readPack(t, good)
				tt.edit(files)
				p = filepath.Join(dir, packName+".tar")
				repack(t, files, p)
			} else {
				p = tt.write(dir)
			}
			rep, err := verify.Pack(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() {
				t.Fatal("verify passed a damaged pack")
			}
			for _, w := range tt.want {
				found := false
				for _, f := range rep.Failures {
					if (w.entry == "" || f.Entry == w.entry) && f.Check == w.check && strings.Contains(f.Detail, w.detail) {
						found = true
					}
				}
				if !found {
					t.Errorf("no failure {%s %s %q} in:\n%v", w.entry, w.check, w.detail, rep.Err())
				}
			}
		})
	}
}
