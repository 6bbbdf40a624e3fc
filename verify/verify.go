// Package verify checks a bale bootstrap pack offline: `bale verify`.
//
// Pack reads the pack once, as a stream, through archive.Walk's hostile
// reader (entry, size and decompression limits; no links, devices or
// escaping names), and checks everything a pack promises: the fixed gzip
// header, uniform tar metadata, sorted entries with explicit directories,
// every entry against the pack index, every OCI blob against its digest,
// the OCI index.json against the docker-save manifest.json, and the
// NAME.sha256 file beside the pack. It reports every failure it finds, each
// naming the entry and the check, rather than stopping at the first, so one
// run tells what is wrong with a pack.
package verify

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/internal/ctxio"
	"github.com/bale-build/bale/pack"
	"github.com/bale-build/bale/plan"
)

// Checks, as named in a Report.
const (
	CheckGzip      = "gzip-header" // the gzip header is bale's fixed one
	CheckArchive   = "archive"     // gzip and tar structure, limits, entry types and names
	CheckMetadata  = "metadata"    // uid/gid 0, no user/group names, 0644/0755, no extra times or records
	CheckMtime     = "mtime"       // every mtime equals the pack index's sourceDateEpoch
	CheckOrder     = "order"       // entries sorted by path
	CheckDirs      = "dirs"        // every parent directory listed, before its children
	CheckIndex     = "pack-index"  // the pack index is present, valid and canonical
	CheckEntries   = "entries"     // every entry against the pack index: none missing, none extra, sizes, sha256
	CheckBlobs     = "blobs"       // every OCI blob against its digest and the sizes that reference it
	CheckOCILayout = "oci-layout"  // oci-layout, index.json, manifest.json: present, valid, consistent
	CheckChecksum  = "checksum"    // the NAME.sha256 file beside the pack
)

// Report is the result of verifying a pack. It encodes as JSON for
// `bale verify --format json`.
type Report struct {
	// Path is the pack verified.
	Path string `json:"path"`
	// SHA256 is the hex sha256 of the pack file.
	SHA256 string `json:"sha256"`
	// RootHash is the hex sha256 of the pack index, if one was found.
	RootHash string `json:"rootHash,omitempty"`
	// Entries counts the tar entries read.
	Entries int `json:"entries"`
	// Checks lists the checks that ran.
	Checks []string `json:"checks"`
	// Failures lists what is wrong; empty for a good pack.
	Failures []Failure `json:"failures"`
}

// Failure is one problem found.
type Failure struct {
	// Entry is the pack path at fault, or "" for the pack as a whole.
	Entry string `json:"entry,omitempty"`
	// Check is one of the Check* constants.
	Check string `json:"check"`
	// Detail says what is wrong.
	Detail string `json:"detail"`
}

// String formats a failure as "check: entry: detail".
func (f Failure) String() string {
	if f.Entry == "" {
		return f.Check + ": " + f.Detail
	}
	return f.Check + ": " + f.Entry + ": " + f.Detail
}

// OK reports whether the pack passed every check.
func (r *Report) OK() bool { return len(r.Failures) == 0 }

// Err returns nil for a good pack, else an error listing the failures.
func (r *Report) Err() error {
	if r.OK() {
		return nil
	}
	lines := make([]string, len(r.Failures))
	for i, f := range r.Failures {
		lines[i] = f.String()
	}
	return fmt.Errorf("verify %s: %d problem(s):\n  %s", r.Path, len(r.Failures), strings.Join(lines, "\n  "))
}

// maxFailures bounds the failures recorded, so a hostile pack with
// thousands of bad entries cannot grow the report without limit.
const maxFailures = 1000

// Memory bounds for the JSON documents verify parses. Manifests and indexes
// follow pack.MaxManifestSize; the pack index lists at most MaxEntries
// entries of a few hundred bytes each.
const (
	maxIndexSize    = 64 << 20
	maxJSONBlobs    = 256 << 20
	sniffSize       = 512
	maxChecksumSize = 4096
)

