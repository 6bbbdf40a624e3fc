package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	_ "time/tzdata" // TZ=Asia/Kolkata must take effect without system zoneinfo

	"github.com/bale-build/bale/executor"
	"github.com/bale-build/bale/gobuild"
	"github.com/bale-build/bale/internal/fixtures"
	"github.com/bale-build/bale/kit"
	"github.com/bale-build/bale/testsupport/kittest"
	"github.com/bale-build/bale/testsupport/testrepo"
	"github.com/bale-build/bale/testsupport/tooltest"
	"github.com/bale-build/bale/verify"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// The AOC release as `bale build specs/aoc -o out/aoc` writes it with the
// development key. Its dataset names carry the spec's placeholder hash.
const (
	aocRunner     = "aoc-backfill-runner.tar.gz"
	aocRunnerSig  = "aoc-backfill-runner.dsse.json"
	aocDataset    = "aoc-dataset-dev-rehearsal-placeholder.tar.gz"
	aocProvenance = "aoc-dataset-dev-rehearsal-placeholder.provenance.json"
	aocArchive    = "aoc-offline-kit.tar.gz"
)

// devEnv permits the spec's development key and clears any release key.
func devEnv(t *testing.T) {
	t.Setenv("COSIGN_KEY", "")
	t.Setenv("COSIGN_ALLOW_DEV_KEY", "1")
	t.Setenv("COSIGN_PASSWORD", fixtures.DevKeyPassword)
}

// buildAOC builds specs/aoc through the CLI into a new directory and
// returns it and the cache.
func buildAOC(t *testing.T) (out, cache string) {
	t.Helper()
	devEnv(t)
	out, cache = filepath.Join(t.TempDir(), "aoc"), t.TempDir()
	_, errs, code := bale(t, "../..", "build", "specs/aoc", "-o", out, "--cache", cache)
	if code != 0 {
		t.Fatalf("bale build specs/aoc: exit %d\n%s", code, errs)
	}
	if !strings.Contains(errs, "DEVELOPMENT key") {
		t.Errorf("a dev-key build does not warn on stderr:\n%s", errs)
	}
	return out, cache
}

