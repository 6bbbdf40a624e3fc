package plan

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// goldenPlan decodes the planner's golden plan of the repository's air-gap
// spec: a real plan, as `bale plan` writes it.
func goldenPlan(t *testing.T) *Plan {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "planner", "testdata", "airgap.plan.json"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("the golden plan does not decode: %v", err)
	}
	return p
}

// reID recomputes every step id after an edit, following Needs, so that
// only the consistency checks can catch the edit.
func reID(p *Plan) {
	ids := map[string]string{}
	for i := range p.Steps {
		s := &p.Steps[i]
		for j, n := range s.Needs {
			if id, ok := ids[n]; ok {
				s.Needs[j] = id
			}
		}
		old := s.ID
		s.ID = StepID(*s)
		ids[old] = s.ID
	}
}

// stepOf returns the first step with action.
func stepOf(p *Plan, action string) *Step {
	for i := range p.Steps {
		if p.Steps[i].Action == action {
			return &p.Steps[i]
		}
	}
	return nil
}

func inputOf(p *Plan, key string) *Input {
	for i := range p.Inputs {
		if p.Inputs[i].Key() == key {
			return &p.Inputs[i]
		}
	}
	return nil
}

// TestDecodeInconsistentPlan hand-edits the golden plan the ways an
// attacker or a careless merge would, keeps every step id valid, and
// checks that Decode — what `bale build --plan` reads a plan with —
// refuses each with an error naming the part at fault.
func TestDecodeInconsistentPlan(t *testing.T) {
	tests := []struct {
		name string
		edit func(p *Plan)
		want string
	}{
		{"image digest swapped for another image's", func(p *Plan) {
			a, b := inputOf(p, "image/airgap-controller"), inputOf(p, "image/toolbox")
			a.Digest, a.Size = b.Digest, b.Size
		}, "inputs[4] (image/airgap-controller): digest sha256:66188e"},
		{"image media type edited", func(p *Plan) {
			inputOf(p, "image/toolbox").MediaType = "application/vnd.oci.image.manifest.v1+json"
		}, "(image/toolbox): media type"},
		{"index platform dropped", func(p *Plan) {
			im := inputOf(p, "image/mirror-agent").Image
			im.Platforms = im.Platforms[:1]
		}, "(image/mirror-agent): 1 platforms but 2 manifests"},
		{"target artifact dropped", func(p *Plan) {
			p.Targets[0].Artifacts = p.Targets[0].Artifacts[:1]
		}, "a bootstrap pack has"},
		{"artifact no step makes", func(p *Plan) {
			p.Targets = append(p.Targets, Target{Kind: TargetRelease, Name: "r", Artifacts: []string{"r.tar"}})
		}, "no step makes artifact r.tar"},
		{"step output in no target", func(p *Plan) {
			s := stepOf(p, ActionChecksum)
			s.Outputs = []string{"other.tar.sha256"}
		}, "belongs to no target's artifact"},
		{"step input the input list lacks", func(p *Plan) {
			stepOf(p, ActionImage).Inputs = []string{"image/ghost"}
		}, `unknown input "image/ghost"`},
		{"image step writes a blob its input does not pin", func(p *Plan) {
			s := stepOf(p, ActionImage)
			s.Outputs[0] = "bootstrap-pack-v1.tar:images/blobs/sha256/" + strings.Repeat("0", 64)
		}, "is no blob of input image/airgap-controller"},
		{"image step of another image's blobs", func(p *Plan) {
			a := stepOf(p, ActionImage)
			for _, s := range p.Steps {
				if s.Action == ActionImage && s.Inputs[0] == "image/toolbox" {
					a.Outputs = s.Outputs
				}
			}
		}, "is no blob of input image/airgap-controller"},
		{"step input of the wrong kind", func(p *Plan) {
			stepOf(p, ActionCopy).Inputs = []string{"chart/airgap-controller"}
		}, "is a chart, action copy takes signature inputs"},
		{"chart version param disagrees with the input", func(p *Plan) {
			stepOf(p, ActionChart).Params[ParamVersion] = "9.9.9"
		}, `param version "9.9.9" is not the version input chart/airgap-controller pins`},
		{"values for a chart version the plan lacks", func(p *Plan) {
			stepOf(p, ActionValues).Params[ParamVersion] = "9.9.9"
		}, "no such chart input in the plan"},
		{"values for another chart", func(p *Plan) {
			stepOf(p, ActionValues).Params[ParamName] = "mirror-agent"
		}, "no such chart input in the plan"},
		{"unknown action", func(p *Plan) { stepOf(p, ActionCopy).Action = "exfiltrate" }, `unknown action "exfiltrate"`},
		{"unknown param", func(p *Plan) { stepOf(p, ActionImage).Params["platform"] = "linux/amd64" }, `unknown param "platform" for action image`},
		{"missing param", func(p *Plan) { delete(stepOf(p, ActionPack).Params, ParamLevel) }, `missing param "level"`},
		{"bad level", func(p *Plan) { stepOf(p, ActionPack).Params[ParamLevel] = "09" }, `compression level "09"`},
		{"oci-layout drops an image", func(p *Plan) {
			s := stepOf(p, ActionOCILayout)
			s.Inputs = s.Inputs[1:]
		}, "names 2 images but needs image steps of 3"},
		{"pack-index drops a bundle", func(p *Plan) {
			s := stepOf(p, ActionPackIndex)
			s.Inputs = s.Inputs[1:]
		}, "names bundle evidence-bundle-2025.01, which is not among the step's inputs"},
		{"pack-index drops a bundle and its kind", func(p *Plan) {
			s := stepOf(p, ActionPackIndex)
			s.Inputs = s.Inputs[1:]
			delete(s.Params, ParamBundleKindPrefix+"evidence-bundle-2025.01")
		}, "names 1 of the plan's 2 bundles"},
		{"pack drops an entry step", func(p *Plan) {
			s := stepOf(p, ActionPack)
			s.Needs = slices.Delete(s.Needs, 1, 2)
		}, "pack step"},
		{"pack-index drops an entry step", func(p *Plan) {
			s := stepOf(p, ActionPackIndex)
			s.Needs = s.Needs[1:]
		}, "pack-index step"},
		{"checksum artifact renamed", func(p *Plan) {
			p.Targets[0].Artifacts[1] = "bootstrap-pack-v1.tar.sum"
			stepOf(p, ActionChecksum).Outputs = []string{"bootstrap-pack-v1.tar.sum"}
		}, "a bootstrap pack has"},
		{"checksum needs a chart step", func(p *Plan) {
			stepOf(p, ActionChecksum).Needs = []string{stepOf(p, ActionChart).ID}
		}, "needs a chart step"},
		{"two pack steps", func(p *Plan) {
			s := *stepOf(p, ActionPack)
			s.Params = map[string]string{ParamCompression: "gzip", ParamLevel: "9"}
			p.Steps = append(p.Steps, s)
		}, "artifact bootstrap-pack-v1.tar is also made by step"},
		{"entry step writes a whole artifact", func(p *Plan) {
			stepOf(p, ActionCopy).Outputs = []string{"bootstrap-pack-v1.tar"}
		}, "a copy step writes entries inside a pack"},
		{"unknown target kind", func(p *Plan) { p.Targets[0].Kind = "rootkit" }, `unknown kind "rootkit"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := goldenPlan(t)
			tt.edit(p)
			reID(p)
			b, err := Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Decode(bytes.NewReader(b))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Decode of the edited plan: %v; want an error containing %q", err, tt.want)
			}
		})
	}
	// The unedited golden plan, re-encoded, passes: the checks above fail
	// because of their edits.
	p := goldenPlan(t)
	reID(p)
	b, _ := Marshal(p)
	if _, err := Decode(bytes.NewReader(b)); err != nil {
		t.Fatalf("the re-encoded golden plan: %v", err)
	}
}

// TestStepContract: every action has a rule, and the rule's params are
// the ones the constants name.
func TestStepContract(t *testing.T) {
	known := []string{ParamName, ParamVersion, ParamCompression, ParamLevel,
		ParamPackage, ParamGOOS, ParamGOARCH, ParamLDFlags,
		ParamRunner, ParamRunnerVersion, ParamSupplier, ParamLicense, ParamDataset, ParamDatasetHash, ParamKit, ParamKey, ParamBuilderID, ParamBuildType}
	for _, a := range Actions() {
		r, ok := Rule(a)
		if !ok {
			t.Errorf("action %s has no rule", a)
			continue
		}
		for _, p := range append(append([]string{}, r.Params...), r.Required...) {
			if !slices.Contains(known, p) {
				t.Errorf("action %s: param %q is not a Param* constant", a, p)
			}
		}
		for _, p := range r.Required {
			if !slices.Contains(r.Params, p) {
				t.Errorf("action %s: required param %q is not allowed", a, p)
			}
		}
		for _, n := range r.Needs {
			if _, ok := Rule(n); !ok {
				t.Errorf("action %s needs unknown action %s", a, n)
			}
		}
	}
	if _, ok := Rule("teleport"); ok {
		t.Error("Rule knows an unknown action")
	}
}

// FuzzDecode feeds Decode hostile plan files. It must never panic, and a
// plan it accepts must survive its own canonical form: Marshal, Decode
// again, and the same bytes.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{"airgap.plan.json", "aoc.plan.json"} {
		b, err := os.ReadFile(filepath.Join("..", "planner", "testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	good, _ := Marshal(sample())
	f.Add(good)
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Decode(bytes.NewReader(data))
		if err != nil {
			return
		}
		b, err := Marshal(p)
		if err != nil {
			t.Fatalf("Marshal of a decoded plan: %v", err)
		}
		q, err := Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("Decode of a decoded plan's canonical form: %v", err)
		}
		if again, _ := Marshal(q); !bytes.Equal(again, b) {
			t.Fatal("canonical form changed on a second round trip")
		}
	})
}
