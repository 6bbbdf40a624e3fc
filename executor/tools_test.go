package executor

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/pack"
	"github.com/bale-build/bale/testsupport/tooltest"
)

// extract writes a pack's (or chart's) files under dir.
func extract(t testing.TB, archivePath, dir string) {
	t.Helper()
	f, err := os.Open(archivePath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = archive.Walk(context.Background(), f, packLimits(), func(h *tar.Header, body io.Reader) error {
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if h.Typeflag == tar.TypeDir {
			return os.MkdirAll(p, 0o755)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		b, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		return os.WriteFile(p, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// builtPack builds the fixture and extracts the pack; it returns the out
// dir and the extraction dir.
func builtPack(t *testing.T) (*fixture, string, string) {
	t.Helper()
	// With an entry larger than a gzip member's chunk.
	fx := makeFixture(t, t.TempDir(), fixtureOpts{big: true})
	out := t.TempDir()
	build(t, fx, out, t.TempDir(), 0)
	dir := t.TempDir()
	extract(t, filepath.Join(out, packName+".tar"), dir)
	return fx, out, dir
}

// TestOCILayoutReadable reads images/ with go-containerregistry's layout
// package (what crane uses) and validates every image: manifests, configs,
// layer digests and diff ids.
func TestOCILayoutReadable(t *testing.T) {
	t.Parallel()
	fx, _, dir := builtPack(t)
	ii, err := layout.ImageIndexFromPath(filepath.Join(dir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	im, err := ii.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 3 {
		t.Fatalf("index.json lists %d images", len(im.Manifests))
	}
	validated := 0
	for _, d := range im.Manifests {
		in, ok := fx.plan.Input("image/" + d.Annotations[pack.AnnotationImageName])
		if !ok || d.Annotations[pack.AnnotationRefName] != in.Image.Tags[0] {
			t.Errorf("descriptor %s annotations %v", d.Digest, d.Annotations)
		}
		if d.MediaType.IsIndex() {
			child, err := ii.ImageIndex(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if err := checkImageIndex(child); err != nil {
				t.Errorf("index %s: %v", in.Name, err)
			}
			cm, _ := child.IndexManifest()
			if len(cm.Manifests) != len(in.Image.Platforms) {
				t.Errorf("index %s lists %d manifests, want the %d chosen", in.Name, len(cm.Manifests), len(in.Image.Platforms))
			}
			validated += len(cm.Manifests)
			continue
		}
		img, err := ii.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkImage(img); err != nil {
			t.Errorf("image %s: %v", in.Name, err)
		}
		validated++
	}
	if validated != 4 {
		t.Errorf("validated %d images, want 4", validated)
	}
	skopeo(t, dir, fx)
	craneLayout(t, filepath.Join(dir, "images"))
}

// craneLayout has the crane binary read the extracted layout: crane push
// takes a layout directory, so it pushes every image as one index to a
// registry on loopback (go-containerregistry's pkg/registry), and crane
// validate then fetches and re-hashes all of it.
func craneLayout(t *testing.T, layoutDir string) {
	path, ok := tooltest.Find(t, "crane")
	if !ok {
		t.Log("crane not installed: layout checked with go-containerregistry only")
		return
	}
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/pack/images:all"
	if out, err := exec.Command(path, "push", "--index", layoutDir, ref).CombinedOutput(); err != nil {
		t.Fatalf("crane push --index %s: %v\n%s", layoutDir, err, out)
	}
	if out, err := exec.Command(path, "validate", "--remote", ref).CombinedOutput(); err != nil {
		t.Errorf("crane validate --remote %s: %v\n%s", ref, err, out)
	}
}

// TestDockerArchiveReadable reads a tar of images/ (manifest.json at its
// root) as a docker-save archive, as `docker load` and skopeo's
// docker-archive transport do, and validates every image.
func TestDockerArchiveReadable(t *testing.T) {
	t.Parallel()
	fx, _, dir := builtPack(t)
	tarPath := filepath.Join(t.TempDir(), "images.tar")
	var entries []archive.Entry
	root := filepath.Join(dir, "images")
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		b, _ := os.ReadFile(p)
		entries = append(entries, fileEntry(filepath.ToSlash(rel), b))
		return nil
	})
	var buf bytes.Buffer
	if err := archive.WriteTar(context.Background(), &buf, entries, buildTime); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(tarPath, buf.Bytes(), 0o644)
	var dm []pack.DockerManifest
	raw, _ := os.ReadFile(filepath.Join(root, "manifest.json"))
	if err := json.Unmarshal(raw, &dm); err != nil {
		t.Fatal(err)
	}
	for _, m := range dm {
		tag, err := name.NewTag(m.RepoTags[0])
		if err != nil {
			t.Fatal(err)
		}
		img, err := tarball.ImageFromPath(tarPath, &tag)
		if err != nil {
			t.Fatalf("%s: %v", tag, err)
		}
		if err := checkImage(img); err != nil {
			t.Errorf("%s: %v", tag, err)
		}
		cf, err := img.ConfigFile()
		if err != nil || cf.OS != "linux" || cf.Architecture != "amd64" {
			t.Errorf("%s: config %+v, %v", tag, cf, err)
		}
		if path, ok := tooltest.Find(t, "skopeo"); ok {
			out, err := exec.Command(path, "inspect", "docker-archive:"+tarPath+":"+m.RepoTags[0]).CombinedOutput()
			if err != nil {
				t.Errorf("skopeo inspect docker-archive %s: %v\n%s", tag, err, out)
			}
		}
		if path, ok := tooltest.Find(t, "crane"); ok {
			// crane validate takes a single-image archive: the same blobs
			// with a manifest.json listing this image only.
			one := []archive.Entry{}
			for _, e := range entries {
				if e.Name == m.Config || slices.Contains(m.Layers, e.Name) {
					one = append(one, e)
				}
			}
			mj, _ := json.Marshal([]pack.DockerManifest{m})
			one = append(one, fileEntry("manifest.json", mj))
			var b bytes.Buffer
			if err := archive.WriteTar(context.Background(), &b, one, buildTime); err != nil {
				t.Fatal(err)
			}
			single := filepath.Join(t.TempDir(), "one.tar")
			os.WriteFile(single, b.Bytes(), 0o644)
			if out, err := exec.Command(path, "validate", "--tarball", single).CombinedOutput(); err != nil {
				t.Errorf("crane validate %s: %v\n%s", tag, err, out)
			}
		}
	}
	if _, ok := tooltest.Find(t, "skopeo"); !ok {
		t.Log("skopeo not installed: docker-archive checked with go-containerregistry only")
	}
	_ = fx
}

// checkImage re-hashes an image as go-containerregistry's validate package
// does (which needs go-cmp, not in go.mod): the manifest and config match
// their digests, and every layer its digest, size and diff id.
func checkImage(img v1.Image) error {
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	if h, n, _ := v1.SHA256(bytes.NewReader(raw)); h != m.Config.Digest || n != m.Config.Size {
		return fmt.Errorf("config is %s (%d bytes), manifest says %s (%d)", h, n, m.Config.Digest, m.Config.Size)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	if len(layers) != len(cf.RootFS.DiffIDs) || len(layers) != len(m.Layers) {
		return fmt.Errorf("%d layers, %d diff ids, %d manifest layers", len(layers), len(cf.RootFS.DiffIDs), len(m.Layers))
	}
	for i, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		h, n, err := v1.SHA256(rc)
		rc.Close()
		if err != nil || h != m.Layers[i].Digest || n != m.Layers[i].Size {
			return fmt.Errorf("layer %d is %s (%d bytes), manifest says %s (%d): %v", i, h, n, m.Layers[i].Digest, m.Layers[i].Size, err)
		}
		rc, err = l.Uncompressed()
		if err != nil {
			return err
		}
		h, _, err = v1.SHA256(rc)
		rc.Close()
		if err != nil || h != cf.RootFS.DiffIDs[i] {
			return fmt.Errorf("layer %d diff id %s, config says %s: %v", i, h, cf.RootFS.DiffIDs[i], err)
		}
	}
	return nil
}

// checkImageIndex checks every image of an index.
func checkImageIndex(ii v1.ImageIndex) error {
	im, err := ii.IndexManifest()
	if err != nil {
		return err
	}
	for _, d := range im.Manifests {
		img, err := ii.Image(d.Digest)
		if err != nil {
			return err
		}
		if err := checkImage(img); err != nil {
			return fmt.Errorf("%s: %w", d.Digest, err)
		}
	}
	return nil
}

// skopeo inspects each image of the extracted layout, when skopeo is
// installed.
func skopeo(t *testing.T, dir string, fx *fixture) {
	path, ok := tooltest.Find(t, "skopeo")
	if !ok {
		t.Log("skopeo not installed: layout checked with go-containerregistry only")
		return
	}
	for _, in := range fx.plan.Inputs {
		// containers/image's oci: transport resolves a reference only to
		// OCI media types; a docker-typed image (kept as pinned: converting
		// it would change its digest) is reachable through docker-archive.
		if in.Image == nil || strings.Contains(in.MediaType, "docker") {
			continue
		}
		out, err := exec.Command(path, "inspect", "--override-os", "linux", "--override-arch", "amd64", "oci:"+filepath.Join(dir, "images")+":"+in.Image.Tags[0]).CombinedOutput()
		if err != nil {
			t.Errorf("skopeo inspect oci %s: %v\n%s", in.Name, err, out)
		}
	}
}

// TestChartsLintAndRender runs Helm's linter and template engine (what
// `helm lint` and `helm template` run) on every chart in the pack, and the
// helm binary too when it is installed.
func TestChartsLintAndRender(t *testing.T) {
	t.Parallel()
	_, _, dir := builtPack(t)
	charts, _ := filepath.Glob(filepath.Join(dir, "charts", "*.tgz"))
	if len(charts) != 1 {
		t.Fatalf("charts: %v", charts)
	}
	for _, tgz := range charts {
		c, err := loader.Load(tgz)
		if err != nil {
			t.Fatalf("load %s: %v", tgz, err)
		}
		if len(c.Dependencies()) != 1 || c.Dependencies()[0].Name() != "db" {
			t.Errorf("%s: dependencies %v", tgz, c.Dependencies())
		}
		vals, err := chartutil.ToRenderValues(c, c.Values, chartutil.ReleaseOptions{Name: "rel", Namespace: "default", IsInstall: true}, chartutil.DefaultCapabilities)
		if err != nil {
			t.Fatal(err)
		}
		rendered, err := engine.Render(c, vals)
		if err != nil {
			t.Fatalf("render %s: %v", tgz, err)
		}
		if !strings.Contains(rendered["web/templates/deployment.yaml"], "kind: Deployment") || rendered["web/charts/db/templates/service.yaml"] == "" {
			t.Errorf("%s: rendered %d templates, missing the chart's or subchart's", tgz, len(rendered))
		}
		// Lint works on a chart directory, as `helm lint` unpacks an
		// archive to one.
		ex := t.TempDir()
		extract(t, tgz, ex)
		l := lint.All(filepath.Join(ex, c.Name()), nil, "default", false)
		for _, m := range l.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("lint %s: %s", tgz, m)
			}
		}
		if helm, ok := tooltest.Find(t, "helm"); ok {
			for _, args := range [][]string{{"lint", tgz}, {"template", "rel", tgz}} {
				if out, err := exec.Command(helm, args...).CombinedOutput(); err != nil {
					t.Errorf("helm %v: %v\n%s", args, err, out)
				}
			}
		} else {
			t.Log("helm not installed: checked with Helm's Go packages only")
		}
	}
}

// TestShaSumAndGNUTar checks the artifacts with sha256sum -c and the pack's
// headers with GNU tar's own listing.
func TestShaSumAndGNUTar(t *testing.T) {
	t.Parallel()
	_, out, _ := builtPack(t)
	sum := tooltest.Require(t, "sha256sum")
	cmd := exec.Command(sum, "-c", packName+".tar.sha256")
	cmd.Dir = out
	if b, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(b), packName+".tar: OK") {
		t.Errorf("sha256sum -c: %v\n%s", err, b)
	}
	gtar := tooltest.RequireGNUTar(t)
	cmd = exec.Command(gtar, "--list", "-v", "--numeric-owner", "--full-time", "-z", "-f", filepath.Join(out, packName+".tar"))
	cmd.Env = append(os.Environ(), "TZ=UTC", "LC_ALL=C")
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tar --list: %v\n%s", err, b)
	}
	line := regexp.MustCompile(`^([-d][rwx-]{9}) (\d+)/(\d+) +\d+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (.+)$`)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var names []string
	for _, l := range lines {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("unparsed: %q", l)
			continue
		}
		mode, uid, gid, when, name := m[1], m[2], m[3], m[4], m[5]
		names = append(names, name)
		if uid != "0" || gid != "0" || when != "2025-01-01 00:00:00" {
			t.Errorf("%s: owner %s/%s time %s", name, uid, gid, when)
		}
		want := "-rw-r--r--"
		if strings.HasSuffix(name, "/") {
			want = "drwxr-xr-x"
		}
		if mode != want {
			t.Errorf("%s: mode %s, want %s", name, mode, want)
		}
	}
	if names[0] != "charts/" || names[len(names)-1] != "signatures/root.json" {
		t.Errorf("order: first %s, last %s", names[0], names[len(names)-1])
	}
}
