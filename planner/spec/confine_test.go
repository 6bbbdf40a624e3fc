package spec

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	moduleCUE = "module: \"example.com/ws\"\nlanguage: version: \"v0.12.0\"\n"
	secret    = "ci-secret-token"
	// packTmpl is a valid spec that puts X (a CUE expression) into the
	// pack: the name of a bundle, which lands in pack-index.json.
	packTmpl = `package x

bootstrapPack: {
	sourceDateEpoch: "2025-01-01T00:00:00Z"
	bundles: [{name: X, kind: "evidence", digest: "sha256:1111111111111111111111111111111111111111111111111111111111111111", url: "https://x.example/b"}]
}
`
)

// workspace builds a temp workspace (cue.mod/module.cue at its root) from
// files (path → content; content "->TARGET" makes a symbolic link) and
// returns its root and a directory outside it holding the secret.
func workspace(t *testing.T, files map[string]string) (root, outside string) {
	t.Helper()
	root, outside = t.TempDir(), t.TempDir()
	for name, body := range map[string]string{
		"secret.txt":         secret,
		"secret.json":        `"` + secret + `"`,
		"leak.cue":           "package leak\nsecret: \"" + secret + "\"\n",
		"pkgdir/leak.cue":    "package leak\nsecret: \"" + secret + "\"\n",
		"module/pack.cue":    strings.Replace(packTmpl, "X", `"`+secret+`"`, 1),
		"module/module.cue":  moduleCUE,
		"data/secret.json":   `"` + secret + `"`,
		"data/another.json":  `"` + secret + `"`,
		"pkgdir/cue.mod.txt": "",
	} {
		write(t, filepath.Join(outside, name), body)
	}
	files["cue.mod/module.cue"] = moduleCUE
	for name, body := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if target, ok := strings.CutPrefix(body, "->"); ok {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(strings.ReplaceAll(target, "OUTSIDE", outside), p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		write(t, p, body)
	}
	return root, outside
}

func write(t *testing.T, p, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func embedSpec(attr string) string {
	return "@extern(embed)\n" + strings.Replace(packTmpl, "X", "_leak", 1) + "\n_leak: _ @embed(" + attr + ")\n"
}

func globSpec(attr string) string {
	return "@extern(embed)\n" + strings.Replace(packTmpl, "X", `_leak["data/secret.json"]`, 1) + "\n_leak: _ @embed(" + attr + ")\n"
}

func importSpec(pkg string) string {
	return strings.Replace(strings.Replace(packTmpl, "X", "leak.secret", 1), "package x\n", "package x\n\nimport \"example.com/"+pkg+"\"\n", 1)
}

// TestLoadConfinedToWorkspace: a spec cannot read a file outside its
// workspace through CUE (an embed, an embed glob, an import through
// cue.mod, a spec file or package directory that is a link), so a pull
// request cannot publish a CI secret in a pack. Each attack is refused
// naming the link.
func TestLoadConfinedToWorkspace(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		arg   string
		// link is the workspace path the error must name.
		link string
	}{
		{"embed file", map[string]string{
			"specs/x/pack.cue":   embedSpec("file=secret.txt, type=text"),
			"specs/x/secret.txt": "->OUTSIDE/secret.txt",
		}, "specs/x", "specs/x/secret.txt"},
		{"embed file in a linked directory", map[string]string{
			"specs/x/pack.cue": embedSpec("file=d/secret.txt, type=text"),
			"specs/x/d":        "->OUTSIDE",
		}, "specs/x", "specs/x/d"},
		{"embed json", map[string]string{
			"specs/x/pack.cue":    embedSpec("file=secret.json"),
			"specs/x/secret.json": "->OUTSIDE/secret.json",
		}, "specs/x", "specs/x/secret.json"},
		{"embed glob", map[string]string{
			"specs/x/pack.cue":         globSpec("glob=data/*.json"),
			"specs/x/data/secret.json": "->OUTSIDE/secret.json",
			"specs/x/data/fine.json":   `"fine"`,
		}, "specs/x", "specs/x/data/secret.json"},
		{"embed glob through a linked directory", map[string]string{
			"specs/x/pack.cue": globSpec("glob=data/*.json"),
			"specs/x/data":     "->OUTSIDE/data",
		}, "specs/x", "specs/x/data"},
		{"import through cue.mod/pkg, linked file", map[string]string{
			"specs/x/pack.cue":                      importSpec("leak"),
			"cue.mod/pkg/example.com/leak/leak.cue": "->OUTSIDE/leak.cue",
		}, "specs/x", "cue.mod/pkg/example.com/leak/leak.cue"},
		{"import through cue.mod/pkg, linked directory", map[string]string{
			"specs/x/pack.cue":             importSpec("leak"),
			"cue.mod/pkg/example.com/leak": "->OUTSIDE/pkgdir",
		}, "specs/x", "cue.mod/pkg/example.com/leak"},
		{"import through cue.mod/usr", map[string]string{
			"specs/x/pack.cue":                      importSpec("leak"),
			"cue.mod/usr/example.com/leak/leak.cue": "->OUTSIDE/leak.cue",
		}, "specs/x", "cue.mod/usr/example.com/leak/leak.cue"},
		{"import of the module's own package, linked", map[string]string{
			"specs/x/pack.cue": importSpec("ws/lib:leak"),
			"lib":              "->OUTSIDE/pkgdir",
		}, "specs/x", "lib"},
		{"spec file is a link", map[string]string{
			"specs/x/pack.cue": "->OUTSIDE/module/pack.cue",
		}, "specs/x/pack.cue", "specs/x/pack.cue"},
		{"spec in a package directory that is a link", map[string]string{
			"specs/x": "->OUTSIDE/module",
		}, "specs/x", "specs/x"},
		{"cue.mod/module.cue is a link", map[string]string{
			"specs/x/pack.cue":   strings.Replace(packTmpl, "X", `"b"`, 1),
			"cue.mod/module.cue": "->OUTSIDE/module/module.cue",
		}, "specs/x", "cue.mod/module.cue"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, _ := workspace(t, tt.files)
			if tt.name == "cue.mod/module.cue is a link" {
				// workspace wrote a regular module.cue; make it the link.
				p := filepath.Join(root, "cue.mod/module.cue")
				_ = os.Remove(p)
				_, outside := workspace(t, map[string]string{})
				if err := os.Symlink(filepath.Join(outside, "module/module.cue"), p); err != nil {
					t.Fatal(err)
				}
			}
			insts, diags, err := Load(context.Background(), []string{tt.arg}, Options{WorkDir: root})
			if err != nil {
				// A spec file or directory the OS cannot reach at all
				// is refused before loading; that is fine too, as
				// long as nothing loads.
				t.Logf("Load: %v", err)
			}
			if len(insts) != 0 {
				t.Fatalf("Load accepted the spec: %s", insts[0].JSON())
			}
			got := diags.Error()
			if strings.Contains(got, secret) {
				t.Errorf("the secret reached a message: %s", got)
			}
			want := tt.link + ": is a symbolic link to "
			if !strings.Contains(got, want) || !strings.Contains(got, "outside the workspace root") {
				t.Errorf("diagnostics do not name %s as a link outside the workspace:\n%s", tt.link, got)
			}
		})
	}
}

