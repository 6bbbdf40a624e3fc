package pack

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/internal/canonjson"
	"github.com/bale-build/bale/internal/digest"
	"github.com/bale-build/bale/internal/strictjson"
)

// FormatVersion is the pack index format this package writes and reads.
const FormatVersion = 1

// Kind is the pack index's kind for a bootstrap pack.
const Kind = "bootstrap-pack"

// Paths inside a pack.
const (
	IndexPath          = "pack-index.json"
	ChartsDir          = "charts"
	SignaturesDir      = "signatures"
	ImagesDir          = "images"
	BlobsDir           = "images/blobs/sha256"
	OCILayoutPath      = "images/oci-layout"
	OCIIndexPath       = "images/index.json"
	DockerManifestPath = "images/manifest.json"
)

// ChartLevel is the gzip level of the chart archives in a pack: charts are
// small text, so the best level costs nothing noticeable, and it is fixed
// rather than taken from the pack's level so a chart's digest does not
// depend on it. `bale verify` re-encodes charts with it.
const ChartLevel = 9

// Media types bale writes or recognises.
const (
	MediaTypeOCIIndex    = "application/vnd.oci.image.index.v1+json"
	MediaTypeOCIManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeDockerList  = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// Annotations on index.json descriptors.
const (
	AnnotationRefName   = "org.opencontainers.image.ref.name"
	AnnotationImageName = "io.bale.image.name"
)

// MaxManifestSize bounds an image index or manifest blob that bale parses.
// It matches the 4 MiB registries (distribution, containerd) accept, so no
// legitimate image is refused while a hostile one cannot make bale allocate
// without bound.
const MaxManifestSize = 4 << 20

// MaxLayers bounds the layers of one manifest. A pack holds at most
// archive.DefaultLimits().MaxEntries entries, so a manifest near that size
// could never be verified; real images have well under a hundred layers.
// The resolver refuses a manifest past it as soon as it is fetched.
const MaxLayers = 1000

// MaxImageBlobs bounds the blobs one image input lists across the
// manifests a plan takes from it, counted as the plan records them: its
// index, and each chosen manifest with its config and layers. It is the
// number of entries a pack holds (archive.DefaultLimits().MaxEntries), so
// an image past it could never be packed; the resolver counts as an
// index's manifests arrive and fetches no more once past it.
const MaxImageBlobs = 10_000

// DockerPlatform is the platform a docker-save manifest.json prefers for
// an index image: what `docker load` on the most common host would pick.
const DockerPlatform = "linux/amd64"

// Index is the pack index, pack-index.json. See the package documentation
// for the meaning of each field.
type Index struct {
	FormatVersion   int      `json:"formatVersion"`
	Kind            string   `json:"kind"`
	Name            string   `json:"name"`
	PlanID          string   `json:"planId"`
	SpecDigest      string   `json:"specDigest"`
	SourceDateEpoch string   `json:"sourceDateEpoch"`
	Entries         []Entry  `json:"entries"`
	Images          []Image  `json:"images"`
	Charts          []Chart  `json:"charts"`
	Bundles         []Bundle `json:"bundles"`
}

// Chart is one Helm chart in the pack. The pack holds bale's re-archived
// chart (byte-stable), whose digest differs from the archive the plan
// pinned upstream; both are recorded, so the chart's provenance survives.
type Chart struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Path is the re-archived chart in the pack; SHA256 its lowercase hex
	// sha256 (its entry's).
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	// UpstreamDigest is the digest the plan pinned: of the chart archive
	// as published, or for a chart directory of its sorted file list and
	// contents.
	UpstreamDigest string `json:"upstreamDigest"`
	// Source is where the chart came from, as the plan records it: "dir"
	// or "archive" with its workspace-relative path, "repository" with the
	// repository URL, or "oci" with the OCI reference.
	Source ChartSource `json:"source"`
	// Values is the values file that travels with the chart
	// (values-airgap.yaml), if the spec gives one.
	Values *Entry `json:"values,omitempty"`
}

// ChartSource is where a chart came from.
type ChartSource struct {
	Type string `json:"type"`
	Path string `json:"path,omitempty"`
	URL  string `json:"url,omitempty"`
	Ref  string `json:"ref,omitempty"`
}

// Entry is one file in the pack.
type Entry struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
	// SHA256 is the lowercase hex sha256 of the file's bytes.
	SHA256 string `json:"sha256"`
}

