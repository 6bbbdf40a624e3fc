// Package publish uploads a build's output directory to a release bucket
// (S3 or S3-compatible) or, as one OCI artifact, to a registry, and pulls
// such an artifact back: `bale publish` and `bale pull`.
//
// Every file is hashed before it leaves, and checked against the
// NAME.sha256 or SHA256SUMS lines beside it, so a corrupted output
// directory is refused rather than published. Checksum files
// (SHA256SUMS, *.sha256) go last, so a reader never sees sums for a file
// that is not there yet.
package publish

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bale-build/bale/atomicfile"
	"github.com/bale-build/bale/internal/capread"
	"github.com/bale-build/bale/internal/ctxio"
	"github.com/bale-build/bale/internal/sums"
	"github.com/bale-build/bale/kit"
	"github.com/bale-build/bale/schemas"
)

// DefaultJobs bounds concurrent uploads.
const DefaultJobs = 4

// maxFiles bounds the files published from one directory.
const maxFiles = 10_000

// maxSumsSize bounds a checksum file read to check the others.
const maxSumsSize = 4 << 20

// File is one file published or pulled.
type File struct {
	// Path is relative to the output directory, with forward slashes.
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Action is, for S3, "uploaded", "existing" (already there with this
	// checksum, and read back unless trusted), or "repaired" (there, but
	// its bytes on the server were not these: uploaded again); "pushed"
	// for a registry (blobs it had were skipped); "pulled" for Pull.
	Action string `json:"action,omitempty"`
	// Location is the object key or the layer digest.
	Location string `json:"location"`
	abs      string
}

// Report lists what Publish did.
type Report struct {
	To    string `json:"to"`
	Files []File `json:"files"`
	// Uploaded, Existing and Repaired count Files by action.
	Uploaded int `json:"uploaded"`
	Existing int `json:"existing"`
	Repaired int `json:"repaired"`
	// Digest is the OCI artifact's manifest digest (oci:// only).
	Digest string `json:"digest,omitempty"`
}

func (r *Report) count() {
	r.Uploaded, r.Existing, r.Repaired = 0, 0, 0
	for _, f := range r.Files {
		switch f.Action {
		case "uploaded":
			r.Uploaded++
		case "existing":
			r.Existing++
		case "repaired":
			r.Repaired++
		}
	}
}

// isSums reports whether a file is a checksum file (or the signature of
// one, SHA256SUMS.cosign.bundle), published last.
func isSums(rel string) bool {
	return strings.HasPrefix(path.Base(rel), kit.SumsName) || strings.HasSuffix(rel, ".sha256")
}

// Collect lists the regular files under dir (bale's temporary files
// aside), hashes each, and checks them against any NAME.sha256 and
// SHA256SUMS among them. Checksum files come last. Symbolic links and
// other irregular files are refused: what is published is what was built;
// so are paths bale pull would refuse (see Pull).
func Collect(ctx context.Context, dir string) ([]File, error) {
	rules, err := schemas.Compile()
	if err != nil {
		return nil, err
	}
	var files []File
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			return nil
		}
		if atomicfile.IsTemp(d.Name()) {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: not a regular file (%s); publish refuses links and special files", p, d.Type())
		}
		// What bale pull would refuse is not published.
		if err := checkName(rules, rel); err != nil {
			return err
		}
		if len(files) >= maxFiles {
			return fmt.Errorf("%s: more than %d files", dir, maxFiles)
		}
		files = append(files, File{Path: rel, abs: p})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("collect %s: %w", dir, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("collect %s: no files to publish", dir)
	}
	for i := range files {
		f := &files[i]
		if f.Size, f.SHA256, err = hashFile(ctx, f.abs); err != nil {
			return nil, fmt.Errorf("collect %s: %w", dir, err)
		}
	}
	if err := CheckSums(files, func(f File) (io.ReadCloser, error) { return os.Open(f.abs) }); err != nil {
		return nil, fmt.Errorf("collect %s: %w", dir, err)
	}
	slices.SortStableFunc(files, func(a, b File) int {
		switch sa, sb := isSums(a.Path), isSums(b.Path); {
		case sa && !sb:
			return 1
		case !sa && sb:
			return -1
		}
		return strings.Compare(a.Path, b.Path)
	})
	return files, nil
}

func hashFile(ctx context.Context, p string) (int64, string, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, ctxio.Reader(ctx, f))
	if err != nil {
		return 0, "", fmt.Errorf("hash %s: %w", p, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// CheckSums checks every NAME.sha256 and SHA256SUMS among files against
// the files they name, which must be among files too, relative to the
// checksum file's directory.
func CheckSums(files []File, open func(File) (io.ReadCloser, error)) error {
	byPath := map[string]File{}
	for _, f := range files {
		byPath[f.Path] = f
	}
	for _, f := range files {
		if path.Base(f.Path) != kit.SumsName && !strings.HasSuffix(f.Path, ".sha256") {
			continue
		}
		rc, err := open(f)
		if err != nil {
			return err
		}
		data, err := capread.ReadAll(rc, maxSumsSize)
		rc.Close()
		if err != nil {
			return fmt.Errorf("read %s: %w", f.Path, err)
		}
		list, err := sums.ParseAny(data)
		if err != nil {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
		if len(list) == 0 {
			return fmt.Errorf("%s: no checksum lines", f.Path)
		}
		for _, s := range list {
			name := path.Join(path.Dir(f.Path), s.Name)
			target, ok := byPath[name]
			if !ok {
				return fmt.Errorf("%s names %s, which is not among the files", f.Path, s.Name)
			}
			if target.SHA256 != s.SHA256 {
				return fmt.Errorf("%s: %s has sha256 %s, the sums say %s", f.Path, name, target.SHA256, s.SHA256)
			}
		}
	}
	return nil
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
