// Package spec loads bale specs written in CUE, checks them against the
// embedded schemas, and decodes them into Go values the planner works from.
//
// A spec is a CUE package (a directory) or a single .cue file. Its top level
// is unified with the schema's #Spec, so every field is typed and closed.
// Problems are reported as Diagnostics with the file, line and column in the
// spec, never in the schema.
package spec

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/bale-build/bale/plan"
)

// Spec is an evaluated spec: the schema's defaults filled in.
type Spec struct {
	BootstrapPack *BootstrapPack `json:"bootstrapPack,omitempty"`
	Release       *Release       `json:"release,omitempty"`
}

// BootstrapPack is an air-gap bootstrap pack: charts, images, signatures and
// references to the evidence and mirror bundles it was built against.
type BootstrapPack struct {
	Name            string          `json:"name"`
	SourceDateEpoch Timestamp       `json:"sourceDateEpoch"`
	Compression     Compression     `json:"compression"`
	Charts          []Chart         `json:"charts"`
	Images          []Image         `json:"images"`
	Signatures      []SignatureFile `json:"signatures"`
	Bundles         []BundleRef     `json:"bundles"`
}

// Compression says how an artifact's tar stream is compressed.
type Compression struct {
	Algorithm string `json:"algorithm"`
	Level     int    `json:"level"`
}

// Image is one container image; exactly one of Ref, Layout and Tarball is
// set.
type Image struct {
	Name      string         `json:"name"`
	Ref       string         `json:"ref,omitempty"`
	Layout    *LayoutSource  `json:"layout,omitempty"`
	Tarball   *TarballSource `json:"tarball,omitempty"`
	Digest    string         `json:"digest,omitempty"`
	Platforms []string       `json:"platforms,omitempty"`
	Tags      []string       `json:"tags,omitempty"`
}

// normalize writes every image reference in full (Docker Hub's short names
// with their registry and "library/"), so the plan, the tag a pack takes
// from the reference and the spec digest are the same whichever way a spec
// spells an image. An image's own tags are the pack's names as the author
// wrote them, short or full (docker save writes Docker Hub names short), and
// are kept. The checker has accepted each reference; one that no longer
// parses is left for the resolver to refuse.
func (s *Spec) normalize() {
	if s.BootstrapPack == nil {
		return
	}
	for i := range s.BootstrapPack.Images {
		img := &s.BootstrapPack.Images[i]
		if img.Ref != "" {
			if full, err := plan.NormalizeRef(img.Ref); err == nil {
				img.Ref = full
			}
		}
	}
}

// LayoutSource is an image in an OCI image layout directory.
type LayoutSource struct {
	Path    string `json:"path"`
	RefName string `json:"refName,omitempty"`
}

// TarballSource is an image in a docker-save style tarball.
type TarballSource struct {
	Path string `json:"path"`
	Tag  string `json:"tag,omitempty"`
}

// Chart is one Helm chart; exactly one of Path, Repository and OCI is set.
type Chart struct {
	Name       string `json:"name"`
	Path       string `json:"path,omitempty"`
	Repository string `json:"repository,omitempty"`
	OCI        string `json:"oci,omitempty"`
	Version    string `json:"version,omitempty"`
	Digest     string `json:"digest,omitempty"`
	// Values is a values file (values-airgap.yaml) that travels in the
	// pack beside the chart.
	Values *ValuesFile `json:"values,omitempty"`
}

// SourceField names the field a chart's source is written in: "path",
// "repository" or "oci".
func (c Chart) SourceField() string {
	switch {
	case c.Repository != "":
		return "repository"
	case c.OCI != "":
		return "oci"
	}
	return "path"
}

// ValuesFile is a chart's values file: a local file, optionally pinned.
type ValuesFile struct {
	Path   string `json:"path"`
	Digest string `json:"digest,omitempty"`
}

// File is one file placed in an artifact; exactly one of Path and URL is
// set, and a URL file carries its Digest.
type File struct {
	Path   string `json:"path,omitempty"`
	URL    string `json:"url,omitempty"`
	Digest string `json:"digest,omitempty"`
	Dest   string `json:"dest,omitempty"`
	Mode   int64  `json:"mode"`
}

// SignatureFile is DSSE or TUF metadata copied into a pack unchanged.
type SignatureFile struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Path   string `json:"path"`
	Digest string `json:"digest,omitempty"`
}

