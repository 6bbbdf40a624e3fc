package executor

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/bale-build/bale/atomicfile"
	"github.com/bale-build/bale/executor/cas"
	"github.com/bale-build/bale/internal/ctxio"
	"github.com/bale-build/bale/pack"
	"github.com/bale-build/bale/plan"
)

// Artifacts are published all or nothing, and the digest printed for each
// is that of bytes this run read or wrote, never a stamp's word for it:
//
//   - an artifact already in OutDir with the right size is hashed once; if
//     it is the artifact it stays as it is (a no-op rebuild costs one hash
//     pass over the artifacts and no write);
//   - otherwise the store's blob is copied (or reflinked) to a temporary
//     file beside the final name, hashed as it is written (cas.CopyTo);
//   - once every artifact is staged, the temporaries are renamed into
//     place; if one rename fails, the renames already done are undone,
//     restoring what was there before.
//
// Outputs are copies: an output never shares an inode with the store, so
// editing one can change neither the store nor another output directory.

// staged is one artifact ready to publish.
type staged struct {
	name  string
	final string
	o     cas.Output
	// f is the checked temporary file to rename into place; nil when the
	// file at final already is the artifact.
	f *atomicfile.File
	// backup holds what final held before this attempt replaced it ("" if
	// nothing), so a failed publish can put it back.
	backup    string
	committed bool
	// mine identifies the file this attempt put at final, so a rollback
	// never removes or overwrites what a concurrent build put there since.
	mine os.FileInfo
}

// stagedPack is a pack a pack step wrote to a temporary file in OutDir.
type stagedPack struct {
	f *atomicfile.File
	o cas.Output
}

// stagePack hands the pack in f, output o, to writeArtifacts.
func (x *execution) stagePack(name string, f *atomicfile.File, o cas.Output) {
	x.stagedMu.Lock()
	defer x.stagedMu.Unlock()
	if x.staged == nil {
		x.staged = map[string]stagedPack{}
	}
	if prev, ok := x.staged[name]; ok {
		_ = prev.f.Abort()
	}
	x.staged[name] = stagedPack{f: f, o: o}
}

// takeStaged removes and returns the staged pack for artifact name, if it
// holds output o.
func (x *execution) takeStaged(name string, o cas.Output) *atomicfile.File {
	x.stagedMu.Lock()
	defer x.stagedMu.Unlock()
	sp, ok := x.staged[name]
	if !ok {
		return nil
	}
	delete(x.staged, name)
	if sp.o.Digest != o.Digest || sp.o.Size != o.Size {
		_ = sp.f.Abort()
		return nil
	}
	return sp.f
}

// dropStaged removes the staged packs not published.
func (x *execution) dropStaged() {
	x.stagedMu.Lock()
	defer x.stagedMu.Unlock()
	for name, sp := range x.staged {
		_ = sp.f.Abort()
		delete(x.staged, name)
	}
}

// writeArtifacts puts every target artifact into OutDir from the store,
// or, for a derived output such as a pack, from the file its step staged
// in OutDir or by making it again.
func (x *execution) writeArtifacts(ctx context.Context) ([]Artifact, error) {
	made := map[string]cas.Output{}
	maker := map[string]*node{}
	for _, n := range x.nodes {
		for _, o := range n.result.Outputs {
			made[o.Path] = o
			maker[o.Path] = n
		}
	}
	if err := os.MkdirAll(x.outDir, 0o755); err != nil {
		return nil, fmt.Errorf("create output directory: %w", err)
	}
	var all []*staged
	defer func() {
		for _, st := range all {
			if st.f != nil {
				_ = st.f.Abort()
			}
		}
	}()
	var arts []Artifact
	for _, tg := range x.targets {
		for _, name := range tg.t.Artifacts {
			o, ok := made[name]
			if !ok {
				return nil, fmt.Errorf("artifact %s: no step produces it", name)
			}
			st, err := x.stage(ctx, name, o, maker[name])
			if err != nil {
				return nil, fmt.Errorf("write artifact %s: %w", name, err)
			}
			all = append(all, st)
			// o.Digest is now the hash of the bytes that will be under
			// the final name: read there just now, or written by CopyTo
			// and checked as they were written.
			a := Artifact{Path: name, Size: o.Size, SHA256: o.Digest.Hex}
			if name == tg.packName {
				if ix, ok := made[tg.packName+":"+pack.IndexPath]; ok {
					a.RootHash = ix.Digest.Hex
				}
			}
			arts = append(arts, a)
		}
	}
	if err := x.publish(all); err != nil {
		return nil, err
	}
	for _, a := range arts {
		x.emit(Event{Kind: EventArtifact, Subject: a.Path})
	}
	return arts, nil
}

