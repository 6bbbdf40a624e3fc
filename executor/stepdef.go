package executor

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/bale-build/bale/internal/canonjson"
	"github.com/bale-build/bale/pack"
	"github.com/bale-build/bale/plan"
)

// actionRules names the rules by which this executor's actions turn a step
// definition into bytes (entry layout, chart gzip level, JSON documents).
// Bump it with any change to them that the plan format and pack format
// versions do not already mark: it is part of every cache key.
const actionRules = "bale-actions/2"

// stepDef is everything a step's action may read from the plan: the step
// itself, the inputs it names (whole, digests, sources, tags and all), the
// cache keys of the steps it needs, its target, the build timestamp, the
// plan's builder section and the identity of this executor; and, for a
// step whose output names the plan, the plan's id.
//
// A step's action cache key is the sha256 of its stepDef's canonical JSON
// (see key), and actions reach the plan only through their node's def —
// the execution does not hold the plan. So anything that can change a
// step's bytes is in its key by construction: to read a new plan field an
// action must add it here, which puts it in the key.
type stepDef struct {
	// Executor identifies the code that runs the step.
	Executor executorID `json:"executor"`
	// Builder is the plan's builder section: tar layout and compressor.
	Builder plan.Builder `json:"builder"`
	// SourceDateEpoch is the plan's build timestamp, as the plan writes it.
	SourceDateEpoch string `json:"sourceDateEpoch"`
	// Target is the target the step's outputs belong to.
	Target plan.Target `json:"target"`
	// Step is the step as the plan lists it.
	Step plan.Step `json:"step"`
	// Inputs are the inputs Step.Inputs names, in that order.
	Inputs []plan.Input `json:"inputs"`
	// Needs are the cache keys of the steps Step.Needs names, in that
	// order: a need's whole definition is in its key, so an action may read
	// its needs' defs (and results) too.
	Needs []string `json:"needs"`
	// Plan is set for the steps whose output embeds the plan's identity
	// (pack-index), which a step id cannot include since the plan id
	// hashes the step ids.
	Plan *planRef `json:"plan,omitempty"`
	// Signer identifies a release step's signing key (see signerRef).
	Signer *signerRef `json:"signer,omitempty"`

	// mtime is SourceDateEpoch parsed: every archive header's time.
	mtime time.Time
}

// executorID is the identity of the code that turns a stepDef into bytes.
type executorID struct {
	// Rules is actionRules.
	Rules string `json:"rules"`
	// Bale is bale's module version and VCS revision as the binary
	// records them ("(devel)" in tests): a released bale never trusts
	// another release's results.
	Bale string `json:"bale"`
	// PlanFormat and PackFormat are the plan and pack index format
	// versions.
	PlanFormat int `json:"planFormat"`
	PackFormat int `json:"packFormat"`
}

// planRef is what a plan-bound step reads of the plan itself.
type planRef struct {
	ID         string `json:"id"`
	SpecDigest string `json:"specDigest"`
}

// newExecutorID returns this binary's executor identity.
func newExecutorID() executorID {
	id := executorID{Rules: actionRules, Bale: "unknown", PlanFormat: plan.FormatVersion, PackFormat: pack.FormatVersion}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v := []string{bi.Main.Path + "@" + bi.Main.Version}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" || s.Key == "vcs.modified" {
				v = append(v, s.Key+"="+s.Value)
			}
		}
		id.Bale = strings.Join(v, " ")
	}
	return id
}

// key returns the action cache key of d: the sha256 of its canonical JSON,
// under a prefix of its own so it can never equal a step id or a blob
// digest.
func (d *stepDef) key() (v1.Hash, error) {
	var buf bytes.Buffer
	buf.WriteString("bale action key v1\n")
	if err := canonjson.NewEncoder(&buf, false).Encode(d); err != nil {
		return v1.Hash{}, fmt.Errorf("encode step definition: %w", err)
	}
	sum := sha256.Sum256(buf.Bytes())
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}, nil
}
