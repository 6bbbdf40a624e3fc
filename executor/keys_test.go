package executor

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bale-build/bale/plan"
)

// TestSharedCacheTimestamps is issue 7's cache poisoning: a cache shared
// with a build of the same spec under another timestamp — SOURCE_DATE_EPOCH
// or a second spec with a 2023 sourceDateEpoch — must not change the next
// build of the real spec. Each build over the shared cache must equal its
// own cold build (fresh cache), in either order, and the real spec's pack
// its golden digest.
func TestSharedCacheTimestamps(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("several builds of the real spec")
	}
	golden, err := os.ReadFile(filepath.Join("testdata", "airgap-pack.golden"))
	if err != nil {
		t.Fatal(err)
	}
	real := mustPlanWorkspace(t, repoRoot(t), nil)
	epoch := time.Unix(1700000000, 0).UTC()
	// A second spec: the real one with a 2023 sourceDateEpoch, in a
	// workspace of its own.
	spec2023 := t.TempDir()
	copyWorkspace(t, spec2023)
	cue := filepath.Join(spec2023, realSpecDir, "pack.cue")
	src, err := os.ReadFile(cue)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(src), `sourceDateEpoch: "2025-01-01T00:00:00Z"`, `sourceDateEpoch: "2023-11-14T22:13:20Z"`, 1)
	if edited == string(src) {
		t.Fatal("the air-gap spec no longer has the sourceDateEpoch this test edits")
	}
	if err := os.WriteFile(cue, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, other := range []struct {
		name string
		plan *realPlan
	}{
		{"SOURCE_DATE_EPOCH=1700000000", mustPlanWorkspace(t, repoRoot(t), &epoch)},
		{"spec with a 2023 sourceDateEpoch", mustPlanWorkspace(t, spec2023, nil)},
	} {
		t.Run(other.name, func(t *testing.T) {
			if other.plan.id == real.id {
				t.Fatal("the two plans are the same plan")
			}
			// Cold references, each with a fresh cache.
			realCold, otherCold := t.TempDir(), t.TempDir()
			real.build(t, realCold, t.TempDir())
			other.plan.build(t, otherCold, t.TempDir())
			pack := readArtifacts(t, realCold)[packName+".tar"]
			if want := fmt.Sprintf("artifactSha256 %x\n", sha256.Sum256(pack)); !strings.HasPrefix(string(golden), want) {
				t.Fatalf("the real spec's cold pack is not its golden one: %s vs %s", want, golden)
			}
			if bytes.Equal(pack, readArtifacts(t, otherCold)[packName+".tar"]) {
				t.Fatal("the other timestamp gives the same pack: the test proves nothing")
			}

			shared := t.TempDir()
			for i, b := range []struct {
				who  string
				p    *realPlan
				cold string
			}{
				{"other", other.plan, otherCold},
				{"real", real, realCold},
				{"other", other.plan, otherCold},
				{"real", real, realCold},
			} {
				out := t.TempDir()
				res := b.p.build(t, out, shared)
				if i < 2 && res.StepsCached != 0 {
					// The two plans share no step key: every step reads
					// the timestamp.
					t.Errorf("build %d (%s) over the shared cache reused %d steps of the other timestamp", i, b.who, res.StepsCached)
				}
				if i >= 2 && res.StepsRun != 0 {
					t.Errorf("build %d (%s) ran %d steps, want all cached", i, b.who, res.StepsRun)
				}
				assertSameArtifacts(t, b.cold, out)
			}
		})
	}
}

// TestBuilderChangeRerunsSteps: a plan whose builder section changed (tar
// rules, compressor) must run every step again, never reuse bytes made by
// another builder.
func TestBuilderChangeRerunsSteps(t *testing.T) {
	t.Parallel()
	for _, edit := range []struct {
		name string
		f    func(*plan.Builder)
	}{
		{"tar layout", func(b *plan.Builder) { b.Tar = "bale-tar/2 (pax)" }},
		{"compressor", func(b *plan.Builder) { b.Compressor = "github.com/klauspost/compress@v1.99.0" }},
	} {
		t.Run(edit.name, func(t *testing.T) {
			fx := makeFixture(t, t.TempDir(), fixtureOpts{})
			cache := t.TempDir()
			build(t, fx, t.TempDir(), cache, 0)
			edit.f(&fx.plan.Builder)
			fx.planID = planID(t, fx.plan)
			res := build(t, fx, t.TempDir(), cache, 0)
			if res.StepsCached != 0 || res.StepsRun != len(fx.plan.Steps) {
				t.Errorf("after a builder change: %d steps cached, %d run; want 0, %d", res.StepsCached, res.StepsRun, len(fx.plan.Steps))
			}
		})
	}
}

