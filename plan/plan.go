// Package plan defines bale's plan: the content-addressed contract between
// a spec and the executor, and the file CI evaluates and diffs.
//
// A plan is canonical JSON: fields in a fixed order, two-space indentation,
// a trailing newline, no map whose order could vary, no absolute path, host
// name or wall-clock time. The same spec against the same sources gives the
// same bytes anywhere, so the plan id, the sha256 of those bytes, can be
// recomputed with sha256sum.
package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/bale-build/bale/internal/canonjson"
	"github.com/bale-build/bale/internal/digest"
)

// FormatVersion is the version of the plan format this package writes and
// reads. A change to what a plan means bumps it.
const FormatVersion = 2

// Input kinds.
const (
	KindImage     = "image"
	KindChart     = "chart"
	KindFile      = "file"
	KindSignature = "signature"
	KindValues    = "values"
	KindBundle    = "bundle"
	KindKey       = "key"
	// KindGo is a Go module's source tree, pinned by its tree digest (see
	// package gobuild), from which a go-build step builds a main package.
	KindGo = "go"
)

// Source types: where an input's bytes come from.
const (
	SourceRegistry   = "registry"   // an image in a registry, Ref
	SourceLayout     = "layout"     // an image in an OCI layout directory, Path + Select
	SourceTarball    = "tarball"    // an image in a docker-save tarball, Path + Select
	SourceDir        = "dir"        // a chart directory, Path
	SourceArchive    = "archive"    // a chart archive, Path
	SourceRepository = "repository" // a chart in an HTTP chart repository, URL
	SourceOCI        = "oci"        // a chart in an OCI registry, Ref
	SourceFile       = "file"       // a local file, Path
	SourceURL        = "url"        // a remote file, URL
	SourceEnv        = "env"        // a key in an environment variable, Ref
)

// Plan is a resolved spec: every input pinned, every step listed.
type Plan struct {
	FormatVersion int `json:"formatVersion"`
	// Spec identifies the spec the plan was made from.
	Spec SpecRef `json:"spec"`
	// SourceDateEpoch is the single build timestamp, RFC 3339 in UTC.
	SourceDateEpoch string `json:"sourceDateEpoch"`
	// Builder names everything besides the inputs that decides output
	// bytes, so a change to it shows in a diff.
	Builder Builder `json:"builder"`
	// Targets are the artifacts the plan builds.
	Targets []Target `json:"targets"`
	// Inputs are sorted by kind, then name.
	Inputs []Input `json:"inputs"`
	// Steps are in dependency order: a step comes after every step it
	// needs.
	Steps []Step `json:"steps"`
}

// SpecRef identifies a spec.
type SpecRef struct {
	// Digest is the sha256 of the evaluated spec's canonical JSON. Where
	// the spec's files sit is not recorded: one spec makes one plan
	// wherever it is (its local inputs' paths, relative to the workspace
	// root, are in the inputs).
	Digest string `json:"digest"`
}

// Builder is what, besides the inputs, decides the output bytes.
type Builder struct {
	// Tar names bale's tar layout rules.
	Tar string `json:"tar"`
	// Compressor is the compression module and version.
	Compressor string `json:"compressor"`
	// Go is the Go toolchain's version ("go1.26.8") for a plan that builds
	// Go binaries; a toolchain change shows in bale diff.
	Go string `json:"go,omitempty"`
}

// Target is one artifact set the plan builds.
type Target struct {
	// Kind is "bootstrapPack" or "release".
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Compression is the algorithm and level of the target's archives.
	Compression Compression `json:"compression"`
	// Artifacts are the files the target writes to the output directory.
	Artifacts []string `json:"artifacts"`
}

// Compression is an algorithm and level.
type Compression struct {
	Algorithm string `json:"algorithm"`
	Level     int    `json:"level"`
}

// Input is one pinned input.
type Input struct {
	Kind string `json:"kind"`
	// Name is unique within Kind.
	Name   string `json:"name"`
	Source Source `json:"source"`
	// Digest is the content digest: a manifest or index digest for an
	// image, the archive digest for a chart, the sha256 for a file.
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	MediaType string `json:"mediaType,omitempty"`
	Image     *Image `json:"image,omitempty"`
	Chart     *Chart `json:"chart,omitempty"`
	// URL is where a referenced bundle is published.
	URL string `json:"url,omitempty"`
}

// Key is the input's identity in a plan: kind/name.
func (in Input) Key() string { return in.Kind + "/" + in.Name }