// stage readies artifact name, output o of step n, for publishing at
// OutDir/name.
func (x *execution) stage(ctx context.Context, name string, o cas.Output, n *node) (*staged, error) {
	final := filepath.Join(x.outDir, name)
	st := &staged{name: name, final: final, o: o}
	// Temporary files of this artifact left by a killed build; a live
	// build's (this one's staged pack among them) are locked and spared.
	base := "." + filepath.Base(final) + ".tmp-"
	_, _, _ = atomicfile.RemoveStale(filepath.Dir(final), cas.StaleAge, func(n string) bool { return strings.HasPrefix(n, base) })
	if o.Derived {
		// Written by its step in this attempt, hashed as it was written.
		if f := x.takeStaged(name, o); f != nil {
			st.f = f
			return st, nil
		}
	}
	same, err := x.unchanged(ctx, final, o)
	if err != nil || same {
		return st, err
	}
	f, err := atomicfile.Create(final)
	if err != nil {
		return nil, err
	}
	if o.Derived {
		err = x.rederive(ctx, o, n, f)
	} else if err = x.copyOut(ctx, o, f.OSFile()); err != nil {
		err = blobMissing(err)
	}
	if err != nil {
		_ = f.Abort()
		return nil, err
	}
	st.f = f
	return st, nil
}

// rederive makes derived output o of cached step n again into f, and
// checks the bytes written, hashed on their way, are o's.
func (x *execution) rederive(ctx context.Context, o cas.Output, n *node, f *atomicfile.File) error {
	if n == nil || n.step.Action != plan.ActionPack {
		return fmt.Errorf("no step can make %s again", o.Path)
	}
	h, size, err := x.writePack(ctx, n, f)
	if err != nil {
		return err
	}
	if h != o.Digest || size != o.Size {
		// The pieces are read trusting their stamps; a blob corrupted
		// below the file system changes the pack. Find and drop it, and
		// the build starts over without it.
		if err := x.checkPieces(ctx, n); err != nil {
			return fmt.Errorf("pack %s made again from the cache differs from the one recorded: %w", o.Path, err)
		}
		return fmt.Errorf("pack %s made again from the cache is %d bytes, sha256 %s; the cached step recorded %d bytes, %s: the cache or this bale's encoder changed (run bale cache verify, or build with a fresh cache)", o.Path, size, h.Hex, o.Size, o.Digest.Hex)
	}
	return nil
}

// unchanged reports whether the file at final is artifact o already: a
// regular file of o's size, not the store's own file (an output directory
// written by an older bale may hold hard links into the store), whose bytes
// hash to o's digest now.
func (x *execution) unchanged(ctx context.Context, final string, o cas.Output) (bool, error) {
	fi, err := os.Lstat(final)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != o.Size {
		return false, nil
	}
	if c, ok := x.store.(cas.FileCopier); ok && c.Holds(o.Digest, fi) {
		return false, nil
	}
	f, err := os.Open(final)
	if err != nil {
		return false, nil
	}
	defer f.Close()
	if ofi, err := f.Stat(); err != nil || !os.SameFile(fi, ofi) {
		return false, nil
	}
	h := sha256.New()
	// A buffer no larger than the file: a warm rebuild checks every
	// artifact, and a kit's are mostly a few hundred bytes, where a 1 MiB
	// buffer each was most of the rebuild's allocation and GC work.
	n, err := io.CopyBuffer(h, ctxio.Reader(ctx, f), make([]byte, min(max(o.Size, 1), 1<<20)))
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return false, nil
	}
	return n == o.Size && hex.EncodeToString(h.Sum(nil)) == o.Digest.Hex, nil
}