// TestInputChangeRerunsDependents: an input edit that leaves every step id
// alone (an image's tags, a chart's digest with the same version) still
// changes the keys of the steps that read it, so a shared cache gives the
// edited plan's cold bytes — with step-id keys, the oci-layout step kept
// the old tags in manifest.json and index.json.
func TestInputChangeRerunsDependents(t *testing.T) {
	t.Parallel()
	for _, edit := range []struct {
		name string
		f    func(*plan.Input)
		key  string
	}{
		{"image tags", func(in *plan.Input) { in.Image.Tags = []string{"registry.example/team/app:9.9.9"} }, "image/app"},
		{"chart digest", func(in *plan.Input) { in.Digest = "sha256:" + strings.Repeat("c", 64) }, "chart/web"},
	} {
		t.Run(edit.name, func(t *testing.T) {
			dir := t.TempDir()
			fx := makeFixture(t, dir, fixtureOpts{})
			shared := t.TempDir()
			build(t, fx, t.TempDir(), shared, 0)
			before := map[string]string{}
			for _, s := range fx.plan.Steps {
				before[s.Action+" "+s.Outputs[0]] = s.ID
			}
			for i := range fx.plan.Inputs {
				if fx.plan.Inputs[i].Key() == edit.key {
					edit.f(&fx.plan.Inputs[i])
				}
			}
			fx.planID = planID(t, fx.plan)
			for _, s := range fx.plan.Steps {
				if before[s.Action+" "+s.Outputs[0]] != s.ID {
					t.Fatalf("the edit changed step %s's id; the test wants edits step ids miss", s.Action)
				}
			}
			cold := t.TempDir()
			build(t, fx, cold, t.TempDir(), 0)
			out := t.TempDir()
			res := build(t, fx, out, shared, 0)
			if res.StepsRun == 0 {
				t.Error("no step ran after the input changed")
			}
			assertSameArtifacts(t, cold, out)
		})
	}
}

// TestStepKeyCoversEveryField: every field of a step's definition is in
// its key, so an action cannot read a plan field that its key misses. A
// field added to stepDef but left out of the JSON fails here.
func TestStepKeyCoversEveryField(t *testing.T) {
	t.Parallel()
	fx := makeFixture(t, t.TempDir(), fixtureOpts{})
	x := &execution{}
	if err := x.graph(fx.plan, fx.planID); err != nil {
		t.Fatal(err)
	}
	var def *stepDef
	for _, n := range x.nodes {
		if n.step.Action == plan.ActionPackIndex {
			def = n.def
		}
	}
	base, err := def.key()
	if err != nil {
		t.Fatal(err)
	}
	v := reflect.ValueOf(def).Elem()
	typ := v.Type()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !f.IsExported() {
			// Unexported fields are derived from exported ones (mtime
			// from SourceDateEpoch).
			continue
		}
		t.Run(f.Name, func(t *testing.T) {
			mod := *def
			changeValue(t, reflect.ValueOf(&mod).Elem().Field(i))
			k, err := mod.key()
			if err != nil {
				t.Fatal(err)
			}
			if k == base {
				t.Errorf("changing stepDef.%s leaves the key unchanged", f.Name)
			}
		})
	}
	// Also the nested executor identity and builder fields.
	for i, edit := range []func(d *stepDef){
		func(d *stepDef) { d.Executor.Rules += "x" },
		func(d *stepDef) { d.Executor.Bale += "x" },
		func(d *stepDef) { d.Executor.PlanFormat++ },
		func(d *stepDef) { d.Executor.PackFormat++ },
		func(d *stepDef) { d.Builder.Tar += "x" },
		func(d *stepDef) { d.Builder.Compressor += "x" },
		func(d *stepDef) { d.Target.Compression.Level++ },
		func(d *stepDef) { d.Plan = &planRef{ID: d.Plan.ID, SpecDigest: "x"} },
		func(d *stepDef) {
			d.Inputs = append([]plan.Input(nil), d.Inputs...)
			d.Inputs[0].URL += "x"
		},
	} {
		mod := *def
		edit(&mod)
		if k, _ := mod.key(); k == base {
			t.Errorf("nested edit %d leaves the key unchanged", i)
		}
	}
}

// changeValue sets v to a different value of its type.
func changeValue(t *testing.T, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Int, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Slice:
		n := reflect.MakeSlice(v.Type(), v.Len()+1, v.Len()+1)
		reflect.Copy(n, v)
		v.Set(n)
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		} else {
			v.Set(reflect.Zero(v.Type()))
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				changeValue(t, v.Field(i))
				return
			}
		}
		t.Fatalf("struct %s has no exported field", v.Type())
	default:
		t.Fatalf("changeValue: kind %s", v.Kind())
	}
}
