package cas

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestLock(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	un1, err := s.Lock(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	un2, err := s.Lock(ctx, false)
	if err != nil {
		t.Fatal("two shared locks:", err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := s.Lock(short, true); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "another bale process") {
		t.Fatalf("exclusive under shared: %v", err)
	}
	un1()
	got := make(chan error, 1)
	go func() {
		un, err := s.Lock(ctx, true)
		if err == nil {
			un()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("exclusive lock taken while a shared one is held: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	un2()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

// TestHelperKilledWriter is not a test: TestSweepAfterKill runs it in a
// subprocess that starts a blob and is killed with SIGKILL mid-write.
func TestHelperKilledWriter(t *testing.T) {
	t.Parallel()
	root := os.Getenv("BALE_CAS_KILLED_WRITER")
	if root == "" {
		t.Skip("subprocess helper")
	}
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("x"), 1<<20)
	r := io.MultiReader(bytes.NewReader(data), readyThenBlock{})
	_ = s.Put(context.Background(), digest(data), 2<<20, r)
	t.Fatal("Put returned")
}

// readyThenBlock tells the parent the first megabyte is written, then
// never returns.
type readyThenBlock struct{}

func (readyThenBlock) Read([]byte) (int, error) {
	fmt.Println("ready")
	// Sleep, not select{}: with no timer pending, the runtime would end
	// the process as deadlocked before the parent kills it.
	time.Sleep(time.Hour)
	return 0, nil
}

func tempNames(t *testing.T, s *Dir) []string {
	t.Helper()
	var out []string
	for _, n := range blobDirNames(t, s) {
		if strings.HasPrefix(n, ".") {
			out = append(out, n)
		}
	}
	return out
}

// TestSweepAfterKill kills a real process mid-write: its temporary file is
// spared while it lives, however old, and swept once it is dead.
func TestSweepAfterKill(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperKilledWriter$", "-test.count=1")
	cmd.Env = append(os.Environ(), "BALE_CAS_KILLED_WRITER="+s.Root())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && sc.Text() != "ready" {
	}
	temps := tempNames(t, s)
	if len(temps) != 1 {
		t.Fatalf("temporary files while writing: %q", temps)
	}
	tmp := filepath.Join(s.blobs, temps[0])
	old := time.Now().Add(-time.Hour)
	os.Chtimes(tmp, old, old)
	if n, _, err := s.Sweep(time.Minute); err != nil || n != 0 {
		t.Fatalf("sweep removed %d files of a live writer (%v)", n, err)
	}
	if _, err := os.Stat(tmp); err != nil {
		t.Fatal("a live writer's file was removed")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if ws := cmd.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper was not killed: %v", cmd.ProcessState)
	}
	// Dead but recent: kept for StaleAge.
	os.Chtimes(tmp, time.Now(), time.Now())
	if n, _, _ := s.Sweep(StaleAge); n != 0 {
		t.Fatal("a fresh temporary file was swept")
	}
	os.Chtimes(tmp, old, old)
	n, b, err := s.Sweep(StaleAge)
	if err != nil || n != 1 || b != 1<<20 {
		t.Fatalf("sweep after kill: %d files, %d bytes, %v", n, b, err)
	}
	if temps := tempNames(t, s); len(temps) != 0 {
		t.Fatalf("left after sweep: %q", temps)
	}
}

// TestSweepSparesLiveFiles: a file this process is writing, and anything
// that is not a temporary file, survive a sweep with no age limit.
func TestSweepSparesLiveFiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	data := []byte("kept")
	h := digest(data)
	if err := s.Put(ctx, h, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	w, err := s.Writer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	w.Write([]byte("in progress"))
	stale := filepath.Join(s.ac, ".dead.tmp-1")
	os.WriteFile(stale, []byte("x"), 0o600)
	n, _, err := s.Sweep(0)
	if err != nil || n != 1 {
		t.Fatalf("sweep: %d, %v", n, err)
	}
	if _, err := os.Stat(stale); err == nil {
		t.Error("the dead file survived")
	}
	if len(tempNames(t, s)) != 1 {
		t.Error("the live writer's file was swept")
	}
	if got, err := readBlob(t, s, h); err != nil || string(got) != "kept" {
		t.Errorf("blob after sweep: %q %v", got, err)
	}
	if _, _, err := w.Commit(); err != nil {
		t.Fatal("writer after sweep:", err)
	}
}

// putAction stores blobs and an action naming them, used at time at.
func putAction(t *testing.T, s *Dir, key string, at time.Time, contents ...string) []v1.Hash {
	t.Helper()
	var res ActionResult
	var hs []v1.Hash
	for i, c := range contents {
		h := digest([]byte(c))
		if err := s.Put(context.Background(), h, int64(len(c)), strings.NewReader(c)); err != nil {
			t.Fatal(err)
		}
		if err := s.Sync(); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(s.Path(h), at, at)
		res.Outputs = append(res.Outputs, Output{Path: fmt.Sprint(key, i), Digest: h, Size: int64(len(c))})
		hs = append(hs, h)
	}
	k := digest([]byte(key))
	if err := s.PutAction(context.Background(), k, &res); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(s.actionPath(k), at, at)
	return hs
}

func TestUsage(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	putAction(t, s, "a", time.Now(), "0123456789", "abc")
	os.WriteFile(filepath.Join(s.blobs, ".upload.tmp-1"), make([]byte, 100), 0o600)
	u, err := s.Usage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if u.Blobs != 2 || u.BlobBytes != 13 || u.Actions != 1 || u.Stamps != 2 || u.Temps != 1 || u.TempBytes != 100 {
		t.Errorf("usage %+v", u)
	}
	if u.Bytes < u.BlobBytes+u.ActionBytes+u.TempBytes {
		t.Errorf("total %d less than its parts", u.Bytes)
	}
}

func TestPrune(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Now()
	day := 24 * time.Hour
	setup := func(t *testing.T) (*Dir, map[string]v1.Hash) {
		s := newStore(t)
		hs := map[string]v1.Hash{}
		// "old" was written 10 days ago but used by a cache hit today:
		// its action entry's time, not its own, is its last use.
		hs["old"] = putAction(t, s, "old", now.Add(-10*day), "old-blob-1")[0]
		if _, hit, _ := s.GetAction(context.Background(), digest([]byte("old"))); !hit {
			t.Fatal("no hit")
		}
		hs["mid"] = putAction(t, s, "mid", now.Add(-5*day), "mid-blob-22")[0]
		hs["new"] = putAction(t, s, "new", now.Add(-1*day), "new-blob-333")[0]
		// A blob no entry names: its write time is its last use.
		orphan := "orphan-4444"
		hs["orphan"] = digest([]byte(orphan))
		s.Put(ctx, hs["orphan"], int64(len(orphan)), strings.NewReader(orphan))
		s.Sync()

		os.Chtimes(s.Path(hs["orphan"]), now.Add(-20*day), now.Add(-20*day))
		return s, hs
	}
	for _, tc := range []struct {
		name string
		opts PruneOptions
		gone []string
	}{
		{"nothing", PruneOptions{}, nil},
		{"older than 3 days", PruneOptions{OlderThan: 3 * day}, []string{"orphan", "mid"}},
		{"max size keeps most recent", PruneOptions{MaxSize: 22}, []string{"orphan", "mid"}},
		{"max size one", PruneOptions{MaxSize: 10}, []string{"orphan", "mid", "new"}},
		{"max size zero means none", PruneOptions{MaxSize: 0}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, hs := setup(t)
			res, err := s.Prune(ctx, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if res.Evicted != len(tc.gone) {
				t.Errorf("evicted %d, want %d (%+v)", res.Evicted, len(tc.gone), res)
			}
			goneSet := map[string]bool{}
			for _, g := range tc.gone {
				goneSet[g] = true
			}
			for name, h := range hs {
				ok, _ := s.Has(h)
				if ok == goneSet[name] {
					t.Errorf("%s present=%v", name, ok)
				}
				_, hit, _ := s.GetAction(context.Background(), digest([]byte(name)))
				if name != "orphan" && hit == goneSet[name] {
					t.Errorf("action %s hit=%v", name, hit)
				}
				if _, err := os.Stat(s.stampPath(h)); (err == nil) == goneSet[name] {
					t.Errorf("stamp of %s: %v", name, err)
				}
			}
			if acs, _ := os.ReadDir(s.ac); len(acs) != 3-len(tc.gone)+btoi(goneSet["orphan"]) {
				t.Errorf("%d action entries left", len(acs))
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestPruneWaitsForBuilds: prune takes the lock exclusively.
func TestPruneWaitsForBuilds(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	un, _ := s.Lock(context.Background(), false)
	defer un()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := s.Prune(ctx, PruneOptions{MaxSize: 1}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("prune under a build: %v", err)
	}
	if _, err := s.VerifyAll(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("verify under a build: %v", err)
	}
}

// TestVerifyAll: corruption the stamps cannot see (a stamp rewritten to
// match, as below the file system) is found by a full re-hash; the blob,
// and every entry naming it, are evicted; sound entries are kept.
func TestVerifyAll(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	good := putAction(t, s, "good", time.Now(), "good-blob")
	bad := putAction(t, s, "bad", time.Now(), "bad-blob", "good-blob")
	flipKeepStamp(t, s, bad[0], 2)
	junk := filepath.Join(s.ac, digest([]byte("junk")).Hex)
	os.WriteFile(junk, []byte("{not json"), 0o644)
	// A temporary file being written is not a blob.
	w, _ := s.Writer(ctx)
	defer w.Abort()

	rep, err := s.VerifyAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Blobs != 1 || rep.Actions != 3 || len(rep.Evicted) != 3 {
		t.Fatalf("report %+v", rep)
	}
	kinds := ""
	for _, e := range rep.Evicted {
		kinds += e.Kind + ":" + e.Name[:min(len(e.Name), 14)] + " "
	}
	if !strings.Contains(kinds, "blob:"+bad[0].String()[:14]) {
		t.Errorf("evictions %s", kinds)
	}
	if ok, _ := s.Has(bad[0]); ok {
		t.Error("corrupt blob kept")
	}
	if _, hit, _ := s.GetAction(context.Background(), digest([]byte("bad"))); hit {
		t.Error("entry naming the corrupt blob kept")
	}
	if _, err := os.Stat(junk); err == nil {
		t.Error("undecodable entry kept")
	}
	if _, hit, _ := s.GetAction(context.Background(), digest([]byte("good"))); !hit {
		t.Error("sound entry evicted")
	}
	if got, err := readBlob(t, s, good[0]); err != nil || string(got) != "good-blob" {
		t.Errorf("sound blob: %q %v", got, err)
	}
	// Clean now: a second pass evicts nothing.
	rep, err = s.VerifyAll(ctx)
	if err != nil || len(rep.Evicted) != 0 {
		t.Fatalf("second pass: %+v %v", rep, err)
	}
}

// TestDerivedOutputs: an entry whose output is derived (not in the store)
// is a hit without a blob, survives cache verify, and goes in a prune when
// it is old itself or when no blob is left to make its output from.
func TestDerivedOutputs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Now()
	day := 24 * time.Hour
	key := digest([]byte("pack step"))
	setup := func(t *testing.T, used time.Time) *Dir {
		s := newStore(t)
		putAction(t, s, "entry step", now, "an entry")
		res := &ActionResult{Outputs: []Output{{Path: "pack.tar", Digest: digest([]byte("pack bytes")), Size: 10, Derived: true}}}
		if err := s.PutAction(context.Background(), key, res); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(s.actionPath(key), used, used)
		return s
	}
	s := setup(t, now)
	if res, hit, err := s.GetAction(context.Background(), key); err != nil || !hit || !res.Outputs[0].Derived {
		t.Fatalf("derived output: hit %v, err %v, %+v", hit, err, res)
	}
	if rep, err := s.VerifyAll(ctx); err != nil || len(rep.Evicted) != 0 {
		t.Fatalf("verify evicted %+v (%v)", rep, err)
	}
	for _, tc := range []struct {
		name  string
		used  time.Time
		opts  PruneOptions
		kept  bool
		blobs bool
	}{
		{"recent, blobs kept", now, PruneOptions{OlderThan: 3 * day}, true, true},
		{"old", now.Add(-5 * day), PruneOptions{OlderThan: 3 * day}, false, true},
		{"every blob evicted", now, PruneOptions{MaxSize: 1}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := setup(t, tc.used)
			if _, err := s.Prune(ctx, tc.opts); err != nil {
				t.Fatal(err)
			}
			_, hit, _ := s.GetAction(context.Background(), key)
			if hit != tc.kept {
				t.Errorf("derived entry kept = %v, want %v", hit, tc.kept)
			}
			_, entryHit, _ := s.GetAction(context.Background(), digest([]byte("entry step")))
			if entryHit != tc.blobs {
				t.Errorf("entry step kept = %v, want %v", entryHit, tc.blobs)
			}
		})
	}
}

// TestPartialDownloadsSwept: an abandoned partial download counts as a
// temporary file, stays for a week for a later build to resume, and goes
// at once in a prune; one a live build holds is never removed.
func TestPartialDownloadsSwept(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	if u, err := s.Usage(ctx); err != nil || u.Temps != 0 {
		t.Fatalf("usage without partial/: %+v %v", u, err)
	}
	put := func(name string, age time.Duration) string {
		p := filepath.Join(s.partialDir(), name)
		if err := os.MkdirAll(s.partialDir(), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("half a layer"), 0o644); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-age)
		os.Chtimes(p, old, old)
		return p
	}
	recent, weekOld := put(strings.Repeat("a", 64), time.Hour), put(strings.Repeat("b", 64), 8*24*time.Hour)
	if u, _ := s.Usage(ctx); u.Temps != 2 || u.TempBytes != 24 {
		t.Errorf("usage: %+v", u)
	}
	if n, _, err := s.Sweep(StaleAge); err != nil || n != 1 {
		t.Errorf("build sweep removed %d (%v), want the week-old one", n, err)
	}
	if _, err := os.Stat(recent); err != nil {
		t.Error("the recent partial download was removed")
	}
	if _, err := os.Stat(weekOld); err == nil {
		t.Error("the week-old partial download was kept")
	}
	p, err := s.Resume(ctx, digest([]byte("live")), 100)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	res, err := s.Prune(ctx, PruneOptions{})
	if err != nil || res.Temps != 1 {
		t.Errorf("prune: %+v %v, want the recent partial download removed", res, err)
	}
	if _, err := os.Stat(filepath.Join(s.partialDir(), digest([]byte("live")).Hex)); err != nil {
		t.Error("prune removed a live partial download")
	}
}
