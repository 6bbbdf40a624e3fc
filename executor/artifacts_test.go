package executor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/bale-build/bale/executor/cas"
	"github.com/bale-build/bale/plan"
)

// fileSource is testSource with the production blob-file path: it names
// the layout's blob files, so the executor puts them into its store with
// PutFile (reflink or copy), as it does with the real resolver.
type fileSource struct{ *testSource }

func (s fileSource) BlobFile(_ context.Context, in plan.Input, digest string) (string, bool) {
	dir, err := s.path(in)
	if err != nil || !plan.ValidDigest(digest) {
		return "", false
	}
	return filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:")), true
}

func execute(t testing.TB, src Source, fx *fixture, out, cache string) (*Result, error) {
	t.Helper()
	store, err := cas.Open(cache)
	if err != nil {
		t.Fatal(err)
	}
	return Execute(context.Background(), fx.sealed(t), src, Options{OutDir: out, Store: store})
}

// listDir lists a directory's entries, directories marked with a slash.
func listDir(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		n := de.Name()
		if de.IsDir() {
			n += "/"
		}
		names = append(names, n)
	}
	return names
}

func sameFile(t testing.TB, a, b string) bool {
	t.Helper()
	fa, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := os.Stat(b)
	if errors.Is(err, fs.ErrNotExist) {
		return false // a derived output has no blob in the store
	}
	if err != nil {
		t.Fatal(err)
	}
	return os.SameFile(fa, fb)
}

