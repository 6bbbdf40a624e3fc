package assemble_test

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/bale-build/bale/kit"
	"github.com/bale-build/bale/kit/assemble"
	"github.com/bale-build/bale/testsupport/kittest"
	"github.com/bale-build/bale/testsupport/testrepo"
	"github.com/bale-build/bale/verify"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// digests is testrepo.Digests for a test: the golden form of a kit.
func digests(t testing.TB, dir string) string {
	t.Helper()
	d, err := testrepo.Digests(dir)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mustRead(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBuild(t *testing.T) {
	dir, m := kittest.Build(t, kittest.AOCInput(t, kittest.DevKey(t)))
	if !m.DevKey {
		t.Error("a dev-key kit does not say so")
	}
	script := mustRead(t, filepath.Join(dir, kit.ScriptName))
	if !strings.Contains(string(script), "DEVELOPMENT key") {
		t.Error("verify.sh of a dev-key kit has no warning")
	}

	// The kit's digests are pinned, like the pack's.
	got := digests(t, dir)
	golden := filepath.Join("testdata", "aoc-kit.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if want := mustRead(t, golden); got != string(want) {
		t.Errorf("kit digests differ from %s (-update to rewrite):\n%s", golden, got)
	}

	// SHA256SUMS lists every kit file but itself and its signature.
	parsed, err := kit.ParseSums(mustRead(t, filepath.Join(dir, kit.SumsName)))
	if err != nil {
		t.Fatal(err)
	}
	if len(parsed) != len(m.Artifacts)+1 {
		t.Errorf("SHA256SUMS lists %d files, want %d", len(parsed), len(m.Artifacts)+1)
	}
	for _, s := range parsed {
		if s.Name == kit.SumsName || s.Name == kit.SumsSignatureName || s.Name == m.Archive {
			t.Errorf("SHA256SUMS lists %s", s.Name)
		}
	}
}

// contentHash is the AOC dataset's content hash.
func contentHash(t *testing.T, in assemble.Input) string {
	t.Helper()
	var files []kit.DatasetFile
	for _, f := range in.Dataset.Files {
		b := mustRead(t, f.Path)
		files = append(files, kit.DatasetFile{Path: f.Dest, Size: int64(len(b)), SHA256: kittest.HexSum(b)})
	}
	return kit.DatasetHash(files)
}

func TestDatasetHash(t *testing.T) {
	key := kittest.DevKey(t)
	in := kittest.AOCInput(t, key)
	dir, _ := kittest.Build(t, in)
	dm, err := os.ReadFile(filepath.Join(dir, "aoc-dataset-"+contentHash(t, in)+".manifest.json"))
	if err != nil {
		t.Fatalf("dataset files are not named by the content hash: %v", err)
	}
	parsed, err := kit.ParseDatasetManifest(dm)
	if err != nil || parsed.Hash != parsed.ContentHash || len(parsed.Files) != 4 {
		t.Fatalf("dataset manifest: %+v, %v", parsed, err)
	}

	// A production key: any key but a development one.
	prod := kittest.OtherKey(t)
	tests := []struct {
		name, hash string
		dev        bool
		want       string
	}{
		{"pinned digest matches", contentHash(t, in), true, ""},
		{"pinned digest differs", strings.Repeat("0", 64), true, "spec pins hash " + strings.Repeat("0", 64) + " but the files hash to " + contentHash(t, in)},
		{"placeholder with dev key", "dev-rehearsal-placeholder", true, ""},
		{"placeholder without dev key", "dev-rehearsal-placeholder", false, "placeholders are accepted only with the development key"},
		{"unsafe placeholder", "../x", true, "not a plain file name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := key
			if !tt.dev {
				k = prod
			}
			in := kittest.AOCInput(t, k)
			in.Dataset.Hash = tt.hash
			dir := t.TempDir()
			_, err := assemble.Kit(context.Background(), dir, in)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(filepath.Join(dir, "aoc-dataset-"+tt.hash+".tar.gz")); err != nil {
					t.Fatal(err)
				}
				if r, err := verify.Kit(context.Background(), dir, verify.Options{}); err != nil || !r.OK() {
					t.Fatalf("verify.Kit: %v %v", err, r.Err())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("assemble.Kit: %v, want %q", err, tt.want)
			}
		})
	}
}

// TestDevKeyByPublicKey: the repository's development key opened as a
// release key (COSIGN_KEY, not the spec's devKey) still makes a
// development kit (issue 23 point 19).
func TestDevKeyByPublicKey(t *testing.T) {
	l, err := os.ReadFile(kittest.DevKeyPath(t))
	if err != nil {
		t.Fatal(err)
	}
	k := kittest.OpenKey(t, l)
	_, m := kittest.Build(t, kittest.AOCInput(t, k))
	if !m.DevKey {
		t.Fatal(`the development key given as a release key builds a kit saying "devKey": false`)
	}
}

// TestHelperBuildKit builds the AOC kit into $BALE_KIT_OUT under the umask
// in $BALE_KIT_UMASK; TestByteStability runs it as a subprocess. Skipped
// unless BALE_KIT_OUT is set.
func TestHelperBuildKit(t *testing.T) {
	out := os.Getenv("BALE_KIT_OUT")
	if out == "" {
		t.Skip("BALE_KIT_OUT not set")
	}
	if u := os.Getenv("BALE_KIT_UMASK"); u != "" {
		mask, err := strconv.ParseUint(u, 8, 32)
		if err != nil {
			t.Fatal(err)
		}
		syscall.Umask(int(mask))
	}
	if _, err := assemble.Kit(context.Background(), out, kittest.AOCInput(t, kittest.DevKey(t))); err != nil {
		t.Fatal(err)
	}
}

// TestByteStability builds the kit in two processes that differ in output
// directory, working directory, umask, TZ and GOMAXPROCS: every file,
// signatures included, must be the same bytes, and equal the golden digests.
func TestByteStability(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the test binary twice")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	run := func(out, umask, tz, procs string) string {
		cmd := exec.Command(exe, "-test.run=^TestHelperBuildKit$", "-test.count=1")
		cmd.Dir = wd
		cmd.Env = append(os.Environ(), "BALE_KIT_OUT="+out, "BALE_KIT_UMASK="+umask, "TZ="+tz, "GOMAXPROCS="+procs)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("helper build: %v\n%s", err, b)
		}
		return digests(t, out)
	}
	a := run(filepath.Join(t.TempDir(), "a"), "022", "UTC", "1")
	b := run(filepath.Join(t.TempDir(), "deeper", "b"), "077", "Pacific/Chatham", "2")
	if a != b {
		t.Fatalf("two builds differ:\n%s\n%s", a, b)
	}
	if want := mustRead(t, filepath.Join("testdata", "aoc-kit.golden")); a != string(want) {
		t.Fatalf("builds differ from the golden digests:\n%s", a)
	}
}
