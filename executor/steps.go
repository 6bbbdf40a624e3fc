package executor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/executor/cas"
	"github.com/bale-build/bale/plan"
)

// action runs a step of one action and returns what it produced.
type action func(ctx context.Context, n *node) (outputs, error)

// actions is the executor's half of the step contract: one function per
// row of plan.Rule. TestActionsCoverTheContract holds it to plan.Actions.
func (x *execution) actions() map[string]action {
	return map[string]action{
		plan.ActionChart:     x.doChart,
		plan.ActionImage:     x.doImage,
		plan.ActionCopy:      x.doCopy,
		plan.ActionValues:    x.doValues,
		plan.ActionOCILayout: x.doOCILayout,
		plan.ActionPackIndex: x.doPackIndex,
		plan.ActionPack:      x.doPack,
		plan.ActionChecksum:  x.doChecksum,
		plan.ActionGoBuild:   x.doGoBuild,
		plan.ActionRelease:   x.doRelease,
	}
}

// do runs one step's action and returns its result, with outputs in the
// order the step declares them.
func (x *execution) do(ctx context.Context, n *node) (*cas.ActionResult, error) {
	run, ok := x.actionTable[n.step.Action]
	if !ok {
		return nil, fmt.Errorf("unknown action %q (this executor knows %s)", n.step.Action, strings.Join(plan.Actions(), ", "))
	}
	out, err := run(ctx, n)
	if err != nil {
		return nil, err
	}
	return out.result(n.step.Outputs)
}

// outputs collects what a step produced, by output path.
type outputs map[string]cas.Output

func (o outputs) add(path string, h v1.Hash, size int64) error {
	if prev, ok := o[path]; ok && prev.Digest != h {
		return fmt.Errorf("output %s produced twice with different content (%s, %s)", path, prev.Digest, h)
	}
	o[path] = cas.Output{Path: path, Digest: h, Size: size}
	return nil
}

// addDerived records a Derived output (see cas.Output): its digest and
// size, not a blob.
func (o outputs) addDerived(path string, h v1.Hash, size int64) error {
	if err := o.add(path, h, size); err != nil {
		return err
	}
	out := o[path]
	out.Derived = true
	o[path] = out
	return nil
}

// result checks that the step produced exactly what the plan declares:
// a difference means the planner and executor disagree on an action's
// outputs rule, and guessing would ship a pack the plan does not describe.
func (o outputs) result(declared []string) (*cas.ActionResult, error) {
	res := &cas.ActionResult{Outputs: make([]cas.Output, 0, len(declared))}
	for _, d := range declared {
		out, ok := o[d]
		if !ok {
			var made []string
			for p := range o {
				made = append(made, p)
			}
			slices.Sort(made)
			return nil, fmt.Errorf("plan declares output %s, which the step does not produce (it produces %s)", d, strings.Join(made, ", "))
		}
		res.Outputs = append(res.Outputs, out)
	}
	if len(o) != len(declared) {
		for p := range o {
			if !slices.Contains(declared, p) {
				return nil, fmt.Errorf("step produces %s, which the plan does not declare as an output", p)
			}
		}
	}
	return res, nil
}

// entry returns the output name of a path inside n's pack.
func (n *node) entry(path string) string { return plan.Entry(n.target.packName, path) }

// input returns the single input of kind a step reads.
func (x *execution) input(n *node, kind string) (plan.Input, error) {
	if len(n.def.Inputs) != 1 {
		return plan.Input{}, fmt.Errorf("want exactly one %s input, have %d", kind, len(n.def.Inputs))
	}
	in := n.def.Inputs[0]
	if in.Kind != kind {
		return plan.Input{}, fmt.Errorf("input %s is a %s, want a %s", in.Key(), in.Kind, kind)
	}
	return in, nil
}

// safeName checks that s can be one path element inside a pack: what
// CleanName accepts, without a slash, not hidden and not "..".
func safeName(what, s string) error {
	if c, err := archive.CleanName(s); err != nil || c != s || strings.Contains(s, "/") || strings.HasPrefix(s, ".") {
		return fmt.Errorf("%s %q: not a safe file name", what, s)
	}
	return nil
}

// hash parses a plan digest into a store hash; the plan was validated, but
// a hostile digest must never reach a path.
func hash(digest string) (v1.Hash, error) {
	if !plan.ValidDigest(digest) {
		return v1.Hash{}, fmt.Errorf("digest %q: want sha256:<64 hex>", digest)
	}
	return v1.NewHash(digest)
}

// putBytes stores small generated content and returns its digest and size.
func (x *execution) putBytes(ctx context.Context, data []byte) (v1.Hash, int64, error) {
	sum := sha256.Sum256(data)
	h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	if err := x.store.Put(ctx, h, int64(len(data)), bytes.NewReader(data)); err != nil {
		return v1.Hash{}, 0, err
	}
	return h, int64(len(data)), nil
}

// readBlob reads a whole blob of at most max bytes from the store,
// verified.
func (x *execution) readBlob(ctx context.Context, h v1.Hash, max int64) ([]byte, error) {
	rc, size, err := x.store.Open(ctx, h)
	if err != nil {
		return nil, blobMissing(err)
	}
	defer rc.Close()
	if size > max {
		return nil, fmt.Errorf("blob %s: %d bytes, more than the %d allowed", h, size, max)
	}
	// Reading to EOF is what verifies the digest.
	data, err := io.ReadAll(rc)
	if err != nil {
		return nil, err
	}
	return data, nil
}

// needOutputs returns the outputs of n's needs, deduplicated by path, in
// path order. An output two needs both produce must have the same content
// (image blobs shared between images do).
func needOutputs(n *node) ([]cas.Output, error) {
	seen := map[string]cas.Output{}
	for _, d := range n.needs {
		for _, o := range d.result.Outputs {
			if prev, ok := seen[o.Path]; ok {
				if prev.Digest != o.Digest || prev.Size != o.Size {
					return nil, fmt.Errorf("output %s made by two steps with different content (%s, %s)", o.Path, prev.Digest, o.Digest)
				}
				continue
			}
			seen[o.Path] = o
		}
	}
	outs := make([]cas.Output, 0, len(seen))
	for _, o := range seen {
		outs = append(outs, o)
	}
	slices.SortFunc(outs, func(a, b cas.Output) int { return strings.Compare(a.Path, b.Path) })
	return outs, nil
}

// packEntries returns the outputs of n's needs inside n's pack, with their
// paths made relative to the pack, sorted and deduplicated.
func packEntries(n *node) ([]cas.Output, error) {
	outs, err := needOutputs(n)
	if err != nil {
		return nil, err
	}
	var entries []cas.Output
	for _, o := range outs {
		if art, p, ok := plan.CutEntry(o.Path); ok && art == n.target.packName {
			if o.Derived {
				return nil, fmt.Errorf("pack entry %s: made by a step that keeps no copy in the store", p)
			}
			o.Path = p
			entries = append(entries, o)
		}
	}
	return entries, nil
}

// needOfAction returns n's needs with the given action.
func needOfAction(n *node, action string) []*node {
	var out []*node
	for _, d := range n.needs {
		if d.step.Action == action {
			out = append(out, d)
		}
	}
	return out
}
