// Package provenance writes and reads SLSA v1 provenance as an in-toto
// Statement v1 (https://slsa.dev/spec/v1.0/provenance), the payload of the
// DSSE envelope a release kit ships next to each dataset tarball.
//
// The statement is a pure function of its Input: every time field is the
// build timestamp, dependencies are sorted, and the JSON encoding is fixed,
// so a rebuild produces the same bytes and therefore the same signature.
package provenance

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bale-build/bale/internal/canonjson"
	"github.com/bale-build/bale/internal/digest"
	"github.com/bale-build/bale/internal/strictjson"
)

// Fixed identifiers of the formats.
const (
	// StatementType is in-toto Statement v1's _type.
	StatementType = "https://in-toto.io/Statement/v1"
	// PredicateType is SLSA provenance v1 (cosign's --type slsaprovenance1).
	PredicateType = "https://slsa.dev/provenance/v1"
	// BuildType identifies bale's release build; its externalParameters are
	// specDigest and planId.
	BuildType = "https://github.com/bale-build/bale/release/v1"
	// BuilderID identifies bale as the builder.
	BuilderID = "https://github.com/bale-build/bale"
)

// Subject is one artifact the statement is about.
type Subject struct {
	Name   string `json:"name"`
	Digest Digest `json:"digest"`
}

// Digest maps an algorithm to a hex digest; bale writes only sha256.
type Digest struct {
	SHA256 string `json:"sha256"`
}

// Dependency is an input of the build (an in-toto ResourceDescriptor).
type Dependency struct {
	URI    string `json:"uri,omitempty"`
	Name   string `json:"name"`
	Digest Digest `json:"digest"`
}

// Input is what a provenance statement records.
type Input struct {
	Subjects     []Subject
	SpecDigest   string       // "sha256:…" of the canonical spec
	PlanID       string       // the plan's id
	Target       string       // the release target's name
	Dependencies []Dependency // every input, with its digest
	// BuilderVersion names component versions, e.g. {"bale": "v0.3.0",
	// "go": "go1.26.8"}.
	BuilderVersion map[string]string
	// Time is the build timestamp (sourceDateEpoch); it is every time field.
	Time time.Time
	// BuilderID and BuildType override the builder.id and buildType
	// (BuilderID and BuildType when empty), as a spec's provenance block
	// names them.
	BuilderID, BuildType string
}

// Statement is an in-toto Statement v1 with a SLSA v1 predicate.
type Statement struct {
	Type          string     `json:"_type"`
	Subject       []Subject  `json:"subject"`
	PredicateType string     `json:"predicateType"`
	Predicate     Provenance `json:"predicate"`
}

// Provenance is the SLSA v1 predicate.
type Provenance struct {
	BuildDefinition BuildDefinition `json:"buildDefinition"`
	RunDetails      RunDetails      `json:"runDetails"`
}

// BuildDefinition is SLSA's buildDefinition.
type BuildDefinition struct {
	BuildType            string             `json:"buildType"`
	ExternalParameters   ExternalParameters `json:"externalParameters"`
	ResolvedDependencies []Dependency       `json:"resolvedDependencies"`
}

// ExternalParameters are the build's inputs under the user's control: the
// spec (by digest), the plan it resolved to and the target built.
type ExternalParameters struct {
	SpecDigest string `json:"specDigest"`
	PlanID     string `json:"planId"`
	Target     string `json:"target,omitempty"`
}

// RunDetails is SLSA's runDetails.
type RunDetails struct {
	Builder  Builder  `json:"builder"`
	Metadata Metadata `json:"metadata"`
}

// Builder is SLSA's builder.
type Builder struct {
	ID      string            `json:"id"`
	Version map[string]string `json:"version,omitempty"`
}

// Metadata is SLSA's BuildMetadata; both times are the build timestamp.
type Metadata struct {
	InvocationID string `json:"invocationId"`
	StartedOn    string `json:"startedOn"`
	FinishedOn   string `json:"finishedOn"`
}

