package plan

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/bale-build/bale/pack"
)

// ActionRule is one row of the step contract: the layout every step of
// one action must have, and the outputs it makes. Rule is the table; the
// planner lays steps out by it (Outputs), Validate holds every plan to it,
// and the executor runs one function per row. Adding an action is a row
// here and a function in the executor.
type ActionRule struct {
	// InputKind is the kind every input must have; empty means the step
	// takes no inputs.
	InputKind string
	// OneInput says the step takes exactly one input.
	OneInput bool
	// Needs are the actions of the steps it may need.
	Needs []string
	// Params are the params it takes; Required, those it must have.
	Params, Required []string
	// ParamPrefix, if set, admits params with that prefix.
	ParamPrefix string
	// MoreInputKinds are further kinds the step's inputs may have.
	MoreInputKinds []string
	// Target is the kind of target whose artifacts the step makes.
	Target string
	// Entries says the step's outputs are entries inside an artifact
	// ("ART:PATH", see Entry); else they are whole artifacts.
	Entries bool

	// outputs returns what a step of the action makes for target t from
	// its inputs and params.
	outputs func(t Target, s Step, ins []Input) ([]string, error)
	// check checks what the rest of the row cannot say: how the step's
	// inputs, params and needs agree with each other and with the plan.
	check func(c stepContext) error
}

// stepContext is what a row's check reads of the step and the plan.
type stepContext struct {
	p    *Plan
	s    Step
	ins  []Input
	seen map[string]bool // the keys of ins
	// needActions counts the step's needs by action; needInputs holds
	// every input key its needs read.
	needActions map[string]int
	needInputs  map[string]bool
}

// entryActions are the actions whose outputs are the entries of a pack
// that its pack-index step lists.
func entryActions() []string {
	return []string{ActionChart, ActionImage, ActionCopy, ActionValues, ActionOCILayout}
}