func fileSHA(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestNoSharedInodes (issue 7 point 6): a byte flipped in the store leaves
// the user's layout untouched; editing one output directory's checksum
// file changes neither the store nor another output directory.
func TestNoSharedInodes(t *testing.T) {
	t.Parallel()
	fx := makeFixture(t, t.TempDir(), fixtureOpts{})
	src := fileSource{fx.src}
	cache, out1, out2 := t.TempDir(), t.TempDir(), t.TempDir()
	if _, err := execute(t, src, fx, out1, cache); err != nil {
		t.Fatal(err)
	}
	res, err := execute(t, src, fx, out2, cache)
	if err != nil {
		t.Fatal(err)
	}
	store, _ := cas.Open(cache)

	// The store and the user's layout.
	agent, _ := fx.plan.Input("image/agent")
	layer := agent.Image.Manifests[0].Layers[0].Digest
	lh, _ := v1.NewHash(layer)
	userBlob := filepath.Join(fx.dir, filepath.FromSlash(agent.Source.Path), "blobs", "sha256", lh.Hex)
	before, err := os.ReadFile(userBlob)
	if err != nil {
		t.Fatal(err)
	}
	if sameFile(t, userBlob, store.Path(lh)) {
		t.Fatal("the store's blob is the user's layout file")
	}
	flip(t, store.Path(lh), 10)
	if after, _ := os.ReadFile(userBlob); !bytes.Equal(before, after) {
		t.Fatal("a byte flipped in the store changed the user's layout")
	}

	// The store and output directories.
	for _, a := range res.Artifacts {
		h, _ := v1.NewHash("sha256:" + a.SHA256)
		p1, p2 := filepath.Join(out1, a.Path), filepath.Join(out2, a.Path)
		if sameFile(t, p1, p2) || sameFile(t, p1, store.Path(h)) || sameFile(t, p2, store.Path(h)) {
			t.Errorf("%s shares an inode between outputs or with the store", a.Path)
		}
	}
	sum := packName + ".tar.sha256"
	want, _ := os.ReadFile(filepath.Join(out2, sum))
	if err := os.WriteFile(filepath.Join(out1, sum), []byte("0000  edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(out2, sum)); !bytes.Equal(got, want) {
		t.Fatal("editing out1's checksum file changed out2's")
	}
	// An output directory from an older bale, whose files were hard links
	// into the store: the rebuild replaces the link with a copy.
	sumHash, _ := v1.NewHash("sha256:" + res.Artifacts[1].SHA256)
	linked := filepath.Join(out2, res.Artifacts[1].Path)
	os.Remove(linked)
	if err := os.Link(store.Path(sumHash), linked); err != nil {
		t.Fatal(err)
	}
	if _, err := execute(t, src, fx, out2, cache); err != nil {
		t.Fatal(err)
	}
	if sameFile(t, linked, store.Path(sumHash)) {
		t.Error("a hard link into the store survived the rebuild")
	}
	packHash, _ := v1.NewHash("sha256:" + res.Artifacts[0].SHA256)
	if ok, _ := store.Has(packHash); ok {
		t.Error("the store holds a copy of the pack")
	}
	// A rebuild into out1 puts the checksum file right again.
	if _, err := execute(t, src, fx, out1, cache); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(out1, sum)); !bytes.Equal(got, want) {
		t.Errorf("rebuild left out1's checksum file as %q", got)
	}
}

// forgeStamp rewrites a blob's stamp to match the file as it is now, as if
// the file had been corrupted below the file system (a loop-mounted image
// edited directly): the stamp vouches for bytes that are not there. The
// format is cas's stamp text.
func forgeStamp(t testing.TB, cache string, h v1.Hash) {
	t.Helper()
	path := filepath.Join(cache, "blobs", "sha256", h.Hex)
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	fp := fmt.Sprintf("dev=%d ino=%d size=%d mtime=%d.%09d ctime=%d.%09d\n",
		st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
	if err := os.WriteFile(filepath.Join(cache, "stamps", h.Hex), []byte(fp), 0o644); err != nil {
		t.Fatal(err)
	}
	store, _ := cas.Open(cache)
	if !store.Verified(h) {
		t.Fatal("forged stamp does not vouch for the blob")
	}
}

// TestPrintedDigestIsOfBytesLeft (issue 7 point 5): whatever the stamps
// say, the digest reported for an artifact is the sha256 of the file left
// in the output directory, hashed in this run.
func TestPrintedDigestIsOfBytesLeft(t *testing.T) {
	t.Parallel()
	fx := makeFixture(t, t.TempDir(), fixtureOpts{})
	cache, ref := t.TempDir(), t.TempDir()
	res := build(t, fx, ref, cache, 0)
	want := res.Artifacts[0].SHA256
	tarName := packName + ".tar"

	t.Run("output edited, no-op build", func(t *testing.T) {
		out := t.TempDir()
		build(t, fx, out, cache, 0)
		flip(t, filepath.Join(out, tarName), 50)
		res := build(t, fx, out, cache, 0)
		if res.StepsRun != 0 {
			t.Errorf("ran %d steps", res.StepsRun)
		}
		if got := fileSHA(t, filepath.Join(out, tarName)); got != res.Artifacts[0].SHA256 || got != want {
			t.Fatalf("printed %s, file hashes to %s, want %s", res.Artifacts[0].SHA256, got, want)
		}
	})
	// The pack is made from the store's entries: a layer corrupted under
	// a stamp that still vouches for it.
	agent, _ := fx.plan.Input("image/agent")
	layer, _ := v1.NewHash(agent.Image.Manifests[0].Layers[0].Digest)
	t.Run("store corrupt under its stamp, fresh directory", func(t *testing.T) {
		flip(t, filepath.Join(cache, "blobs", "sha256", layer.Hex), 50)
		forgeStamp(t, cache, layer)
		out := t.TempDir()
		res := build(t, fx, out, cache, 0)
		if got := fileSHA(t, filepath.Join(out, tarName)); got != res.Artifacts[0].SHA256 || got != want {
			t.Fatalf("printed %s, file hashes to %s, want %s", res.Artifacts[0].SHA256, got, want)
		}
		if res.StepsRun == 0 {
			t.Error("the corrupt layer was not fetched again")
		}
		sumLine, _ := os.ReadFile(filepath.Join(out, tarName+".sha256"))
		if !strings.HasPrefix(string(sumLine), want+"  ") {
			t.Errorf("checksum file %q", sumLine)
		}
	})
	t.Run("store corrupt under its stamp, output intact", func(t *testing.T) {
		out := t.TempDir()
		build(t, fx, out, cache, 0)
		flip(t, filepath.Join(cache, "blobs", "sha256", layer.Hex), 60)
		forgeStamp(t, cache, layer)
		res := build(t, fx, out, cache, 0)
		if got := fileSHA(t, filepath.Join(out, tarName)); got != res.Artifacts[0].SHA256 || got != want {
			t.Fatalf("printed %s, file hashes to %s, want %s", res.Artifacts[0].SHA256, got, want)
		}
		// bale cache verify finds what the stamp hides.
		store, _ := cas.Open(cache)
		rep, err := store.VerifyAll(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Evicted) == 0 || rep.Evicted[0].Name != layer.String() {
			t.Errorf("cache verify evicted %+v", rep.Evicted)
		}
	})
}

// TestPublishAllOrNothing (issue 7 point 12): with the checksum file's
// rename blocked (a directory at its final name), the build fails and the
// output directory is exactly as it was.
func TestPublishAllOrNothing(t *testing.T) {
	t.Parallel()
	fx := makeFixture(t, t.TempDir(), fixtureOpts{})
	cache := t.TempDir()
	tarName := packName + ".tar"
	block := func(t *testing.T, out string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(out, tarName+".sha256", "keep"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("empty directory", func(t *testing.T) {
		out := t.TempDir()
		block(t, out)
		_, err := buildErr(fx, out, cache, 0)
		if err == nil || !strings.Contains(err.Error(), tarName+".sha256") {
			t.Fatalf("err = %v", err)
		}
		if got := listDir(t, out); !slices.Equal(got, []string{tarName + ".sha256/"}) {
			t.Errorf("output directory after the failed build: %q", got)
		}
	})
	t.Run("over an older build", func(t *testing.T) {
		out := t.TempDir()
		old := []byte("an older pack\n")
		os.WriteFile(filepath.Join(out, tarName), old, 0o644)
		fiOld, _ := os.Stat(filepath.Join(out, tarName))
		block(t, out)
		if _, err := buildErr(fx, out, cache, 0); err == nil {
			t.Fatal("build succeeded")
		}
		if got := listDir(t, out); !slices.Equal(got, []string{tarName, tarName + ".sha256/"}) {
			t.Errorf("output directory after the failed build: %q", got)
		}
		got, _ := os.ReadFile(filepath.Join(out, tarName))
		fiNow, _ := os.Stat(filepath.Join(out, tarName))
		if !bytes.Equal(got, old) || !os.SameFile(fiOld, fiNow) {
			t.Errorf("the older pack was not restored: %q", got)
		}
		// Unblocked, the next build publishes both.
		os.RemoveAll(filepath.Join(out, tarName+".sha256"))
		build(t, fx, out, cache, 0)
		if got := listDir(t, out); !slices.Equal(got, []string{tarName, tarName + ".sha256"}) {
			t.Errorf("output directory after the build: %q", got)
		}
	})
}

// TestOutputTemporaries (issue 7 point 7): builds racing into one output
// directory leave no temporary file, and a killed build's old temporaries
// are swept; other hidden files are not the build's to touch.
func TestOutputTemporaries(t *testing.T) {
	t.Parallel()
	fx := makeFixture(t, t.TempDir(), fixtureOpts{})
	cache, out := t.TempDir(), t.TempDir()
	tarName := packName + ".tar"
	dead := filepath.Join(out, "."+tarName+".tmp-123456")
	mine := filepath.Join(out, ".notes.tmp-1")
	for _, p := range []string{dead, mine} {
		os.WriteFile(p, []byte("left behind"), 0o600)
		old := time.Now().Add(-time.Hour)
		os.Chtimes(p, old, old)
	}
	build(t, fx, t.TempDir(), cache, 0)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := buildErr(fx, out, cache, 1); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := listDir(t, out); !slices.Equal(got, []string{".notes.tmp-1", tarName, tarName + ".sha256"}) {
		t.Errorf("output directory after racing builds: %q", got)
	}
}

// TestRollbackSparesAnotherBuildsFile: a failed publish undoes only its own
// renames. When a concurrent build has put its file at the final name
// since, the rollback leaves that file (before, it removed it, and racing
// builds could end with no pack at all).
func TestRollbackSparesAnotherBuildsFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	final := filepath.Join(dir, "x.tar")
	for _, withBackup := range []bool{false, true} {
		if err := os.WriteFile(final, []byte("this attempt's"), 0o644); err != nil {
			t.Fatal(err)
		}
		mine, err := os.Lstat(final)
		if err != nil {
			t.Fatal(err)
		}
		st := &staged{name: "x.tar", final: final, committed: true, mine: mine}
		if withBackup {
			st.backup = filepath.Join(dir, ".x.tar.tmp-prev-1")
			if err := os.WriteFile(st.backup, []byte("previous"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		// Another build publishes over it.
		other := filepath.Join(dir, ".x.tar.tmp-other")
		if err := os.WriteFile(other, []byte("another build's"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(other, final); err != nil {
			t.Fatal(err)
		}
		if err := rollback(st); err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(final); err != nil || string(got) != "another build's" {
			t.Errorf("backup=%v: final holds %q, %v; want the other build's file", withBackup, got, err)
		}
		if got := listDir(t, dir); !slices.Equal(got, []string{"x.tar"}) {
			t.Errorf("backup=%v: directory holds %q", withBackup, got)
		}
	}
}