// dirDigests is testrepo.Digests for a test: the golden form of a kit.
func dirDigests(t *testing.T, dir string) string {
	t.Helper()
	d, err := testrepo.Digests(dir)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestReleaseBuild: bale build specs/aoc writes every file of the kit, named
// from the spec, pinned by a golden digest file; bale verify passes on the
// directory and the archive; a warm rebuild runs no step and decrypts no
// key (a wrong password would fail a decryption).
func TestReleaseBuild(t *testing.T) {
	out, cache := buildAOC(t)
	// The runner is a Go binary: its bytes, and so every kit file that
	// names them, are the toolchain's. The golden file says which one.
	goVersion, err := gobuild.Version(context.Background(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	got := "# runner built with " + goVersion + "\n" + dirDigests(t, out)
	golden := filepath.Join(repoDir(), "cmd", "bale", "testdata", "aoc-kit.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(string(want), "\n"); first != "# runner built with "+goVersion {
		t.Logf("%s was made with another Go toolchain (%s); this is %s: not compared", golden, first, goVersion)
	} else if got != string(want) {
		t.Errorf("kit digests differ from %s (go test ./cmd/bale -run TestReleaseBuild -update to accept):\n%s", golden, got)
	}
	for _, name := range []string{aocRunner, "aoc-backfill-runner.sbom.json", aocRunnerSig, aocDataset,
		"aoc-dataset-dev-rehearsal-placeholder.manifest.json", aocProvenance, kit.SumsName, kit.ScriptName,
		kit.PublicKeyName, kit.ManifestName, aocArchive, aocArchive + ".sha256"} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Errorf("kit file %s: %v", name, err)
		}
	}
	m, err := os.ReadFile(filepath.Join(out, kit.ManifestName))
	if err != nil || !bytes.Contains(m, []byte(`"devKey": true`)) {
		t.Errorf("offline-kit.json of a dev-key build does not say so: %v\n%s", err, m)
	}

	for _, target := range []string{out, filepath.Join(out, aocArchive)} {
		stdout, errs, code := bale(t, "", "verify", target, "--format", "json")
		if code != 0 {
			t.Fatalf("bale verify %s: exit %d\n%s%s", target, code, stdout, errs)
		}
		var rep verify.Report
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil || rep.KitFacts == nil || rep.Kind != kit.ManifestKind || !rep.DevKey || len(rep.Failures) != 0 {
			t.Errorf("bale verify %s --format json: %v\n%s", target, err, stdout)
		}
		// The keys of pack verify's JSON, less the pack's own, plus the
		// kit's; the archive's sha256 under the one name, artifactSha256.
		want := "checks devKey failures kind name path"
		if target != out {
			want = "artifactSha256 " + want
		}
		if got := jsonKeys(t, stdout); got != want {
			t.Errorf("bale verify %s --format json: keys %q, want %q", target, got, want)
		}
	}

	// Warm: nothing runs, and the key is not decrypted.
	t.Setenv("COSIGN_PASSWORD", "not-the-password")
	stdout, errs, code := bale(t, "../..", "build", "specs/aoc", "-o", out, "--cache", cache)
	if code != 0 || !strings.Contains(stdout, "nothing to do: all 2 steps cached") {
		t.Fatalf("warm rebuild: exit %d\n%s%s", code, stdout, errs)
	}
	if again := "# runner built with " + goVersion + "\n" + dirDigests(t, out); again != got {
		t.Errorf("warm rebuild changed the kit:\n%s", again)
	}
	// Cold with the wrong password: the key must open.
	_, errs, code = bale(t, "../..", "build", "specs/aoc", "-o", t.TempDir(), "--cache", t.TempDir())
	if code != 1 || !strings.Contains(errs, "COSIGN_PASSWORD") {
		t.Errorf("cold build with a wrong password: exit %d, want 1 naming COSIGN_PASSWORD\n%s", code, errs)
	}
}

// TestReleaseKeys: without a key and without COSIGN_ALLOW_DEV_KEY=1 the
// build fails naming both variables; with the key file given as
// COSIGN_KEY the kit is not a development kit, and the spec's placeholder
// dataset hash is refused; an unknown key reference scheme is refused.
func TestReleaseKeys(t *testing.T) {
	t.Setenv("COSIGN_KEY", "")
	t.Setenv("COSIGN_ALLOW_DEV_KEY", "")
	t.Setenv("COSIGN_PASSWORD", fixtures.DevKeyPassword)
	out := filepath.Join(t.TempDir(), "aoc")
	_, errs, code := bale(t, "../..", "build", "specs/aoc", "-o", out, "--cache", t.TempDir())
	if code != 1 || !strings.Contains(errs, "COSIGN_KEY") || !strings.Contains(errs, "COSIGN_ALLOW_DEV_KEY") {
		t.Errorf("no key: exit %d, want 1 naming COSIGN_KEY and COSIGN_ALLOW_DEV_KEY:\n%s", code, errs)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a refused build created %s", out)
	}

	// The repository's development key given as COSIGN_KEY is still the
	// development key (issue 23 point 19): refused without
	// COSIGN_ALLOW_DEV_KEY=1, whatever it signs.
	root := repoDir()
	t.Setenv("COSIGN_KEY", filepath.Join(root, "testdata", "keys", "cosign.dev.key"))
	_, errs, code = bale(t, "../..", "build", "specs/aoc", "-o", out, "--cache", t.TempDir())
	if code != 1 || !strings.Contains(errs, "is a development key") || !strings.Contains(errs, "COSIGN_ALLOW_DEV_KEY=1") {
		t.Errorf("the development key as COSIGN_KEY: exit %d, want 1 naming it a development key:\n%s", code, errs)
	}

	// A production key file.
	keyPEM, password := kittest.OtherKeyPEM(t)
	keyFile := filepath.Join(t.TempDir(), "release.key")
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("COSIGN_KEY", keyFile)
	t.Setenv("COSIGN_PASSWORD", password)
	_, errs, code = bale(t, "../..", "build", "specs/aoc", "-o", out, "--cache", t.TempDir())
	if code != 1 || !strings.Contains(errs, "dev-rehearsal-placeholder") || !strings.Contains(errs, "COSIGN_ALLOW_DEV_KEY=1") ||
		!strings.Contains(errs, `hash: "6034e64dc816c857c1a9ab3da6bcb13c2711264f6b1cdafc2dc66f411899f770"`) {
		t.Errorf("a release key with a placeholder dataset hash: exit %d, want 1 naming the placeholder:\n%s", code, errs)
	}
	t.Setenv("COSIGN_KEY", "awskms://alias/release")
	_, errs, code = bale(t, "../..", "build", "specs/aoc", "-o", out, "--cache", t.TempDir())
	if code != 1 || !strings.Contains(errs, "only env://VAR and file paths") {
		t.Errorf("a KMS key reference: exit %d\n%s", code, errs)
	}
}

// cosignTool finds cosign v2 or v3 as the kit tests do: $BALE_COSIGN2 or
// cosign2 on PATH (and so on); a missing tool is a skip, or a failure
// under BALE_REQUIRE_TOOLS=1.
func cosignTool(t *testing.T, v string) string {
	t.Helper()
	return tooltest.Lookup(t, "BALE_COSIGN"+v, "cosign"+v)
}

// runTool runs a real tool in dir with a private HOME (cosign's TUF cache).
func runTool(t *testing.T, dir string, env []string, name string, args ...string) (bool, string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	home := t.TempDir()
	cmd.Env = append(append(os.Environ(), "HOME="+home, "TUF_ROOT="+filepath.Join(home, "tuf")), env...)
	o, err := cmd.CombinedOutput()
	return err == nil, string(o)
}

// seedCommands are the seed's verification commands as the README shows
// them, run in the kit directory.
func seedCommands(cosign string) [][]string {
	return [][]string{
		{"sha256sum", "-c", kit.SumsName},
		{cosign, "verify-blob", "--key", kit.PublicKeyName, "--bundle", aocRunnerSig, "--insecure-ignore-tlog", aocRunner},
		{cosign, "verify-blob-attestation", "--key", kit.PublicKeyName, "--type", "slsaprovenance1", "--signature", aocProvenance, "--insecure-ignore-tlog", aocDataset},
		{"sh", kit.ScriptName, devPub},
	}
}

// devPub is the development public key, the key a verify.sh of a
// development kit is told to trust, as the README shows.
var devPub = filepath.Join(repoDir(), "testdata", "keys", "cosign.dev.pub")

// TestReleaseRealTools runs the seed's commands, as typed, with cosign v2
// and v3 against the kit bale build wrote, then tampers with it: each
// tampering fails bale verify (naming the file), verify.sh and cosign.
func TestReleaseRealTools(t *testing.T) {
	if _, err := exec.LookPath("sha256sum"); err != nil {
		tooltest.Unavailable(t, "sha256sum not on PATH")
	}
	out, _ := buildAOC(t)
	for _, v := range []string{"2", "3"} {
		t.Run("cosign"+v, func(t *testing.T) {
			bin := cosignTool(t, v)
			env := []string{"COSIGN=" + bin}
			for _, c := range seedCommands(bin) {
				ok, o := runTool(t, out, env, c[0], c[1:]...)
				if !ok || (c[0] == "sh" && (!strings.Contains(o, "verified") || strings.Contains(o, "NOT checked"))) {
					t.Errorf("%s: %s", strings.Join(c, " "), o)
				}
			}
		})
	}

	flip := func(name string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			p := filepath.Join(dir, name)
			d, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			d[len(d)/2] ^= 1
			os.WriteFile(p, d, 0o644)
		}
	}
	tampers := []struct {
		name  string
		apply func(t *testing.T, dir string)
		// names is the kit file bale verify and verify.sh must name;
		// cosign is the seed command (1 runner, 2 dataset) that must fail,
		// 0 for a tampering cosign cannot see.
		names  string
		cosign int
	}{
		{"runner byte flipped", flip(aocRunner), aocRunner, 1},
		{"dataset byte flipped", flip(aocDataset), aocDataset, 2},
		{"provenance payloadType changed", func(t *testing.T, dir string) {
			p := filepath.Join(dir, aocProvenance)
			d, _ := os.ReadFile(p)
			os.WriteFile(p, bytes.Replace(d, []byte("application/vnd.in-toto+json"), []byte("application/vnd.in-toto+jsom"), 1), 0o644)
		}, aocProvenance, 2},
		{"SHA256SUMS edited to match a flipped runner", func(t *testing.T, dir string) {
			flip(aocRunner)(t, dir)
			d, _ := os.ReadFile(filepath.Join(dir, aocRunner))
			sums, _ := os.ReadFile(filepath.Join(dir, kit.SumsName))
			var lines []string
			for l := range strings.SplitSeq(strings.TrimSuffix(string(sums), "\n"), "\n") {
				if strings.HasSuffix(l, "  "+aocRunner) {
					l = fmt.Sprintf("%x  %s", sha256.Sum256(d), aocRunner)
				}
				lines = append(lines, l)
			}
			os.WriteFile(filepath.Join(dir, kit.SumsName), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
		}, kit.SumsName, 1},
		{"a file added", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "extra.sh"), []byte("#!/bin/sh\n"), 0o755)
		}, "extra.sh", 0},
	}
	for _, tc := range tampers {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "aoc")
			if err := os.CopyFS(dir, os.DirFS(out)); err != nil {
				t.Fatal(err)
			}
			tc.apply(t, dir)
			_, errs, code := bale(t, "", "verify", dir)
			if code != 1 || !strings.Contains(errs, tc.names) {
				t.Errorf("bale verify: exit %d, want 1 naming %s:\n%s", code, tc.names, errs)
			}
			for _, v := range []string{"2", "3"} {
				bin := cosignTool(t, v)
				if ok, o := runTool(t, dir, []string{"COSIGN=" + bin}, "sh", kit.ScriptName, devPub); ok || !strings.Contains(o, tc.names) {
					t.Errorf("verify.sh with cosign%s: passed=%v, want a failure naming %s:\n%s", v, ok, tc.names, o)
				}
				if tc.cosign == 0 {
					continue
				}
				c := seedCommands(bin)[tc.cosign]
				if ok, o := runTool(t, dir, nil, c[0], c[1:]...); ok {
					t.Errorf("cosign%s %s passed:\n%s", v, c[1], o)
				}
			}
		})
	}

	// Another key: bale verify --key and cosign --key with it fail.
	t.Run("wrong key", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "other.pub")
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
		os.WriteFile(other, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
		_, errs, code := bale(t, "", "verify", out, "--key", other)
		if code != 1 || !strings.Contains(errs, kit.PublicKeyName) {
			t.Errorf("bale verify --key another key: exit %d\n%s", code, errs)
		}
		for _, v := range []string{"2", "3"} {
			c := seedCommands(cosignTool(t, v))[1]
			c[3] = other
			if ok, o := runTool(t, out, nil, c[0], c[1:]...); ok {
				t.Errorf("cosign%s verify-blob --key another key passed:\n%s", v, o)
			}
		}
	})
}