// TestLoadEmbedInsideWorkspace: embeds are allowed, inside the workspace,
// links that stay inside included.
func TestLoadEmbedInsideWorkspace(t *testing.T) {
	root, _ := workspace(t, map[string]string{
		"specs/x/pack.cue":     "@extern(embed)\n" + strings.Replace(packTmpl, "X", `_n + _g["data/b.json"]`, 1) + "\n_n: _ @embed(file=name.txt, type=text)\n_g: _ @embed(glob=data/*.json)\n",
		"specs/x/name.txt":     "->../../shared/name.txt",
		"shared/name.txt":      "evidence-",
		"specs/x/data/b.json":  `"2025"`,
		"specs/x/data/.hidden": "->/etc/passwd", // never read: not matched
		"specs/x/unused.link":  "->/etc/passwd", // looked at by nobody
		"specs/x/data/c.notjs": "x",
	})
	insts, diags, err := Load(context.Background(), []string{"specs/x"}, Options{WorkDir: root})
	if err != nil || diags.HasErrors() || len(insts) != 1 {
		t.Fatalf("Load: %v\n%s", err, diags.Error())
	}
	if b := insts[0].Spec.BootstrapPack.Bundles; len(b) != 1 || b[0].Name != "evidence-2025" {
		t.Errorf("embedded name = %+v, want evidence-2025", b)
	}
}

// TestLoadNoModuleFetch: a module dependency is refused without a single
// request, even with CUE_REGISTRY pointing at a registry.
func TestLoadNoModuleFetch(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.NotFound(w, r)
	}))
	defer srv.Close()
	t.Setenv("CUE_REGISTRY", strings.TrimPrefix(srv.URL, "http://")+"+insecure")
	t.Setenv("CUE_CACHE_DIR", t.TempDir())
	root, _ := workspace(t, map[string]string{
		"specs/x/pack.cue": strings.Replace(strings.Replace(packTmpl, "X", "dep.name", 1), "package x\n", "package x\n\nimport \"example.com/dep@v0\"\n", 1),
	})
	write(t, filepath.Join(root, "cue.mod/module.cue"), moduleCUE+"deps: \"example.com/dep@v0\": v: \"v0.1.0\"\n")
	insts, diags, err := Load(context.Background(), []string{"specs/x"}, Options{WorkDir: root})
	if err != nil {
		t.Fatal(err)
	}
	if len(insts) != 0 {
		t.Fatal("Load accepted a spec with a module dependency")
	}
	if !strings.Contains(diags.Error(), "bale does not fetch CUE module dependencies") {
		t.Errorf("diagnostics do not say modules are not fetched:\n%s", diags.Error())
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the registry got %d requests", n)
	}
}

