package publish

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/bale-build/bale/testsupport/tooltest"
)

func testRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestOCIPublishPull publishes an output directory as one OCI artifact and
// pulls it back byte-identical; crane sees the artifact type and titles.
func TestOCIPublishPull(t *testing.T) {
	host := testRegistry(t)
	dir := outDir(t)
	o := OCIOptions{Keychain: authn.NewMultiKeychain()}
	to := "oci://" + host + "/releases/bale:v1"
	rep, err := OCI(context.Background(), dir, to, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Files) != 5 || rep.Digest == "" {
		t.Fatalf("publish: %+v", rep)
	}
	ref, _ := name.ParseReference(host + "/releases/bale:v1")
	desc, err := remote.Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	var m artifact
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	if m.ArtifactType != ArtifactType || len(m.Layers) != 5 || m.Layers[4].Annotations[AnnotationTitle] != "pack.tar.sha256" {
		t.Errorf("manifest: %s", desc.Manifest)
	}
	if crane, ok := tooltest.Find(t, "crane"); ok {
		out, err := exec.Command(crane, "manifest", host+"/releases/bale:v1").CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte(ArtifactType)) {
			t.Errorf("crane manifest: %v\n%s", err, out)
		}
	}
	for _, from := range []string{to, "oci://" + host + "/releases/bale@" + rep.Digest} {
		dst := filepath.Join(t.TempDir(), "pulled")
		prep, err := Pull(context.Background(), from, dst, o)
		if err != nil {
			t.Fatal(err)
		}
		if prep.Digest != rep.Digest || len(prep.Files) != 5 {
			t.Errorf("pull %s: %+v", from, prep)
		}
		for _, f := range rep.Files {
			want, _ := os.ReadFile(filepath.Join(dir, f.Path))
			got, err := os.ReadFile(filepath.Join(dst, f.Path))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("pull %s: %s differs (%v)", from, f.Path, err)
			}
		}
	}
	// A second publish uploads no blob: ggcr skips what the registry has.
	if _, err := OCI(context.Background(), dir, to, o); err != nil {
		t.Fatal(err)
	}
	// Pulling into a directory that holds something is refused.
	busy := t.TempDir()
	os.WriteFile(filepath.Join(busy, "x"), nil, 0o644)
	if _, err := Pull(context.Background(), to, busy, o); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("pull into a non-empty directory: %v", err)
	}
}

// TestPullRefusesHostileArtifact: titles that escape the directory,
// repeat or clash, and sums that disagree with the files.
func TestPullRefusesHostileArtifact(t *testing.T) {
	host := testRegistry(t)
	o := OCIOptions{Keychain: authn.NewMultiKeychain()}
	ctx := context.Background()
	put := func(t *testing.T, tag string, layers map[string]string, order []string) string {
		return putArtifact(t, host, "hostile", tag, layers, order)
	}
	for _, tc := range []struct {
		name    string
		layers  map[string]string
		order   []string
		wantErr string
	}{
		{"escape", map[string]string{"../evil": "x"}, []string{"../evil"}, "not a safe relative path"},
		{"absolute", map[string]string{"/etc/cron.d/x": "x"}, []string{"/etc/cron.d/x"}, "not a safe relative path"},
		{"repeat", map[string]string{"a": "x"}, []string{"a", "a"}, "repeats"},
		{"file and dir", map[string]string{"a": "x", "a/b": "y"}, []string{"a", "a/b"}, "both a file and a directory"},
		{"sums disagree", map[string]string{"a": "x", "a.sha256": strings.Repeat("0", 64) + "  a\n"}, []string{"a", "a.sha256"}, "the sums say"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from := put(t, strings.ReplaceAll(tc.name, " ", "-"), tc.layers, tc.order)
			dst := filepath.Join(t.TempDir(), "out")
			_, err := Pull(ctx, from, dst, o)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Pull: %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// putArtifact puts at host/repo:tag a bale artifact whose layers are the
// given files, titled in order, as a registry may hold one that bale
// publish would never write.
func putArtifact(t *testing.T, host, repoName, tag string, layers map[string]string, order []string) string {
	t.Helper()
	ctx := context.Background()
	p, _ := remote.NewPusher()
	repo, _ := name.NewRepository(host + "/" + repoName)
	m := artifact{SchemaVersion: 2, MediaType: "application/vnd.oci.image.manifest.v1+json", ArtifactType: ArtifactType}
	cfg := staticLayer{[]byte("{}"), emptyConfigType}
	if err := p.Upload(ctx, repo, cfg); err != nil {
		t.Fatal(err)
	}
	d, _ := cfg.Digest()
	m.Config.MediaType, m.Config.Digest, m.Config.Size = emptyConfigType, d, 2
	for _, title := range order {
		l := staticLayer{[]byte(layers[title]), MediaTypeFile}
		if err := p.Upload(ctx, repo, l); err != nil {
			t.Fatal(err)
		}
		ld, _ := l.Digest()
		desc, _ := remoteDescriptor(ld, int64(len(layers[title])), title)
		m.Layers = append(m.Layers, desc)
	}
	raw, _ := json.Marshal(&m)
	if err := p.Put(ctx, repo.Tag(tag), rawManifest{raw}); err != nil {
		t.Fatal(err)
	}
	return "oci://" + host + "/" + repoName + ":" + tag
}

func remoteDescriptor(d v1.Hash, size int64, title string) (v1.Descriptor, error) {
	return v1.Descriptor{MediaType: MediaTypeFile, Digest: d, Size: size, Annotations: map[string]string{AnnotationTitle: title}}, nil
}