// publish renames every staged temporary file into place, all or nothing:
// if one rename fails, the ones done are undone and what the final names
// held before is restored.
func (x *execution) publish(all []*staged) error {
	var perr error
	for _, st := range all {
		if st.f == nil {
			continue
		}
		if err := backup(st); err != nil {
			perr = fmt.Errorf("write artifact %s: keep the previous file: %w", st.name, err)
			break
		}
		mine, err := st.f.OSFile().Stat()
		if err != nil {
			perr = fmt.Errorf("write artifact %s: %w", st.name, err)
			break
		}
		st.mine = mine
		err = st.f.Commit()
		st.f = nil // committed or removed by Commit
		if err != nil {
			perr = fmt.Errorf("write artifact %s: %w", st.name, err)
			break
		}
		st.committed = true
	}
	if perr == nil {
		for _, st := range all {
			if st.backup != "" {
				_ = os.Remove(st.backup)
			}
		}
		return nil
	}
	var errs []error
	for _, st := range all {
		if err := rollback(st); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w (and undoing the artifacts published: %w)", perr, err)
	}
	return perr
}

// backup links whatever st.final names, if anything but a directory (a
// symbolic link is linked itself, not followed), to a hidden name
// beside it, named like atomicfile's temporaries so a crash leaves nothing
// Sweep does not recognise.
func backup(st *staged) error {
	fi, err := os.Lstat(st.final)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return nil // the rename will fail, and there is nothing to restore
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	dir, base := filepath.Split(st.final)
	name := filepath.Join(dir, "."+base+".tmp-prev-"+hex.EncodeToString(b[:]))
	// A concurrent build may rename its file over final between the Lstat
	// and the link; linking the inode that rename just freed fails with
	// ENOENT although final exists. Look again.
	for range 8 {
		err = os.Link(st.final, name)
		if !errors.Is(err, fs.ErrNotExist) {
			break
		}
		if _, lerr := os.Lstat(st.final); errors.Is(lerr, fs.ErrNotExist) {
			return nil // nothing to keep any more
		}
	}
	if err != nil {
		return err
	}
	st.backup = name
	return nil
}

// rollback undoes st's publish, if it happened and final still holds the
// file this attempt put there (a concurrent build may have published its
// own since, which is not this attempt's to remove), and drops its backup.
func rollback(st *staged) error {
	if st.committed {
		st.committed = false
		fi, err := os.Lstat(st.final)
		if err != nil || !os.SameFile(fi, st.mine) {
			if st.backup != "" {
				_ = os.Remove(st.backup)
			}
			return nil
		}
		if st.backup != "" {
			err = os.Rename(st.backup, st.final)
		} else {
			err = os.Remove(st.final)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("restore %s: %w", st.final, err)
		}
		if err := atomicfile.SyncDir(filepath.Dir(st.final)); err != nil {
			return fmt.Errorf("restore %s: %w", st.final, err)
		}
		return nil
	}
	if st.backup != "" {
		_ = os.Remove(st.backup)
	}
	return nil
}

// copyOut writes output o's blob into dst, a new empty file: by the
// store's CopyTo where it has one (a reflink where the file system can),
// else through Open, whose reader fails at its end unless the bytes are
// o's.
func (x *execution) copyOut(ctx context.Context, o cas.Output, dst *os.File) error {
	if c, ok := x.store.(cas.FileCopier); ok {
		return c.CopyTo(ctx, o.Digest, o.Size, dst)
	}
	rc, size, err := x.store.Open(ctx, o.Digest)
	if err != nil {
		return err
	}
	defer rc.Close()
	if size != o.Size {
		return fmt.Errorf("copy blob %s: %w: %d bytes, the result records %d", o.Digest, cas.ErrCorrupt, size, o.Size)
	}
	n, err := io.Copy(dst, ctxio.Reader(ctx, rc))
	if err != nil {
		return fmt.Errorf("copy blob %s: %w", o.Digest, err)
	}
	if n != o.Size {
		return fmt.Errorf("copy blob %s: %w: %d bytes, the result records %d", o.Digest, cas.ErrCorrupt, n, o.Size)
	}
	return nil
}
