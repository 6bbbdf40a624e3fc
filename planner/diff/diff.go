// Package diff compares two plans and says what changed, grouped the way a
// reviewer asks: which inputs were added, removed or re-pinned, whether the
// build timestamp or the builder changed, which steps and outputs changed.
package diff

import (
	"fmt"
	"sort"
	"strings"

	"github.com/bale-build/bale/plan"
)

// FormatVersion is the version of the JSON report.
const FormatVersion = 1

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
	OutputsChanged  []string      `json:"outputsChanged"`
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
		len(r.StepsAdded) == 0 && len(r.StepsRemoved) == 0 && len(r.OutputsChanged) == 0)
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
		FormatVersion:  FormatVersion,
		Old:            oldName,
		New:            newName,
		OldPlanID:      oldID,
		NewPlanID:      newID,
		Same:           oldID == newID,
		Builder:        []FieldChange{},
		Targets:        []FieldChange{},
		Added:          []InputRef{},
		Removed:        []InputRef{},
		Repinned:       []Repin{},
		SourceChanged:  []SourceDiff{},
		StepsAdded:     []StepRef{},
		StepsRemoved:   []StepRef{},
		OutputsChanged: []string{},
	}
	if r.Same {
		return r
	}
	if a.Spec != b.Spec {
		r.Spec = &Change{Old: a.Spec.Digest + " " + a.Spec.Dir, New: b.Spec.Digest + " " + b.Spec.Dir}
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
	oldOut := map[string]string{}
	for _, s := range a.Steps {
		oldSteps[s.ID] = true
		for _, o := range s.Outputs {
			oldOut[o] = s.ID
		}
	}
	newSteps := make(map[string]bool, len(b.Steps))
	changed := map[string]bool{}
	for _, s := range b.Steps {
		newSteps[s.ID] = true
		if !oldSteps[s.ID] {
			r.StepsAdded = append(r.StepsAdded, StepRef{Action: s.Action, ID: s.ID, Outputs: s.Outputs})
			for _, o := range s.Outputs {
				changed[o] = true
			}
		}
		for _, o := range s.Outputs {
			delete(oldOut, o)
		}
	}
	for _, s := range a.Steps {
		if !newSteps[s.ID] {
			r.StepsRemoved = append(r.StepsRemoved, StepRef{Action: s.Action, ID: s.ID, Outputs: s.Outputs})
		}
	}
	for o := range oldOut {
		changed[o] = true // an output no new step makes
	}
	for o := range changed {
		r.OutputsChanged = append(r.OutputsChanged, o)
	}
	sort.Strings(r.OutputsChanged)
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
	m := map[string]*PlatformChange{}
	get := func(p string) *PlatformChange {
		if p == "" {
			p = "(single)"
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
