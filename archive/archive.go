// Package archive writes byte-stable tar and gzip streams and reads
// untrusted ones.
//
// The writer side (WriteTar, NewGzipWriter) produces the same bytes for the
// same entries and build timestamp on any machine: headers are built here,
// never from file metadata, entries are sorted, and the gzip compressor is
// the one pinned in go.mod (see Compressor), not the toolchain's.
//
// The reader side (Walk) treats its input as hostile: it refuses paths that
// could escape an extraction directory, entry types bale never produces, and
// archives past the size and count limits, without allocating in proportion
// to what the archive claims.
package archive

import (
	"errors"
	"fmt"
	"strings"
)

// Compressor identifies the gzip implementation whose output bale's archives
// depend on. Plans record it, so a compressor upgrade (which may change
// compressed bytes) shows up in `bale diff` instead of silently changing
// digests. A test keeps it equal to the version pinned in go.mod.
const Compressor = "github.com/klauspost/compress@v1.20.3"

// MaxNameLen is the longest entry path accepted, in bytes. It matches Linux's
// PATH_MAX so anything accepted can be extracted.
const MaxNameLen = 4096

// maxSegmentLen matches Linux's NAME_MAX for one path element.
const maxSegmentLen = 255

// ErrUnsafeEntry is wrapped by errors about entries whose name or type bale
// refuses: absolute or escaping paths, links, devices, duplicates.
var ErrUnsafeEntry = errors.New("unsafe archive entry")

// CleanName validates one archive entry path and returns its clean form
// (path.Clean, no trailing slash). It rejects empty names, absolute paths,
// backslashes, NUL bytes, any ".." element (even one that cleans away, such as
// "a/../b": tools disagree on such names, and bale never writes them), names
// that clean to the archive root, and names or elements longer than Linux
// allows. A leading "./" and repeated or trailing slashes are cleaned, as tar
// tools write them routinely.
func CleanName(name string) (string, error) {
	switch {
	case name == "":
		return "", fmt.Errorf("%w: empty name", ErrUnsafeEntry)
	case len(name) > MaxNameLen:
		return "", fmt.Errorf("%w: name %.64q... longer than %d bytes", ErrUnsafeEntry, name, MaxNameLen)
	case strings.IndexByte(name, 0) >= 0:
		return "", fmt.Errorf("%w: name %q contains NUL", ErrUnsafeEntry, name)
	case strings.IndexByte(name, '\\') >= 0:
		// A backslash is a separator on Windows; refuse it rather than guess.
		return "", fmt.Errorf("%w: name %q contains a backslash", ErrUnsafeEntry, name)
	case name[0] == '/':
		return "", fmt.Errorf("%w: name %q is absolute", ErrUnsafeEntry, name)
	}
	// Split by hand rather than trusting path.Clean so that ".." is refused
	// wherever it appears, not only where it would escape.
	segs := make([]string, 0, strings.Count(name, "/")+1)
	for seg := range strings.SplitSeq(name, "/") {
		switch {
		case seg == "" || seg == ".":
			continue
		case seg == "..":
			return "", fmt.Errorf("%w: name %q contains a \"..\" element", ErrUnsafeEntry, name)
		case len(seg) > maxSegmentLen:
			return "", fmt.Errorf("%w: name %q has an element longer than %d bytes", ErrUnsafeEntry, name, maxSegmentLen)
		}
		segs = append(segs, seg)
	}
	if len(segs) == 0 {
		return "", fmt.Errorf("%w: name %q names the archive root", ErrUnsafeEntry, name)
	}
	return strings.Join(segs, "/"), nil
}

// parentDirs calls fn for each proper ancestor of the clean name, nearest
// first ("a/b/c" yields "a/b", then "a"), and stops early when fn returns
// false.
func parentDirs(name string, fn func(dir string) bool) {
	for i := strings.LastIndexByte(name, '/'); i > 0; i = strings.LastIndexByte(name[:i], '/') {
		if !fn(name[:i]) {
			return
		}
	}
}