// BundleRef references an evidence or mirror bundle by digest and URL.
type BundleRef struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Digest string `json:"digest"`
	URL    string `json:"url"`
	Path   string `json:"path,omitempty"`
}

// Signing says which cosign key signs a release.
type Signing struct {
	Key    string  `json:"key,omitempty"`
	DevKey *DevKey `json:"devKey,omitempty"`
}

// DevKey is a development key pair, used only with COSIGN_ALLOW_DEV_KEY=1.
type DevKey struct {
	Key       string `json:"key"`
	PublicKey string `json:"publicKey"`
}

// Release is a runner bundle, an optional dataset bundle and an optional
// offline kit that carries them.
type Release struct {
	Name            string         `json:"name"`
	SourceDateEpoch Timestamp      `json:"sourceDateEpoch"`
	Compression     Compression    `json:"compression"`
	Signing         Signing        `json:"signing"`
	Runner          RunnerBundle   `json:"runner"`
	Dataset         *DatasetBundle `json:"dataset,omitempty"`
	OfflineKit      *OfflineKit    `json:"offlineKit,omitempty"`
}

// RunnerBundle is a tool packaged with its SBOM and signature.
type RunnerBundle struct {
	Name    string    `json:"name"`
	Version string    `json:"version"`
	Files   []File    `json:"files"`
	Go      []GoBuild `json:"go,omitempty"`
	SBOM    SBOM      `json:"sbom"`
}

// GoBuild is a Go main package built from source into a runner bundle.
type GoBuild struct {
	Module  string `json:"module"`
	Package string `json:"package"`
	Dest    string `json:"dest"`
	GOOS    string `json:"goos"`
	GOARCH  string `json:"goarch"`
	LDFlags string `json:"ldflags"`
}

// SBOM says how a runner bundle's SBOM is written.
type SBOM struct {
	Format   string `json:"format"`
	Supplier string `json:"supplier,omitempty"`
	License  string `json:"license"`
}

// DatasetBundle is a dataset packaged with a checksum manifest and SLSA
// provenance.
type DatasetBundle struct {
	Name       string     `json:"name"`
	Hash       string     `json:"hash"`
	Files      []File     `json:"files"`
	Provenance Provenance `json:"provenance"`
}

// Provenance parameterises SLSA v1 provenance.
type Provenance struct {
	BuilderID string `json:"builderId"`
	BuildType string `json:"buildType"`
}

// OfflineKit is every bundle of a release plus checksums and a verify
// script.
type OfflineKit struct {
	Name         string `json:"name"`
	Checksums    string `json:"checksums"`
	VerifyScript string `json:"verifyScript"`
}

// Timestamp is a build timestamp written as RFC 3339 text or Unix seconds.
// It keeps the form it was written in, so evaluating a spec prints it back
// unchanged.
type Timestamp struct {
	Time time.Time
	raw  json.RawMessage
}

// ParseTimestamp parses RFC 3339 text or decimal Unix seconds, the two forms
// a spec and SOURCE_DATE_EPOCH may use.
func ParseTimestamp(s string) (Timestamp, error) {
	if secs, err := strconv.ParseInt(s, 10, 64); err == nil {
		if secs < 0 || secs > 253402300799 {
			return Timestamp{}, fmt.Errorf("timestamp %q: Unix seconds out of range 0..253402300799", s)
		}
		return Timestamp{Time: time.Unix(secs, 0).UTC(), raw: json.RawMessage(s)}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return Timestamp{}, fmt.Errorf("timestamp %q: want RFC 3339 (2025-01-01T00:00:00Z) or Unix seconds", s)
	}
	raw, _ := json.Marshal(s)
	return Timestamp{Time: t.UTC(), raw: raw}, nil
}

// MarshalJSON writes the timestamp in the form it was read in.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	if len(t.raw) > 0 {
		return t.raw, nil
	}
	return json.Marshal(t.Time.UTC().Format(time.RFC3339))
}

// UnmarshalJSON reads RFC 3339 text or Unix seconds.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("timestamp: want RFC 3339 text or Unix seconds, got %s", b)
		}
		s = n.String()
	}
	v, err := ParseTimestamp(s)
	if err != nil {
		return err
	}
	*t = v
	return nil
}