// Image is one image in the pack.
type Image struct {
	Name string `json:"name"`
	// Digest is the image's pinned digest: its index or manifest.
	Digest string `json:"digest"`
	// LayoutDigest is the digest images/index.json lists for the image:
	// Digest itself, or the filtered index's (see plan.ImageTop) when the plan keeps
	// only some of an index's platforms.
	LayoutDigest string   `json:"layoutDigest"`
	Tags         []string `json:"tags"`
	Platforms    []string `json:"platforms"`
}

// Bundle is an evidence or mirror bundle the pack references.
type Bundle struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Digest string `json:"digest"`
	URL    string `json:"url"`
}

// EncodeJSON encodes v the way every JSON file in a pack is encoded:
// two-space indentation, no HTML escaping, a trailing newline. Callers pass
// structs (fixed field order) or maps (sorted keys), never anything whose
// order could vary.
func EncodeJSON(v any) ([]byte, error) {
	b, err := canonjson.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode json: %w", err)
	}
	return b, nil
}

// MarshalIndex returns the canonical bytes of ix after checking it: nil
// lists become [], entries must be sorted by path without duplicates.
func MarshalIndex(ix *Index) ([]byte, error) {
	out := *ix
	out.Entries = nonNil(out.Entries)
	out.Images = nonNil(out.Images)
	out.Charts = nonNil(out.Charts)
	out.Bundles = nonNil(out.Bundles)
	for i := range out.Images {
		out.Images[i].Tags = nonNil(out.Images[i].Tags)
		out.Images[i].Platforms = nonNil(out.Images[i].Platforms)
	}
	if err := out.check(); err != nil {
		return nil, fmt.Errorf("encode pack index: %w", err)
	}
	return EncodeJSON(&out)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// MaxIndexSize bounds pack-index.json: 10,000 images with their tags and
// entries fit many times over.
const MaxIndexSize = 64 << 20

// ParseIndex decodes pack-index.json strictly: unknown fields, trailing
// data, another format version or kind, unsorted or duplicate entries and
// malformed digests are errors. It does not check that data is canonical;
// compare it with MarshalIndex's output for that.
func ParseIndex(data []byte) (*Index, error) {
	var ix Index
	if err := strictjson.Unmarshal(data, MaxIndexSize, &ix); err != nil {
		return nil, fmt.Errorf("decode pack index: %w", err)
	}
	if err := ix.check(); err != nil {
		return nil, fmt.Errorf("decode pack index: %w", err)
	}
	return &ix, nil
}

// check validates the index's fields.
func (ix *Index) check() error {
	if ix.FormatVersion != FormatVersion {
		return fmt.Errorf("formatVersion %d, want %d", ix.FormatVersion, FormatVersion)
	}
	if ix.Kind != Kind {
		return fmt.Errorf("kind %q, want %q", ix.Kind, Kind)
	}
	if ix.Name == "" {
		return errors.New("empty name")
	}
	if !digest.Valid(ix.PlanID) {
		return fmt.Errorf("planId %q: want sha256:<64 hex>", ix.PlanID)
	}
	if !digest.Valid(ix.SpecDigest) {
		return fmt.Errorf("specDigest %q: want sha256:<64 hex>", ix.SpecDigest)
	}
	for i, e := range ix.Entries {
		if !validEntryPath(e.Path) || e.Path == IndexPath {
			return fmt.Errorf("entry %q: not a valid entry path", e.Path)
		}
		if i > 0 && ix.Entries[i-1].Path >= e.Path {
			return fmt.Errorf("entry %q: entries are not sorted by path or repeat one", e.Path)
		}
		if e.Size < 0 || !digest.Valid("sha256:"+e.SHA256) {
			return fmt.Errorf("entry %q: size %d, sha256 %q: want a size >= 0 and 64 lowercase hex digits", e.Path, e.Size, e.SHA256)
		}
	}
	for i, im := range ix.Images {
		if i > 0 && ix.Images[i-1].Name >= im.Name {
			return fmt.Errorf("image %q: images are not sorted by name or repeat one", im.Name)
		}
		if !digest.Valid(im.Digest) {
			return fmt.Errorf("image %q: digest %q: want sha256:<64 hex>", im.Name, im.Digest)
		}
		if !digest.Valid(im.LayoutDigest) {
			return fmt.Errorf("image %q: layoutDigest %q: want sha256:<64 hex>", im.Name, im.LayoutDigest)
		}
		if im.LayoutDigest != im.Digest && len(im.Platforms) == 0 {
			return fmt.Errorf("image %q: layoutDigest %s differs from digest %s, but only a filtered index (with platforms) may", im.Name, im.LayoutDigest, im.Digest)
		}
	}
	entries := make(map[string]string, len(ix.Entries))
	for _, e := range ix.Entries {
		entries[e.Path] = e.SHA256
	}
	for i, c := range ix.Charts {
		if i > 0 && ix.Charts[i-1].Name >= c.Name {
			return fmt.Errorf("chart %q: charts are not sorted by name or repeat one", c.Name)
		}
		if c.Path != ChartPath(c.Name, c.Version) || entries[c.Path] == "" || entries[c.Path] != c.SHA256 {
			return fmt.Errorf("chart %q %q: path %q, sha256 %q: want the entry %s with its sha256", c.Name, c.Version, c.Path, c.SHA256, ChartPath(c.Name, c.Version))
		}
		if !digest.Valid(c.UpstreamDigest) || c.Source.Type == "" {
			return fmt.Errorf("chart %q: upstreamDigest %q, source type %q: want sha256:<64 hex> and a source", c.Name, c.UpstreamDigest, c.Source.Type)
		}
		if v := c.Values; v != nil && (v.Path != ValuesPath(c.Name, c.Version) || entries[v.Path] == "" || entries[v.Path] != v.SHA256) {
			return fmt.Errorf("chart %q values: path %q, sha256 %q: want the entry %s with its sha256", c.Name, v.Path, v.SHA256, ValuesPath(c.Name, c.Version))
		}
	}
	for i, b := range ix.Bundles {
		if i > 0 && ix.Bundles[i-1].Name >= b.Name {
			return fmt.Errorf("bundle %q: bundles are not sorted by name or repeat one", b.Name)
		}
		if !digest.Valid(b.Digest) {
			return fmt.Errorf("bundle %q: digest %q: want sha256:<64 hex>", b.Name, b.Digest)
		}
	}
	return nil
}

// RootHash returns the pack's root hash: the lowercase hex sha256 of the
// pack index bytes.
func RootHash(indexBytes []byte) string {
	sum := sha256.Sum256(indexBytes)
	return hex.EncodeToString(sum[:])
}

// validEntryPath reports whether p is an entry path as bale writes them:
// archive.CleanName's form, and the same after cleaning.
func validEntryPath(p string) bool {
	c, err := archive.CleanName(p)
	return err == nil && c == p
}

// BlobPath returns the pack path of an OCI blob, "images/blobs/sha256/HEX",
// or "" if digest is not a valid sha256 digest, so a hostile digest never
// names a path.
func BlobPath(d string) string {
	if hex := digest.Hex(d); hex != "" {
		return BlobsDir + "/" + hex
	}
	return ""
}

// ChartPath returns the pack path of a chart archive.
func ChartPath(name, version string) string {
	return ChartsDir + "/" + name + "-" + version + ".tgz"
}

// ValuesPath returns the pack path of the values file that travels with
// chart name at version: beside its archive.
func ValuesPath(name, version string) string {
	return ChartsDir + "/" + name + "-" + version + ".values-airgap.yaml"
}

// SignaturePath returns the pack path of a signature file.
func SignaturePath(name string) string { return SignaturesDir + "/" + name }

// Descriptor is an OCI content descriptor as index.json lists it.
type Descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// Platform is read from index entries; bale never writes it.
	Platform *Platform `json:"platform,omitempty"`
}

// Platform is an index entry's platform.
type Platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant,omitempty"`
}

// String renders p as "os/arch[/variant]", or "" when p names none.
func (p *Platform) String() string {
	if p == nil || p.OS == "" || p.Architecture == "" {
		return ""
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// ManifestOrIndex is an OCI or docker image manifest, or an index, as bale
// reads one from an untrusted source: the union of both, told apart by
// media type and by which lists are present. Digests stay text, so a
// hostile one is checked before it touches a path.
type ManifestOrIndex struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        *Descriptor  `json:"config"`
	Layers        []Descriptor `json:"layers"`
	Manifests     []Descriptor `json:"manifests"`
}

// OCIIndex is the images/index.json document.
type OCIIndex struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []Descriptor `json:"manifests"`
}

// OCILayout is the images/oci-layout document.
type OCILayout struct {
	ImageLayoutVersion string `json:"imageLayoutVersion"`
}

// DockerManifest is one element of the docker-save images/manifest.json.
// The field names and order are docker's.
type DockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}
