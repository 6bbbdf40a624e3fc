// Package diff compares two plans and says what changed, grouped the way a
// reviewer asks: which inputs were added, removed or re-pinned, whether the
// build timestamp or the builder changed, which steps and outputs changed.
package diff

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/bale-build/bale/pack"
	"github.com/bale-build/bale/plan"
)

// FormatVersion is the version of the JSON report. Version 2 replaced
// outputsChanged (paths) with outputs (path, change, old and new digest).
const FormatVersion = 2

// Report is what changed between two plans. Every list is sorted.
type Report struct {
	FormatVersion int    `json:"formatVersion"`
	Old           string `json:"old"`
	New           string `json:"new"`
	OldPlanID     string `json:"oldPlanId"`
	NewPlanID     string `json:"newPlanId"`
	// Same is true when the plans are byte-identical.
	Same            bool          `json:"same"`
	Spec            *Change       `json:"spec,omitempty"`
	SourceDateEpoch *Change       `json:"sourceDateEpoch,omitempty"`
	Builder         []FieldChange `json:"builder"`
	Targets         []FieldChange `json:"targets"`
	Added           []InputRef    `json:"added"`
	Removed         []InputRef    `json:"removed"`
	Repinned        []Repin       `json:"repinned"`
	SourceChanged   []SourceDiff  `json:"sourceChanged"`
	StepsAdded      []StepRef     `json:"stepsAdded"`
	StepsRemoved    []StepRef     `json:"stepsRemoved"`
	// Outputs are the outputs whose content differs: added, removed or
	// changed. Unchanged outputs (a blob both plans write, the constant
	// oci-layout file) are omitted.
	Outputs []Output `json:"outputs"`
}

// The changes an Output can have.
const (
	Added   = "+"
	Removed = "-"
	Changed = "~"
)

// Output is an output whose content differs between the plans. Old and New
// say what the content is known by: the blob's digest for a
// content-addressed blob, the file's digest for one whose bytes are fixed,
// and otherwise "recipe:" and the digest of its recipe: the step, the
// inputs it reads, the build timestamp and the builder (the plan does not
// hold bytes that only the build computes; the same recipe makes the same
// bytes).
type Output struct {
	Path   string `json:"path"`
	Change string `json:"change"`
	Old    string `json:"old,omitempty"`
	New    string `json:"new,omitempty"`
}

// Change is an old and a new value.
type Change struct {
	Old string `json:"old"`
	New string `json:"new"`
}

// FieldChange is a named field's old and new value.
type FieldChange struct {
	Field string `json:"field"`
	Old   string `json:"old"`
	New   string `json:"new"`
}

// InputRef names an input and its digest.
type InputRef struct {
	Key    string `json:"key"`
	Digest string `json:"digest"`
	Source string `json:"source"`
}

// Repin is an input whose digest changed.
type Repin struct {
	Key       string           `json:"key"`
	Source    string           `json:"source"`
	Old       string           `json:"old"`
	New       string           `json:"new"`
	Platforms []PlatformChange `json:"platforms,omitempty"`
}

// PlatformChange is one platform of a re-pinned index.
type PlatformChange struct {
	Platform string `json:"platform"`
	Old      string `json:"old,omitempty"`
	New      string `json:"new,omitempty"`
}

// SourceDiff is an input whose source changed.
type SourceDiff struct {
	Key string `json:"key"`
	Old string `json:"old"`
	New string `json:"new"`
}

// StepRef names a step.
type StepRef struct {
	Action  string   `json:"action"`
	ID      string   `json:"id"`
	Outputs []string `json:"outputs"`
}

// Empty reports whether nothing changed.
func (r *Report) Empty() bool {
	return r.Same || (r.Spec == nil && r.SourceDateEpoch == nil && len(r.Builder) == 0 && len(r.Targets) == 0 &&
		len(r.Added) == 0 && len(r.Removed) == 0 && len(r.Repinned) == 0 && len(r.SourceChanged) == 0 &&
		len(r.StepsAdded) == 0 && len(r.StepsRemoved) == 0 && len(r.Outputs) == 0)
}

// SourceString renders a source on one line.
func SourceString(s plan.Source) string {
	var parts []string
	for _, v := range []string{s.Ref, s.Path, s.URL} {
		if v != "" {
			parts = append(parts, v)
		}
	}
	out := s.Type + " " + strings.Join(parts, " ")
	if s.Select != "" {
		out += " [" + s.Select + "]"
	}
	return out
}

