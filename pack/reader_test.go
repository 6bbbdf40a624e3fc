package pack

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bale-build/bale/archive"
)

var buildTime = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func bytesEntry(name string, b []byte) archive.Entry {
	return archive.Entry{Name: name, Size: int64(len(b)), Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }}
}

// countingAt is an io.ReaderAt over b that records the bytes each ReadAt
// returned.
type countingAt struct {
	b    []byte
	mu   sync.Mutex
	read int64
}

func (c *countingAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := bytes.NewReader(c.b).ReadAt(p, off)
	c.mu.Lock()
	c.read += int64(n)
	c.mu.Unlock()
	return n, err
}

func (c *countingAt) reset() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.read
	c.read = 0
	return n
}

// testPack writes entries in bale's member layout (WriteMembers) and
// returns the pack and the entries' contents by name.
func testPack(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var entries []archive.Entry
	for name, b := range files {
		entries = append(entries, bytesEntry(name, b))
	}
	var out bytes.Buffer
	if err := archive.WriteMembers(context.Background(), &out, entries, buildTime, archive.MembersOptions{Level: 1}); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestScanOnceOpenMany: Scan reads every byte of the pack exactly once,
// lists every entry with its size and sha256, keeps the documents; Open
// reads one entry again, byte-identical, reading little more than its own
// members; Members spans concatenate back to the pack.
func TestScanOnceOpenMany(t *testing.T) {
	t.Parallel()
	layer := random(3<<20 + 17) // three members and a bit
	manifest := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}`)
	files := map[string][]byte{
		BlobsDir + "/" + hexSum(layer):    layer,
		BlobsDir + "/" + hexSum(manifest): manifest,
		"signatures/root.json":            []byte("{}\n"),
		IndexPath:                         []byte(`{"formatVersion":1}` + "\n"),
	}
	for i := range 20 {
		b := random(200 << 10)
		files[fmt.Sprintf("%s/%s", BlobsDir, hexSum(b))] = b
		_ = i
	}
	data := testPack(t, files)
	ra := &countingAt{b: data}
	var raw bytes.Buffer
	var seen []string
	pr, err := Scan(context.Background(), ra, int64(len(data)), ScanOptions{
		Raw: &raw,
		Entry: func(h *tar.Header, body io.Reader) error {
			seen = append(seen, h.Name)
			if h.Typeflag == tar.TypeReg && h.Size > 0 {
				// Read a little: Scan hashes the rest.
				_, err := io.ReadFull(body, make([]byte, 1))
				return err
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := pr.Err(); err != nil {
		t.Fatal(err)
	}
	if n := ra.reset(); n != int64(len(data)) {
		t.Errorf("Scan read %d bytes of a %d-byte pack, want each byte once", n, len(data))
	}
	if !bytes.Equal(raw.Bytes(), data) {
		t.Error("Raw did not receive the pack's bytes in order")
	}
	if pr.SHA256() != hexSum(data) || !pr.Gzip() {
		t.Errorf("SHA256 %s gzip %v", pr.SHA256(), pr.Gzip())
	}
	if len(seen) != len(pr.Files()) {
		t.Errorf("Entry saw %d entries, the reader lists %d", len(seen), len(pr.Files()))
	}
	if _, ok := pr.Doc(BlobsDir + "/" + hexSum(manifest)); !ok {
		t.Error("the manifest blob was not kept")
	}
	if _, ok := pr.Doc(BlobsDir + "/" + hexSum(layer)); ok {
		t.Error("a layer was kept as a document")
	}
	if _, ok := pr.Doc(IndexPath); !ok {
		t.Error("the pack index was not kept")
	}
	var joined bytes.Buffer
	for _, f := range pr.Files() {
		off, n, ok := f.Members()
		if !ok {
			t.Fatalf("%s: not member-aligned in a WriteMembers pack", f.Name)
		}
		joined.Write(data[off : off+n])
		if f.Dir {
			continue
		}
		want := files[f.Name]
		if f.Size != int64(len(want)) || f.SHA256 != hexSum(want) {
			t.Errorf("%s: size %d sha256 %s", f.Name, f.Size, f.SHA256)
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: Open gave %d bytes (%v)", f.Name, len(got), err)
		}
		// Its own members, and not a byte more.
		if read := ra.reset(); read != n {
			t.Errorf("%s: Open read %d bytes, its members are %d", f.Name, read, n)
		}
	}
	// What follows the last entry is the end-of-archive member.
	if !bytes.HasPrefix(data, joined.Bytes()) {
		t.Error("the entries' members are not the pack's bytes in order")
	}
	var end bytes.Buffer
	enc, _ := archive.NewMemberEncoder(1, buildTime)
	enc.End(&end)
	if joined.Len()+end.Len() != len(data) || !bytes.Equal(data[joined.Len():], end.Bytes()) {
		t.Error("the entries' members and the end-of-archive member are not the whole pack")
	}
}

// TestOpenChangedPack: Open checks what it reads against the scan, so a
// pack changed after it was verified cannot slip bytes into an upload.
func TestOpenChangedPack(t *testing.T) {
	t.Parallel()
	layer := random(1 << 20)
	name := BlobsDir + "/" + hexSum(layer)
	data := testPack(t, map[string][]byte{name: layer, IndexPath: []byte("{}\n")})
	pr, err := Scan(context.Background(), bytes.NewReader(data), int64(len(data)), ScanOptions{})
	if err != nil || pr.Err() != nil {
		t.Fatal(err, pr.Err())
	}
	f, _ := pr.File(name)
	off, n, _ := f.Members()
	changed := bytes.Clone(data)
	changed[off+n/2] ^= 0xff
	pr.ra = bytes.NewReader(changed)
	rc, err := f.Open()
	if err == nil {
		_, err = io.ReadAll(rc)
	}
	if err == nil {
		t.Fatal("Open read a changed entry without an error")
	}
}

// TestScanHostile: what Scan refuses, as the reader's Err, with the rest
// of what it read.
func TestScanHostile(t *testing.T) {
	t.Parallel()
	good := testPack(t, map[string][]byte{IndexPath: []byte("{}\n")})
	var zeros bytes.Buffer
	zw, _ := archive.NewGzipWriter(&zeros, 9, buildTime)
	zw.Write(make([]byte, 8<<20))
	zw.Close()
	plain := func() []byte {
		var b bytes.Buffer
		archive.WriteTar(context.Background(), &b, []archive.Entry{bytesEntry("a", []byte("x"))}, buildTime)
		return b.Bytes()
	}()
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"zeros past the end", append(bytes.Clone(good), zeros.Bytes()...), "past the end of the entries"},
		{"trailing junk", append(bytes.Clone(good), "junk"...), "trailing data after gzip member"},
		{"truncated", good[:len(good)-5], "truncated"},
		{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0}, "zstd"},
		{"empty", nil, "truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr, err := Scan(context.Background(), bytes.NewReader(tc.data), int64(len(tc.data)), ScanOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if pr.Err() == nil || !strings.Contains(pr.Err().Error(), tc.want) {
				t.Fatalf("Err = %v, want %q", pr.Err(), tc.want)
			}
			if pr.SHA256() != hexSum(tc.data) {
				t.Error("SHA256 does not cover the whole file")
			}
		})
	}
	t.Run("plain tar", func(t *testing.T) {
		data := plain
		pr, err := Scan(context.Background(), bytes.NewReader(data), int64(len(data)), ScanOptions{})
		if err != nil || pr.Err() != nil {
			t.Fatal(err, pr.Err())
		}
		f, ok := pr.File("a")
		if !ok || pr.Gzip() {
			t.Fatal("entry a not found, or the tar taken for gzip")
		}
		rc, _ := f.Open()
		if b, err := io.ReadAll(rc); err != nil || string(b) != "x" {
			t.Errorf("Open: %q %v", b, err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := Scan(ctx, bytes.NewReader(good), int64(len(good)), ScanOptions{}); err == nil {
			t.Fatal("a cancelled scan returned no error")
		}
	})
}

// layoutMap is a Layout over documents and blob sizes by digest; it
// counts the documents read.
type layoutMap struct {
	docs  map[string][]byte
	sizes map[string]int64
	reads int
}

func (l *layoutMap) BlobSize(d string) (int64, bool) { n, ok := l.sizes[d]; return n, ok }
func (l *layoutMap) Manifest(d string) ([]byte, bool) {
	l.reads++
	b, ok := l.docs[d]
	return b, ok
}

func (l *layoutMap) add(doc any) Descriptor {
	b, _ := json.Marshal(doc)
	d := "sha256:" + hexSum(b)
	l.docs[d] = b
	l.sizes[d] = int64(len(b))
	return Descriptor{MediaType: MediaTypeOCIIndex, Digest: d, Size: int64(len(b))}
}

func (l *layoutMap) blob(b []byte) Descriptor {
	d := "sha256:" + hexSum(b)
	l.sizes[d] = int64(len(b))
	return Descriptor{MediaType: "application/octet-stream", Digest: d, Size: int64(len(b))}
}

// TestWalkImage: the one descriptor walker follows indexes to manifests,
// lists documents children first, and reports every problem, naming the
// entry, with one depth limit.
func TestWalkImage(t *testing.T) {
	t.Parallel()
	l := &layoutMap{docs: map[string][]byte{}, sizes: map[string]int64{}}
	cfg, layer := l.blob([]byte("{}")), l.blob([]byte("layer"))
	m := l.add(ManifestOrIndex{SchemaVersion: 2, MediaType: MediaTypeOCIManifest, Config: &cfg, Layers: []Descriptor{layer}})
	m.MediaType = MediaTypeOCIManifest
	m.Platform = &Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	top := l.add(ManifestOrIndex{SchemaVersion: 2, MediaType: MediaTypeOCIIndex, Manifests: []Descriptor{m}})
	g, errs := WalkImage(l, OCIIndexPath, top)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(g.Docs) != 2 || g.Docs[0].Digest != m.Digest || g.Docs[1].Digest != top.Digest {
		t.Errorf("docs %+v: want the manifest, then the index", g.Docs)
	}
	if len(g.Manifests) != 1 || g.Manifests[0].Platform != "linux/arm64/v8" || g.Manifests[0].Layers[0].Digest != layer.Digest {
		t.Errorf("manifests %+v", g.Manifests)
	}

	missing := Descriptor{Digest: "sha256:" + strings.Repeat("0", 64), Size: 1}
	wrongSize := layer
	wrongSize.Size = 99
	bad := l.add(ManifestOrIndex{SchemaVersion: 2, Config: &cfg, Layers: []Descriptor{missing, wrongSize, {Digest: "sha256:../x"}}})
	deep := m
	for range MaxIndexDepth + 1 {
		deep = l.add(ManifestOrIndex{SchemaVersion: 2, Manifests: []Descriptor{deep}})
	}
	neither := l.add(map[string]any{"schemaVersion": 2})
	notJSON := l.blob([]byte("not json"))
	for _, tc := range []struct {
		name string
		top  Descriptor
		want []string
		size bool
	}{
		{"missing, wrong size and invalid blobs", bad, []string{"which is not in the pack", "5 bytes, " + BlobPath(bad.Digest) + " says 99", `invalid digest "sha256:../x"`}, true},
		{"too deep", deep, []string{fmt.Sprintf("nested deeper than %d", MaxIndexDepth)}, false},
		{"neither", neither, []string{"neither an image index nor a manifest"}, false},
		{"not JSON", notJSON, []string{"not a JSON document"}, false},
		{"not in the layout", missing, []string{"refers to blob " + missing.Digest}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := WalkImage(l, OCIIndexPath, tc.top)
			var all []string
			size := false
			for _, e := range errs {
				all = append(all, e.Error())
				size = size || e.Size
			}
			for _, w := range tc.want {
				if !strings.Contains(strings.Join(all, "\n"), w) {
					t.Errorf("no problem %q in %q", w, all)
				}
			}
			if size != tc.size {
				t.Errorf("size problem reported %v, want %v", size, tc.size)
			}
		})
	}
}

// TestWalkImageRepeats: indexes that name one another many times over
// are walked once each, so the work is what the documents hold, not the
// product of their lengths.
func TestWalkImageRepeats(t *testing.T) {
	t.Parallel()
	l := &layoutMap{docs: map[string][]byte{}, sizes: map[string]int64{}}
	cfg := l.blob([]byte("{}"))
	var leaves []Descriptor
	for i := range 1000 {
		leaf := l.add(ManifestOrIndex{SchemaVersion: 2, Config: &cfg, Layers: []Descriptor{l.blob([]byte(fmt.Sprint(i)))}})
		leaves = append(leaves, leaf)
	}
	b := l.add(ManifestOrIndex{SchemaVersion: 2, Manifests: leaves})
	many := make([]Descriptor, 1000)
	for i := range many {
		many[i] = b
	}
	a := l.add(ManifestOrIndex{SchemaVersion: 2, Manifests: many})
	top := l.add(ManifestOrIndex{SchemaVersion: 2, Manifests: []Descriptor{a, a, a}})
	w := NewImageWalker(l)
	g, errs := w.Walk(OCIIndexPath, top)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(g.Manifests) != 1000 || len(g.Docs) != 1003 {
		t.Errorf("%d manifests, %d docs; want 1000 and 1003", len(g.Manifests), len(g.Docs))
	}
	if l.reads > 1003 {
		t.Errorf("%d document reads for 1003 documents", l.reads)
	}
	// The walker remembers across images too.
	before := l.reads
	w.Walk(OCIIndexPath, top)
	if l.reads != before {
		t.Errorf("walking the same image again read %d documents", l.reads-before)
	}
}
