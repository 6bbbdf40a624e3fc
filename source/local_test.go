package source

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner/spec"
)

// Digests of the shared fixtures, from testdata/README.md.
const (
	fxController      = "sha256:9c265428e3f2b21d026aed94afaf3b5b423efd72a22b3f24b997570908ce07f3"
	fxAgentIndex      = "sha256:1349ce72c65098f07ef79be4d6089445426b9ef3eeedb2c0bf24dcc00a39f866"
	fxAgentAmd64      = "sha256:29c3c289b3b50c84286441e25a1840cc7f19c4a6c41b720cd833043e93d9d354"
	fxAgentArm64      = "sha256:59b48c6cd5f07f735830d5b655b1cf5dfe6ff24554ef89fa4062813debd359e3"
	fxToolbox         = "sha256:66188e1fd14228053a291019793199b1e695c919905b2e785f5955597007cd97"
	fxToolboxConfig   = "sha256:fa078f5ceee3bbe9862a79d3c605e31e19d269e11b4c4ceb1d8fe274c222e97d"
	fxAgentTgz        = "sha256:199e928f33bdaef1f7cef5ebab804ce74a9d6a853604e12dd03011d5f0a164a5"
	fxEvidenceBundle  = "sha256:62d0fe0cb57a63f61c6501d81cc567e81a5d2614dcea9041a02d82e7ea48e04b"
	fxRootJSON        = "sha256:8ff036eca6b379830f9a84ee6a83ffd88976895dd6eec5a5c18eed1ff4da093d"
	fxEvidenceDSSE    = "sha256:31c4764d9e694de8cf9545d9ccba9fddaa3d087842a940dcbb7b25c91ba6c4ee"
	fxAirgapSpecDir   = "specs/airgap"
	fxFixturesFromDir = "../../testdata"
)

// fixtureResolver resolves against the repository's real fixtures, with
// specDir the airgap spec's directory, as the planner would call it.
func fixtureResolver(t *testing.T) (*Resolver, string) {
	t.Helper()
	root := repoRoot(t)
	if _, err := os.Stat(filepath.Join(root, "testdata", "oci", "bootstrap", "index.json")); err != nil {
		t.Fatalf("in-tree fixtures missing (go run ./internal/fixtures regenerates them): %v", err)
	}
	return newResolver(t, Options{Root: root, Offline: true}), filepath.Join(root, fxAirgapSpecDir)
}

func fx(p string) string { return fxFixturesFromDir + "/" + p }

func TestLayoutFixtureSingleManifest(t *testing.T) {
	t.Parallel()
	r, dir := fixtureResolver(t)
	in, err := r.Image(bg, dir, spec.Image{
		Name:   "airgap-controller",
		Layout: &spec.LayoutSource{Path: fx("oci/bootstrap"), RefName: "stellaops/airgap-controller:1.4.2"},
	})
	if err != nil {
		t.Fatal(err)
	}
	mustValid(t, in)
	if in.Digest != fxController || in.Image.Index {
		t.Fatalf("digest %s index %v, want %s single manifest", in.Digest, in.Image.Index, fxController)
	}
	want := plan.Source{Type: plan.SourceLayout, Path: "testdata/oci/bootstrap", Select: "stellaops/airgap-controller:1.4.2"}
	if in.Source != want {
		t.Fatalf("source %+v, want %+v", in.Source, want)
	}
	m := in.Image.Manifests
	if len(m) != 1 || m[0].Platform != "linux/amd64" || len(m[0].Layers) != 2 || m[0].Digest != fxController {
		t.Fatalf("manifests %+v", m)
	}
	if got := in.Image.Tags; len(got) != 1 || got[0] != "stellaops/airgap-controller:1.4.2" {
		t.Fatalf("tags %v: want the layout ref name", got)
	}
	// Every blob the plan names opens and verifies.
	for _, d := range []string{in.Digest, m[0].Config.Digest, m[0].Layers[0].Digest, m[0].Layers[1].Digest} {
		rc, size, err := r.OpenBlob(bg, in, d)
		if err != nil {
			t.Fatal(err)
		}
		b, err := readAll(rc)
		if err != nil {
			t.Fatalf("read %s: %v", d, err)
		}
		if digestOf(b) != d || int64(len(b)) != size {
			t.Fatalf("blob %s: got %s, %d bytes (size %d)", d, digestOf(b), len(b), size)
		}
	}
	if _, _, err := r.OpenBlob(bg, in, fxAgentIndex); err == nil || !strings.Contains(err.Error(), "lists no blob") {
		t.Fatalf("blob of another image: err = %v", err)
	}
}