// Rule returns the row of action.
func Rule(action string) (ActionRule, bool) {
	switch action {
	case ActionChart:
		return ActionRule{Target: TargetBootstrapPack, InputKind: KindChart, OneInput: true, Entries: true,
			Params: []string{ParamName, ParamVersion}, Required: []string{ParamName, ParamVersion},
			outputs: func(t Target, s Step, _ []Input) ([]string, error) {
				return []string{Entry(PackArtifact(t), pack.ChartPath(s.Params[ParamName], s.Params[ParamVersion]))}, nil
			},
			check: func(c stepContext) error {
				if in := c.ins[0]; in.Chart == nil || in.Chart.Version != c.s.Params[ParamVersion] {
					return fmt.Errorf("param version %q is not the version input %s pins", c.s.Params[ParamVersion], in.Key())
				}
				return nil
			}}, true
	case ActionImage:
		return ActionRule{Target: TargetBootstrapPack, InputKind: KindImage, OneInput: true, Entries: true, Params: []string{ParamName},
			outputs: func(t Target, _ Step, ins []Input) ([]string, error) {
				paths, err := ImageEntries(ins[0])
				if err != nil {
					return nil, err
				}
				return entries(t, paths...), nil
			},
			check: func(c stepContext) error {
				// Every blob it writes is one the input pins.
				blobs := imageDigests(c.ins[0])
				for _, o := range c.s.Outputs {
					if hex := o[strings.LastIndexByte(o, '/')+1:]; !blobs["sha256:"+hex] {
						return fmt.Errorf("output %q is no blob of input %s", o, c.ins[0].Key())
					}
				}
				return nil
			}}, true
	case ActionCopy:
		return ActionRule{Target: TargetBootstrapPack, InputKind: KindSignature, OneInput: true, Entries: true, Params: []string{ParamName},
			outputs: func(t Target, _ Step, ins []Input) ([]string, error) {
				return entries(t, pack.SignaturePath(ins[0].Name)), nil
			}}, true
	case ActionValues:
		return ActionRule{Target: TargetBootstrapPack, InputKind: KindValues, OneInput: true, Entries: true,
			Params: []string{ParamName, ParamVersion}, Required: []string{ParamName, ParamVersion},
			outputs: func(t Target, s Step, _ []Input) ([]string, error) {
				return entries(t, pack.ValuesPath(s.Params[ParamName], s.Params[ParamVersion])), nil
			},
			check: func(c stepContext) error {
				// The chart it travels with is in the plan, at that version.
				name, version := c.s.Params[ParamName], c.s.Params[ParamVersion]
				ch, ok := c.p.Input(KindChart + "/" + name)
				if c.ins[0].Name != name || !ok || ch.Chart == nil || ch.Chart.Version != version {
					return fmt.Errorf("values %s for chart %s %s: no such chart input in the plan", c.ins[0].Key(), name, version)
				}
				return nil
			}}, true
	case ActionOCILayout:
		return ActionRule{Target: TargetBootstrapPack, InputKind: KindImage, Needs: []string{ActionImage}, Entries: true,
			outputs: func(t Target, _ Step, _ []Input) ([]string, error) {
				return entries(t, pack.OCILayoutPath, pack.OCIIndexPath, pack.DockerManifestPath), nil
			},
			check: func(c stepContext) error {
				// Its images are exactly those its image steps fetched.
				if len(c.s.Inputs) != len(c.needInputs) {
					return fmt.Errorf("names %d images but needs image steps of %d", len(c.s.Inputs), len(c.needInputs))
				}
				for _, k := range c.s.Inputs {
					if !c.needInputs[k] {
						return fmt.Errorf("image %s has no image step among the needs", k)
					}
				}
				return nil
			}}, true
	case ActionPackIndex:
		return ActionRule{Target: TargetBootstrapPack, InputKind: KindBundle, Needs: entryActions(), Entries: true,
			Params: []string{ParamName}, ParamPrefix: ParamBundleKindPrefix,
			outputs: func(t Target, _ Step, _ []Input) ([]string, error) {
				return entries(t, pack.IndexPath), nil
			},
			check: func(c stepContext) error {
				for _, in := range c.ins {
					if c.s.Params[ParamBundleKindPrefix+in.Name] == "" {
						return fmt.Errorf("no %q param giving bundle %s's kind", ParamBundleKindPrefix+in.Name, in.Name)
					}
				}
				for _, k := range slices.Sorted(maps.Keys(c.s.Params)) {
					if b, ok := strings.CutPrefix(k, ParamBundleKindPrefix); ok && !c.seen[KindBundle+"/"+b] {
						return fmt.Errorf("param %q names bundle %s, which is not among the step's inputs", k, b)
					}
				}
				return nil
			}}, true
	case ActionPack:
		return ActionRule{Target: TargetBootstrapPack, Needs: append([]string{ActionPackIndex}, entryActions()...),
			Params: []string{ParamName, ParamCompression, ParamLevel}, Required: []string{ParamCompression, ParamLevel},
			outputs: func(t Target, _ Step, _ []Input) ([]string, error) {
				return []string{PackArtifact(t)}, nil
			},
			check: func(c stepContext) error {
				if c.needActions[ActionPackIndex] != 1 {
					return fmt.Errorf("needs %d pack-index steps, want 1", c.needActions[ActionPackIndex])
				}
				if c.s.Params[ParamCompression] != CompressionGzip {
					return fmt.Errorf("compression %q: only %s is supported", c.s.Params[ParamCompression], CompressionGzip)
				}
				if l, err := strconv.Atoi(c.s.Params[ParamLevel]); err != nil || l < 0 || l > 9 || strconv.Itoa(l) != c.s.Params[ParamLevel] {
					return fmt.Errorf("compression level %q: want 0 to 9", c.s.Params[ParamLevel])
				}
				return nil
			}}, true
	case ActionChecksum:
		return ActionRule{Target: TargetBootstrapPack, Needs: []string{ActionPack}, Params: []string{ParamName},
			outputs: func(t Target, _ Step, _ []Input) ([]string, error) {
				return []string{PackArtifact(t) + ".sha256"}, nil
			},
			check: func(c stepContext) error {
				if len(c.s.Needs) != 1 {
					return fmt.Errorf("needs %d steps, want the one pack step", len(c.s.Needs))
				}
				return nil
			}}, true
	case ActionGoBuild:
		return ActionRule{Target: TargetRelease, InputKind: KindGo, OneInput: true, Entries: true,
			Params: []string{ParamName, ParamPackage, ParamGOOS, ParamGOARCH, ParamLDFlags}, Required: []string{ParamPackage, ParamGOOS, ParamGOARCH},
			// The binary's place in its bundle is the spec's dest, which
			// only the output records: the row checks its shape, and
			// CheckSteps that the artifact is the release's runner bundle.
			outputs: func(t Target, s Step, _ []Input) ([]string, error) {
				if len(s.Outputs) == 1 {
					if art, dest, ok := CutEntry(s.Outputs[0]); ok && slices.Contains(t.Artifacts, art) && ValidPath(dest) {
						return s.Outputs, nil
					}
				}
				return nil, fmt.Errorf("a go-build step writes one binary inside an artifact of its release, not %q", s.Outputs)
			}}, true
	case ActionRelease:
		return ActionRule{Target: TargetRelease, InputKind: KindFile, MoreInputKinds: []string{KindKey}, Needs: []string{ActionGoBuild},
			Params:   []string{ParamName, ParamRunner, ParamRunnerVersion, ParamSupplier, ParamLicense, ParamDataset, ParamDatasetHash, ParamKit, ParamKey, ParamBuilderID, ParamBuildType},
			Required: []string{ParamRunner, ParamRunnerVersion, ParamKit}, ParamPrefix: ParamModePrefix,
			outputs: func(t Target, _ Step, _ []Input) ([]string, error) {
				return slices.Clone(t.Artifacts), nil
			},
			check: func(c stepContext) error {
				for _, k := range slices.Sorted(maps.Keys(c.s.Params)) {
					v := c.s.Params[k]
					if name, ok := strings.CutPrefix(k, ParamModePrefix); ok {
						if !c.seen[KindFile+"/"+name] {
							return fmt.Errorf("param %q names file %s, which is not among the step's inputs", k, name)
						}
						if v != "0644" && v != "0755" {
							return fmt.Errorf("param %q: mode %q, want 0644 or 0755", k, v)
						}
					}
				}
				return nil
			}}, true
	}
	return ActionRule{}, false
}

