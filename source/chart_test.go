package source

import (
	"archive/tar"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/repo"
	"sigs.k8s.io/yaml"

	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner/spec"
)

// demoChart scaffolds a chart with chartutil.Create (`helm create`) and
// packages it deterministically.
func demoChart(t *testing.T, chartName string) (dir string, tgz []byte) {
	t.Helper()
	dir, err := chartutil.Create(chartName, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return dir, packageChart(t, dir, chartName)
}

// chartRepo serves index.yaml and the archive under /charts/; serve says
// which archive bytes to send.
func chartRepo(t *testing.T, chartName, version string, tgz []byte, serve func() []byte) string {
	t.Helper()
	sum := digestOf(tgz)
	idx := repo.NewIndexFile()
	md := &chart.Metadata{APIVersion: "v2", Name: chartName, Version: version}
	// A relative URL: resolved against the repository URL.
	if err := idx.MustAdd(md, chartName+"-"+version+".tgz", "", strings.TrimPrefix(sum, "sha256:")); err != nil {
		t.Fatal(err)
	}
	index, err := yaml.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/charts/index.yaml", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(index) })
	mux.HandleFunc("/charts/"+chartName+"-"+version+".tgz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(serve()) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/charts"
}

func TestChartRepository(t *testing.T) {
	t.Parallel()
	_, tgz := demoChart(t, "demo")
	var tampered atomic.Bool
	bad := makeTgz(t, []tarEntry{{name: "demo/Chart.yaml", body: "apiVersion: v2\nname: demo\nversion: 0.1.0\n"}})
	url := chartRepo(t, "demo", "0.1.0", tgz, func() []byte {
		if tampered.Load() {
			return bad
		}
		return tgz
	})
	r := newResolver(t, Options{})
	c := spec.Chart{Name: "demo", Repository: url, Version: "0.1.0"}
	in, err := r.Chart(bg, "/", c)
	if err != nil {
		t.Fatal(err)
	}
	mustValid(t, in)
	want := plan.Source{Type: plan.SourceRepository, Ref: url, URL: url + "/demo-0.1.0.tgz"}
	if in.Digest != digestOf(tgz) || in.Size != int64(len(tgz)) || in.Source != want {
		t.Fatalf("input %+v", in)
	}
	if in.Chart.Version != "0.1.0" || in.Chart.AppVersion == "" {
		t.Fatalf("chart facts %+v", in.Chart)
	}
	ch, err := r.LoadChart(bg, in)
	if err != nil || ch.Metadata.Name != "demo" {
		t.Fatalf("LoadChart: %v", err)
	}

	if _, err := r.Chart(bg, "/", spec.Chart{Name: "demo", Repository: url, Version: "0.2.0"}); err == nil || !strings.Contains(err.Error(), "no version 0.2.0 of chart demo (versions: 0.1.0)") {
		t.Fatalf("missing version: err = %v", err)
	}
	if _, err := r.Chart(bg, "/", spec.Chart{Name: "nodemo", Repository: url, Version: "0.1.0"}); err == nil || !strings.Contains(err.Error(), `no chart "nodemo" (charts: demo)`) {
		t.Fatalf("missing chart: err = %v", err)
	}

	tampered.Store(true)
	_, err = r.Chart(bg, "/", c)
	if err == nil || !strings.Contains(err.Error(), "resolve chart demo") || !strings.Contains(err.Error(), digestOf(bad)) || !strings.Contains(err.Error(), digestOf(tgz)) {
		t.Fatalf("tampered archive: err = %v", err)
	}
	// The executor's load sees the change too.
	if _, err := r.LoadChart(bg, in); err == nil || !strings.Contains(err.Error(), "changed since planning") {
		t.Fatalf("LoadChart after tampering: err = %v", err)
	}
}

func TestChartOCI(t *testing.T) {
	t.Parallel()
	host := startRegistry(t, nil)
	_, tgz := demoChart(t, "demo")
	layer := static.NewLayer(tgz, types.MediaType(HelmChartLayerType))
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{Layer: layer})
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.ConfigMediaType(img, "application/vnd.cncf.helm.config.v1+json")
	ref, _ := name.ParseReference(host + "/charts/demo:0.1.0")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	r := newResolver(t, Options{})
	in, err := r.Chart(bg, "/", spec.Chart{Name: "demo", OCI: "oci://" + host + "/charts/demo", Version: "0.1.0"})
	if err != nil {
		t.Fatal(err)
	}
	mustValid(t, in)
	if in.Digest != digestOf(tgz) || in.MediaType != HelmChartLayerType || in.Source.Ref != host+"/charts/demo:0.1.0" {
		t.Fatalf("input %+v", in)
	}
	if ch, err := r.LoadChart(bg, in); err != nil || ch.Metadata.Version != "0.1.0" {
		t.Fatalf("LoadChart: %v", err)
	}
	// An image is not a chart.
	push(t, host+"/charts/notachart:0.1.0", randomImage(t, "linux", "amd64", ""))
	if _, err := r.Chart(bg, "/", spec.Chart{Name: "notachart", OCI: "oci://" + host + "/charts/notachart", Version: "0.1.0"}); err == nil || !strings.Contains(err.Error(), "not a Helm chart") {
		t.Fatalf("image as chart: err = %v", err)
	}
}

func TestChartHostileArchives(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	r := newResolver(t, Options{Root: root})
	chartYAML := tarEntry{name: "evil/Chart.yaml", body: "apiVersion: v2\nname: evil\nversion: 1.0.0\n"}
	for _, tc := range []struct {
		name  string
		entry tarEntry
	}{
		{"dotdot", tarEntry{name: "evil/../../etc/cron.d/x", body: "x"}},
		{"absolute", tarEntry{name: "/etc/passwd", body: "x"}},
		{"symlink", tarEntry{name: "evil/templates/link.yaml", typeflag: tar.TypeSymlink, linkname: "/etc/passwd"}},
		{"hardlink", tarEntry{name: "evil/templates/hard.yaml", typeflag: tar.TypeLink, linkname: "evil/Chart.yaml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeFile(t, filepath.Join(root, tc.name+".tgz"), makeTgz(t, []tarEntry{chartYAML, tc.entry}))
			_, err := r.Chart(bg, root, spec.Chart{Name: "evil", Path: tc.name + ".tgz"})
			if err == nil || !strings.Contains(err.Error(), "unsafe archive entry") {
				t.Fatalf("err = %v", err)
			}
		})
	}
	// The same archive without the hostile entry loads.
	writeFile(t, filepath.Join(root, "ok.tgz"), makeTgz(t, []tarEntry{chartYAML}))
	if _, err := r.Chart(bg, root, spec.Chart{Name: "evil", Path: "ok.tgz"}); err != nil {
		t.Fatal(err)
	}
}

func TestChartDirSymlinkRefused(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	dir, _ := demoChart(t, "demo")
	copyDir(t, dir, filepath.Join(root, "demo"))
	r := newResolver(t, Options{Root: root})
	if _, err := r.Chart(bg, root, spec.Chart{Name: "demo", Path: "demo"}); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/hostname", filepath.Join(root, "demo", "templates", "leak.txt")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Chart(bg, root, spec.Chart{Name: "demo", Path: "demo"}); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("err = %v", err)
	}
}