func TestLayoutFixtureIndex(t *testing.T) {
	t.Parallel()
	r, dir := fixtureResolver(t)
	img := spec.Image{
		Name:      "mirror-agent",
		Layout:    &spec.LayoutSource{Path: fx("oci/bootstrap"), RefName: "stellaops/mirror-agent:0.9.1"},
		Platforms: []string{"linux/arm64/v8", "linux/amd64"},
		Tags:      []string{"stellaops/mirror-agent:0.9.1"},
	}
	in, err := r.Image(bg, dir, img)
	if err != nil {
		t.Fatal(err)
	}
	mustValid(t, in)
	if in.Digest != fxAgentIndex || !in.Image.Index {
		t.Fatalf("digest %s index %v", in.Digest, in.Image.Index)
	}
	if got := strings.Join(in.Image.Platforms, ","); got != "linux/amd64,linux/arm64/v8" {
		t.Fatalf("platforms %s", got)
	}
	if in.Image.Manifests[0].Digest != fxAgentAmd64 || in.Image.Manifests[1].Digest != fxAgentArm64 {
		t.Fatalf("manifests %+v", in.Image.Manifests)
	}
	// One platform only; a platform without its variant finds the v8 one.
	img.Platforms = []string{"linux/arm64"}
	in, err = r.Image(bg, dir, img)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Image.Manifests) != 1 || in.Image.Manifests[0].Digest != fxAgentArm64 {
		t.Fatalf("manifests %+v", in.Image.Manifests)
	}
	img.Platforms = []string{"linux/s390x"}
	if _, err := r.Image(bg, dir, img); err == nil || !strings.Contains(err.Error(), "no manifest for platform linux/s390x") {
		t.Fatalf("missing platform: err = %v", err)
	}
	// Selected by the pinned digest instead of the ref name.
	img = spec.Image{Name: "mirror-agent", Layout: &spec.LayoutSource{Path: fx("oci/bootstrap")}, Digest: fxAgentIndex}
	if in, err = r.Image(bg, dir, img); err != nil || in.Digest != fxAgentIndex {
		t.Fatalf("by digest: %v", err)
	}
	if got := in.Image.Tags; len(got) != 1 || got[0] != "stellaops/mirror-agent:0.9.1" {
		t.Fatalf("tags %v: want the entry's ref name", got)
	}
	// Two images and nothing to choose by.
	img.Digest = ""
	if _, err := r.Image(bg, dir, img); err == nil || !strings.Contains(err.Error(), "set layout.refName or digest") {
		t.Fatalf("ambiguous layout: err = %v", err)
	}
	// A pin that disagrees names both digests.
	img = spec.Image{Name: "mirror-agent", Layout: &spec.LayoutSource{Path: fx("oci/bootstrap"), RefName: "stellaops/mirror-agent:0.9.1"}, Digest: fxController}
	_, err = r.Image(bg, dir, img)
	if err == nil || !strings.Contains(err.Error(), fxController) || !strings.Contains(err.Error(), fxAgentIndex) || !strings.Contains(err.Error(), "resolve image mirror-agent") {
		t.Fatalf("pin mismatch: err = %v", err)
	}
}

func TestTarballFixture(t *testing.T) {
	t.Parallel()
	r, dir := fixtureResolver(t)
	in, err := r.Image(bg, dir, spec.Image{Name: "toolbox", Tarball: &spec.TarballSource{Path: fx("images/toolbox.tar")}})
	if err != nil {
		t.Fatal(err)
	}
	mustValid(t, in)
	if in.Digest != fxToolbox || in.Image.Manifests[0].Config.Digest != fxToolboxConfig {
		t.Fatalf("digest %s config %s", in.Digest, in.Image.Manifests[0].Config.Digest)
	}
	if in.Source.Path != "testdata/images/toolbox.tar" || in.Source.Type != plan.SourceTarball {
		t.Fatalf("source %+v", in.Source)
	}
	if len(in.Image.Tags) != 1 || !strings.HasSuffix(in.Image.Tags[0], "stellaops/toolbox:2.0.0") {
		t.Fatalf("tags %v: want the tarball's RepoTags", in.Image.Tags)
	}
	// Selected by tag.
	in2, err := r.Image(bg, dir, spec.Image{Name: "toolbox", Tarball: &spec.TarballSource{Path: fx("images/toolbox.tar"), Tag: "stellaops/toolbox:2.0.0"}})
	if err != nil || in2.Digest != fxToolbox {
		t.Fatalf("by tag: %v", err)
	}
	if _, err := r.Image(bg, dir, spec.Image{Name: "toolbox", Tarball: &spec.TarballSource{Path: fx("images/toolbox.tar"), Tag: "stellaops/toolbox:9"}}); err == nil {
		t.Fatal("unknown tag resolved")
	}
	m := in.Image.Manifests[0]
	for _, d := range append([]string{in.Digest, m.Config.Digest}, m.Layers[0].Digest) {
		rc, _, err := r.OpenBlob(bg, in, d)
		if err != nil {
			t.Fatal(err)
		}
		if b, err := readAll(rc); err != nil || digestOf(b) != d {
			t.Fatalf("blob %s: %v", d, err)
		}
	}
}

