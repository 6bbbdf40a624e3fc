package source

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"helm.sh/helm/v3/pkg/chart/loader"

	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner/spec"
)

// confineWorkspace is a workspace holding one input of every local kind,
// and a directory outside it holding a secret.
type confineWorkspace struct {
	root, outside string
	r             *Resolver
}

func newConfineWorkspace(t *testing.T) *confineWorkspace {
	t.Helper()
	w := &confineWorkspace{root: t.TempDir(), outside: t.TempDir()}
	writeFile(t, filepath.Join(w.outside, "secret"), []byte("CI_TOKEN=hunter2\n"))
	writeFile(t, filepath.Join(w.root, "in", "tool"), []byte("#!/bin/sh\n"))
	dir, tgz := demoChart(t, "demo")
	copyDir(t, dir, filepath.Join(w.root, "demo"))
	writeFile(t, filepath.Join(w.root, "demo-0.1.0.tgz"), tgz)
	img := randomImage(t, "linux", "amd64", "")
	lp, err := layout.Write(filepath.Join(w.root, "lay"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("example.com/app:1")
	if err := tarball.WriteToFile(filepath.Join(w.root, "app.tar"), tag, img); err != nil {
		t.Fatal(err)
	}
	w.r = newResolver(t, Options{Root: w.root, Offline: true})
	return w
}

// moveOut moves rel out of the workspace and leaves a symbolic link to it
// in its place, so the workspace looks the same through the link.
func (w *confineWorkspace) moveOut(t *testing.T, rel string) {
	t.Helper()
	src := filepath.Join(w.root, filepath.FromSlash(rel))
	dst := filepath.Join(w.outside, "moved-"+filepath.Base(src))
	if err := os.Rename(src, dst); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dst, src); err != nil {
		t.Fatal(err)
	}
}

// linkSecret replaces rel with a hard link to the secret outside.
func (w *confineWorkspace) linkSecret(t *testing.T, rel string) {
	t.Helper()
	p := filepath.Join(w.root, filepath.FromSlash(rel))
	if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(w.outside, "secret"), p); err != nil {
		t.Skipf("hard links unsupported here: %v", err)
	}
}