// Pack verifies the bootstrap pack at path with archive.DefaultLimits.
// The error is for a pack that cannot be read at all (missing file,
// cancelled context); everything wrong with the pack itself is in the
// report's Failures.
func Pack(ctx context.Context, path string) (*Report, error) {
	return PackLimits(ctx, path, archive.DefaultLimits())
}

// PackLimits is Pack with explicit archive limits.
func PackLimits(ctx context.Context, path string, lim archive.Limits) (*Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("verify pack: %w", err)
	}
	defer f.Close()
	v := &verifier{
		rep:   &Report{Path: path, Checks: []string{}, Failures: []Failure{}},
		files: map[string]fileInfo{},
		dirs:  map[string]bool{},
		json:  map[string][]byte{},
	}
	fileHash := sha256.New()
	var head [10]byte
	n, _ := io.ReadFull(f, head[:])
	fileHash.Write(head[:n])
	src := io.TeeReader(f, fileHash)
	walkErr := archive.Walk(ctx, io.MultiReader(bytes.NewReader(head[:n]), src), lim, v.entry)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("verify pack %s: %w", path, err)
	}
	// Hash what the walk left unread, so the file digest covers the file
	// even when the archive is broken.
	if _, err := io.Copy(io.Discard, ctxio.Reader(ctx, src)); err != nil {
		return nil, fmt.Errorf("verify pack %s: %w", path, err)
	}
	v.rep.SHA256 = hex.EncodeToString(fileHash.Sum(nil))
	v.ran(CheckArchive, CheckMetadata, CheckOrder, CheckDirs)
	if walkErr != nil {
		v.fail("", CheckArchive, "%v", walkErr)
	}
	ix := v.checkIndex()
	v.checkGzip(head[:n], ix)
	v.checkMtime(ix)
	if walkErr == nil {
		v.checkEntries(ix)
		v.checkBlobs()
		v.checkLayout(ix)
	}
	v.checkChecksum(path)
	return v.rep, nil
}

// fileInfo is what verify keeps of one file entry.
type fileInfo struct {
	size   int64
	sha256 string
}

// verifier accumulates state across one pack.
type verifier struct {
	rep   *Report
	files map[string]fileInfo
	dirs  map[string]bool
	// json holds the bodies of the documents checked after the walk: the
	// pack's own JSON files and blobs that look like JSON.
	json      map[string][]byte
	jsonBytes int64
	last      string
	mtime     time.Time
	mtimeSet  bool
	ranChecks map[string]bool
	truncated bool
}

func (v *verifier) ran(checks ...string) {
	if v.ranChecks == nil {
		v.ranChecks = map[string]bool{}
	}
	for _, c := range checks {
		if !v.ranChecks[c] {
			v.ranChecks[c] = true
			v.rep.Checks = append(v.rep.Checks, c)
		}
	}
}

func (v *verifier) fail(entry, check, format string, args ...any) {
	if len(v.rep.Failures) >= maxFailures {
		if !v.truncated {
			v.truncated = true
			v.rep.Failures = append(v.rep.Failures, Failure{Check: check, Detail: fmt.Sprintf("more than %d failures; the rest are not listed", maxFailures)})
		}
		return
	}
	v.rep.Failures = append(v.rep.Failures, Failure{Entry: entry, Check: check, Detail: fmt.Sprintf(format, args...)})
}

