// Package kit defines the format of a release's offline kit: a directory
// of signed artifacts with SHA256SUMS, a manifest (offline-kit.json), the
// public key and a POSIX verify script, plus the dataset manifest format
// and the dataset hash that names it. It holds the format's names and
// rules only: kit/assemble builds a kit, verify.Kit checks one.
//
// The kit directory holds, for a release whose runner, dataset and kit are
// named R, D and K:
//
//	R.tar.gz                 runner bundle (byte-stable tar.gz)
//	R.sbom.json              SPDX 2.3 SBOM of the runner's files
//	R.dsse.json              cosign blob bundle signing R.tar.gz
//	D-HASH.tar.gz            dataset bundle; HASH is DatasetHash of its files
//	D-HASH.manifest.json     every dataset file with size and sha256, and the tarball's
//	D-HASH.provenance.json   DSSE envelope: SLSA v1 provenance, subject D-HASH.tar.gz
//	cosign.pub               the public key everything verifies with
//	verify.sh                POSIX sh: sha256sum -c, then cosign for every signature
//	offline-kit.json         the kit manifest: every artifact, kind, size, sha256, signer
//	SHA256SUMS               every file above, sorted, "HEX  NAME"
//	SHA256SUMS.cosign.bundle cosign blob bundle signing SHA256SUMS
//
// SHA256SUMS lists every file of the kit except itself and its signature
// (which signs it), so an edit to any file, SHA256SUMS included, breaks a
// signature. Beside the kit directory's files lie K.tar.gz, the kit as one
// byte-stable archive, and K.tar.gz.sha256; they are not part of the kit.
package kit

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/bale-build/bale/internal/canonjson"
	"github.com/bale-build/bale/internal/digest"
	"github.com/bale-build/bale/internal/strictjson"
	"github.com/bale-build/bale/internal/sums"
)

// Fixed file names inside a kit.
const (
	ManifestName       = "offline-kit.json"
	SumsName           = "SHA256SUMS"
	SumsSignatureName  = "SHA256SUMS.cosign.bundle"
	PublicKeyName      = "cosign.pub"
	ScriptName         = "verify.sh"
	FormatVersion      = 1
	ManifestKind       = "offline-kit"
	DatasetManifestKnd = "dataset-manifest"
)

// Artifact kinds in offline-kit.json.
const (
	KindRunner          = "runner-bundle"
	KindSBOM            = "sbom"
	KindSignature       = "signature" // a cosign blob bundle
	KindDataset         = "dataset"
	KindDatasetManifest = "dataset-manifest"
	KindProvenance      = "provenance" // a DSSE envelope over SLSA provenance
	KindPublicKey       = "public-key"
	KindScript          = "verify-script"
)

// Kinds of the files offline-kit.json cannot list, as KindOf names them.
const (
	KindKitManifest   = "kit-manifest"     // offline-kit.json
	KindChecksums     = "checksums"        // SHA256SUMS
	KindKitArchive    = "kit-archive"      // K.tar.gz, beside the kit
	KindArchiveSHA256 = "archive-checksum" // K.tar.gz.sha256, beside the kit
)

// Kinds lists every kind KindOf returns, artifacts' first.
func Kinds() []string {
	return []string{KindRunner, KindSBOM, KindSignature, KindDataset, KindDatasetManifest, KindProvenance, KindPublicKey, KindScript,
		KindKitManifest, KindChecksums, KindKitArchive, KindArchiveSHA256}
}

// KindOf returns the kind of the kit file or archive named name: the
// manifest's kind for an artifact it lists, else the kind of one of the
// files it cannot list (itself, SHA256SUMS and its signature, the kit
// archive and its .sha256); "" for a name that is none of them.
func (m *Manifest) KindOf(name string) string {
	if a, ok := m.Artifact(name); ok {
		return a.Kind
	}
	switch {
	case name == ManifestName:
		return KindKitManifest
	case name == m.Checksums:
		return KindChecksums
	case name == m.ChecksumsSignature:
		return KindSignature
	case m.Archive != "" && name == m.Archive:
		return KindKitArchive
	case m.Archive != "" && name == ArchiveChecksumName(m.Archive):
		return KindArchiveSHA256
	}
	return ""
}

// Artifact is one file of the kit as offline-kit.json lists it.
type Artifact struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// SignedBy names the kit file whose signature covers this artifact
	// (a signature bundle or a provenance envelope).
	SignedBy string `json:"signedBy,omitempty"`
	// Signs names the artifact a signature or provenance file signs.
	Signs string `json:"signs,omitempty"`
	// Describes names the artifact an SBOM or dataset manifest describes.
	Describes string `json:"describes,omitempty"`
}

