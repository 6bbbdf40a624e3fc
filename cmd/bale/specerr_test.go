package main

import (
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
)

// TestResolveErrorsAtSpec: every input that cannot be pinned is reported
// on a line of its own at its place in the spec, naming the source as the
// spec wrote it and what the source has instead: a tag the registry lacks
// (with the tags it has), an unreachable registry, a chart name and a
// chart version the repository index lacks (with what it lists), missing
// local files (by the spec's path, not a parent directory's). One run
// reports them all; vet reports the missing local files too.
func TestResolveErrorsAtSpec(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, tag := range []string{"1.1", "1.0"} {
		img, err := random.Image(64, 1)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := name.ParseReference(host + "/demo/app1:" + tag)
		if err := remote.Write(r, img); err != nil {
			t.Fatal(err)
		}
	}
	// A chart repository's index.yaml, as helm repo index writes it.
	idx := "apiVersion: v1\nentries:\n" +
		"  web:\n  - name: web\n    version: 2.0.0\n    urls: [web-2.0.0.tgz]\n    digest: " + strings.Repeat("a", 64) + "\n" +
		"  other:\n  - name: other\n    version: 1.0.0\n    urls: [other-1.0.0.tgz]\n    digest: " + strings.Repeat("a", 64) + "\n"
	mux := http.NewServeMux()
	mux.HandleFunc("/charts/index.yaml", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(idx)) })
	crs := httptest.NewServer(mux)
	defer crs.Close()
	// A port nothing listens on: a server started and closed.
	gone := httptest.NewServer(http.NotFoundHandler())
	goneHost := strings.TrimPrefix(gone.URL, "http://")
	gone.Close()

	ws := writeWorkspace(t, map[string]string{
		"spec/pack.cue": "package x\n\nbootstrapPack: {\n\tsourceDateEpoch: 0\n" +
			"\timages: [{name: \"app1\", ref: \"" + host + "/demo/app1:9.9\"},\n" + // line 5
			"\t\t{name: \"gone\", ref: \"" + goneHost + "/demo/x:1\"}]\n" + // line 6
			"\tcharts: [{name: \"nochart\", repository: \"" + crs.URL + "/charts\", version: \"1.0.0\"},\n" + // line 7
			"\t\t{name: \"web\", repository: \"" + crs.URL + "/charts\", version: \"9.0.0\"},\n" + // line 8
			"\t\t{name: \"local\", path: \"charts/missing\", version: \"1.0.0\"}]\n" + // line 9
			"\tsignatures: [{name: \"root.json\", kind: \"tuf\", path: \"sig/root.json\"}]\n}\n", // line 10
	})
	_, errs, code := bale(t, ws, "plan", "spec", "--retries", "0")
	if code != 1 {
		t.Fatalf("plan: exit %d, want 1\n%s", code, errs)
	}
	for _, want := range []string{
		"spec/pack.cue:5:26: images[0] app1: " + host + "/demo/app1:9.9: tag 9.9 not found in " + host + "/demo/app1 (tags: 1.0, 1.1)\n",
		"spec/pack.cue:6:18: images[1] gone: " + goneHost + "/demo/x:1: registry " + goneHost + " unreachable: dial tcp " + goneHost + ": connect: connection refused\n",
		"spec/pack.cue:7:29: charts[0] nochart: " + crs.URL + "/charts: index.yaml has no chart \"nochart\" (charts: other, web)\n",
		"spec/pack.cue:8:17: charts[1] web: " + crs.URL + "/charts: index.yaml has no version 9.0.0 of chart web (versions: 2.0.0)\n",
		"spec/pack.cue:9:19: charts[2] local: charts/missing: no such file or directory\n",
		"spec/pack.cue:10:48: signatures[0] root.json: sig/root.json: no such file or directory\n",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("plan stderr lacks\n%s\ngot:\n%s", want, errs)
		}
	}
	if strings.Contains(errs, ws) {
		t.Errorf("plan names an absolute path:\n%s", errs)
	}

	_, errs, code = bale(t, ws, "vet", "spec")
	if code != 1 {
		t.Fatalf("vet: exit %d, want 1\n%s", code, errs)
	}
	for _, want := range []string{
		"spec/pack.cue:9:19: bootstrapPack.charts[2].path: charts/missing: no such file or directory",
		"spec/pack.cue:10:48: bootstrapPack.signatures[0].path: sig/root.json: no such file or directory",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("vet stderr lacks\n%s\ngot:\n%s", want, errs)
		}
	}
}

