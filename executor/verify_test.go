package executor

import (
	"archive/tar"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"encoding/binary"
	"hash/crc32"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	kgzip "github.com/klauspost/compress/gzip"

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
	if err := archive.WriteMembers(context.Background(), f, entries, buildTime, archive.MembersOptions{Level: 1}); err != nil {
		t.Fatal(err)
	}
}

// memberExtra returns the gzip extra field of a pack's first member.
func memberExtra(t *testing.T, packBytes []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(packBytes))
	if err != nil {
		t.Fatal(err)
	}
	return zr.Header.Extra
}

// rawMembers writes a pack member by member with bale's member header
// (extra) but with headers from hdr, so only what hdr changes is wrong.
func rawMembers(t *testing.T, files map[string][]byte, extra []byte, hdr func(h *tar.Header)) []byte {
	t.Helper()
	var buf bytes.Buffer
	member := func(write func(w io.Writer)) {
		// bale's compressor, so only the tar headers can differ.
		zw, _ := kgzip.NewWriterLevel(&buf, 1)
		zw.Header = kgzip.Header{ModTime: buildTime, OS: 255, Extra: extra}
		write(zw)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	seen := map[string]bool{}
	for _, name := range sortedNames(files) {
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			if !seen[d] {
				seen[d] = true
				names = append(names, d+"/")
			}
		}
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int { return strings.Compare(strings.TrimSuffix(a, "/"), strings.TrimSuffix(b, "/")) })
	for _, name := range names {
		member(func(w io.Writer) {
			tw := tar.NewWriter(w)
			h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(files[name])), ModTime: buildTime, Format: tar.FormatUSTAR}
			if strings.HasSuffix(name, "/") {
				h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
			}
			hdr(h)
			tw.WriteHeader(h)
			tw.Write(files[name])
			tw.Flush()
		})
	}
	member(func(w io.Writer) { w.Write(make([]byte, archive.EndOfArchiveSize)) })
	return buf.Bytes()
}