// Manifest is offline-kit.json.
type Manifest struct {
	FormatVersion   int    `json:"formatVersion"`
	Kind            string `json:"kind"`
	Name            string `json:"name"`
	Release         string `json:"release"`
	SourceDateEpoch string `json:"sourceDateEpoch"`
	PlanID          string `json:"planId,omitempty"`
	SpecDigest      string `json:"specDigest,omitempty"`
	// DevKey says the kit is signed with the spec's development key
	// (COSIGN_ALLOW_DEV_KEY=1): verify.sh warns, and nothing should trust it.
	DevKey    bool   `json:"devKey"`
	PublicKey string `json:"publicKey"`
	// Checksums and ChecksumsSignature name SHA256SUMS and its signature,
	// which cannot list themselves.
	Checksums          string `json:"checksums"`
	ChecksumsSignature string `json:"checksumsSignature"`
	// Archive is the kit archive's name; it and Archive+".sha256" lie
	// beside the kit's files and are not part of the kit.
	Archive   string     `json:"archive,omitempty"`
	Artifacts []Artifact `json:"artifacts"`
}

// Artifact returns the artifact named name.
func (m *Manifest) Artifact(name string) (Artifact, bool) {
	for _, a := range m.Artifacts {
		if a.Name == name {
			return a, true
		}
	}
	return Artifact{}, false
}

// MarshalManifest encodes m with sorted artifacts: two-space indented JSON,
// no HTML escaping, final newline.
func MarshalManifest(m *Manifest) ([]byte, error) {
	c := *m
	c.Artifacts = slices.Clone(m.Artifacts)
	slices.SortFunc(c.Artifacts, func(a, b Artifact) int { return strings.Compare(a.Name, b.Name) })
	if c.Artifacts == nil {
		c.Artifacts = []Artifact{}
	}
	return canonjson.Marshal(&c)
}

// MaxSmallFile bounds each kit file read whole: offline-kit.json, the
// SBOM, the dataset manifest, signatures, the key and SHA256SUMS.
const MaxSmallFile = 64 << 20

// ParseManifest reads offline-kit.json, refusing unknown fields and
// artifact names that are not plain file names.
func ParseManifest(data []byte) (*Manifest, error) {
	var m Manifest
	if err := decodeStrict(data, &m); err != nil {
		return nil, fmt.Errorf("parse %s: %w", ManifestName, err)
	}
	if m.FormatVersion != FormatVersion || m.Kind != ManifestKind {
		return nil, fmt.Errorf("parse %s: formatVersion %d kind %q, want %d %q", ManifestName, m.FormatVersion, m.Kind, FormatVersion, ManifestKind)
	}
	seen := map[string]bool{}
	for _, a := range m.Artifacts {
		if !ValidName(a.Name) {
			return nil, fmt.Errorf("parse %s: artifact name %q is not a plain file name", ManifestName, a.Name)
		}
		if seen[a.Name] {
			return nil, fmt.Errorf("parse %s: artifact %s listed twice", ManifestName, a.Name)
		}
		seen[a.Name] = true
	}
	return &m, nil
}

// ValidName reports whether name is a plain file name bale writes into a
// kit: 1 to 255 bytes of ASCII letters, digits, '.', '_', '+' and '-',
// starting with a letter or digit. Names that need no quoting anywhere keep
// SHA256SUMS, verify.sh and offline-kit.json unambiguous.
func ValidName(name string) bool {
	if name == "" || len(name) > 255 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '+' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// MarshalSums renders SHA256SUMS (sums.Marshal: "HEX  NAME" lines sorted
// by name) for a kit, whose names are all ValidName.
func MarshalSums(list []sums.Sum) ([]byte, error) {
	for _, x := range list {
		if !ValidName(x.Name) {
			return nil, fmt.Errorf("%s: file name %q cannot be listed", SumsName, x.Name)
		}
	}
	b, err := sums.Marshal(list)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", SumsName, err)
	}
	return b, nil
}

// ParseSums reads a kit's SHA256SUMS as MarshalSums writes it: sums.Parse,
// and every name ValidName.
func ParseSums(data []byte) ([]sums.Sum, error) {
	if len(data) > MaxSmallFile {
		return nil, fmt.Errorf("%s is %d bytes, more than %d", SumsName, len(data), MaxSmallFile)
	}
	list, err := sums.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", SumsName, err)
	}
	for i, x := range list {
		if !ValidName(x.Name) {
			return nil, fmt.Errorf("%s line %d: %q is not a plain file name", SumsName, i+1, x.Name)
		}
	}
	return list, nil
}

