package kit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/internal/fixtures"
	"github.com/bale-build/bale/sign"
	"github.com/bale-build/bale/testsupport/testrepo"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const fx = "../testdata"

var buildTime = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func devKey(t testing.TB) *sign.Key {
	t.Helper()
	k, err := sign.Load(sign.KeyConfig{
		Key:          "env://COSIGN_KEY",
		DevKey:       filepath.Join(fx, "keys", "cosign.dev.key"),
		DevPublicKey: filepath.Join(fx, "keys", "cosign.dev.pub"),
		Getenv: func(k string) string {
			return map[string]string{"COSIGN_ALLOW_DEV_KEY": "1", "COSIGN_PASSWORD": fixtures.DevKeyPassword}[k]
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// aocInput is the AOC release of specs/aoc over the committed fixtures.
func aocInput(key *sign.Key) Input {
	rf := func(p, dest string, mode int64) FileInput {
		return FileInput{Path: filepath.Join(fx, "aoc", "runner", p), Dest: dest, Mode: mode, Source: "testdata/aoc/runner/" + p}
	}
	df := func(p string) FileInput {
		return FileInput{Path: filepath.Join(fx, "aoc", "dataset", p), Dest: p, Source: "testdata/aoc/dataset/" + p}
	}
	return Input{
		Release:        "aoc-backfill-release",
		Name:           "aoc-offline-kit",
		Time:           buildTime,
		PlanID:         "sha256:" + strings.Repeat("1", 64),
		SpecDigest:     "sha256:" + strings.Repeat("2", 64),
		Tool:           "bale-v0.0.0-test",
		BuilderVersion: map[string]string{"bale": "v0.0.0-test"},
		Key:            key,
		Runner: Runner{
			Name: "aoc-backfill-runner", Version: "19.5.0",
			Supplier: "Organization: StellaOps", License: "AGPL-3.0-or-later",
			Files: []FileInput{
				rf("bin/aoc-backfill", "bin/aoc-backfill", 0o755),
				rf("scripts/package-backfill-release.sh", "scripts/package-backfill-release.sh", 0o755),
				rf("config/backfill.yaml", "config/backfill.yaml", 0),
				rf("README.md", "README.md", 0),
			},
		},
		Dataset: &Dataset{
			Name:  "aoc-dataset",
			Files: []FileInput{df("dataset.json"), df("advisories.ndjson"), df("observations.ndjson"), df("linksets.ndjson")},
		},
	}
}

func buildKit(t testing.TB, in Input) (string, *Manifest) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "out")
	m, err := Build(context.Background(), dir, in)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return dir, m
}

// digests is testrepo.Digests for a test: the golden form of a kit.
func digests(t testing.TB, dir string) string {
	t.Helper()
	d, err := testrepo.Digests(dir)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestBuildVerify(t *testing.T) {
	dir, m := buildKit(t, aocInput(devKey(t)))
	r, err := Verify(context.Background(), dir, VerifyOptions{TrustedKey: devKey(t).PublicKeyPEM()})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() {
		t.Fatal(r.Err())
	}
	for _, c := range []string{CheckFiles, CheckPublicKey, CheckSums, CheckSumsSignature, CheckManifest, CheckSignature, CheckDSSE, CheckProvenance, CheckSBOM, CheckDatasetManifest, CheckArchive} {
		if !slices.Contains(r.Checks, c) {
			t.Errorf("check %s did not run (ran %v)", c, r.Checks)
		}
	}
	if !r.DevKey || !m.DevKey {
		t.Error("a dev-key kit does not say so")
	}
	script, _ := os.ReadFile(filepath.Join(dir, ScriptName))
	if !bytes.Contains(script, []byte("DEVELOPMENT key")) {
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
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("kit digests differ from %s (-update to rewrite):\n%s", golden, got)
	}

	// SHA256SUMS lists every kit file but itself and its signature.
	sums, _ := os.ReadFile(filepath.Join(dir, SumsName))
	parsed, err := ParseSums(sums)
	if err != nil {
		t.Fatal(err)
	}
	if len(parsed) != len(m.Artifacts)+1 {
		t.Errorf("SHA256SUMS lists %d files, want %d", len(parsed), len(m.Artifacts)+1)
	}
	for _, s := range parsed {
		if s.Name == SumsName || s.Name == SumsSignatureName || s.Name == m.Archive {
			t.Errorf("SHA256SUMS lists %s", s.Name)
		}
	}
}

func TestDatasetHash(t *testing.T) {
	key := devKey(t)
	in := aocInput(key)
	dir, _ := buildKit(t, in)
	dm, err := os.ReadFile(filepath.Join(dir, "aoc-dataset-"+contentHash(t, in)+".manifest.json"))
	if err != nil {
		t.Fatalf("dataset files are not named by the content hash: %v", err)
	}
	parsed, err := ParseDatasetManifest(dm)
	if err != nil || parsed.Hash != parsed.ContentHash || len(parsed.Files) != 4 {
		t.Fatalf("dataset manifest: %+v, %v", parsed, err)
	}

	prod, err := sign.ParsePrivateKey(mustRead(t, filepath.Join(fx, "keys", "cosign.dev.key")), []byte(fixtures.DevKeyPassword))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, hash string
		key        *sign.Key
		want       string
	}{
		{"pinned digest matches", contentHash(t, in), key, ""},
		{"pinned digest differs", strings.Repeat("0", 64), key, "spec pins hash " + strings.Repeat("0", 64) + " but the files hash to " + contentHash(t, in)},
		{"placeholder with dev key", "dev-rehearsal-placeholder", key, ""},
		{"placeholder without dev key", "dev-rehearsal-placeholder", prod, "placeholders are accepted only with the development key"},
		{"unsafe placeholder", "../x", key, "not a plain file name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := aocInput(tt.key)
			in.Dataset.Hash = tt.hash
			dir := t.TempDir()
			_, err := Build(context.Background(), dir, in)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(filepath.Join(dir, "aoc-dataset-"+tt.hash+".tar.gz")); err != nil {
					t.Fatal(err)
				}
				if r, err := Verify(context.Background(), dir, VerifyOptions{}); err != nil || !r.OK() {
					t.Fatalf("Verify: %v %v", err, r.Err())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Build: %v, want %q", err, tt.want)
			}
		})
	}
}

func contentHash(t *testing.T, in Input) string {
	t.Helper()
	files, err := datasetFiles(in.Dataset.Files)
	if err != nil {
		t.Fatal(err)
	}
	return DatasetHash(files)
}

func mustRead(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSumsFormat(t *testing.T) {
	a, b := strings.Repeat("a", 64), strings.Repeat("b", 64)
	got, err := Sums([]Sum{{"z.txt", a}, {"B.txt", b}})
	if err != nil {
		t.Fatal(err)
	}
	if want := b + "  B.txt\n" + a + "  z.txt\n"; string(got) != want {
		t.Fatalf("Sums = %q, want %q", got, want)
	}
	for _, bad := range [][]Sum{
		{{"a b", a}}, {{"../x", a}}, {{".hidden", a}}, {{"-n", a}}, {{"x", "A" + a[1:]}}, {{"x", a}, {"x", b}},
	} {
		if _, err := Sums(bad); err == nil {
			t.Errorf("Sums(%v) accepted", bad)
		}
	}
	for _, bad := range []string{"x", a + " x\n", a + "  b\n" + a + "  a\n", a + "  x"} {
		if _, err := ParseSums([]byte(bad)); err == nil {
			t.Errorf("ParseSums(%q) accepted", bad)
		}
	}
}

func hexSum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

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
	if _, err := Build(context.Background(), out, aocInput(devKey(t))); err != nil {
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
	want, err := os.ReadFile(filepath.Join("testdata", "aoc-kit.golden"))
	if err != nil {
		t.Fatal(err)
	}
	if a != string(want) {
		t.Fatalf("builds differ from the golden digests:\n%s", a)
	}
}

func TestVerifyArchive(t *testing.T) {
	dir, m := buildKit(t, aocInput(devKey(t)))
	path := filepath.Join(dir, m.Archive)
	r, err := VerifyArchive(context.Background(), path, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || r.Path != path {
		t.Fatalf("%v %s", r.Err(), r.Path)
	}

	// A kit archive with a tampered member fails naming it.
	in := aocInput(devKey(t))
	in.Name = "other-kit"
	dir2, _ := buildKit(t, in)
	flip(t, dir2, "cosign.pub")
	bad := filepath.Join(t.TempDir(), "bad.tar.gz")
	f, err := os.Create(bad)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir2)
	var list []archive.Entry
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "other-kit.tar.gz") {
			continue
		}
		p := filepath.Join(dir2, e.Name())
		st, _ := os.Stat(p)
		list = append(list, archive.Entry{Name: "other-kit/" + e.Name(), Size: st.Size(), Open: func() (io.ReadCloser, error) { return os.Open(p) }})
	}
	list = append(list, archive.Entry{Name: "other-kit/sub/x", Size: 0, Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("")), nil }})
	if err := archive.WriteTar(context.Background(), f, list[:len(list)-1], buildTime); err != nil {
		t.Fatal(err)
	}
	f.Close()
	r, err = VerifyArchive(context.Background(), bad, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.OK() || !strings.Contains(r.Err().Error(), "cosign.pub") {
		t.Fatalf("tampered archive: %v", r.Err())
	}

	// A subdirectory is refused.
	f, _ = os.Create(bad)
	if err := archive.WriteTar(context.Background(), f, list, buildTime); err != nil {
		t.Fatal(err)
	}
	f.Close()
	r, err = VerifyArchive(context.Background(), bad, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.OK() || !strings.Contains(r.Err().Error(), "other-kit/sub") {
		t.Fatalf("archive with a subdirectory: %v", r.Err())
	}
}