// zeroPaddedEnd replaces a pack's end-of-archive member with one that
// inflates to n zero bytes: the end marker and n-1024 bytes of padding. The
// deflate stream repeats one byte-aligned block of 1 MiB of zeros, so the
// file stays small whatever n is.
func zeroPaddedEnd(t *testing.T, packBytes []byte, n int64) []byte {
	t.Helper()
	var end bytes.Buffer
	enc, err := archive.NewMemberEncoder(1, buildTime)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.End(&end); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(packBytes, end.Bytes()) {
		t.Fatal("pack does not end with the end-of-archive member")
	}
	out := bytes.Clone(packBytes[:len(packBytes)-end.Len()])
	extra := memberExtra(t, packBytes)
	var block bytes.Buffer
	fw, _ := flate.NewWriter(&block, flate.BestCompression)
	fw.Write(make([]byte, 1<<20))
	fw.Flush()
	hdr := []byte{0x1f, 0x8b, 8, 0x04, 0, 0, 0, 0, 0, 255, byte(len(extra)), byte(len(extra) >> 8)}
	binary.LittleEndian.PutUint32(hdr[4:8], uint32(buildTime.Unix()))
	out = append(append(out, hdr...), extra...)
	crc := crc32.NewIEEE()
	zero := make([]byte, 1<<20)
	for range n >> 20 {
		out = append(out, block.Bytes()...)
		crc.Write(zero)
	}
	out = append(out, 1, 0, 0, 0xff, 0xff) // final empty stored block
	out = binary.LittleEndian.AppendUint32(out, crc.Sum32())
	return binary.LittleEndian.AppendUint32(out, uint32(n))
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

	t.Run("members written by hand as bale writes them", func(t *testing.T) {
		// The control for the crafted packs below: archive/tar headers
		// and gzip members written outside bale's writer pass every
		// check, so each crafted pack fails for its one change alone.
		files, _ := readPack(t, good)
		p := filepath.Join(t.TempDir(), packName+".tar")
		os.WriteFile(p, rawMembers(t, files, memberExtra(t, goodBytes), func(*tar.Header) {}), 0o644)
		rep, err := verify.Pack(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		if err := rep.Err(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("4 GiB of zeros after the end-of-archive marker", func(t *testing.T) {
		// Verify accepted this and took 6.5 s inflating it; the padding
		// is now refused 2 MiB in.
		p := filepath.Join(t.TempDir(), packName+".tar")
		os.WriteFile(p, zeroPaddedEnd(t, goodBytes, 4<<30), 0o644)
		start := time.Now()
		rep, err := verify.Pack(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("verify took %v", d)
		}
		if rep.OK() || !strings.Contains(rep.Err().Error(), "past the end of the entries") {
			t.Fatalf("verify: %v", rep.Err())
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
		{name: "./-prefixed names", write: func(dir string) string {
			p := filepath.Join(dir, packName+".tar")
			files, _ := readPack(t, good)
			os.WriteFile(p, rawMembers(t, files, memberExtra(t, goodBytes), func(h *tar.Header) { h.Name = "./" + h.Name }), 0o644)
			return p
		}, want: []want{{"charts", verify.CheckCanonical, "differ"}}},
		{name: "one gzip member for the whole tar", write: func(dir string) string {
			p := filepath.Join(dir, packName+".tar")
			files, _ := readPack(t, good)
			var entries []archive.Entry
			for name, b := range files {
				entries = append(entries, fileEntry(name, b))
			}
			var buf bytes.Buffer
			zw, _ := archive.NewGzipWriter(&buf, 1, buildTime)
			archive.WriteTar(context.Background(), zw, entries, buildTime)
			zw.Close()
			os.WriteFile(p, buf.Bytes(), 0o644)
			return p
		}, want: []want{{"", verify.CheckCanonical, "not a pack in bale's member layout"}}},
		{name: "members at another level than their header says", write: func(dir string) string {
			p := filepath.Join(dir, packName+".tar")
			files, _ := readPack(t, good)
			// Level 9 bytes under a header that says level 1.
			os.WriteFile(p, rawMembersLevel(t, files, memberExtra(t, goodBytes), 9), 0o644)
			return p
		}, want: []want{{"", verify.CheckCanonical, "differ"}}},
		{name: "image digest swapped in the plan", edit: func(files map[string][]byte) {
			// What a hand-edited plan (one image's digest swapped for
			// another's) gives: the pack index pins the other image.
			ix, err := pack.ParseIndex(files[pack.IndexPath])
			if err != nil {
				t.Fatal(err)
			}
			ix.Images[0].Digest, ix.Images[0].LayoutDigest = ix.Images[1].Digest, ix.Images[1].LayoutDigest
			files[pack.IndexPath], _ = pack.MarshalIndex(ix)
		}, want: []want{{pack.OCIIndexPath, verify.CheckOCILayout, "layoutDigest"}}},
		{name: "pack index tags differ from manifest.json", edit: func(files map[string][]byte) {
			ix, _ := pack.ParseIndex(files[pack.IndexPath])
			ix.Images[0].Tags = []string{"other/name:2"}
			files[pack.IndexPath], _ = pack.MarshalIndex(ix)
		}, want: []want{{pack.OCIIndexPath, verify.CheckOCILayout, "ref name"}, {pack.DockerManifestPath, verify.CheckOCILayout, "RepoTags"}}},
		{name: "chart built under another timestamp", edit: func(files map[string][]byte) {
			// The poisoned-cache case: a chart archived with a 2023
			// sourceDateEpoch in an otherwise good pack, its pack index
			// entry updated to match.
			const chart = "charts/web-0.1.0.tgz"
			files[chart] = rearchive(t, files[chart], time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC))
			ix, _ := pack.ParseIndex(files[pack.IndexPath])
			for i := range ix.Entries {
				if ix.Entries[i].Path == chart {
					ix.Entries[i].Size, ix.Entries[i].SHA256 = int64(len(files[chart])), sha(files[chart])
				}
			}
			files[pack.IndexPath], _ = pack.MarshalIndex(ix)
		}, want: []want{{"charts/web-0.1.0.tgz", verify.CheckCharts, "want the pack's build timestamp 2025"}}},
		{name: "chart re-archived at another gzip level", edit: func(files map[string][]byte) {
			const chart = "charts/web-0.1.0.tgz"
			files[chart] = rearchiveLevel(t, files[chart], buildTime, 1)
			ix, _ := pack.ParseIndex(files[pack.IndexPath])
			for i := range ix.Entries {
				if ix.Entries[i].Path == chart {
					ix.Entries[i].Size, ix.Entries[i].SHA256 = int64(len(files[chart])), sha(files[chart])
				}
			}
			files[pack.IndexPath], _ = pack.MarshalIndex(ix)
		}, want: []want{{"charts/web-0.1.0.tgz", verify.CheckCharts, "not bale's chart archive"}}},
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

// rawMembersLevel is rawMembers at another gzip level, headers unchanged.
func rawMembersLevel(t *testing.T, files map[string][]byte, extra []byte, level int) []byte {
	t.Helper()
	var entries []archive.Entry
	for name, b := range files {
		entries = append(entries, fileEntry(name, b))
	}
	var buf bytes.Buffer
	if err := archive.WriteMembers(context.Background(), &buf, entries, buildTime, archive.MembersOptions{Level: level}); err != nil {
		t.Fatal(err)
	}
	// Put the level-1 header's extra field on every member.
	return bytes.ReplaceAll(buf.Bytes(), extraFor(t, level), extra)
}

// extraFor returns the extra field bale writes at level.
func extraFor(t *testing.T, level int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := archive.WriteMembers(context.Background(), &buf, nil, buildTime, archive.MembersOptions{Level: level}); err != nil {
		t.Fatal(err)
	}
	return memberExtra(t, buf.Bytes())
}

// rearchive re-writes a chart archive with bale's rules but under mtime.
func rearchive(t *testing.T, tgz []byte, mtime time.Time) []byte {
	return rearchiveLevel(t, tgz, mtime, pack.ChartLevel)
}

func rearchiveLevel(t *testing.T, tgz []byte, mtime time.Time, level int) []byte {
	t.Helper()
	var entries []archive.Entry
	err := archive.Walk(context.Background(), bytes.NewReader(tgz), archive.ChartLimits(), func(h *tar.Header, body io.Reader) error {
		if h.Typeflag == tar.TypeDir {
			return nil
		}
		b, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		e := fileEntry(h.Name, b)
		e.Mode = h.Mode
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw, err := archive.NewGzipWriter(&buf, level, mtime)
	if err != nil {
		t.Fatal(err)
	}
	if err := archive.WriteTar(context.Background(), zw, entries, mtime); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	return buf.Bytes()
}