// Plans compares a and b. oldName and newName label them in the report;
// oldID and newID are their plan ids.
func Plans(oldName, newName, oldID, newID string, a, b *plan.Plan) *Report {
	r := &Report{
		FormatVersion: FormatVersion,
		Old:           oldName,
		New:           newName,
		OldPlanID:     oldID,
		NewPlanID:     newID,
		Same:          oldID == newID,
		Builder:       []FieldChange{},
		Targets:       []FieldChange{},
		Added:         []InputRef{},
		Removed:       []InputRef{},
		Repinned:      []Repin{},
		SourceChanged: []SourceDiff{},
		StepsAdded:    []StepRef{},
		StepsRemoved:  []StepRef{},
		Outputs:       []Output{},
	}
	if r.Same {
		return r
	}
	if a.Spec != b.Spec {
		r.Spec = &Change{Old: a.Spec.Digest, New: b.Spec.Digest}
	}
	if a.SourceDateEpoch != b.SourceDateEpoch {
		r.SourceDateEpoch = &Change{Old: a.SourceDateEpoch, New: b.SourceDateEpoch}
	}
	if a.Builder.Tar != b.Builder.Tar {
		r.Builder = append(r.Builder, FieldChange{"tar", a.Builder.Tar, b.Builder.Tar})
	}
	if a.Builder.Compressor != b.Builder.Compressor {
		r.Builder = append(r.Builder, FieldChange{"compressor", a.Builder.Compressor, b.Builder.Compressor})
	}
	if a.Builder.Go != b.Builder.Go {
		r.Builder = append(r.Builder, FieldChange{"go", a.Builder.Go, b.Builder.Go})
	}
	r.Targets = targets(a.Targets, b.Targets)

	old := make(map[string]*plan.Input, len(a.Inputs))
	for i := range a.Inputs {
		old[a.Inputs[i].Key()] = &a.Inputs[i]
	}
	seen := make(map[string]bool, len(b.Inputs))
	for i := range b.Inputs {
		nb := &b.Inputs[i]
		k := nb.Key()
		seen[k] = true
		na, ok := old[k]
		if !ok {
			r.Added = append(r.Added, InputRef{Key: k, Digest: nb.Digest, Source: SourceString(nb.Source)})
			continue
		}
		if na.Source != nb.Source {
			r.SourceChanged = append(r.SourceChanged, SourceDiff{Key: k, Old: SourceString(na.Source), New: SourceString(nb.Source)})
		}
		if na.Digest != nb.Digest {
			r.Repinned = append(r.Repinned, Repin{Key: k, Source: SourceString(nb.Source), Old: na.Digest, New: nb.Digest, Platforms: platforms(na, nb)})
		}
	}
	for i := range a.Inputs {
		if k := a.Inputs[i].Key(); !seen[k] {
			r.Removed = append(r.Removed, InputRef{Key: k, Digest: a.Inputs[i].Digest, Source: SourceString(a.Inputs[i].Source)})
		}
	}

	oldSteps := make(map[string]bool, len(a.Steps))
	for _, s := range a.Steps {
		oldSteps[s.ID] = true
	}
	newSteps := make(map[string]bool, len(b.Steps))
	for _, s := range b.Steps {
		newSteps[s.ID] = true
		if !oldSteps[s.ID] {
			r.StepsAdded = append(r.StepsAdded, StepRef{Action: s.Action, ID: s.ID, Outputs: s.Outputs})
		}
	}
	for _, s := range a.Steps {
		if !newSteps[s.ID] {
			r.StepsRemoved = append(r.StepsRemoved, StepRef{Action: s.Action, ID: s.ID, Outputs: s.Outputs})
		}
	}
	r.Outputs = outputs(contents(a), contents(b))
	sortSteps := func(s []StepRef) {
		sort.Slice(s, func(i, j int) bool {
			if s[i].Action != s[j].Action {
				return s[i].Action < s[j].Action
			}
			return s[i].ID < s[j].ID
		})
	}
	sortSteps(r.StepsAdded)
	sortSteps(r.StepsRemoved)
	return r
}

