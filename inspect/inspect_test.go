package inspect

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/bale-build/bale/testsupport/demopack"
	"github.com/bale-build/bale/verify"
)

var update = flag.Bool("update", false, "rewrite golden files")

// demoPack is the repository's bootstrap pack, built once for these tests.
var demoPack demopack.Once

// demo returns the demo pack's path.
func demo(t *testing.T) string {
	t.Helper()
	p, err := demoPack.Path(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMain(m *testing.M) {
	code := m.Run()
	_ = demoPack.Remove()
	os.Exit(code)
}

// TestDemoPack inspects the real bootstrap pack and compares the JSON
// report with a golden file; it also checks the figures against each
// other, so the golden file cannot silently hold nonsense.
func TestDemoPack(t *testing.T) {
	p := demo(t)
	rep, err := Pack(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if rep.SHA256 != hex.EncodeToString(sum[:]) || rep.Size != int64(len(data)) {
		t.Errorf("artifactSha256 %s size %d, want %x %d", rep.SHA256, rep.Size, sum, len(data))
	}
	if rep.Totals.Images != 3 || rep.Totals.Charts != 2 || rep.Totals.Signatures != 2 || rep.Totals.Bundles != 2 {
		t.Errorf("totals %+v: want 3 images, 2 charts, 2 signatures, 2 bundles", rep.Totals)
	}
	for i := 1; i < len(rep.Images); i++ {
		if rep.Images[i-1].Size < rep.Images[i].Size {
			t.Errorf("images not largest first: %s %d before %s %d", rep.Images[i-1].Name, rep.Images[i-1].Size, rep.Images[i].Name, rep.Images[i].Size)
		}
	}
	var mirror *Image
	for i := range rep.Images {
		if rep.Images[i].Name == "mirror-agent" {
			mirror = &rep.Images[i]
		}
	}
	if mirror == nil || len(mirror.Manifests) != 2 || mirror.Manifests[0].Platform == "" {
		t.Fatalf("mirror-agent: want two platform manifests, got %+v", mirror)
	}
	var sumImages int64
	for _, im := range rep.Images {
		sumImages += im.Size
	}
	if sumImages-rep.Totals.SharedBytes != rep.Totals.BlobBytes {
		t.Errorf("image sizes %d less shared %d != blob bytes %d", sumImages, rep.Totals.SharedBytes, rep.Totals.BlobBytes)
	}
	for _, c := range rep.Charts {
		if len(c.Images) != 1 || c.Images[0].Key != "image" || c.Images[0].Repository != "nginx" {
			t.Errorf("chart %s: values images %+v, want image.repository nginx", c.Name, c.Images)
		}
	}
	vrep, err := verify.Pack(context.Background(), p)
	if err != nil || !vrep.OK() {
		t.Fatalf("verify the demo pack: %v %v", err, vrep.Err())
	}
	if rep.RootHash != vrep.RootHash || !strings.HasPrefix(rep.PlanID, "sha256:") {
		t.Errorf("rootHash %s planId %q, verify says rootHash %s", rep.RootHash, rep.PlanID, vrep.RootHash)
	}
	// The file's bytes, and the plan id and root hash, change with the
	// pack's gzip member layout and the plan format, which are not what
	// inspect reports on; they are checked against the file and verify
	// above.
	rep.Path, rep.SHA256, rep.Size, rep.RootHash, rep.PlanID = filepath.Base(rep.Path), "", 0, "", ""
	got, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "demo.golden.json")
	if *update {
		if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(got, '\n'), want) {
		t.Errorf("report differs from %s (run go test ./inspect -update):\n%s", golden, got)
	}
}

// tarGz writes entries (name → body; a name ending in / is a directory)
// as one tar.gz.
func tarGz(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}
		if e.typ != 0 {
			h.Typeflag = e.typ
			h.Size = 0
			h.Linkname = e.link
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type tarEntry struct {
	name, body string
	typ        byte
	link       string
}

const validIndex = `{"formatVersion":1,"kind":"bootstrap-pack","name":"x","planId":"sha256:` + zeros + `","specDigest":"sha256:` + zeros + `","sourceDateEpoch":"2025-01-01T00:00:00Z","entries":[],"images":[],"bundles":[]}`

const zeros = "0000000000000000000000000000000000000000000000000000000000000000"

// TestHostilePacks feeds crafted packs to Scan: each must fail with an
// error naming what is wrong, never panic, hang or allocate without bound.
func TestHostilePacks(t *testing.T) {
	bomb := func() []byte {
		// 64 MiB of zeros in one entry: the walk must stream it, never hold it.
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		tw := tar.NewWriter(zw)
		tw.WriteHeader(&tar.Header{Name: "images/blobs/sha256/" + zeros, Mode: 0o644, Size: 1 << 26, Typeflag: tar.TypeReg})
		chunk := make([]byte, 1<<20)
		for range 64 {
			tw.Write(chunk)
		}
		tw.Close()
		zw.Close()
		return buf.Bytes()
	}
	imgIndex := strings.Replace(validIndex, `"images":[]`, `"images":[{"name":"a","digest":"sha256:`+zeros+`","layoutDigest":"sha256:`+zeros+`","tags":[],"platforms":[]}]`, 1)
	selfIndex := `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:SELF","size":SIZE}]}`
	cycle := func() []tarEntry {
		// An index blob that names itself can only be found by its own
		// digest, which it cannot contain; instead chain five indexes,
		// one deeper than allowed.
		var es []tarEntry
		var childDigest string
		var childSize int
		for i := range 6 {
			doc := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`
			if i > 0 {
				doc = strings.NewReplacer("SELF", strings.TrimPrefix(childDigest, "sha256:"), "SIZE", strconv.Itoa(childSize)).Replace(selfIndex)
			}
			sum := sha256.Sum256([]byte(doc))
			childDigest = "sha256:" + hex.EncodeToString(sum[:])
			childSize = len(doc)
			es = append(es, tarEntry{name: "images/blobs/sha256/" + hex.EncodeToString(sum[:]), body: doc})
		}
		top := `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"` + childDigest + `","size":` + strconv.Itoa(childSize) + `,"annotations":{"io.bale.image.name":"a"}}]}`
		ix := strings.ReplaceAll(imgIndex, "sha256:"+zeros+`","layoutDigest":"sha256:`+zeros, childDigest+`","layoutDigest":"`+childDigest)
		es = append(es, tarEntry{name: "images/index.json", body: top}, tarEntry{name: "pack-index.json", body: ix})
		return es
	}
	tests := []struct {
		name    string
		pack    []byte
		wantErr string
	}{
		{"not gzip or tar", []byte("hello"), "truncated"},
		{"empty file", nil, "truncated"},
		{"no pack index", tarGz(t, []tarEntry{{name: "a", body: "x"}}), "pack-index.json: missing"},
		{"bad pack index", tarGz(t, []tarEntry{{name: "pack-index.json", body: `{"formatVersion":2}`}}), "formatVersion"},
		{"unknown field", tarGz(t, []tarEntry{{name: "pack-index.json", body: strings.Replace(validIndex, "{", `{"x":1,`, 1)}}), "unknown field"},
		{"escaping path", tarGz(t, []tarEntry{{name: "../evil", body: "x"}}), "unsafe archive entry"},
		{"absolute path", tarGz(t, []tarEntry{{name: "/etc/passwd", body: "x"}}), "unsafe archive entry"},
		{"symlink", tarGz(t, []tarEntry{{name: "pack-index.json", typ: tar.TypeSymlink, link: "/etc/passwd"}}), "link entries"},
		{"hard link", tarGz(t, []tarEntry{{name: "a", body: "x"}, {name: "b", typ: tar.TypeLink, link: "a"}}), "link entries"},
		{"duplicate", tarGz(t, []tarEntry{{name: "a", body: "x"}, {name: "a", body: "y"}}), "duplicate"},
		{"huge pack index", tarGz(t, []tarEntry{{name: "pack-index.json", body: strings.Repeat(" ", 64<<20+1)}}), "larger than"},
		{"blob not named by digest", tarGz(t, []tarEntry{{name: "images/blobs/sha256/xyz", body: "{}"}}), "not a sha256 digest"},
		{"images but no layout", tarGz(t, []tarEntry{{name: "pack-index.json", body: imgIndex}}), "images/index.json: missing"},
		{"layout without the image", tarGz(t, []tarEntry{{name: "images/index.json", body: `{"schemaVersion":2,"manifests":[]}`}, {name: "pack-index.json", body: imgIndex}}), "no descriptor for image a"},
		{"missing blob", tarGz(t, []tarEntry{{name: "images/index.json", body: `{"schemaVersion":2,"manifests":[{"digest":"sha256:` + zeros + `","size":2,"annotations":{"io.bale.image.name":"a"}}]}`}, {name: "pack-index.json", body: imgIndex}}), "not in the pack"},
		{"nested too deep", tarGz(t, cycle()), "nested deeper"},
		{"bad chart", tarGz(t, []tarEntry{{name: "charts/x-1.tgz", body: "not gzip"}}), `"charts/x-1.tgz"`},
		{"chart with link", tarGz(t, []tarEntry{{name: "charts/x-1.tgz", body: string(tarGz(t, []tarEntry{{name: "x/Chart.yaml", typ: tar.TypeSymlink, link: "/etc/passwd"}}))}}), "link entries"},
		{"chart without Chart.yaml", tarGz(t, []tarEntry{{name: "charts/x-1.tgz", body: string(tarGz(t, []tarEntry{{name: "x/values.yaml", body: "a: 1"}}))}}), "no NAME/Chart.yaml"},
		{"trailing garbage", append(tarGz(t, []tarEntry{{name: "pack-index.json", body: validIndex}}), "garbage"...), "read archive end"},
		{"decompression bomb", bomb(), "pack-index.json: missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "p.tar")
			if err := os.WriteFile(p, tc.pack, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Scan(context.Background(), p)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Scan: %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestValuesImages covers both forms of image reference in values.yaml.
func TestValuesImages(t *testing.T) {
	values := `
image:
  repository: nginx
  tag: ""
sidecar:
  image: "quay.io/prom/statsd-exporter:v0.26.0"
db:
  image:
    registry: docker.io
    repository: bitnami/postgresql
    tag: 16.1
    digest: sha256:` + zeros + `
jobs:
  - image: busybox:1.36
notAnImage:
  repository: ""
`
	got, err := ValuesImages([]byte(values), "1.4.2")
	if err != nil {
		t.Fatal(err)
	}
	want := []ValuesImage{
		{Key: "db.image", Ref: "docker.io/bitnami/postgresql:16.1@sha256:" + zeros, Form: "map", Registry: "docker.io", HasRegistry: true, Repository: "bitnami/postgresql", Tag: "16.1", Digest: "sha256:" + zeros},
		{Key: "image", Ref: "nginx:1.4.2", Form: "map", Repository: "nginx"},
		{Key: "jobs[0].image", Ref: "busybox:1.36", Form: "string", InList: true},
		{Key: "sidecar.image", Ref: "quay.io/prom/statsd-exporter:v0.26.0", Form: "string"},
	}
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if !bytes.Equal(g, w) {
		t.Errorf("ValuesImages:\n got %s\nwant %s", g, w)
	}
	deep := strings.Repeat("[", 100) + strings.Repeat("]", 100)
	if _, err := ValuesImages([]byte("a: "+deep), ""); err == nil || !strings.Contains(err.Error(), "deeper") {
		t.Errorf("deep values: %v, want a depth error", err)
	}
}
