package executor_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bale-build/bale/executor"
	"github.com/bale-build/bale/executor/cas"
	"github.com/bale-build/bale/internal/fixtures"
	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner"
	"github.com/bale-build/bale/planner/spec"
	"github.com/bale-build/bale/sign"
	"github.com/bale-build/bale/source"
	"github.com/bale-build/bale/testsupport/kittest"
	"github.com/bale-build/bale/testsupport/testrepo"
)

// aocWorkspace copies the AOC spec and its fixtures into a new workspace,
// so a test may edit them.
func aocWorkspace(t *testing.T) string {
	t.Helper()
	src, _ := filepath.Abs("..")
	dst := t.TempDir()
	for _, top := range []string{"specs/aoc", "testdata/aoc", "testdata/keys"} {
		err := filepath.WalkDir(filepath.Join(src, top), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(src, p)
			if d.IsDir() {
				return os.MkdirAll(filepath.Join(dst, rel), 0o755)
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			info, _ := d.Info()
			return os.WriteFile(filepath.Join(dst, rel), data, info.Mode().Perm())
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dst, ".git"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// planAOC plans the workspace's AOC spec through its file form.
func planAOC(t *testing.T, root string) (*plan.Plan, *source.Resolver, error) {
	t.Helper()
	ctx := context.Background()
	insts, diags, err := spec.Load(ctx, []string{filepath.Join(root, "specs", "aoc")}, spec.Options{WorkDir: root})
	if err != nil || len(insts) != 1 {
		t.Fatalf("load spec: %v %v", err, diags)
	}
	r, err := source.New(source.Options{Root: root, Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := planner.Plan(ctx, insts[0], planner.Options{Resolver: r, Root: root})
	if err != nil {
		return nil, nil, err
	}
	return sp.Plan(), r, nil
}

// devGetenv is a signing environment permitting the development key.
func devGetenv(k string) string {
	return map[string]string{"COSIGN_ALLOW_DEV_KEY": "1", "COSIGN_PASSWORD": fixtures.DevKeyPassword, "PATH": os.Getenv("PATH"), "HOME": os.Getenv("HOME"), "GOCACHE": os.Getenv("GOCACHE")}[k]
}

func executeAOC(t *testing.T, p *plan.Plan, r *source.Resolver, getenv func(string) string) (*executor.Result, error) {
	t.Helper()
	sp, err := plan.Seal(p)
	if err != nil {
		return nil, err
	}
	store, err := cas.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return executor.Execute(context.Background(), sp, r, executor.Options{OutDir: filepath.Join(t.TempDir(), "out"), Store: store, Getenv: getenv})
}

// TestReleaseRefusals: each hostile or stale input is refused, naming it.
func TestReleaseRefusals(t *testing.T) {
	t.Parallel()
	editSpec := func(t *testing.T, root, old, new string) {
		t.Helper()
		p := filepath.Join(root, "specs", "aoc", "release.cue")
		data, _ := os.ReadFile(p)
		edited := strings.Replace(string(data), old, new, 1)
		if edited == string(data) {
			t.Fatalf("the spec no longer has %q", old)
		}
		os.WriteFile(p, []byte(edited), 0o644)
	}
	t.Run("ldflags running another linker", func(t *testing.T) {
		root := aocWorkspace(t)
		editSpec(t, root, `ldflags: "-s -w`, `ldflags: "-linkmode=external -extld=/bin/sh -s -w`)
		if _, _, err := planAOC(t, root); err == nil || !strings.Contains(err.Error(), "-linkmode=external") {
			t.Errorf("plan: %v", err)
		}
	})
	t.Run("pinned dataset hash that is not the content's", func(t *testing.T) {
		root := aocWorkspace(t)
		pinned := strings.Repeat("ab", 32)
		editSpec(t, root, `hash: "dev-rehearsal-placeholder"`, `hash: "`+pinned+`"`)
		if _, _, err := planAOC(t, root); err == nil || !strings.Contains(err.Error(), pinned) || !strings.Contains(err.Error(), "files hash to") {
			t.Errorf("plan: %v", err)
		}
	})
	t.Run("symlink in the Go module", func(t *testing.T) {
		root := aocWorkspace(t)
		os.Symlink("/etc/passwd", filepath.Join(root, "testdata", "aoc", "runner-src", "passwd"))
		if _, _, err := planAOC(t, root); err == nil || !strings.Contains(err.Error(), "passwd is not a regular file") {
			t.Errorf("plan: %v", err)
		}
	})
	t.Run("Go source changed since planning", func(t *testing.T) {
		root := aocWorkspace(t)
		p, r, err := planAOC(t, root)
		if err != nil {
			t.Fatal(err)
		}
		main := filepath.Join(root, "testdata", "aoc", "runner-src", "cmd", "aoc-backfill", "main.go")
		data, _ := os.ReadFile(main)
		os.WriteFile(main, append(data, "\n// edited\n"...), 0o644)
		if _, err := executeAOC(t, p, r, devGetenv); err == nil || !strings.Contains(err.Error(), "changed since planning") {
			t.Errorf("execute: %v", err)
		}
	})
	t.Run("dataset file changed since planning", func(t *testing.T) {
		root := aocWorkspace(t)
		p, r, err := planAOC(t, root)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(root, "testdata", "aoc", "dataset", "advisories.ndjson")
		data, _ := os.ReadFile(f)
		data[10] ^= 1 // same size, other bytes
		os.WriteFile(f, data, 0o644)
		if _, err := executeAOC(t, p, r, devGetenv); err == nil || !strings.Contains(err.Error(), "changed since planning") || !strings.Contains(err.Error(), "advisories.ndjson") {
			t.Errorf("execute: %v", err)
		}
	})
	t.Run("another Go toolchain than the plan's", func(t *testing.T) {
		root := aocWorkspace(t)
		p, r, err := planAOC(t, root)
		if err != nil {
			t.Fatal(err)
		}
		p.Builder.Go = "go1.20.1"
		if _, err := executeAOC(t, p, r, devGetenv); err == nil || !strings.Contains(err.Error(), "the plan builds with go1.20.1 but the go command is go1.") {
			t.Errorf("execute: %v", err)
		}
	})
	t.Run("edited plans", func(t *testing.T) {
		root := aocWorkspace(t)
		edits := []struct {
			name string
			edit func(p *plan.Plan)
			want string
		}{
			{"artifact dropped from the target", func(p *plan.Plan) {
				p.Targets[0].Artifacts = p.Targets[0].Artifacts[1:]
			}, "belongs to no target's artifact"},
			{"go-build writing into another artifact", func(p *plan.Plan) {
				p.Steps[0].Outputs = []string{"cosign.pub:bin/aoc-backfill"}
			}, "writes into cosign.pub, not the runner bundle"},
			{"release step without its go-build need", func(p *plan.Plan) {
				p.Steps[1].Needs = nil
			}, "no release step needing it"},
			{"a mode that is not 0644 or 0755", func(p *plan.Plan) {
				p.Steps[1].Params["mode.aoc-backfill-runner/README.md"] = "4755"
			}, "want 0644 or 0755"},
		}
		for _, e := range edits {
			p, _, err := planAOC(t, root)
			if err != nil {
				t.Fatal(err)
			}
			if p.Steps[0].Action != plan.ActionGoBuild || p.Steps[1].Action != plan.ActionRelease {
				t.Fatalf("steps %s, %s: want go-build, release", p.Steps[0].Action, p.Steps[1].Action)
			}
			e.edit(p)
			// Keep every step id valid, as a careful editor would.
			old := p.Steps[0].ID
			p.Steps[0].ID = plan.StepID(p.Steps[0])
			for i, n := range p.Steps[1].Needs {
				if n == old {
					p.Steps[1].Needs[i] = p.Steps[0].ID
				}
			}
			p.Steps[1].ID = plan.StepID(p.Steps[1])
			canonical, err := plan.Marshal(p)
			if err == nil {
				_, err = plan.Decode(bytes.NewReader(canonical))
			}
			if err == nil || !strings.Contains(err.Error(), e.want) {
				t.Errorf("%s: %v, want an error containing %q", e.name, err, e.want)
			}
		}
	})
	t.Run("no key", func(t *testing.T) {
		root := aocWorkspace(t)
		p, r, err := planAOC(t, root)
		if err != nil {
			t.Fatal(err)
		}
		_, err = executeAOC(t, p, r, func(string) string { return "" })
		if !errors.Is(err, sign.ErrNoKey) || !strings.Contains(err.Error(), "COSIGN_KEY") || !strings.Contains(err.Error(), "COSIGN_ALLOW_DEV_KEY") {
			t.Errorf("execute: %v", err)
		}
	})
	t.Run("key from a file named by COSIGN_KEY", func(t *testing.T) {
		root := aocWorkspace(t)
		editSpec(t, root, `hash: "dev-rehearsal-placeholder"`, `hash: "6034e64dc816c857c1a9ab3da6bcb13c2711264f6b1cdafc2dc66f411899f770"`)
		p, r, err := planAOC(t, root)
		if err != nil {
			t.Fatal(err)
		}
		// A production key: the repository's development key is one
		// however it is given (TestReleaseDevKeyRecognised).
		keyPEM, password := kittest.OtherKeyPEM(t)
		keyFile := filepath.Join(root, "release.key")
		if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		res, err := executeAOC(t, p, r, func(k string) string {
			return map[string]string{"COSIGN_KEY": keyFile, "COSIGN_PASSWORD": password, "PATH": os.Getenv("PATH"), "HOME": os.Getenv("HOME")}[k]
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.StepsRun != 2 {
			t.Errorf("ran %d steps, want 2", res.StepsRun)
		}
	})
}

// streamStore is a store with only the cas.Store methods: a release builds
// through streams, never a blob's file path, and gives the bytes a local
// store gives.
type streamStore struct{ cas.Store }

func TestReleaseOnStreamStore(t *testing.T) {
	root := aocWorkspace(t)
	p, r, err := planAOC(t, root)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := plan.Seal(p)
	if err != nil {
		t.Fatal(err)
	}
	var outs []string
	for i := range 2 {
		dir, err := cas.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		var store cas.Store = dir
		if i == 1 {
			store = streamStore{dir}
		}
		out := filepath.Join(t.TempDir(), "out")
		if _, err := executor.Execute(context.Background(), sp, r, executor.Options{OutDir: out, Store: store, Getenv: devGetenv}); err != nil {
			t.Fatalf("build %d: %v", i, err)
		}
		outs = append(outs, out)
	}
	want, err := testrepo.Digests(outs[0])
	if err != nil {
		t.Fatal(err)
	}
	got, err := testrepo.Digests(outs[1])
	if err != nil {
		t.Fatal(err)
	}
	if want != got {
		t.Errorf("the release on a store without files differs:\n%s\n---\n%s", got, want)
	}
}