// entry checks one tar entry as archive.Walk streams it.
func (v *verifier) entry(h *tar.Header, body io.Reader) error {
	v.rep.Entries++
	name := h.Name
	v.checkHeader(h)
	if v.last != "" && name <= v.last {
		v.fail(name, CheckOrder, "comes after %q: entries must be sorted by path", v.last)
	}
	v.last = name
	if dir := path.Dir(name); dir != "." && !v.dirs[dir] {
		v.fail(name, CheckDirs, "parent directory %s is not listed before it", dir)
	}
	if h.Typeflag == tar.TypeDir {
		v.dirs[name] = true
		return nil
	}
	keep := isPackJSON(name)
	sum := sha256.New()
	var buf *bytes.Buffer
	br := bufio.NewReaderSize(body, sniffSize)
	if !keep && strings.HasPrefix(name, pack.BlobsDir+"/") && h.Size <= pack.MaxManifestSize {
		// Index and manifest blobs are parsed after the walk; layers are
		// not kept. JSON starts with '{' (after optional space).
		peek, _ := br.Peek(sniffSize)
		t := bytes.TrimLeft(peek, " \t\r\n")
		keep = len(t) > 0 && t[0] == '{'
	}
	limit := int64(pack.MaxManifestSize)
	if name == pack.IndexPath {
		limit = maxIndexSize
	}
	if keep && h.Size <= limit && v.jsonBytes+h.Size <= maxJSONBlobs {
		buf = bytes.NewBuffer(make([]byte, 0, h.Size))
		v.jsonBytes += h.Size
	}
	var w io.Writer = sum
	if buf != nil {
		w = io.MultiWriter(sum, buf)
	}
	n, err := io.Copy(w, br)
	if err != nil {
		return err
	}
	if n != h.Size {
		return fmt.Errorf("body is %d bytes, header says %d", n, h.Size)
	}
	v.files[name] = fileInfo{size: n, sha256: hex.EncodeToString(sum.Sum(nil))}
	if buf != nil {
		v.json[name] = buf.Bytes()
	} else if keep && isPackJSON(name) {
		v.fail(name, CheckArchive, "%d bytes: too large to check", h.Size)
	}
	return nil
}

func isPackJSON(name string) bool {
	switch name {
	case pack.IndexPath, pack.OCILayoutPath, pack.OCIIndexPath, pack.DockerManifestPath:
		return true
	}
	return false
}

// checkHeader checks the metadata bale writes uniformly.
func (v *verifier) checkHeader(h *tar.Header) {
	name := h.Name
	if h.Uid != 0 || h.Gid != 0 {
		v.fail(name, CheckMetadata, "owner %d/%d, want 0/0", h.Uid, h.Gid)
	}
	if h.Uname != "" || h.Gname != "" {
		v.fail(name, CheckMetadata, "user/group names %q/%q, want empty", h.Uname, h.Gname)
	}
	switch {
	case h.Typeflag == tar.TypeDir && h.Mode != 0o755:
		v.fail(name, CheckMetadata, "directory mode %#o, want 0755", h.Mode)
	case h.Typeflag == tar.TypeReg && h.Mode != 0o644 && h.Mode != 0o755:
		v.fail(name, CheckMetadata, "file mode %#o, want 0644 or 0755", h.Mode)
	}
	if !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() {
		v.fail(name, CheckMetadata, "has access or change times")
	}
	if h.Format != tar.FormatUSTAR && h.Format != tar.FormatPAX {
		v.fail(name, CheckMetadata, "tar format %v, want USTAR or PAX", h.Format)
	}
	for k := range h.PAXRecords {
		if k != "path" && k != "size" {
			v.fail(name, CheckMetadata, "PAX record %q: bale writes only path and size", k)
		}
	}
	if !v.mtimeSet {
		v.mtime, v.mtimeSet = h.ModTime, true
	} else if !h.ModTime.Equal(v.mtime) {
		v.fail(name, CheckMtime, "mtime %s differs from the first entry's %s", h.ModTime.UTC().Format(time.RFC3339), v.mtime.UTC().Format(time.RFC3339))
	}
}

