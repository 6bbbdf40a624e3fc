package cas

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/bale-build/bale/atomicfile"
	"github.com/bale-build/bale/internal/capread"
)

// Maintenance: the store's lock, temporary files left by killed builds,
// disk usage, pruning by last use, and a full re-hash.
//
// Builds hold the store's lock shared; Prune and VerifyAll hold it
// exclusive, so they never delete what a running build is about to use.
// Temporary files are also locked one by one by the process writing them
// (see atomicfile), so Sweep, which runs under a shared lock, removes only
// files whose writer is gone.
//
// Last use is recorded without atime (often off, or lazy): every action
// cache hit sets the entry's modification time, so a blob's last use is
// the latest of its own modification time (when it was written) and those
// of the entries that name it. Blobs themselves are never touched, since
// that would move their change time and void their stamps.

// StaleAge is how long a temporary file must have gone unmodified, with
// no live process holding its lock, before Sweep removes it.
const StaleAge = 15 * time.Minute

// lockPollMax bounds the wait between attempts to take a busy lock.
const lockPollMax = 250 * time.Millisecond

// Lock takes the store's lock, shared (builds: any number at once) or
// exclusive (Prune, VerifyAll), waiting until it is free or ctx is done.
// Call unlock to release it; the kernel releases it if the process dies.
func (s *Dir) Lock(ctx context.Context, exclusive bool) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(s.root, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock store %s: %w", s.root, err)
	}
	wait := 5 * time.Millisecond
	for {
		ok, err := flock(f, exclusive)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock store %s: %w", s.root, err)
		}
		if ok {
			return func() { f.Close() }, nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("lock store %s (another bale process holds it): %w", s.root, context.Cause(ctx))
		case <-t.C:
		}
		wait = min(2*wait, lockPollMax)
	}
}

// isTemp reports whether a name in one of the store's directories is a
// temporary file: blobs, entries and stamps never start with a dot.
func isTemp(name string) bool { return strings.HasPrefix(name, ".") }

// partialAge is how long an abandoned partial download stays for a later
// build to resume (see Resume): far longer than a temporary file, since
// resuming is its point.
const partialAge = 7 * 24 * time.Hour

