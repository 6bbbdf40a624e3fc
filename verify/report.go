package verify

import (
	"fmt"
	"strings"
)

// Report is the result of verifying an artifact: a bootstrap pack (Pack)
// or a release's offline kit (the kit package fills it). It encodes as
// JSON for `bale verify --format json`, with one set of key names for
// both: what only a pack or only a kit has is in PackFacts or KitFacts,
// the other one nil and absent from the JSON.
type Report struct {
	// Path is the pack, kit directory or kit archive verified.
	Path string `json:"path"`
	*KitFacts
	// SHA256 is the hex sha256 of the pack file or kit archive; empty for
	// a kit directory.
	SHA256 string `json:"artifactSha256,omitempty"`
	*PackFacts
	// Checks lists the checks that ran.
	Checks []string `json:"checks"`
	// Failures lists what is wrong; empty for a good artifact.
	Failures []Failure `json:"failures"`

	ran       map[string]bool
	truncated bool
}

// PackFacts is what verifying a pack learns besides its checks.
type PackFacts struct {
	// RootHash is the hex sha256 of the pack index, if one was found.
	RootHash string `json:"rootHash,omitempty"`
	// Entries counts the tar entries read.
	Entries int `json:"entries"`
}

// KitFacts is what verifying an offline kit learns besides its checks.
type KitFacts struct {
	// Kind is the kit manifest's kind.
	Kind string `json:"kind"`
	// Name is the kit's name, from offline-kit.json.
	Name string `json:"name,omitempty"`
	// DevKey says the kit is signed with a development key.
	DevKey bool `json:"devKey"`
}

// Failure is one problem found.
type Failure struct {
	// Entry is the pack path or kit file at fault, or "" for the artifact
	// as a whole.
	Entry string `json:"entry,omitempty"`
	// Check names the check that failed.
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

// OK reports whether the artifact passed every check.
func (r *Report) OK() bool { return len(r.Failures) == 0 }

// Err returns nil for a good artifact, else an error listing the failures.
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

// maxFailures bounds the failures recorded, so a hostile artifact with
// thousands of bad entries cannot grow the report without limit.
const maxFailures = 1000

// Ran records that checks ran, once each, in the order first run.
func (r *Report) Ran(checks ...string) {
	if r.ran == nil {
		r.ran = map[string]bool{}
		for _, had := range r.Checks {
			r.ran[had] = true
		}
	}
	for _, c := range checks {
		if !r.ran[c] {
			r.ran[c] = true
			r.Checks = append(r.Checks, c)
		}
	}
}

// Fail records a failure of check at entry ("" for the whole artifact).
// Past maxFailures one line says the rest are not listed.
func (r *Report) Fail(entry, check, detail string) {
	if len(r.Failures) >= maxFailures {
		if !r.truncated {
			r.truncated = true
			r.Failures = append(r.Failures, Failure{Check: check, Detail: fmt.Sprintf("more than %d failures; the rest are not listed", maxFailures)})
		}
		return
	}
	r.Failures = append(r.Failures, Failure{Entry: entry, Check: check, Detail: detail})
}