// checkIndex parses the pack index and checks it is canonical.
func (v *verifier) checkIndex() *pack.Index {
	v.ran(CheckIndex)
	data, ok := v.json[pack.IndexPath]
	if !ok {
		if _, listed := v.files[pack.IndexPath]; !listed {
			v.fail(pack.IndexPath, CheckIndex, "missing")
		}
		return nil
	}
	v.rep.RootHash = pack.RootHash(data)
	ix, err := pack.ParseIndex(data)
	if err != nil {
		v.fail(pack.IndexPath, CheckIndex, "%v", err)
		return nil
	}
	if canon, err := pack.MarshalIndex(ix); err != nil || !bytes.Equal(canon, data) {
		v.fail(pack.IndexPath, CheckIndex, "not in canonical form (bale's encoding: fixed field order, two-space indent, trailing newline)")
	}
	if _, err := time.Parse(time.RFC3339, ix.SourceDateEpoch); err != nil {
		v.fail(pack.IndexPath, CheckIndex, "sourceDateEpoch %q: %v", ix.SourceDateEpoch, err)
	}
	return ix
}

// checkGzip checks bale's fixed gzip header: no name, comment or extra
// field, OS byte 255, mtime the build timestamp.
func (v *verifier) checkGzip(head []byte, ix *pack.Index) {
	v.ran(CheckGzip)
	if len(head) < 10 || head[0] != 0x1f || head[1] != 0x8b || head[2] != 8 {
		v.fail("", CheckGzip, "not a gzip stream")
		return
	}
	if head[3] != 0 {
		v.fail("", CheckGzip, "flags %#x: want none (no name, comment or extra field)", head[3])
	}
	if head[9] != 255 {
		v.fail("", CheckGzip, "OS byte %d, want 255", head[9])
	}
	if ix == nil {
		return
	}
	mtime := int64(head[4]) | int64(head[5])<<8 | int64(head[6])<<16 | int64(head[7])<<24
	if t, err := time.Parse(time.RFC3339, ix.SourceDateEpoch); err == nil && t.Unix() != mtime {
		v.fail("", CheckGzip, "header mtime %s, want sourceDateEpoch %s", time.Unix(mtime, 0).UTC().Format(time.RFC3339), ix.SourceDateEpoch)
	}
}

// checkMtime compares the (uniform) entry mtime with the index.
func (v *verifier) checkMtime(ix *pack.Index) {
	v.ran(CheckMtime)
	if ix == nil || !v.mtimeSet {
		return
	}
	t, err := time.Parse(time.RFC3339, ix.SourceDateEpoch)
	if err == nil && !v.mtime.Equal(t) {
		v.fail("", CheckMtime, "entries have mtime %s, the pack index says sourceDateEpoch %s", v.mtime.UTC().Format(time.RFC3339), ix.SourceDateEpoch)
	}
}

// checkEntries compares the files with the pack index.
func (v *verifier) checkEntries(ix *pack.Index) {
	v.ran(CheckEntries)
	if ix == nil {
		return
	}
	listed := map[string]bool{pack.IndexPath: true}
	for _, e := range ix.Entries {
		listed[e.Path] = true
		got, ok := v.files[e.Path]
		switch {
		case !ok:
			v.fail(e.Path, CheckEntries, "listed in the pack index but missing from the pack")
		case got.size != e.Size:
			v.fail(e.Path, CheckEntries, "size %d, the pack index says %d", got.size, e.Size)
		case got.sha256 != e.SHA256:
			v.fail(e.Path, CheckEntries, "sha256 %s, the pack index says %s", got.sha256, e.SHA256)
		}
	}
	implied := map[string]bool{}
	for _, p := range sortedKeys(v.files) {
		if !listed[p] {
			v.fail(p, CheckEntries, "in the pack but not listed in the pack index")
		}
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			implied[d] = true
		}
	}
	for _, d := range sortedKeys(v.dirs) {
		if !implied[d] {
			v.fail(d, CheckEntries, "directory holds no listed file")
		}
	}
}

