package main

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/repo"
)

// TestPin: bale pin writes the digest of an image named by tag (resolved
// from a loopback registry) and the version and tree digest of a local chart into the CUE
// source, keeping its comments, prints a diff, and afterwards --check,
// vet --strict, plan --strict and build --strict accept the spec, which
// they refused before.
func TestPin(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/team/web:1.0"
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	src := `package x

// The pack of the web team.
bootstrapPack: {
	sourceDateEpoch: 0
	charts: [{
		name: "airgap-controller"
		path: "../airgap-controller" // vendored
	}]
	images: [
		// The web front end.
		{name: "web", ref: "` + ref + `"},
	]
}
`
	ws := writeWorkspace(t, map[string]string{"spec/pack.cue": src}, "airgap-controller")
	file := filepath.Join(ws, "spec", "pack.cue")

	_, errs, code := bale(t, ws, "pin", "spec", "--check")
	if code != 1 || !strings.Contains(errs, "spec/pack.cue:12:17: bootstrapPack.images[0].digest: not pinned (image/web)") ||
		!strings.Contains(errs, "spec/pack.cue:8:3: bootstrapPack.charts[0].version: not pinned (chart/airgap-controller)") {
		t.Fatalf("pin --check before: exit %d\n%s", code, errs)
	}
	for _, args := range [][]string{{"plan", "spec", "--strict"}, {"build", "spec", "--strict", "-q", "-o", "out", "--cache", "cache"}} {
		if _, errs, code := bale(t, ws, args...); code != 1 || !strings.Contains(errs, "tag without a pinned digest") {
			t.Errorf("bale %v before pinning: exit %d, want 1\n%s", args, code, errs)
		}
	}

	out, errs, code := bale(t, ws, "pin", "spec", "--dry-run")
	if code != 0 || !strings.Contains(out, "+\t\tversion: \"1.4.2\"\n") {
		t.Fatalf("pin --dry-run: exit %d\n%s%s", code, out, errs)
	}
	if b, _ := os.ReadFile(file); string(b) != src {
		t.Fatal("pin --dry-run wrote the spec")
	}

	out, errs, code = bale(t, ws, "pin", "spec")
	if code != 0 {
		t.Fatalf("pin: exit %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{"--- spec/pack.cue\n+++ spec/pack.cue\n@@ ", "+\t\tversion: \"1.4.2\"\n", `+		{name: "web", ref: "` + ref + `", digest: "` + d.String() + `"},`} {
		if !strings.Contains(out, want) {
			t.Errorf("pin diff lacks %q:\n%s", want, out)
		}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"// The pack of the web team.\n", "// vendored\n", "// The web front end.\n", `digest: "` + d.String() + `"`, `version: "1.4.2"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("pinned spec lacks %q:\n%s", want, b)
		}
	}
	// The chart directory's tree digest is pinned too.
	if strings.Count(string(b), "digest:") != 2 {
		t.Errorf("pinned spec lacks the chart's digest:\n%s", b)
	}
	if _, errs, code := bale(t, ws, "pin", "spec", "--check"); code != 0 {
		t.Errorf("pin --check after: exit %d\n%s", code, errs)
	}
	for _, args := range [][]string{{"vet", "--strict", "spec"}, {"plan", "spec", "--strict", "-o", "plan.json"}, {"build", "spec", "--strict", "-q", "-o", "out", "--cache", "cache"}} {
		if _, errs, code := bale(t, ws, args...); code != 0 {
			t.Errorf("bale %v after pinning: exit %d\n%s", args, code, errs)
		}
	}
	// Pinning a pinned spec changes nothing.
	out, _, code = bale(t, ws, "pin", "spec")
	if b2, _ := os.ReadFile(file); code != 0 || string(b2) != string(b) || !strings.Contains(out, "nothing to write") {
		t.Errorf("pin of a pinned spec: exit %d\n%s", code, out)
	}
}

// chartRepo serves a real Helm chart repository on loopback: the
// airgap-controller test chart packaged by Helm as each of versions, with
// an index.yaml as helm repo index writes it. It returns the repository's
// URL and its directory, whose files the test may change (then reindex).
func chartRepo(t *testing.T, versions ...string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	for _, v := range versions {
		publishChart(t, dir, "airgap-controller", v, "")
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	reindex(t, dir, srv.URL)
	return srv.URL, dir
}

// publishChart packages the airgap-controller test chart with Helm into
// the repository directory dir as name and version, with description if
// given (other bytes under the same version).
func publishChart(t *testing.T, dir, name, version, description string) {
	t.Helper()
	ch, err := loader.Load(filepath.Join(repoDir(), "testdata", "charts", "airgap-controller"))
	if err != nil {
		t.Fatal(err)
	}
	ch.Metadata.Name, ch.Metadata.Version = name, version
	if description != "" {
		ch.Metadata.Description = description
	}
	if _, err := chartutil.Save(ch, dir); err != nil {
		t.Fatal(err)
	}
}

// reindex writes dir's index.yaml as helm repo index does.
func reindex(t *testing.T, dir, url string) {
	t.Helper()
	idx, err := repo.IndexDirectory(dir, url)
	if err != nil {
		t.Fatal(err)
	}
	idx.SortEntries()
	if err := idx.WriteFile(filepath.Join(dir, "index.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPinCharts: bale pin writes a chart's digest, and its exact version
// when the spec gives a range or none, resolved from a real Helm chart
// repository on loopback; the range is replaced in place, its comment
// kept. --check lists each before and nothing after. Attack: the
// repository then republishes the pinned version with other bytes (and a
// matching index), and plan refuses it, naming the chart and both
// digests.
func TestPinCharts(t *testing.T) {
	url, dir := chartRepo(t, "1.4.2", "1.5.0", "2.0.0")
	src := `package x

bootstrapPack: {
	sourceDateEpoch: 0
	charts: [{
		name:       "airgap-controller"
		repository: "` + url + `"
		version:    "^1.4" // the 1.x line
	}, {
		name:       "newest"
		repository: "` + url + `"
	}]
}
`
	// "newest" is airgap-controller under another name in the spec: the
	// chart's own name must match, so serve it as a second chart.
	src = strings.Replace(src, `name:       "newest"`, `name:       "airgap-controller2"`, 1)
	publishChart(t, dir, "airgap-controller2", "3.1.0", "")
	reindex(t, dir, url)

	ws := writeWorkspace(t, map[string]string{"spec/pack.cue": src})
	file := filepath.Join(ws, "spec", "pack.cue")
	_, errs, code := bale(t, ws, "pin", "spec", "--check")
	for _, want := range []string{
		`spec/pack.cue:8:3: bootstrapPack.charts[0].version: "^1.4" is a range, not pinned (chart/airgap-controller)`,
		"spec/pack.cue:8:3: bootstrapPack.charts[0].digest: not pinned (chart/airgap-controller)",
		"spec/pack.cue:11:3: bootstrapPack.charts[1].version: not pinned (chart/airgap-controller2)",
		"spec/pack.cue:11:3: bootstrapPack.charts[1].digest: not pinned (chart/airgap-controller2)",
	} {
		if code != 1 || !strings.Contains(errs, want) {
			t.Errorf("pin --check before: exit %d, want %q\n%s", code, want, errs)
		}
	}
	if _, errs, code := bale(t, ws, "vet", "--strict", "spec"); code != 1 || !strings.Contains(errs, `"^1.4" is a range`) {
		t.Errorf("vet --strict before: exit %d\n%s", code, errs)
	}

	out, errs, code := bale(t, ws, "pin", "spec")
	if code != 0 {
		t.Fatalf("pin: exit %d\n%s%s", code, out, errs)
	}
	sums := map[string]string{}
	idx, err := repo.LoadIndexFile(filepath.Join(dir, "index.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"airgap-controller", "airgap-controller2"} {
		for _, cv := range idx.Entries[name] {
			sums[name+"-"+cv.Version] = "sha256:" + cv.Digest
		}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\t\tversion:    \"1.5.0\" // the 1.x line\n\t\tdigest:     \"" + sums["airgap-controller-1.5.0"] + "\"\n",
		"\t\trepository: \"" + url + "\"\n\t\tversion:    \"3.1.0\"\n\t\tdigest:     \"" + sums["airgap-controller2-3.1.0"] + "\"\n",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("pinned spec lacks %q:\n%s", want, b)
		}
	}
	if !strings.Contains(out, "-\t\tversion:    \"^1.4\" // the 1.x line\n+\t\tversion:    \"1.5.0\" // the 1.x line\n") {
		t.Errorf("pin diff:\n%s", out)
	}
	for _, args := range [][]string{{"pin", "spec", "--check"}, {"vet", "--strict", "spec"}, {"plan", "spec", "--strict", "-o", "plan.json"}} {
		if _, errs, code := bale(t, ws, args...); code != 0 {
			t.Errorf("bale %v after pinning: exit %d\n%s", args, code, errs)
		}
	}

	// The repository republishes 1.5.0 with other bytes.
	publishChart(t, dir, "airgap-controller", "1.5.0", "republished")
	reindex(t, dir, url)
	_, errs, code = bale(t, ws, "plan", "spec", "-o", "plan2.json")
	if code == 0 || !strings.Contains(errs, "spec pins "+sums["airgap-controller-1.5.0"]+" but the chart has sha256:") {
		t.Errorf("plan of a republished chart: exit %d\n%s", code, errs)
	}
}

// pushRandom pushes a new random image to ref, moving its tag, and returns
// the image's digest.
func pushRandom(t *testing.T, ref string) string {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// TestPinUpdate: a spec pins an image by tag on a loopback registry and a
// chart from a loopback chart repository. The tag then moves to another
// image and the chart is republished under its version: plan fails naming
// both digests and the bale pin --update command that re-pins them; bale
// pin alone changes nothing (a pinned digest is never re-pinned
// silently); --update=NAME re-pins only that input, with the diff;
// --update alone re-pins the rest; then plan --strict accepts the spec.
func TestPinUpdate(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/team/web:1.0"
	old := pushRandom(t, ref)
	url, dir := chartRepo(t, "1.4.2")
	ws := writeWorkspace(t, map[string]string{"spec/pack.cue": `package x

bootstrapPack: {
	sourceDateEpoch: 0
	charts: [{name: "airgap-controller", repository: "` + url + `", version: "1.4.2"}]
	images: [{name: "web", ref: "` + ref + `"}]
}
`})
	file := filepath.Join(ws, "spec", "pack.cue")
	if out, errs, code := bale(t, ws, "pin", "spec"); code != 0 {
		t.Fatalf("pin: exit %d\n%s%s", code, out, errs)
	}
	pinned, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := repo.LoadIndexFile(filepath.Join(dir, "index.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	oldChart := "sha256:" + idx.Entries["airgap-controller"][0].Digest
	if !strings.Contains(string(pinned), old) || !strings.Contains(string(pinned), oldChart) {
		t.Fatalf("pin did not pin %s and %s:\n%s", old, oldChart, pinned)
	}

	// The tag moves; the chart is republished under 1.4.2.
	moved := pushRandom(t, ref)
	publishChart(t, dir, "airgap-controller", "1.4.2", "republished")
	reindex(t, dir, url)

	_, errs, code := bale(t, ws, "plan", "spec", "-o", "plan.json")
	for _, want := range []string{
		"spec pins " + old + " but the source has " + moved,
		"spec pins " + oldChart + " but the chart has sha256:",
		"re-pin with: bale pin --update=airgap-controller,web spec\n",
	} {
		if code != 1 || !strings.Contains(errs, want) {
			t.Errorf("plan after the tag moved: exit %d, want %q in:\n%s", code, want, errs)
		}
	}
	out, _, code := bale(t, ws, "pin", "spec")
	if b, _ := os.ReadFile(file); code != 0 || string(b) != string(pinned) || !strings.Contains(out, "nothing to write") {
		t.Errorf("pin without --update: exit %d\n%s", code, out)
	}
	if _, errs, code := bale(t, ws, "pin", "spec", "--update=web,nope"); code != 1 || !strings.Contains(errs, "no image or chart named nope") {
		t.Errorf("pin --update of an unknown name: exit %d\n%s", code, errs)
	}
	if _, errs, code := bale(t, ws, "pin", "--update", "spec", "web"); code != 1 || !strings.Contains(errs, "--update=web") {
		t.Errorf("pin --update spec web: exit %d\n%s", code, errs)
	}

	// Only web: the chart's pin still fails planning, and nothing is
	// written.
	_, errs, code = bale(t, ws, "pin", "spec", "--update=web")
	if b, _ := os.ReadFile(file); code != 1 || string(b) != string(pinned) || !strings.Contains(errs, "re-pin with: bale pin --update=airgap-controller spec\n") {
		t.Errorf("pin --update=web with the chart moved too: exit %d\n%s", code, errs)
	}
	// Both: one diff, each digest replaced in place.
	out, errs, code = bale(t, ws, "pin", "spec", "--update")
	if code != 0 {
		t.Fatalf("pin --update: exit %d\n%s%s", code, out, errs)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	idx, err = repo.LoadIndexFile(filepath.Join(dir, "index.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	newChart := "sha256:" + idx.Entries["airgap-controller"][0].Digest
	for _, want := range []string{`digest: "` + moved + `"`, `digest: "` + newChart + `"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("pin --update: the spec lacks %q:\n%s", want, b)
		}
	}
	for _, line := range []string{"-\tcharts: [{name: \"airgap-controller\"", "+\tcharts: [{name: \"airgap-controller\"", "-\timages: [{name: \"web\", ref: \"" + ref + "\", digest: \"" + old + "\"}]\n", "+\timages: [{name: \"web\", ref: \"" + ref + "\", digest: \"" + moved + "\"}]\n"} {
		if !strings.Contains(out, line) {
			t.Errorf("pin --update: the diff lacks %q:\n%s", line, out)
		}
	}
	if strings.Contains(string(b), old) || strings.Contains(string(b), oldChart) {
		t.Errorf("pin --update left an old digest in the spec:\n%s", b)
	}
	if !strings.Contains(errs, "re-pinned bootstrapPack.images[0].digest: \""+moved+"\" (was \""+old+"\")") {
		t.Errorf("pin --update stderr:\n%s", errs)
	}
	if _, errs, code := bale(t, ws, "plan", "spec", "--strict", "-o", "plan.json"); code != 0 {
		t.Errorf("plan --strict after pin --update: exit %d\n%s", code, errs)
	}
	out, _, code = bale(t, ws, "pin", "spec", "--update")
	if b2, _ := os.ReadFile(file); code != 0 || string(b2) != string(b) || !strings.Contains(out, "every pin matches its source; nothing to write") {
		t.Errorf("pin --update with nothing moved: exit %d\n%s", code, out)
	}
}