func TestChartFixtures(t *testing.T) {
	t.Parallel()
	r, dir := fixtureResolver(t)
	in, err := r.Chart(bg, dir, spec.Chart{Name: "mirror-agent", Path: fx("charts/mirror-agent-0.9.1.tgz"), Version: "0.9.1"})
	if err != nil {
		t.Fatal(err)
	}
	mustValid(t, in)
	if in.Digest != fxAgentTgz || in.Chart.Version != "0.9.1" || in.Chart.AppVersion != "0.9.1" || in.Source.Type != plan.SourceArchive {
		t.Fatalf("archive chart %+v %+v", in, in.Chart)
	}
	ch, err := r.LoadChart(bg, in)
	if err != nil || ch.Metadata.Name != "mirror-agent" {
		t.Fatalf("LoadChart: %v", err)
	}

	in, err = r.Chart(bg, dir, spec.Chart{Name: "airgap-controller", Path: fx("charts/airgap-controller"), Version: "1.4.2"})
	if err != nil {
		t.Fatal(err)
	}
	mustValid(t, in)
	if in.Source != (plan.Source{Type: plan.SourceDir, Path: "testdata/charts/airgap-controller"}) || in.Chart.Version != "1.4.2" {
		t.Fatalf("dir chart %+v", in)
	}
	ch, err = r.LoadChart(bg, in)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := DirDigest(ch); d != in.Digest {
		t.Fatalf("DirDigest %s, plan %s", d, in.Digest)
	}
	// The same directory digest as the listing the doc comment describes.
	if _, err := r.Chart(bg, dir, spec.Chart{Name: "airgap-controller", Path: fx("charts/airgap-controller"), Version: "1.4.1"}); err == nil || !strings.Contains(err.Error(), "chart version is 1.4.2, the spec says 1.4.1") {
		t.Fatalf("version mismatch: err = %v", err)
	}
	if _, err := r.Chart(bg, dir, spec.Chart{Name: "mirror-agent", Path: fx("charts/airgap-controller")}); err == nil || !strings.Contains(err.Error(), "in Chart.yaml, the spec says") {
		t.Fatalf("name mismatch: err = %v", err)
	}
	if _, err := r.Chart(bg, dir, spec.Chart{Name: "mirror-agent", Path: fx("charts/mirror-agent-0.9.1.tgz"), Digest: fxController}); err == nil || !strings.Contains(err.Error(), fxAgentTgz) {
		t.Fatalf("pin mismatch: err = %v", err)
	}
}

func TestSignatureAndBundleFixtures(t *testing.T) {
	t.Parallel()
	r, dir := fixtureResolver(t)
	for name, want := range map[string]string{"root.json": fxRootJSON, "evidence-bundle.dsse.json": fxEvidenceDSSE} {
		in, err := r.Signature(bg, dir, spec.SignatureFile{Name: name, Kind: "dsse", Path: fx("signatures/" + name)})
		if err != nil {
			t.Fatal(err)
		}
		mustValid(t, in)
		if in.Digest != want || in.Kind != plan.KindSignature || in.Source.Path != "testdata/signatures/"+name {
			t.Fatalf("%s: %+v", name, in)
		}
		rc, n, err := r.OpenFile(bg, in)
		if err != nil {
			t.Fatal(err)
		}
		if b, err := readAll(rc); err != nil || int64(len(b)) != n {
			t.Fatalf("OpenFile: %v", err)
		}
	}
	if _, err := r.Signature(bg, dir, spec.SignatureFile{Name: "root.json", Path: fx("signatures/root.json"), Digest: fxEvidenceDSSE}); err == nil || !strings.Contains(err.Error(), fxRootJSON) {
		t.Fatalf("signature pin mismatch: err = %v", err)
	}

	b := spec.BundleRef{
		Name:   "evidence-bundle-2025.01",
		Kind:   "evidence",
		Digest: fxEvidenceBundle,
		URL:    "https://exports.example/evidence-bundle-2025.01.tar.gz",
		Path:   fx("bundles/evidence-bundle-2025.01.tar.gz"),
	}
	in, err := r.Bundle(bg, dir, b)
	if err != nil {
		t.Fatal(err)
	}
	mustValid(t, in)
	if in.URL != b.URL || in.Digest != b.Digest || in.Size == 0 || in.Source.Path != "testdata/bundles/evidence-bundle-2025.01.tar.gz" {
		t.Fatalf("bundle %+v", in)
	}
	b.Digest = fxRootJSON
	_, err = r.Bundle(bg, dir, b)
	if err == nil || !strings.Contains(err.Error(), "evidence-bundle-2025.01") || !strings.Contains(err.Error(), fxRootJSON) ||
		!strings.Contains(err.Error(), fxEvidenceBundle) || !strings.Contains(err.Error(), b.Path) {
		t.Fatalf("bundle mismatch: err = %v", err)
	}
	// Without a local copy: recorded as the spec says, size unknown.
	b.Path = ""
	if in, err = r.Bundle(bg, dir, b); err != nil || in.Size != 0 || in.Source.Type != plan.SourceURL {
		t.Fatalf("bundle without copy: %+v %v", in, err)
	}
	// Opening it needs the network, refused offline.
	if _, _, err := r.OpenFile(bg, in); !errors.Is(err, ErrOffline) {
		t.Fatalf("offline OpenFile of URL bundle: err = %v", err)
	}
}