// Actions lists every action, in pipeline order.
func Actions() []string {
	return []string{ActionChart, ActionImage, ActionCopy, ActionValues, ActionOCILayout, ActionPackIndex, ActionPack, ActionChecksum, ActionGoBuild, ActionRelease}
}

// Entry returns the output naming path inside artifact art: "ART:PATH".
func Entry(art, path string) string { return art + ":" + path }

// CutEntry splits an entry output into its artifact and path; ok is false
// for an output naming a whole artifact.
func CutEntry(output string) (art, path string, ok bool) {
	return strings.Cut(output, ":")
}

// PackArtifact returns the pack artifact of bootstrap pack target t,
// "NAME.tar".
func PackArtifact(t Target) string { return t.Name + ".tar" }

// entries returns paths as entries of t's pack.
func entries(t Target, paths ...string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = Entry(PackArtifact(t), p)
	}
	return out
}

// Outputs returns the outputs a step of s's action makes for target t
// from inputs ins (the inputs s names, in order), sorted: what the planner
// declares and what Validate holds the step's declared outputs to.
func Outputs(t Target, s Step, ins []Input) ([]string, error) {
	rule, ok := Rule(s.Action)
	if !ok {
		return nil, fmt.Errorf("unknown action %q (the step contract knows %s)", s.Action, strings.Join(Actions(), ", "))
	}
	if rule.OneInput && len(ins) != 1 {
		return nil, fmt.Errorf("action %s takes exactly one input, have %d", s.Action, len(ins))
	}
	if t.Kind != rule.Target {
		return nil, fmt.Errorf("a %s step builds a %s target, not %s (a %s)", s.Action, rule.Target, t.Name, t.Kind)
	}
	out, err := rule.outputs(t, s, ins)
	if err != nil {
		return nil, err
	}
	return slices.Compact(slices.Sorted(slices.Values(out))), nil
}