// checkBlobs checks every file under images/blobs/sha256 against its name.
func (v *verifier) checkBlobs() {
	v.ran(CheckBlobs)
	for _, p := range sortedKeys(v.files) {
		hexName, ok := strings.CutPrefix(p, pack.BlobsDir+"/")
		if !ok {
			continue
		}
		if !plan.ValidDigest("sha256:" + hexName) {
			v.fail(p, CheckBlobs, "not named by a sha256 digest")
			continue
		}
		if got := v.files[p].sha256; got != hexName {
			v.fail(p, CheckBlobs, "content has sha256 %s, not the digest it is named by", got)
		}
	}
	for d := range v.dirs {
		if strings.HasPrefix(d, pack.BlobsDir+"/") {
			v.fail(d, CheckBlobs, "directory inside the blob store")
		}
	}
}

// blob returns a blob's info by digest, failing the check if it is absent
// or its size differs from what refers to it.
func (v *verifier) blob(from, digest string, size int64) (fileInfo, bool) {
	p := pack.BlobPath(digest)
	if p == "" {
		v.fail(from, CheckOCILayout, "refers to invalid digest %q", digest)
		return fileInfo{}, false
	}
	fi, ok := v.files[p]
	if !ok {
		v.fail(from, CheckOCILayout, "refers to blob %s, which is not in the pack", digest)
		return fileInfo{}, false
	}
	if fi.size != size {
		v.fail(p, CheckBlobs, "%d bytes, %s says %d", fi.size, from, size)
		return fileInfo{}, false
	}
	return fi, true
}

// maxDepth bounds index nesting, so a cycle of indexes cannot loop.
const maxDepth = 4

// image is one image manifest reachable from index.json.
type image struct {
	config string
	layers []string
}

// checkLayout checks the OCI layout files and the docker-save manifest
// against each other and the blobs.
func (v *verifier) checkLayout(ix *pack.Index) {
	v.ran(CheckOCILayout)
	if ix == nil || len(ix.Images) == 0 {
		if _, ok := v.files[pack.OCIIndexPath]; !ok {
			return // a pack without images
		}
	}
	var layout pack.OCILayout
	if err := v.decode(pack.OCILayoutPath, &layout); err == nil && layout.ImageLayoutVersion != "1.0.0" {
		v.fail(pack.OCILayoutPath, CheckOCILayout, "imageLayoutVersion %q, want 1.0.0", layout.ImageLayoutVersion)
	}
	var index pack.ManifestOrIndex
	if err := v.decode(pack.OCIIndexPath, &index); err != nil {
		return
	}
	if index.SchemaVersion != 2 {
		v.fail(pack.OCIIndexPath, CheckOCILayout, "schemaVersion %d, want 2", index.SchemaVersion)
	}
	// Each top-level descriptor's reachable manifests.
	tops := make([][]image, len(index.Manifests))
	for i, d := range index.Manifests {
		tops[i] = v.walkDescriptor(pack.OCIIndexPath, d, 0)
	}
	var docker []pack.DockerManifest
	if err := v.decode(pack.DockerManifestPath, &docker); err != nil {
		return
	}
	if len(docker) != len(index.Manifests) {
		v.fail(pack.DockerManifestPath, CheckOCILayout, "lists %d images, index.json lists %d", len(docker), len(index.Manifests))
	}
	for i := range min(len(docker), len(index.Manifests)) {
		dm, d := docker[i], index.Manifests[i]
		at := fmt.Sprintf("%s[%d]", pack.DockerManifestPath, i)
		if ref := d.Annotations[pack.AnnotationRefName]; ref != "" && (len(dm.RepoTags) == 0 || dm.RepoTags[0] != ref) {
			v.fail(pack.DockerManifestPath, CheckOCILayout, "%s: RepoTags %q, index.json names %q", at, dm.RepoTags, ref)
		}
		var match *image
		for j := range tops[i] {
			if "blobs/sha256/"+strings.TrimPrefix(tops[i][j].config, "sha256:") == dm.Config {
				match = &tops[i][j]
			}
		}
		if match == nil {
			v.fail(pack.DockerManifestPath, CheckOCILayout, "%s: config %s is not the config of image %s in index.json", at, dm.Config, d.Digest)
			continue
		}
		want := make([]string, len(match.layers))
		for j, l := range match.layers {
			want[j] = "blobs/sha256/" + strings.TrimPrefix(l, "sha256:")
		}
		if !slices.Equal(dm.Layers, want) {
			v.fail(pack.DockerManifestPath, CheckOCILayout, "%s: layers differ from manifest's in index.json", at)
		}
	}
	if ix == nil {
		return
	}
	if len(ix.Images) != len(index.Manifests) {
		v.fail(pack.OCIIndexPath, CheckOCILayout, "lists %d images, the pack index %d", len(index.Manifests), len(ix.Images))
		return
	}
	for i, im := range ix.Images {
		d := index.Manifests[i]
		// The pinned digest may name an index the pack holds only in
		// filtered form, so names, not digests, tie the two together.
		if got := d.Annotations[pack.AnnotationImageName]; got != im.Name {
			v.fail(pack.OCIIndexPath, CheckOCILayout, "image %d is %q, the pack index says %q", i, got, im.Name)
		}
	}
}