// TestLoadSourceCaps: the loader reads at most MaxSourceBytes, and never
// blocks on a FIFO.
func TestLoadSourceCaps(t *testing.T) {
	t.Run("too large", func(t *testing.T) {
		big := strings.Replace(packTmpl, "X", `"b"`, 1) + "_pad: \"" + strings.Repeat("x", MaxSourceBytes) + "\"\n"
		root, _ := workspace(t, map[string]string{"specs/x/pack.cue": big})
		start := time.Now()
		insts, diags, err := Load(context.Background(), []string{"specs/x"}, Options{WorkDir: root})
		if err != nil || len(insts) != 0 || !strings.Contains(diags.Error(), "spec sources exceed 16777216 bytes") {
			t.Errorf("Load = %v, %d instances:\n%s", err, len(insts), diags.Error())
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("refusing an over-size spec took %v", d)
		}
		_, diags, _ = Parse(context.Background(), "big.cue", []byte(big), root)
		if !strings.Contains(diags.Error(), "bale refuses specs over") {
			t.Errorf("Parse of an over-size spec:\n%s", diags.Error())
		}
	})
	t.Run("fifo", func(t *testing.T) {
		root, _ := workspace(t, map[string]string{"specs/x/pack.cue": strings.Replace(packTmpl, "X", `"b"`, 1)})
		if err := syscall.Mkfifo(filepath.Join(root, "specs/x/z.cue"), 0o644); err != nil {
			t.Skipf("mkfifo: %v", err)
		}
		done := make(chan Diagnostics, 1)
		go func() {
			_, diags, _ := Load(context.Background(), []string{"specs/x"}, Options{WorkDir: root})
			done <- diags
		}()
		select {
		case diags := <-done:
			if !strings.Contains(diags.Error(), "specs/x/z.cue: is not a regular file") {
				t.Errorf("diagnostics:\n%s", diags.Error())
			}
		case <-time.After(20 * time.Second):
			t.Fatal("Load blocked on a FIFO")
		}
	})
}

// TestParseReadsNothingFromDisk: a spec given as bytes cannot embed or
// import a file, even one next to the directory it is resolved against.
func TestParseReadsNothingFromDisk(t *testing.T) {
	root, _ := workspace(t, map[string]string{"specs/x/secret.txt": secret})
	_, diags, err := Parse(context.Background(), "pack.cue", []byte(embedSpec("file=secret.txt, type=text")), filepath.Join(root, "specs/x"))
	if err != nil {
		t.Fatal(err)
	}
	if !diags.HasErrors() || strings.Contains(diags.Error(), secret) {
		t.Errorf("Parse embedded a local file:\n%s", diags.Error())
	}
}

// TestSources: a loaded spec lists what its evaluation read from disk —
// its CUE files, the files it embeds (a link among them, whose target a
// caller stats through it), the module file, the directories listed — and
// nothing it did not reach.
func TestSources(t *testing.T) {
	root, _ := workspace(t, map[string]string{
		"specs/x/pack.cue":    "@extern(embed)\n" + strings.Replace(packTmpl, "X", `_n + _g["data/b.json"]`, 1) + "\n_n: _ @embed(file=name.txt, type=text)\n_g: _ @embed(glob=data/*.json)\n",
		"specs/x/name.txt":    "->../../shared/name.txt",
		"shared/name.txt":     "evidence-",
		"specs/x/data/b.json": `"2025"`,
		"specs/y/pack.cue":    strings.Replace(packTmpl, "X", `"other"`, 1),
	})
	insts, diags, err := Load(context.Background(), []string{"specs/x"}, Options{WorkDir: root})
	if err != nil || diags.HasErrors() || len(insts) != 1 {
		t.Fatalf("Load: %v\n%s", err, diags.Error())
	}
	got := map[string]bool{}
	for _, p := range insts[0].Sources() {
		got[p] = true
	}
	for _, want := range []string{"specs/x/pack.cue", "specs/x/name.txt", "specs/x/data/b.json", "specs/x/data", "specs/x", "cue.mod/module.cue"} {
		if !got[filepath.Join(root, filepath.FromSlash(want))] {
			t.Errorf("Sources lacks %s: %v", want, insts[0].Sources())
		}
	}
	for p := range got {
		if strings.Contains(p, filepath.Join("specs", "y")) {
			t.Errorf("Sources names %s, which the spec does not reach", p)
		}
	}
}