// checkStep checks one step against its action's row; byID holds the
// steps before it.
func (p *Plan) checkStep(s Step, byID map[string]Step) error {
	rule, ok := Rule(s.Action)
	if !ok {
		return fmt.Errorf("unknown action %q (the step contract knows %s)", s.Action, strings.Join(Actions(), ", "))
	}
	for _, k := range slices.Sorted(maps.Keys(s.Params)) {
		if !slices.Contains(rule.Params, k) && (rule.ParamPrefix == "" || !strings.HasPrefix(k, rule.ParamPrefix)) {
			return fmt.Errorf("unknown param %q for action %s", k, s.Action)
		}
	}
	for _, k := range rule.Required {
		if _, ok := s.Params[k]; !ok {
			return fmt.Errorf("missing param %q", k)
		}
	}
	if rule.InputKind == "" && len(s.Inputs) > 0 {
		return fmt.Errorf("action %s takes no inputs, the step names %s", s.Action, strings.Join(s.Inputs, ", "))
	}
	if rule.OneInput && len(s.Inputs) != 1 {
		return fmt.Errorf("action %s takes exactly one input, the step names %d", s.Action, len(s.Inputs))
	}
	c := stepContext{p: p, s: s, seen: map[string]bool{}, needActions: map[string]int{}, needInputs: map[string]bool{}}
	for _, k := range s.Inputs {
		in, ok := p.Input(k)
		if !ok {
			return fmt.Errorf("unknown input %q", k)
		}
		if in.Kind != rule.InputKind && !slices.Contains(rule.MoreInputKinds, in.Kind) {
			return fmt.Errorf("input %s is a %s, action %s takes %s inputs", k, in.Kind, s.Action, strings.Join(append([]string{rule.InputKind}, rule.MoreInputKinds...), " or "))
		}
		if c.seen[k] {
			return fmt.Errorf("input %s named twice", k)
		}
		c.seen[k] = true
		c.ins = append(c.ins, in)
	}
	for _, id := range s.Needs {
		d, ok := byID[id]
		if !ok {
			return fmt.Errorf("needs %s, which is not an earlier step", id)
		}
		if !slices.Contains(rule.Needs, d.Action) {
			return fmt.Errorf("needs a %s step (%s); action %s needs only %s", d.Action, id, s.Action, strings.Join(rule.Needs, ", "))
		}
		c.needActions[d.Action]++
		for _, k := range d.Inputs {
			c.needInputs[k] = true
		}
	}
	if len(s.Needs) != len(slices.Compact(slices.Sorted(slices.Values(s.Needs)))) {
		return fmt.Errorf("a step is needed twice")
	}
	if rule.check != nil {
		return rule.check(c)
	}
	return nil
}

// checkOutputs checks that step s of target t declares exactly the
// outputs its action makes: a plan whose steps disagree with their inputs
// (an image digest swapped in the input but not in its step's outputs, a
// chart renamed) is refused whole, naming the output.
func (p *Plan) checkOutputs(t Target, s Step) error {
	ins := make([]Input, 0, len(s.Inputs))
	for _, k := range s.Inputs {
		in, _ := p.Input(k) // checkStep found each
		ins = append(ins, in)
	}
	want, err := Outputs(t, s, ins)
	if err != nil {
		return err
	}
	got := slices.Sorted(slices.Values(s.Outputs))
	if len(slices.Compact(slices.Clone(got))) != len(got) {
		return fmt.Errorf("an output is declared twice")
	}
	for _, o := range got {
		if _, found := slices.BinarySearch(want, o); !found {
			return fmt.Errorf("plan declares output %s, which the step does not produce (it produces %s)", o, strings.Join(want, ", "))
		}
	}
	for _, o := range want {
		if _, found := slices.BinarySearch(got, o); !found {
			return fmt.Errorf("step produces %s, which the plan does not declare as an output", o)
		}
	}
	return nil
}