// walkDescriptor checks a descriptor's blob and, for an index or manifest,
// what it references; it returns the image manifests reached.
func (v *verifier) walkDescriptor(from string, d pack.Descriptor, depth int) []image {
	if _, ok := v.blob(from, d.Digest, d.Size); !ok {
		return nil
	}
	p := pack.BlobPath(d.Digest)
	var doc pack.ManifestOrIndex
	if err := v.decode(p, &doc); err != nil {
		return nil
	}
	switch {
	case doc.Manifests != nil:
		if depth >= maxDepth {
			v.fail(p, CheckOCILayout, "indexes nested deeper than %d", maxDepth)
			return nil
		}
		var out []image
		for _, c := range doc.Manifests {
			out = append(out, v.walkDescriptor(p, c, depth+1)...)
		}
		return out
	case doc.Config != nil:
		img := image{config: doc.Config.Digest}
		v.blob(p, doc.Config.Digest, doc.Config.Size)
		for _, l := range doc.Layers {
			v.blob(p, l.Digest, l.Size)
			img.layers = append(img.layers, l.Digest)
		}
		return []image{img}
	default:
		v.fail(p, CheckOCILayout, "neither an image index nor a manifest")
		return nil
	}
}

// decode parses a kept JSON document, failing the layout check if it is
// missing or malformed.
func (v *verifier) decode(p string, out any) error {
	data, ok := v.json[p]
	if !ok {
		err := errors.New("missing or too large to check")
		if _, present := v.files[p]; !present {
			err = errors.New("missing")
		}
		v.fail(p, CheckOCILayout, "%v", err)
		return err
	}
	if err := json.Unmarshal(data, out); err != nil {
		v.fail(p, CheckOCILayout, "invalid JSON: %v", err)
		return err
	}
	return nil
}

// checksumRE is a sha256sum line for one file, in text mode.
var checksumRE = regexp.MustCompile(`^([0-9a-f]{64})  ([^\n]+)\n$`)

// checkChecksum checks PATH.sha256 if present.
func (v *verifier) checkChecksum(packPath string) {
	sumPath := packPath + ".sha256"
	f, err := os.Open(sumPath)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	v.ran(CheckChecksum)
	name := filepath.Base(sumPath)
	if err != nil {
		v.fail(name, CheckChecksum, "%v", err)
		return
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxChecksumSize+1))
	if err != nil {
		v.fail(name, CheckChecksum, "%v", err)
		return
	}
	m := checksumRE.FindSubmatch(data)
	if len(data) > maxChecksumSize || m == nil {
		v.fail(name, CheckChecksum, "not one sha256sum line \"HEX  NAME\\n\"")
		return
	}
	if string(m[2]) != filepath.Base(packPath) {
		v.fail(name, CheckChecksum, "names %q, not %q", m[2], filepath.Base(packPath))
	}
	if string(m[1]) != v.rep.SHA256 {
		v.fail(name, CheckChecksum, "says %s, the pack's sha256 is %s", m[1], v.rep.SHA256)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