func TestChartChangedAfterPlanning(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	dir, tgz := demoChart(t, "demo")
	copyDir(t, dir, filepath.Join(root, "demo"))
	writeFile(t, filepath.Join(root, "demo-0.1.0.tgz"), tgz)
	r := newResolver(t, Options{Root: root})
	dirIn, err := r.Chart(bg, root, spec.Chart{Name: "demo", Path: "demo", Version: "0.1.0"})
	if err != nil {
		t.Fatal(err)
	}
	tgzIn, err := r.Chart(bg, root, spec.Chart{Name: "demo", Path: "demo-0.1.0.tgz", Version: "0.1.0"})
	if err != nil {
		t.Fatal(err)
	}
	// The directory digest is the documented listing.
	ch, err := r.LoadChart(bg, dirIn)
	if err != nil {
		t.Fatal(err)
	}
	var listing strings.Builder
	names := map[string][]byte{}
	var sorted []string
	for _, f := range ch.Raw {
		names[f.Name] = f.Data
		sorted = append(sorted, f.Name)
	}
	sort.Strings(sorted)
	for _, n := range sorted {
		sum := digestOf(names[n])
		listing.WriteString(strings.TrimPrefix(sum, "sha256:") + "  " + n + "\n")
	}
	if got := digestOf([]byte(listing.String())); got != dirIn.Digest {
		t.Fatalf("dir digest %s, listing hashes to %s", dirIn.Digest, got)
	}
	if _, err := r.LoadChart(bg, tgzIn); err != nil {
		t.Fatal(err)
	}

	writeFile(t, filepath.Join(root, "demo", "values.yaml"), []byte("replicaCount: 9\n"))
	if _, err := r.LoadChart(bg, dirIn); err == nil || !strings.Contains(err.Error(), "changed since planning") {
		t.Fatalf("dir: err = %v", err)
	}
	writeFile(t, filepath.Join(root, "demo-0.1.0.tgz"), makeTgz(t, []tarEntry{{name: "demo/Chart.yaml", body: "apiVersion: v2\nname: demo\nversion: 0.1.0\n"}}))
	if _, err := r.LoadChart(bg, tgzIn); err == nil || !strings.Contains(err.Error(), "changed since planning") {
		t.Fatalf("archive: err = %v", err)
	}
}

// TestPickVersion: a spec's chart version picks among a repository's
// versions as Helm does: the exact string first, else the newest in the
// range (pre-releases only when the range names one), else an error
// listing what there is.
func TestPickVersion(t *testing.T) {
	t.Parallel()
	have := []string{"1.4.2", "1.5.0", "1.6.0-rc.1", "2.0.0", "junk"}
	for _, tt := range []struct {
		want, got, err string
	}{
		{want: "1.4.2", got: "1.4.2"},
		{want: "junk", got: "junk"},
		{want: "^1.4", got: "1.5.0"},
		{want: "~1.4.0", got: "1.4.2"},
		{want: ">=1.0 <2", got: "1.5.0"},
		{want: "1.x", got: "1.5.0"},
		{want: "", got: "2.0.0"},
		{want: ">=1.6.0-0 <2", got: "1.6.0-rc.1"},
		{want: "1.4.3", err: "no version 1.4.3 (versions: 1.4.2, 1.5.0, 1.6.0-rc.1, 2.0.0, junk)"},
		{want: "^3", err: "no version in range ^3"},
		{want: "not a range!", err: `version "not a range!" is neither a version nor a range`},
	} {
		got, err := PickVersion(tt.want, have)
		if got != tt.got || (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("PickVersion(%q) = %q, %v; want %q, %q", tt.want, got, err, tt.got, tt.err)
		}
	}
}