// Sweep removes temporary files that killed or crashed processes left in
// the store: unmodified for olderThan and not locked by a live writer. It
// is safe while builds run. Partial downloads go once unmodified for
// partialAge, or at once with olderThan zero (as Prune calls it). It
// returns how many files and bytes it freed.
func (s *Dir) Sweep(olderThan time.Duration) (int, int64, error) {
	var (
		files int
		bytes int64
		errs  []error
	)
	for _, dir := range []string{s.blobs, s.ac, s.stamps} {
		n, b, err := atomicfile.RemoveStale(dir, olderThan, isTemp)
		files += n
		bytes += b
		if err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := os.Stat(s.partialDir()); err == nil {
		age := olderThan
		if age > 0 {
			age = max(age, partialAge)
		}
		n, b, err := atomicfile.RemoveStale(s.partialDir(), age, func(string) bool { return true })
		files += n
		bytes += b
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return files, bytes, fmt.Errorf("sweep store %s: %w", s.root, err)
	}
	return files, bytes, nil
}

// Usage is what the store holds on disk.
type Usage struct {
	// Root is the store's directory.
	Root string `json:"root"`
	// Blobs and BlobBytes count the content blobs.
	Blobs     int   `json:"blobs"`
	BlobBytes int64 `json:"blobBytes"`
	// Actions and ActionBytes count the action cache entries.
	Actions     int   `json:"actions"`
	ActionBytes int64 `json:"actionBytes"`
	// Stamps counts verification stamps (a few dozen bytes each).
	Stamps int `json:"stamps"`
	// Temps and TempBytes count temporary files: being written now, or
	// left by a killed process until Sweep removes them, partial
	// downloads included.
	Temps     int   `json:"temps"`
	TempBytes int64 `json:"tempBytes"`
	// Bytes is the total of the sizes above.
	Bytes int64 `json:"bytes"`
}

// Usage reports what the store holds. It reads directories only, no
// content, and takes no lock: under running builds it is a snapshot.
func (s *Dir) Usage(ctx context.Context) (*Usage, error) {
	u := &Usage{Root: s.root}
	for _, d := range []struct {
		dir   string
		count *int
		bytes *int64
	}{
		{s.blobs, &u.Blobs, &u.BlobBytes},
		{s.ac, &u.Actions, &u.ActionBytes},
		{s.stamps, &u.Stamps, nil},
		{s.partialDir(), &u.Temps, &u.TempBytes},
	} {
		des, err := os.ReadDir(d.dir)
		if errors.Is(err, fs.ErrNotExist) && d.dir == s.partialDir() {
			continue // no download was ever interrupted
		}
		if err != nil {
			return nil, fmt.Errorf("cache usage %s: %w", s.root, err)
		}
		for _, de := range des {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			fi, err := de.Info()
			if err != nil || !fi.Mode().IsRegular() {
				continue // gone meanwhile, or not ours
			}
			switch {
			case isTemp(de.Name()):
				u.Temps++
				u.TempBytes += fi.Size()
			default:
				*d.count++
				if d.bytes != nil {
					*d.bytes += fi.Size()
				}
			}
			u.Bytes += fi.Size()
		}
	}
	return u, nil
}

// PruneOptions says what Prune evicts. With both bounds unset it evicts
// nothing but temporary files and entries that point at nothing.
type PruneOptions struct {
	// MaxSize, if positive, is the most blob bytes to keep: the least
	// recently used blobs go first.
	MaxSize int64
	// OlderThan, if positive, evicts every blob not used for this long.
	OlderThan time.Duration
	// Now is the time ages are measured from; zero means time.Now().
	Now time.Time
}

// PruneResult is what Prune did.
type PruneResult struct {
	// Evicted and EvictedBytes count the blobs removed.
	Evicted      int   `json:"evicted"`
	EvictedBytes int64 `json:"evictedBytes"`
	// Kept and KeptBytes count the blobs left.
	Kept      int   `json:"kept"`
	KeptBytes int64 `json:"keptBytes"`
	// Actions counts action cache entries removed because a blob they name
	// is gone or they could not be read.
	Actions int `json:"actions"`
	// Temps and TempBytes count temporary files removed.
	Temps     int   `json:"temps"`
	TempBytes int64 `json:"tempBytes"`
}

type blobUse struct {
	h    v1.Hash
	size int64
	used time.Time
}

// Prune evicts blobs by last use (see the package's maintenance notes),
// the action cache entries that name them, their stamps, and every
// abandoned temporary file. It holds the store's lock exclusively, waiting
// for running builds to finish.
func (s *Dir) Prune(ctx context.Context, opts PruneOptions) (*PruneResult, error) {
	unlock, err := s.Lock(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	defer unlock()
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	res := &PruneResult{}
	// No build runs under the exclusive lock, and a writer's own lock still
	// guards its file: every unlocked temporary file is abandoned.
	if res.Temps, res.TempBytes, err = s.Sweep(0); err != nil {
		return res, fmt.Errorf("prune: %w", err)
	}
	blobs, err := s.listBlobs(ctx)
	if err != nil {
		return res, fmt.Errorf("prune: %w", err)
	}
	actions, err := s.listActions(ctx)
	if err != nil {
		return res, fmt.Errorf("prune: %w", err)
	}
	byHex := make(map[string]*blobUse, len(blobs))
	for i := range blobs {
		byHex[blobs[i].h.Hex] = &blobs[i]
	}
	for _, a := range actions {
		if a.res == nil {
			continue
		}
		for _, o := range a.res.Outputs {
			if b := byHex[o.Digest.Hex]; b != nil && a.used.After(b.used) {
				b.used = a.used
			}
		}
	}
	// Oldest first; ties by digest so the order is stable.
	slices.SortFunc(blobs, func(a, b blobUse) int {
		if c := a.used.Compare(b.used); c != 0 {
			return c
		}
		return strings.Compare(a.h.Hex, b.h.Hex)
	})
	var total int64
	for _, b := range blobs {
		total += b.size
	}
	gone := map[string]bool{}
	for _, b := range blobs {
		old := opts.OlderThan > 0 && now.Sub(b.used) > opts.OlderThan
		big := opts.MaxSize > 0 && total > opts.MaxSize
		if !old && !big {
			continue
		}
		if err := s.remove(b.h); err != nil {
			return res, fmt.Errorf("prune: %w", err)
		}
		gone[b.h.Hex] = true
		total -= b.size
		res.Evicted++
		res.EvictedBytes += b.size
	}
	res.Kept, res.KeptBytes = len(blobs)-res.Evicted, total
	// An entry whose outputs are all derived names no blob; it goes when
	// it is old itself, or when no blob is left to make its outputs from.
	derivedOnly := func(a actionUse) bool {
		return (opts.OlderThan > 0 && now.Sub(a.used) > opts.OlderThan) || res.Kept == 0
	}
	n, err := s.dropDangling(actions, func(h v1.Hash) bool { return gone[h.Hex] || byHex[h.Hex] == nil }, derivedOnly)
	res.Actions = n
	if err != nil {
		return res, fmt.Errorf("prune: %w", err)
	}
	return res, s.dropOrphanStamps()
}

// remove deletes blob h and its stamp.
func (s *Dir) remove(h v1.Hash) error {
	s.dropStamp(h)
	if err := os.Remove(s.blobPath(h)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove blob %s: %w", h, err)
	}
	return nil
}

// listBlobs lists the blobs with their sizes and write times. Files in the
// blob directory that are neither blobs nor temporary files are removed:
// the directory is the store's alone.
func (s *Dir) listBlobs(ctx context.Context) ([]blobUse, error) {
	des, err := os.ReadDir(s.blobs)
	if err != nil {
		return nil, err
	}
	var out []blobUse
	for _, de := range des {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if isTemp(de.Name()) {
			continue
		}
		h := v1.Hash{Algorithm: algorithm, Hex: de.Name()}
		fi, err := de.Info()
		if err != nil {
			continue
		}
		if checkHash(h) != nil || !fi.Mode().IsRegular() {
			if err := os.RemoveAll(filepath.Join(s.blobs, de.Name())); err != nil {
				return nil, err
			}
			continue
		}
		out = append(out, blobUse{h: h, size: fi.Size(), used: fi.ModTime()})
	}
	return out, nil
}

type actionUse struct {
	key  string
	res  *ActionResult // nil: unreadable
	used time.Time
}

// listActions reads every action cache entry with its last use.
func (s *Dir) listActions(ctx context.Context) ([]actionUse, error) {
	des, err := os.ReadDir(s.ac)
	if err != nil {
		return nil, err
	}
	var out []actionUse
	for _, de := range des {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if isTemp(de.Name()) {
			continue
		}
		fi, err := de.Info()
		if err != nil {
			continue
		}
		a := actionUse{key: de.Name(), used: fi.ModTime()}
		if fi.Mode().IsRegular() && checkHash(v1.Hash{Algorithm: algorithm, Hex: de.Name()}) == nil {
			if data, err := capread.ReadFile(filepath.Join(s.ac, de.Name()), maxActionSize); err == nil {
				a.res, _ = decodeAction(data)
			}
		}
		out = append(out, a)
	}
	return out, nil
}

// dropDangling removes the action entries that could not be read or name
// a blob for which missing reports true, and those naming no blob at all
// (every output derived) for which derivedOnly reports true, and returns
// how many it removed.
func (s *Dir) dropDangling(actions []actionUse, missing func(v1.Hash) bool, derivedOnly func(actionUse) bool) (int, error) {
	n := 0
	for _, a := range actions {
		drop := a.res == nil
		if !drop {
			stored := 0
			for _, o := range a.res.Outputs {
				if o.Derived {
					continue
				}
				stored++
				if missing(o.Digest) {
					drop = true
					break
				}
			}
			drop = drop || (stored == 0 && len(a.res.Outputs) > 0 && derivedOnly(a))
		}
		if !drop {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.ac, a.key)); err != nil {
			return n, fmt.Errorf("remove action entry %s: %w", a.key, err)
		}
		n++
	}
	return n, nil
}

// dropOrphanStamps removes stamps whose blob is gone.
func (s *Dir) dropOrphanStamps() error {
	des, err := os.ReadDir(s.stamps)
	if err != nil {
		return err
	}
	for _, de := range des {
		if isTemp(de.Name()) {
			continue
		}
		if _, err := os.Lstat(filepath.Join(s.blobs, de.Name())); errors.Is(err, fs.ErrNotExist) {
			_ = os.Remove(filepath.Join(s.stamps, de.Name()))
		}
	}
	return nil
}

// Eviction is one store entry VerifyAll found wrong and removed.
type Eviction struct {
	// Kind is "blob" or "action".
	Kind string `json:"kind"`
	// Name is the blob's digest or the action entry's key.
	Name string `json:"name"`
	// Reason says what was wrong.
	Reason string `json:"reason"`
}

// VerifyReport is what VerifyAll checked and evicted.
type VerifyReport struct {
	// Blobs and Bytes count the blobs hashed.
	Blobs int   `json:"blobs"`
	Bytes int64 `json:"bytes"`
	// Actions counts the action cache entries read.
	Actions int `json:"actions"`
	// Evicted lists what was wrong, in the order found.
	Evicted []Eviction `json:"evicted"`
}

// VerifyAll re-hashes every blob in full, whatever its stamp says, and
// evicts each one whose content does not match its digest, every action
// cache entry that cannot be read or names a blob that is not there, and
// stamps of missing blobs. Sound blobs are stamped afresh. It holds the
// store's lock exclusively, waiting for running builds to finish.
func (s *Dir) VerifyAll(ctx context.Context) (*VerifyReport, error) {
	unlock, err := s.Lock(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("verify cache: %w", err)
	}
	defer unlock()
	rep := &VerifyReport{Evicted: []Eviction{}}
	blobs, err := s.listBlobs(ctx)
	if err != nil {
		return rep, fmt.Errorf("verify cache: %w", err)
	}
	for _, b := range blobs {
		err := s.Verify(ctx, b.h)
		switch {
		case err == nil:
			rep.Blobs++
			rep.Bytes += b.size
		case errors.Is(err, ErrCorrupt):
			rep.Evicted = append(rep.Evicted, Eviction{Kind: "blob", Name: b.h.String(), Reason: err.Error()})
		case errors.Is(err, fs.ErrNotExist):
			// Removed meanwhile (by hand: builds wait for the lock).
		default:
			return rep, fmt.Errorf("verify cache: %w", err)
		}
	}
	actions, err := s.listActions(ctx)
	if err != nil {
		return rep, fmt.Errorf("verify cache: %w", err)
	}
	rep.Actions = len(actions)
	for _, a := range actions {
		reason := ""
		if a.res == nil {
			reason = "cannot be read as an action cache entry"
		} else {
			for _, o := range a.res.Outputs {
				if o.Derived {
					continue
				}
				if ok, n := s.Has(o.Digest); !ok || n != o.Size {
					reason = fmt.Sprintf("names output %s, blob %s, which is not in the cache", o.Path, o.Digest)
					break
				}
			}
		}
		if reason == "" {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.ac, a.key)); err != nil {
			return rep, fmt.Errorf("verify cache: remove action entry %s: %w", a.key, err)
		}
		rep.Evicted = append(rep.Evicted, Eviction{Kind: "action", Name: a.key, Reason: reason})
	}
	if err := s.dropOrphanStamps(); err != nil {
		return rep, fmt.Errorf("verify cache: %w", err)
	}
	return rep, nil
}