// TestErrorHints: the failures a flag decides say which flag.
func TestErrorHints(t *testing.T) {
	ws := writeWorkspace(t, map[string]string{
		"spec/pack.cue": "package x\n\nbootstrapPack: {\n\tsourceDateEpoch: 0\n\timages: [{name: \"a\", ref: \"r.example/a:1\"}]\n}\n",
		"out/pack.cue":  "package x\n\nbootstrapPack: {\n\tsourceDateEpoch: 0\n\tsignatures: [{name: \"s\", kind: \"tuf\", path: \"../../secret\"}]\n}\n",
	})
	if err := os.WriteFile(filepath.Join(filepath.Dir(ws), "secret"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"plan", "spec", "--offline"}, []string{
			"spec/pack.cue:5:23: images[0] a: r.example/a:1: offline: r.example/a:1 needs the network\n",
			"bale: --offline resolves only local sources; pass --lock PLAN",
		}},
		{[]string{"plan", "out", "--offline"}, []string{
			"out/pack.cue:5:40: signatures[0] s: ../../secret: path ../../secret leaves the workspace root",
			"the nearest directory above the spec holding cue.mod or .git; name another with --root",
		}},
	}
	for _, tt := range tests {
		_, errs, code := bale(t, ws, tt.args...)
		if code != 1 {
			t.Errorf("bale %v: exit %d, want 1\n%s", tt.args, code, errs)
		}
		for _, w := range tt.want {
			if !strings.Contains(errs, w) {
				t.Errorf("bale %v: stderr lacks %q:\n%s", tt.args, w, errs)
			}
		}
	}
}

// TestSuggestions: a misspelt field, command or flag is answered with the
// nearest right one, or the usage line.
func TestSuggestions(t *testing.T) {
	ws := writeWorkspace(t, map[string]string{
		"spec/pack.cue": "package x\n\nbootstrapPack: {\n\tsourceDateEpoch: 0\n\timages: [{name: \"a\", ref: \"r.example/a@sha256:" + strings.Repeat("1", 64) + "\", platfroms: [\"linux/amd64\"]}]\n\tchart: []\n}\n",
	})
	tests := []struct {
		args []string
		want []string
		not  string
	}{
		{[]string{"vet", "spec"}, []string{
			"spec/pack.cue:5:115: bootstrapPack.images[0].platfroms: unknown field \"platfroms\"; did you mean \"platforms\"?\n",
			"spec/pack.cue:6:2: bootstrapPack.chart: unknown field \"chart\"; did you mean \"charts\"?\n",
		}, "unknown field \"chart\"\n"},
		{[]string{"vte"}, []string{"unknown command \"vte\"", "Did you mean this?\n\tvet"}, ""},
		{[]string{"vet", "--strcit"}, []string{"unknown flag: --strcit\nUsage: bale vet [PATH...] [flags]\nRun 'bale vet --help' for more\n"}, ""},
		{[]string{"eval", "a", "b"}, []string{"accepts at most 1 arg(s), received 2\nUsage: bale eval [PATH] [flags]\n"}, ""},
	}
	for _, tt := range tests {
		_, errs, code := bale(t, ws, tt.args...)
		if code != 1 {
			t.Errorf("bale %v: exit %d, want 1\n%s", tt.args, code, errs)
		}
		for _, w := range tt.want {
			if !strings.Contains(errs, w) {
				t.Errorf("bale %v: stderr lacks %q:\n%s", tt.args, w, errs)
			}
		}
		if tt.not != "" && strings.Contains(errs, tt.not) {
			t.Errorf("bale %v: stderr repeats the error without its suggestion:\n%s", tt.args, errs)
		}
	}
}
