package source

import (
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/repo"
	"sigs.k8s.io/yaml"
)

// TestResolveReferenceURL: bale's chart URL resolution, kept out of the
// binary's helm imports, agrees with helm's repo.ResolveReferenceURL.
func TestResolveReferenceURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ base, ref string }{
		{"https://charts.example/stable", "airgap-controller-1.4.2.tgz"},
		{"https://charts.example/stable/", "airgap-controller-1.4.2.tgz"},
		{"https://charts.example/stable/", "charts/a-1.0.0.tgz"},
		{"https://charts.example/stable/", "../other/a-1.0.0.tgz"},
		{"https://charts.example/stable/", "/root/a-1.0.0.tgz"},
		{"https://charts.example/stable/", "https://cdn.example/a-1.0.0.tgz"},
		{"https://charts.example/stable?token=x", "a-1.0.0.tgz"},
		{"https://charts.example/st%2Fable/", "a-1.0.0.tgz"},
		{"http://127.0.0.1:8080", "a%20b-1.0.0.tgz"},
		{"https://charts.example/stable/", "a-1.0.0.tgz?sig=1"},
	} {
		want, werr := repo.ResolveReferenceURL(tc.base, tc.ref)
		got, err := resolveReferenceURL(tc.base, tc.ref)
		if (err != nil) != (werr != nil) || got != want {
			t.Errorf("resolveReferenceURL(%q, %q) = %q, %v; helm says %q, %v", tc.base, tc.ref, got, err, want, werr)
		}
	}
}

// TestRepoIndexReadsHelmIndex: an index.yaml helm writes reads into
// repoIndex with the fields the resolver uses.
func TestRepoIndexReadsHelmIndex(t *testing.T) {
	t.Parallel()
	idx := repo.NewIndexFile()
	md := &chart.Metadata{APIVersion: chart.APIVersionV2, Name: "airgap-controller", Version: "1.4.2"}
	if err := idx.MustAdd(md, "airgap-controller-1.4.2.tgz", "https://charts.example/stable", "sha256:"+strings.Repeat("ab", 32)); err != nil {
		t.Fatal(err)
	}
	raw, err := yaml.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	var got repoIndex
	if err := yaml.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	vs := got.Entries["airgap-controller"]
	if len(vs) != 1 || vs[0].Name != "airgap-controller" || vs[0].Version != "1.4.2" || vs[0].Digest != "sha256:"+strings.Repeat("ab", 32) ||
		len(vs[0].URLs) != 1 || vs[0].URLs[0] != "https://charts.example/stable/airgap-controller-1.4.2.tgz" {
		t.Errorf("read %s as %+v", raw, vs)
	}
}
