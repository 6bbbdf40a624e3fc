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

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/bale-build/bale/executor/atomicfile"
	"github.com/bale-build/bale/executor/cas"
	"github.com/bale-build/bale/internal/ctxio"
	"github.com/bale-build/bale/pack"
)

// writeArtifacts puts every target artifact into OutDir from the store.
func (x *execution) writeArtifacts(ctx context.Context) ([]Artifact, error) {
	made := map[string]cas.Output{}
	for _, n := range x.nodes {
		for _, o := range n.result.Outputs {
			made[o.Path] = o
		}
	}
	if err := os.MkdirAll(x.outDir, 0o755); err != nil {
		return nil, fmt.Errorf("create output directory: %w", err)
	}
	var arts []Artifact
	for _, tg := range x.targets {
		for _, name := range tg.t.Artifacts {
			o, ok := made[name]
			if !ok {
				return nil, fmt.Errorf("artifact %s: no step produces it", name)
			}
			if err := x.place(ctx, name, o); err != nil {
				return nil, fmt.Errorf("write artifact %s: %w", name, err)
			}
			a := Artifact{Path: name, Size: o.Size, SHA256: o.Digest.Hex}
			if name == tg.packName {
				if ix, ok := made[tg.packName+":"+pack.IndexPath]; ok {
					a.RootHash = ix.Digest.Hex
				}
			}
			arts = append(arts, a)
			x.emit(Event{Kind: EventArtifact, Subject: name})
		}
	}
	return arts, nil
}

// place puts blob o at OutDir/name: a hard link to the store's file when
// the two share a file system (a warm rebuild of a large pack then costs
// no write, and no read while the store's stamp vouches for the blob), else
// a copy. Either way the bytes are known good before the final name
// appears, and the final name appears atomically.
//
// A hard link shares the store's file: editing the artifact in place would
// change the blob too. The store verifies every read, so such an edit is
// caught and the blob rebuilt, never shipped.
func (x *execution) place(ctx context.Context, name string, o cas.Output) error {
	final := filepath.Join(x.outDir, name)
	src := x.store.Path(o.Digest)
	if src == "" {
		return fmt.Errorf("invalid digest %s", o.Digest)
	}
	if !x.noLink {
		done, err := x.link(ctx, src, final, o)
		if done || err != nil {
			return err
		}
	}
	return x.copyBlob(ctx, final, o)
}

// link hard-links src to final via a temporary name. It returns false and
// no error when linking is impossible here, so the caller copies instead.
//
// A blob the store has verified and not seen change since (cas.Verified)
// is linked without being read again, so a warm rebuild of a large pack
// costs no pass over its bytes; any other is hashed through the link
// before the final name appears.
func (x *execution) link(ctx context.Context, src, final string, o cas.Output) (bool, error) {
	trusted := x.store.Verified(o.Digest)
	// Already the same file (a rebuild into the same directory): rename
	// would do nothing and leave the temporary link behind.
	if si, err := os.Stat(src); err == nil {
		if fi, err := os.Stat(final); err == nil && os.SameFile(si, fi) {
			if trusted {
				return true, nil
			}
			if err := x.checkFile(ctx, final, o); err != nil {
				return true, err
			}
			return true, x.store.MarkVerified(o.Digest)
		}
	}
	tmp, err := linkTemp(src, final)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return true, blobMissing(fmt.Errorf("blob %s: %w", o.Digest, err))
		}
		return false, nil
	}
	if !trusted {
		// Check the linked file itself: that is exactly what will ship.
		if err := x.checkFile(ctx, tmp, o); err != nil {
			_ = os.Remove(tmp)
			return true, err
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		_ = os.Remove(tmp)
		return true, err
	}
	if err := atomicfile.SyncDir(filepath.Dir(final)); err != nil {
		return true, err
	}
	// Linking and renaming moved the inode's change time; its bytes were
	// trusted or checked just now, so stamp it afresh.
	return true, x.store.MarkVerified(o.Digest)
}

// linkTemp links src to a fresh hidden name beside final, named like
// atomicfile's temporaries so stale ones are recognisable.
func linkTemp(src, final string) (string, error) {
	dir, base := filepath.Split(final)
	for range 8 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		tmp := filepath.Join(dir, "."+base+".tmp-"+hex.EncodeToString(b[:]))
		err := os.Link(src, tmp)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return tmp, err
	}
	return "", fmt.Errorf("link %s: no free temporary name", final)
}

// checkFile re-hashes a file that shares the store blob's inode. On a
// mismatch the blob is corrupt: it is dropped from the store (Verify
// deletes it) and the error wraps cas.ErrCorrupt, so Execute rebuilds it.
func (x *execution) checkFile(ctx context.Context, path string, o cas.Output) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, ctxio.Reader(ctx, f))
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	got := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
	if got == o.Digest && n == o.Size {
		return nil
	}
	verr := x.store.Verify(ctx, o.Digest)
	if verr == nil {
		// The store's copy is fine, so the file changed after linking:
		// report it, but as corrupt so the next attempt links again.
		verr = fmt.Errorf("%w: %s changed while being linked", cas.ErrCorrupt, path)
	}
	return fmt.Errorf("blob %s (%d bytes) reads as %s (%d bytes): %w", o.Digest, o.Size, got, n, verr)
}

// copyBlob copies blob o from the store to final through a temporary file.
func (x *execution) copyBlob(ctx context.Context, final string, o cas.Output) error {
	rc, size, err := x.store.Open(ctx, o.Digest)
	if err != nil {
		return blobMissing(err)
	}
	defer rc.Close()
	if size != o.Size {
		return fmt.Errorf("%w: blob %s is %d bytes, the step recorded %d", cas.ErrCorrupt, o.Digest, size, o.Size)
	}
	f, err := atomicfile.Create(final)
	if err != nil {
		return err
	}
	defer f.Abort()
	// The store's reader returns an error instead of io.EOF if the content
	// does not match, so a corrupt blob is never committed.
	if _, err := io.Copy(f, rc); err != nil {
		return err
	}
	return f.Commit()
}