// TestLocalInputsConfined plans each local input from a clean workspace,
// then turns it into an attack and checks that both planning and the
// executor's re-open (the Source methods) refuse it, naming the path.
func TestLocalInputsConfined(t *testing.T) {
	t.Parallel()
	var (
		fileSpec = func(w *confineWorkspace) (plan.Input, error) {
			return w.r.File(bg, w.root, plan.KindFile, "tool", spec.File{Path: "in/tool"})
		}
		fileOpen = func(w *confineWorkspace, in plan.Input) error {
			rc, _, err := w.r.OpenFile(bg, in)
			if err == nil {
				_, err = readAll(rc)
			}
			return err
		}
		chartDir = func(w *confineWorkspace) (plan.Input, error) {
			return w.r.Chart(bg, w.root, spec.Chart{Name: "demo", Path: "demo"})
		}
		chartTgz = func(w *confineWorkspace) (plan.Input, error) {
			return w.r.Chart(bg, w.root, spec.Chart{Name: "demo", Path: "demo-0.1.0.tgz"})
		}
		chartLoad = func(w *confineWorkspace, in plan.Input) error {
			_, err := w.r.LoadChart(bg, in)
			return err
		}
		layoutSpec = func(w *confineWorkspace) (plan.Input, error) {
			return w.r.Image(bg, w.root, spec.Image{Name: "app", Layout: &spec.LayoutSource{Path: "lay"}})
		}
		tarSpec = func(w *confineWorkspace) (plan.Input, error) {
			return w.r.Image(bg, w.root, spec.Image{Name: "app", Tarball: &spec.TarballSource{Path: "app.tar"}})
		}
		// blobOpen opens every blob of the image, as the executor does, and
		// checks that BlobFile does not vouch for a path either.
		blobOpen = func(w *confineWorkspace, in plan.Input) error {
			m := in.Image.Manifests[0]
			for _, d := range []string{in.Digest, m.Config.Digest, m.Layers[0].Digest} {
				if p, ok := w.r.BlobFile(bg, in, d); ok {
					t.Errorf("BlobFile(%s) = %s, want refused", d, p)
				}
				rc, _, err := w.r.OpenBlob(bg, in, d)
				if err == nil {
					_, err = readAll(rc)
				}
				if err != nil {
					return err
				}
			}
			return nil
		}
	)
	for _, tc := range []struct {
		name   string
		plan   func(*confineWorkspace) (plan.Input, error)
		attack func(*testing.T, *confineWorkspace)
		open   func(*confineWorkspace, plan.Input) error
		want   string
	}{
		{"symlinked blobs dir", layoutSpec, func(t *testing.T, w *confineWorkspace) { w.moveOut(t, "lay/blobs/sha256") }, blobOpen,
			"lay/blobs/sha256 is a symbolic link"},
		{"symlinked blobs parent", layoutSpec, func(t *testing.T, w *confineWorkspace) { w.moveOut(t, "lay/blobs") }, blobOpen,
			"lay/blobs is a symbolic link"},
		{"symlinked layout dir", layoutSpec, func(t *testing.T, w *confineWorkspace) { w.moveOut(t, "lay") }, blobOpen,
			"lay is a symbolic link"},
		{"layout index.json symlink", layoutSpec, func(t *testing.T, w *confineWorkspace) { w.moveOut(t, "lay/index.json") }, nil,
			"lay/index.json is a symbolic link"},
		{"layout index.json hard link", layoutSpec, func(t *testing.T, w *confineWorkspace) { w.linkSecret(t, "lay/index.json") }, nil,
			"lay/index.json has 2 hard links"},
		{"symlinked intermediate dir of a file", fileSpec, func(t *testing.T, w *confineWorkspace) { w.moveOut(t, "in") }, fileOpen,
			"in is a symbolic link"},
		{"symlinked file", fileSpec, func(t *testing.T, w *confineWorkspace) { w.moveOut(t, "in/tool") }, fileOpen,
			"in/tool is a symbolic link"},
		{"hard-linked file", fileSpec, func(t *testing.T, w *confineWorkspace) { w.linkSecret(t, "in/tool") }, fileOpen,
			"in/tool has 2 hard links"},
		{"hard-linked chart file", chartDir, func(t *testing.T, w *confineWorkspace) { w.linkSecret(t, "demo/templates/NOTES.txt") }, chartLoad,
			"demo/templates/NOTES.txt has 2 hard links"},
		{"hard-linked Chart.yaml", chartDir, func(t *testing.T, w *confineWorkspace) { w.linkSecret(t, "demo/Chart.yaml") }, chartLoad,
			"demo/Chart.yaml has 2 hard links"},
		{"symlinked chart subdir", chartDir, func(t *testing.T, w *confineWorkspace) { w.moveOut(t, "demo/templates") }, chartLoad,
			"chart directory holds a symbolic link, demo/templates"},
		{"symlinked chart dir", chartDir, func(t *testing.T, w *confineWorkspace) { w.moveOut(t, "demo") }, chartLoad,
			"demo is a symbolic link"},
		{"hard-linked chart archive", chartTgz, func(t *testing.T, w *confineWorkspace) { w.linkSecret(t, "demo-0.1.0.tgz") }, chartLoad,
			"demo-0.1.0.tgz has 2 hard links"},
		{"symlinked chart archive", chartTgz, func(t *testing.T, w *confineWorkspace) { w.moveOut(t, "demo-0.1.0.tgz") }, chartLoad,
			"demo-0.1.0.tgz is a symbolic link"},
		{"symlinked tarball", tarSpec, func(t *testing.T, w *confineWorkspace) { w.moveOut(t, "app.tar") }, blobOpen,
			"app.tar is a symbolic link"},
		{"hard-linked tarball", tarSpec, func(t *testing.T, w *confineWorkspace) { w.linkSecret(t, "app.tar") }, blobOpen,
			"app.tar has 2 hard links"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newConfineWorkspace(t)
			in, err := tc.plan(w)
			if err != nil {
				t.Fatalf("clean workspace: %v", err)
			}
			tc.attack(t, w)
			if _, err := tc.plan(w); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("plan: err = %v, want %q", err, tc.want)
			}
			if tc.open == nil {
				return
			}
			if err := tc.open(w, in); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("build: err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestLinkInsideWorkspaceRefused: a link is refused even when it points
// back inside the workspace: bale does not follow links in local inputs.
func TestLinkInsideWorkspaceRefused(t *testing.T) {
	t.Parallel()
	w := newConfineWorkspace(t)
	if err := os.Symlink("in", filepath.Join(w.root, "alias")); err != nil {
		t.Fatal(err)
	}
	_, err := w.r.File(bg, w.root, plan.KindFile, "tool", spec.File{Path: "alias/tool"})
	if err == nil || !strings.Contains(err.Error(), "alias is a symbolic link") {
		t.Fatalf("err = %v", err)
	}
}

// TestLayoutBlobHardLinkAccepted documents the one exception: layout
// blobs are content-addressed, so a multiply-linked blob is taken (and
// still verified against its digest).
func TestLayoutBlobHardLinkAccepted(t *testing.T) {
	t.Parallel()
	w := newConfineWorkspace(t)
	in, err := w.r.Image(bg, w.root, spec.Image{Name: "app", Layout: &spec.LayoutSource{Path: "lay"}})
	if err != nil {
		t.Fatal(err)
	}
	l := in.Image.Manifests[0].Layers[0]
	blob := filepath.Join(w.root, "lay", "blobs", "sha256", strings.TrimPrefix(l.Digest, "sha256:"))
	if err := os.Link(blob, filepath.Join(w.outside, "dedup")); err != nil {
		t.Skipf("hard links unsupported here: %v", err)
	}
	if _, err := w.r.Image(bg, w.root, spec.Image{Name: "app", Layout: &spec.LayoutSource{Path: "lay"}}); err != nil {
		t.Fatal(err)
	}
	if p, ok := w.r.BlobFile(bg, in, l.Digest); !ok || p != filepath.Join(w.r.root, "lay", "blobs", "sha256", strings.TrimPrefix(l.Digest, "sha256:")) {
		t.Fatalf("BlobFile = %s, %v", p, ok)
	}
	rc, _, err := w.r.OpenBlob(bg, in, l.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(rc); err != nil {
		t.Fatal(err)
	}
}

// TestChartDirMatchesHelm: bale reads chart directories itself; what it
// hands Helm must be what Helm's LoadDir reads (.helmignore, a byte order
// mark, nested subcharts), so DirDigest does not change.
func TestChartDirMatchesHelm(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	dir, _ := demoChart(t, "demo")
	copyDir(t, dir, filepath.Join(root, "demo"))
	writeFile(t, filepath.Join(root, "demo", ".helmignore"), []byte("*.bak\nskipme/\n"))
	writeFile(t, filepath.Join(root, "demo", "old.bak"), []byte("ignored"))
	writeFile(t, filepath.Join(root, "demo", "skipme", "x.yaml"), []byte("ignored"))
	writeFile(t, filepath.Join(root, "demo", "files", "bom.txt"), []byte("\xEF\xBB\xBFwith a byte order mark"))
	sub, _ := demoChart(t, "sub")
	copyDir(t, sub, filepath.Join(root, "demo", "charts", "sub"))
	dirs := map[string]string{"demo": filepath.Join(root, "demo")}
	for _, c := range []string{"airgap-controller", "mirror-agent"} {
		dirs[c] = filepath.Join(repoRoot(t), "testdata", "charts", c)
	}
	for c, abs := range dirs {
		r := newResolver(t, Options{Root: filepath.Dir(abs)})
		in, err := r.Chart(bg, filepath.Dir(abs), spec.Chart{Name: c, Path: c})
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		ch, err := loader.LoadDir(abs)
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := DirDigest(ch); d != in.Digest {
			t.Errorf("%s: bale reads %s, Helm's LoadDir %s", c, in.Digest, d)
		}
	}
}