// New builds the statement for in, checking that every digest is 64
// lowercase hex digits and names are unique.
func New(in Input) (*Statement, error) {
	if len(in.Subjects) == 0 {
		return nil, errors.New("provenance: no subject")
	}
	if in.Time.IsZero() {
		return nil, errors.New("provenance: no build timestamp")
	}
	if !strings.HasPrefix(in.SpecDigest, "sha256:") || !digest.ValidHex(in.SpecDigest[len("sha256:"):]) {
		return nil, fmt.Errorf("provenance: spec digest %q: want sha256: and 64 lowercase hex digits", in.SpecDigest)
	}
	if in.PlanID == "" {
		return nil, errors.New("provenance: no plan id")
	}
	subjects := slices.Clone(in.Subjects)
	slices.SortFunc(subjects, func(a, b Subject) int { return strings.Compare(a.Name, b.Name) })
	for i, s := range subjects {
		if err := checkNamed("subject", s.Name, s.Digest); err != nil {
			return nil, err
		}
		if i > 0 && subjects[i-1].Name == s.Name {
			return nil, fmt.Errorf("provenance: subject %q twice", s.Name)
		}
	}
	deps := slices.Clone(in.Dependencies)
	slices.SortFunc(deps, func(a, b Dependency) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.URI, b.URI)
	})
	for i, d := range deps {
		if err := checkNamed("dependency", d.Name, d.Digest); err != nil {
			return nil, err
		}
		if i > 0 && deps[i-1].Name == d.Name && deps[i-1].URI == d.URI {
			return nil, fmt.Errorf("provenance: dependency %q twice", d.Name)
		}
	}
	if deps == nil {
		deps = []Dependency{}
	}
	ts := in.Time.UTC().Format(time.RFC3339)
	builderID, buildType := BuilderID, BuildType
	if in.BuilderID != "" {
		builderID = in.BuilderID
	}
	if in.BuildType != "" {
		buildType = in.BuildType
	}
	return &Statement{
		Type:          StatementType,
		Subject:       subjects,
		PredicateType: PredicateType,
		Predicate: Provenance{
			BuildDefinition: BuildDefinition{
				BuildType:            buildType,
				ExternalParameters:   ExternalParameters{SpecDigest: in.SpecDigest, PlanID: in.PlanID, Target: in.Target},
				ResolvedDependencies: deps,
			},
			RunDetails: RunDetails{
				Builder:  Builder{ID: builderID, Version: in.BuilderVersion},
				Metadata: Metadata{InvocationID: in.PlanID, StartedOn: ts, FinishedOn: ts},
			},
		},
	}, nil
}

// Marshal is New followed by the statement's canonical encoding: compact
// JSON, no HTML escaping, no trailing newline (it becomes a DSSE payload).
func Marshal(in Input) ([]byte, error) {
	st, err := New(in)
	if err != nil {
		return nil, err
	}
	b, err := canonjson.Compact(st)
	if err != nil {
		return nil, fmt.Errorf("provenance: encode: %w", err)
	}
	return bytes.TrimSuffix(b, []byte("\n")), nil
}

// maxStatement bounds a statement read back for verification.
const maxStatement = 16 << 20

// Parse reads a statement, refusing unknown fields, a wrong _type or
// predicateType, and subjects without a well-formed sha256 digest.
func Parse(data []byte) (*Statement, error) {
	var st Statement
	if err := strictjson.Unmarshal(data, maxStatement, &st); err != nil {
		return nil, fmt.Errorf("parse provenance statement: %w", err)
	}
	if st.Type != StatementType {
		return nil, fmt.Errorf("provenance _type %q, want %q", st.Type, StatementType)
	}
	if st.PredicateType != PredicateType {
		return nil, fmt.Errorf("provenance predicateType %q, want %q", st.PredicateType, PredicateType)
	}
	if len(st.Subject) == 0 {
		return nil, errors.New("provenance has no subject")
	}
	for _, s := range st.Subject {
		if err := checkNamed("subject", s.Name, s.Digest); err != nil {
			return nil, err
		}
	}
	return &st, nil
}

// SubjectDigest returns the sha256 hex digest the statement records for the
// subject named name.
func (st *Statement) SubjectDigest(name string) (string, bool) {
	for _, s := range st.Subject {
		if s.Name == name {
			return s.Digest.SHA256, true
		}
	}
	return "", false
}

func checkNamed(what, name string, d Digest) error {
	if name == "" {
		return fmt.Errorf("provenance: %s without a name", what)
	}
	if !digest.ValidHex(d.SHA256) {
		return fmt.Errorf("provenance: %s %q: sha256 %q is not 64 lowercase hex digits", what, name, d.SHA256)
	}
	return nil
}