// TestReleaseByteStability builds specs/aoc with this test binary as bale
// (BALE_TEST_CLI=1), in child processes, from workspace copies at other
// paths, under other umasks, time zones and GOMAXPROCS, each with a cold
// cache (so the Go binary and every signature are made again): every kit
// file is byte-identical to the in-process build's.
func TestReleaseByteStability(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess builds")
	}
	ref, _ := buildAOC(t)
	want := dirDigests(t, ref)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	root := repoDir()
	runs := []struct{ name, umask, tz, procs string }{
		{"umask022 UTC GOMAXPROCS=1", "022", "UTC", "1"},
		{"umask077 Kolkata GOMAXPROCS=2", "077", "Asia/Kolkata", "2"},
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			ws := filepath.Join(t.TempDir(), "some", "other", "checkout")
			if err := testrepo.Workspace(root, ws); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(ws, ".git"), 0o755); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "aoc")
			cmd := exec.Command("sh", "-c", `umask "$1"; shift; exec "$@"`, "sh", r.umask, exe, "build", "specs/aoc", "-o", out, "--cache", t.TempDir(), "-q")
			cmd.Dir = ws
			cmd.Env = append(os.Environ(), "BALE_TEST_CLI=1", "TZ="+r.tz, "GOMAXPROCS="+r.procs,
				"COSIGN_KEY=", "COSIGN_ALLOW_DEV_KEY=1", "COSIGN_PASSWORD="+fixtures.DevKeyPassword)
			o, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child build: %v\n%s", err, o)
			}
			if got := dirDigests(t, out); got != want {
				t.Errorf("kit differs from the reference build:\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// repoDir is the repository's root, wherever the test has changed to.
func repoDir() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(self), "..", "..")
}