// Names are the file names of a release's kit.
type Names struct {
	Runner, SBOM, RunnerSignature                 string
	Dataset, DatasetManifest, Provenance, Archive string
}

// NamesFor returns the kit's file names given the runner's, dataset's
// (empty for none) and kit's names and the dataset's hash.
func NamesFor(runner, dataset, hash, kit string) Names {
	n := Names{
		Runner:          runner + ".tar.gz",
		SBOM:            runner + ".sbom.json",
		RunnerSignature: runner + ".dsse.json",
		Archive:         kit + ".tar.gz",
	}
	if dataset != "" {
		base := dataset + "-" + hash
		n.Dataset, n.DatasetManifest, n.Provenance = base+".tar.gz", base+".manifest.json", base+".provenance.json"
	}
	return n
}

// ArchiveChecksumName is the name of the kit archive's checksum file.
func ArchiveChecksumName(archive string) string { return archive + ".sha256" }

// DatasetFile is one file of a dataset bundle.
type DatasetFile struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// DatasetArchive is the dataset tarball as its manifest records it.
type DatasetArchive struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// DatasetManifest is D-HASH.manifest.json.
type DatasetManifest struct {
	FormatVersion int    `json:"formatVersion"`
	Kind          string `json:"kind"`
	Name          string `json:"name"`
	// Hash is the {hash} in the dataset's file names: ContentHash, or in a
	// development kit a placeholder the spec pinned.
	Hash string `json:"hash"`
	// ContentHash is DatasetHash(Files).
	ContentHash string         `json:"contentHash"`
	Archive     DatasetArchive `json:"archive"`
	Files       []DatasetFile  `json:"files"`
}

// DatasetHash is the dataset's content hash, the {hash} of its file names:
// the hex sha256 of the dataset's SHA256SUMS-style listing ("HEX  PATH\n"
// per file, sorted by path). It depends on the files' paths and bytes only,
// not on archive format or compressor, so the same data keeps its name.
func DatasetHash(files []DatasetFile) string {
	s := slices.Clone(files)
	slices.SortFunc(s, func(a, b DatasetFile) int { return strings.Compare(a.Path, b.Path) })
	h := sha256.New()
	for _, f := range s {
		io.WriteString(h, f.SHA256+"  "+f.Path+"\n")
	}
	return hex.EncodeToString(h.Sum(nil))
}

// DatasetNameHash is the one rule for the {hash} in a dataset's file
// names, which the planner names, the executor checks before it signs and
// the builder applies. content is DatasetHash of the dataset's files;
// pinned is the hash the spec pins, "" for none. The names use content
// when pinned is empty or equals it. A pinned digest other than content is
// an error. Anything else is a placeholder: accepted, as the name, only
// when placeholders are (a development kit; the planner, which cannot know
// the key, accepts it and the build decides) and only as a plain file name.
func DatasetNameHash(pinned, content string, placeholders bool) (string, error) {
	switch {
	case pinned == "" || pinned == content:
		return content, nil
	case digest.ValidHex(pinned):
		return "", fmt.Errorf("the spec pins hash %s but the files hash to %s", pinned, content)
	case !placeholders:
		return "", fmt.Errorf("hash %q is a placeholder, not the content hash; placeholders are accepted only with the development key (COSIGN_ALLOW_DEV_KEY=1); a release pins the content hash: hash: %q", pinned, content)
	case !ValidName(pinned):
		return "", fmt.Errorf("placeholder hash %q is not a plain file name", pinned)
	}
	return pinned, nil
}

// MarshalDatasetManifest encodes m with files sorted by path.
func MarshalDatasetManifest(m *DatasetManifest) ([]byte, error) {
	c := *m
	c.Files = slices.Clone(m.Files)
	slices.SortFunc(c.Files, func(a, b DatasetFile) int { return strings.Compare(a.Path, b.Path) })
	if c.Files == nil {
		c.Files = []DatasetFile{}
	}
	return canonjson.Marshal(&c)
}

// ParseDatasetManifest reads a dataset manifest, refusing unknown fields.
func ParseDatasetManifest(data []byte) (*DatasetManifest, error) {
	var m DatasetManifest
	if err := decodeStrict(data, &m); err != nil {
		return nil, fmt.Errorf("parse dataset manifest: %w", err)
	}
	if m.FormatVersion != FormatVersion || m.Kind != DatasetManifestKnd {
		return nil, fmt.Errorf("parse dataset manifest: formatVersion %d kind %q, want %d %q", m.FormatVersion, m.Kind, FormatVersion, DatasetManifestKnd)
	}
	return &m, nil
}

func decodeStrict(data []byte, v any) error {
	return strictjson.Unmarshal(data, MaxSmallFile, v)
}