// outputs compares two plans' output contents by path.
func outputs(a, b map[string]string) []Output {
	out := []Output{}
	for p, nd := range b {
		od, ok := a[p]
		switch {
		case !ok:
			out = append(out, Output{Path: p, Change: Added, New: nd})
		case od != nd:
			out = append(out, Output{Path: p, Change: Changed, Old: od, New: nd})
		}
	}
	for p, od := range a {
		if _, ok := b[p]; !ok {
			out = append(out, Output{Path: p, Change: Removed, Old: od})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// ociLayoutDigest is the digest of the one output whose bytes never change:
// images/oci-layout, as the executor writes it.
func ociLayoutDigest() string {
	b, err := pack.EncodeJSON(pack.OCILayout{ImageLayoutVersion: "1.0.0"})
	if err != nil {
		return "" // a constant struct does not fail to encode
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// contents maps every output path of p to what its content is known by:
// a blob's digest (its path is its digest), the fixed oci-layout file's
// digest, or else its recipe.
func contents(p *plan.Plan) map[string]string {
	m := map[string]string{}
	layout := ociLayoutDigest()
	var whole []plan.Step
	for _, s := range p.Steps {
		switch s.Action {
		case plan.ActionPackIndex, plan.ActionPack, plan.ActionChecksum:
			whole = append(whole, s) // after every entry, below
			continue
		}
		r := recipe(p, s)
		for _, o := range s.Outputs {
			_, entry, inPack := plan.CutEntry(o)
			switch {
			case inPack && strings.HasPrefix(entry, pack.BlobsDir+"/"):
				m[o] = "sha256:" + strings.TrimPrefix(entry, pack.BlobsDir+"/")
			case inPack && entry == pack.OCILayoutPath:
				m[o] = layout
			default:
				m[o] = r
			}
		}
	}
	// The pack index lists every entry, the pack holds them, the checksum
	// is the pack's: each changes with any entry.
	entries := make([]string, 0, len(m))
	for o, k := range m {
		entries = append(entries, o+"="+k)
	}
	sort.Strings(entries)
	for _, s := range whole {
		h := sha256.New()
		fmt.Fprintf(h, "%s\n%s\n", recipe(p, s), strings.Join(entries, "\n"))
		for _, o := range s.Outputs {
			m[o] = "recipe:sha256:" + hex.EncodeToString(h.Sum(nil))
		}
	}
	return m
}

// recipe digests what decides the bytes of step s's outputs, as far as the
// plan holds it: the step (action, parameters, outputs), the inputs it
// reads in full, the build timestamp and the builder.
func recipe(p *plan.Plan, s plan.Step) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n%s\n", s.ID, p.SourceDateEpoch, p.Builder.Tar, p.Builder.Compressor)
	enc := json.NewEncoder(h)
	for _, k := range s.Inputs {
		in, _ := p.Input(k)
		_ = enc.Encode(in) // plan inputs always encode
	}
	return "recipe:sha256:" + hex.EncodeToString(h.Sum(nil))
}

func targets(a, b []plan.Target) []FieldChange {
	render := func(ts []plan.Target) map[string]string {
		m := map[string]string{}
		for _, t := range ts {
			m[t.Kind+"/"+t.Name] = fmt.Sprintf("%s level %d: %s", t.Compression.Algorithm, t.Compression.Level, strings.Join(t.Artifacts, ", "))
		}
		return m
	}
	ma, mb := render(a), render(b)
	var keys []string
	for k := range ma {
		keys = append(keys, k)
	}
	for k := range mb {
		if _, ok := ma[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := []FieldChange{}
	for _, k := range keys {
		if ma[k] != mb[k] {
			out = append(out, FieldChange{Field: k, Old: ma[k], New: mb[k]})
		}
	}
	return out
}

// platforms lists how each platform of a re-pinned image moved.
func platforms(a, b *plan.Input) []PlatformChange {
	if a.Image == nil || b.Image == nil {
		return nil
	}
	if !a.Image.Index && !b.Image.Index {
		// One manifest on each side: its move is the input's own.
		return nil
	}
	m := map[string]*PlatformChange{}
	get := func(p string) *PlatformChange {
		if p == "" {
			p = "single-platform manifest"
		}
		if m[p] == nil {
			m[p] = &PlatformChange{Platform: p}
		}
		return m[p]
	}
	for _, x := range a.Image.Manifests {
		get(x.Platform).Old = x.Digest
	}
	for _, x := range b.Image.Manifests {
		get(x.Platform).New = x.Digest
	}
	var out []PlatformChange
	for _, pc := range m {
		if pc.Old != pc.New {
			out = append(out, *pc)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Platform < out[j].Platform })
	return out
}