// releaseJSON is bale build --format json for a release, as a user's jq
// reads it.
type releaseJSON struct {
	Path           string `json:"path"`
	ArtifactSha256 string `json:"artifactSha256"`
	Size           int64  `json:"size"`
	Kind           string `json:"kind"`
	Name           string `json:"name"`
	KitDir         string `json:"kitDir"`
	DevKey         *bool  `json:"devKey"`
	SigningKey     string `json:"signingKey"`
	PlanID         string `json:"planId"`
	StepsRun       int    `json:"stepsRun"`
	Artifacts      []struct {
		Path           string `json:"path"`
		Kind           string `json:"kind"`
		Size           int64  `json:"size"`
		ArtifactSha256 string `json:"artifactSha256"`
	} `json:"artifacts"`
}

// TestReleaseBuildJSON: bale build --format json names the kit at its top
// level (the archive's path, artifactSha256 and size; the kit's kind,
// name, directory, devKey and how the key was given) and lists every kit
// file with its kind, size and sha256, each matching the file on disk and
// offline-kit.json; a warm rebuild prints the same. The key is told apart
// as dev, file (COSIGN_KEY=path) and env (the PEM text in COSIGN_KEY), in
// a workspace whose spec pins the dataset hash as a release key requires.
func TestReleaseBuildJSON(t *testing.T) {
	ws := filepath.Join(t.TempDir(), "ws")
	if err := testrepo.Workspace(repoDir(), ws); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(ws, ".git"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A production key (the repository's development key is one however
	// it is given).
	keyPEM, password := kittest.OtherKeyPEM(t)
	keyFile := filepath.Join(t.TempDir(), "release.key")
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	build := func(t *testing.T, out, cache string) releaseJSON {
		t.Helper()
		stdout, errs, code := bale(t, ws, "build", "specs/aoc", "-o", out, "--cache", cache, "-q", "--format", "json")
		if code != 0 {
			t.Fatalf("bale build --format json: exit %d\n%s", code, errs)
		}
		var r releaseJSON
		if err := json.Unmarshal([]byte(stdout), &r); err != nil {
			t.Fatalf("build JSON: %v\n%s", err, stdout)
		}
		return r
	}
	check := func(t *testing.T, r releaseJSON, out, signing string, dev bool) {
		t.Helper()
		archive := filepath.Join(out, "aoc-offline-kit.tar.gz")
		data, err := os.ReadFile(archive)
		if err != nil {
			t.Fatal(err)
		}
		if r.Path != archive || r.ArtifactSha256 != fmt.Sprintf("%x", sha256.Sum256(data)) || r.Size != int64(len(data)) {
			t.Errorf("top level names %s %s %d, want the kit archive %s %x %d", r.Path, r.ArtifactSha256, r.Size, archive, sha256.Sum256(data), len(data))
		}
		if r.Kind != kit.ManifestKind || r.Name != "aoc-offline-kit" || r.KitDir != out || r.SigningKey != signing || r.DevKey == nil || *r.DevKey != dev {
			t.Errorf("kit fields: kind %q name %q kitDir %q signingKey %q devKey %v; want %q aoc-offline-kit %q %q %v",
				r.Kind, r.Name, r.KitDir, r.SigningKey, r.DevKey, kit.ManifestKind, out, signing, dev)
		}
		mdata, err := os.ReadFile(filepath.Join(out, kit.ManifestName))
		if err != nil {
			t.Fatal(err)
		}
		m, err := kit.ParseManifest(mdata)
		if err != nil {
			t.Fatal(err)
		}
		if r.PlanID == "" || r.PlanID != m.PlanID {
			t.Errorf("planId %q, offline-kit.json says %q", r.PlanID, m.PlanID)
		}
		entries, err := os.ReadDir(out)
		if err != nil {
			t.Fatal(err)
		}
		listed := map[string]bool{}
		for _, a := range r.Artifacts {
			listed[a.Path] = true
			d, err := os.ReadFile(filepath.Join(out, a.Path))
			if err != nil {
				t.Errorf("artifact %s: %v", a.Path, err)
				continue
			}
			if a.Kind == "" || a.Size != int64(len(d)) || a.ArtifactSha256 != fmt.Sprintf("%x", sha256.Sum256(d)) {
				t.Errorf("artifact %s: kind %q size %d sha256 %s; the file is %d bytes %x", a.Path, a.Kind, a.Size, a.ArtifactSha256, len(d), sha256.Sum256(d))
			}
			if ma, ok := m.Artifact(a.Path); ok && (ma.Kind != a.Kind || ma.SHA256 != a.ArtifactSha256) {
				t.Errorf("artifact %s: kind %s sha256 %s, offline-kit.json says %s %s", a.Path, a.Kind, a.ArtifactSha256, ma.Kind, ma.SHA256)
			}
		}
		for _, e := range entries {
			if !listed[e.Name()] {
				t.Errorf("kit file %s is not in the build's JSON", e.Name())
			}
		}
	}

	t.Run("dev", func(t *testing.T) {
		devEnv(t)
		out, cache := filepath.Join(t.TempDir(), "aoc"), t.TempDir()
		r := build(t, out, cache)
		check(t, r, out, executor.KeyDev, true)
		again := build(t, out, cache)
		if again.StepsRun != 0 {
			t.Errorf("warm rebuild ran %d steps", again.StepsRun)
		}
		r.StepsRun = 0
		if !reflect.DeepEqual(again, r) {
			t.Errorf("warm rebuild's JSON differs:\n%+v\nwant\n%+v", again, r)
		}
	})

	// A release key needs the content hash pinned.
	spec := filepath.Join(ws, "specs", "aoc", "release.cue")
	src, err := os.ReadFile(spec)
	if err != nil {
		t.Fatal(err)
	}
	src = bytes.Replace(src, []byte(`"dev-rehearsal-placeholder"`), []byte(`"6034e64dc816c857c1a9ab3da6bcb13c2711264f6b1cdafc2dc66f411899f770"`), 1)
	if err := os.WriteFile(spec, src, 0o644); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	for _, tc := range []struct{ how, key string }{
		{executor.KeyFile, keyFile},
		// The same key as PEM text: its signatures come from the cache,
		// and the build still says how the key was given.
		{executor.KeyEnv, string(keyPEM)},
	} {
		t.Run(tc.how, func(t *testing.T) {
			t.Setenv("COSIGN_KEY", tc.key)
			t.Setenv("COSIGN_ALLOW_DEV_KEY", "")
			t.Setenv("COSIGN_PASSWORD", password)
			out := filepath.Join(t.TempDir(), "aoc")
			check(t, build(t, out, cache), out, tc.how, false)
		})
	}
}