// Source is where an input's bytes come from, as the spec says, with local
// paths made relative to the workspace root.
type Source struct {
	Type string `json:"type"`
	Ref  string `json:"ref,omitempty"`
	Path string `json:"path,omitempty"`
	URL  string `json:"url,omitempty"`
	// Select picks one image in a layout (ref name) or tarball (tag).
	Select string `json:"select,omitempty"`
}

// Image is what an image input pins beyond its digest.
type Image struct {
	// Tags are written to the docker-save manifest.json.
	Tags []string `json:"tags"`
	// Index is true when Digest names an index; Manifests then holds the
	// chosen platforms' manifests.
	Index bool `json:"index,omitempty"`
	// Platforms are the platforms chosen from an index, sorted.
	Platforms []string `json:"platforms,omitempty"`
	// Filtered is the index bale writes in place of Digest when Platforms
	// is a strict subset of the index's platforms: the original index with
	// only the chosen manifests (see FilterIndex). It has its own digest.
	Filtered *Blob `json:"filtered,omitempty"`
	// Manifests are the image manifests, one per chosen platform, sorted
	// by platform.
	Manifests []Manifest `json:"manifests"`
}

// Manifest is one image manifest and the blobs it names.
type Manifest struct {
	Platform  string `json:"platform,omitempty"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	MediaType string `json:"mediaType"`
	Config    Blob   `json:"config"`
	Layers    []Blob `json:"layers"`
}

// Blobs returns the blobs of the manifest: its config, the manifest
// itself, then its layers in order.
func (m Manifest) Blobs() []Blob {
	return append([]Blob{m.Config, {Digest: m.Digest, Size: m.Size}}, m.Layers...)
}

// Blob is a content-addressed blob.
type Blob struct {
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	MediaType string `json:"mediaType,omitempty"`
}

// Chart is what a chart input pins beyond its digest.
type Chart struct {
	Version    string `json:"version"`
	AppVersion string `json:"appVersion,omitempty"`
}

// Step is one unit of work of the executor.
type Step struct {
	// ID is the sha256 of the step's canonical encoding with ID empty;
	// because Needs holds the ids of the steps it depends on, a change
	// anywhere upstream changes the id.
	ID     string `json:"id"`
	Action string `json:"action"`
	// Inputs are the keys (kind/name) of the inputs the step reads.
	Inputs []string `json:"inputs,omitempty"`
	// Needs are the ids of the steps whose outputs the step reads.
	Needs []string `json:"needs,omitempty"`
	// Params are the action's parameters; encoded with sorted keys.
	Params map[string]string `json:"params,omitempty"`
	// Outputs are the paths the step produces: entries inside an artifact
	// ("bootstrap-pack-v1.tar:charts/web-1.0.0.tgz") or artifacts.
	Outputs []string `json:"outputs"`
}

// Encode writes p's canonical bytes.
func Encode(w io.Writer, p *Plan) error {
	b, err := Marshal(p)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// Marshal returns p's canonical bytes.
func Marshal(p *Plan) ([]byte, error) {
	b, err := canonjson.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode plan: %w", err)
	}
	return b, nil
}

// ID returns the plan id: "sha256:" and the hex sha256 of the canonical
// bytes.
func ID(canonical []byte) string {
	sum := sha256.Sum256(canonical)
	return digest.Prefix + hex.EncodeToString(sum[:])
}

// StepID computes s's id from its canonical encoding with ID empty.
func StepID(s Step) string {
	s.ID = ""
	// A Step always encodes: strings, slices and a string map.
	b, _ := canonjson.Compact(s)
	return ID(b)
}

// Time parses the plan's build timestamp.
func (p *Plan) Time() (time.Time, error) {
	t, err := time.Parse(time.RFC3339, p.SourceDateEpoch)
	if err != nil {
		return time.Time{}, fmt.Errorf("plan sourceDateEpoch %q: %w", p.SourceDateEpoch, err)
	}
	return t.UTC(), nil
}

// Input returns the input with the given key.
func (p *Plan) Input(key string) (Input, bool) {
	i := sort.Search(len(p.Inputs), func(i int) bool { return p.Inputs[i].Key() >= key })
	if i < len(p.Inputs) && p.Inputs[i].Key() == key {
		return p.Inputs[i], true
	}
	return Input{}, false
}

// SortInputs puts inputs in plan order: by kind, then name.
func SortInputs(ins []Input) {
	sort.Slice(ins, func(i, j int) bool { return ins[i].Key() < ins[j].Key() })
}

// Decode reads and checks a plan. A plan file may come from anywhere, so
// everything the executor will trust is checked: the format version,
// unknown fields, digests, paths and step ids.
func Decode(r io.Reader) (*Plan, error) {
	p, err := decode(r)
	if err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// decode reads one plan object, strictly, without validating it.
func decode(r io.Reader) (*Plan, error) {
	dec := json.NewDecoder(io.LimitReader(r, MaxSize))
	dec.DisallowUnknownFields()
	var p Plan
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("decode plan: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("decode plan: trailing data after the plan object")
	}
	return &p, nil
}

// MaxSize bounds the bytes Decode and Read take of a plan.
const MaxSize = 256 << 20

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)

// ValidDigest reports whether d is "sha256:" and 64 lowercase hex digits
// (digest.Valid, the one check).
func ValidDigest(d string) bool { return digest.Valid(d) }

// ValidPath reports whether p is a clean relative slash path that stays
// below its root.
func ValidPath(p string) bool {
	if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, "\\") || strings.ContainsRune(p, 0) {
		return false
	}
	if path.Clean(p) != p {
		return false
	}
	return p != ".." && !strings.HasPrefix(p, "../")
}

// Validate checks the plan's internal consistency.
func (p *Plan) Validate() error {
	if p.FormatVersion != FormatVersion {
		return fmt.Errorf("plan formatVersion %d: this bale reads version %d", p.FormatVersion, FormatVersion)
	}
	if !ValidDigest(p.Spec.Digest) {
		return fmt.Errorf("plan spec.digest %q: want sha256:<64 hex>", p.Spec.Digest)
	}
	if _, err := p.Time(); err != nil {
		return err
	}
	for i, t := range p.Targets {
		if !nameRE.MatchString(t.Name) || strings.Contains(t.Name, "..") {
			return fmt.Errorf("plan targets[%d].name %q: not a safe file name", i, t.Name)
		}
		for _, a := range t.Artifacts {
			if !nameRE.MatchString(a) || strings.Contains(a, "..") {
				return fmt.Errorf("plan targets[%d] artifact %q: not a safe file name", i, a)
			}
		}
	}
	keys := map[string]bool{}
	for i, in := range p.Inputs {
		at := fmt.Sprintf("plan inputs[%d] (%s)", i, in.Key())
		if keys[in.Key()] {
			return fmt.Errorf("%s: duplicate input", at)
		}
		keys[in.Key()] = true
		if i > 0 && p.Inputs[i-1].Key() > in.Key() {
			return fmt.Errorf("%s: inputs are not sorted", at)
		}
		if !ValidDigest(in.Digest) {
			return fmt.Errorf("%s: digest %q: want sha256:<64 hex>", at, in.Digest)
		}
		if in.Size < 0 {
			return fmt.Errorf("%s: negative size", at)
		}
		if in.Source.Path != "" && !ValidPath(in.Source.Path) {
			return fmt.Errorf("%s: source path %q leaves the workspace", at, in.Source.Path)
		}
		if in.Image != nil {
			if !nameRE.MatchString(in.Name) || strings.Contains(in.Name, "..") {
				return fmt.Errorf("%s: image name %q: not a safe file name", at, in.Name)
			}
			for _, t := range in.Image.Tags {
				if err := ValidateRepoTag(t); err != nil {
					return fmt.Errorf("%s: %w", at, err)
				}
			}
			for _, m := range in.Image.Manifests {
				for _, b := range m.Blobs() {
					if !ValidDigest(b.Digest) || b.Size < 0 {
						return fmt.Errorf("%s: blob %q size %d: want sha256:<64 hex> and a size >= 0", at, b.Digest, b.Size)
					}
				}
			}
		}
	}
	seen := map[string]bool{}
	for i, s := range p.Steps {
		at := fmt.Sprintf("plan steps[%d] (%s)", i, s.Action)
		if want := StepID(s); s.ID != want {
			return fmt.Errorf("%s: id %s does not match its content (%s): the plan was edited", at, s.ID, want)
		}
		for _, k := range s.Inputs {
			if !keys[k] {
				return fmt.Errorf("%s: unknown input %q", at, k)
			}
		}
		for _, n := range s.Needs {
			if !seen[n] {
				return fmt.Errorf("%s: needs %s, which is not an earlier step", at, n)
			}
		}
		for _, o := range s.Outputs {
			name := o
			if i := strings.Index(o, ":"); i >= 0 {
				name = o[i+1:]
			}
			if !ValidPath(name) {
				return fmt.Errorf("%s: output %q leaves the output directory", at, o)
			}
		}
		seen[s.ID] = true
	}
	return p.CheckSteps()
}
