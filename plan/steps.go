package plan

import (
	"fmt"
	"slices"
	"strings"
)

// Target kinds.
const (
	// TargetBootstrapPack is a bootstrap pack: NAME.tar and NAME.tar.sha256.
	TargetBootstrapPack = "bootstrapPack"
	// TargetRelease is a release: its runner and dataset bundles and the
	// offline kit that carries them, built by one release step.
	TargetRelease = "release"
)

// Step actions: the contract between the planner, which lays steps out, and
// the executor, which runs them. The table of rows is Rule: the planner
// lays steps out by Outputs, CheckSteps holds every plan to the rows, and
// the executor runs one function per row.
//
// A step belongs to the target whose artifacts its outputs name: "N.tar:P"
// is entry P inside the pack N.tar of bootstrap pack target N; "N.tar" and
// "N.tar.sha256" are the target's artifacts. Each action produces exactly
// the outputs below (their paths are package pack's rules; Outputs gives
// them and Validate checks them), in any order:
//
//	chart       Inputs [one chart], Params {name, version}
//	            → "N.tar:charts/NAME-VERSION.tgz"
//	image       Inputs [one image], Params {name?}
//	            → "N.tar:" + each path of ImageEntries(input)
//	copy        Inputs [one signature], Params {name?}
//	            → "N.tar:signatures/S"
//	values      Inputs [one values file], Params {name, version} (the
//	            chart it travels with, an input of the plan)
//	            → "N.tar:charts/NAME-VERSION.values-airgap.yaml"
//	oci-layout  Inputs [every image], Needs [every image step]
//	            → "N.tar:images/oci-layout", "N.tar:images/index.json",
//	              "N.tar:images/manifest.json"
//	pack-index  Inputs [every bundle], Needs [every entry step],
//	            Params {name?, "bundleKind.B": kind of each bundle B}
//	            → "N.tar:pack-index.json"
//	pack        Needs [pack-index and every entry step],
//	            Params {name?, compression: "gzip", level: "0".."9"}
//	            → "N.tar"
//	checksum    Needs [pack], Params {name?} → "N.tar.sha256"
//
// A release target R is built by at most some go-build steps and one
// release step:
//
//	go-build    Inputs [one go], Params {name?, package, goos, goarch,
//	            ldflags?} → "B.tar.gz:DEST": a binary inside the runner
//	            bundle B.tar.gz
//	release     Inputs [every file and key input], Needs [every go-build
//	            step], Params (see ParamRunner and the rest)
//	            → every artifact of R, exactly as the target lists them
//
// Entry steps are chart, image, copy, values and oci-layout. A "name" param marked
// "?" is informational (it makes a plan easier to read) and is not used.
const (
	ActionChart     = "chart"
	ActionImage     = "image"
	ActionCopy      = "copy"
	ActionValues    = "values"
	ActionOCILayout = "oci-layout"
	ActionPackIndex = "pack-index"
	ActionPack      = "pack"
	ActionChecksum  = "checksum"
	ActionGoBuild   = "go-build"
	ActionRelease   = "release"
)

// Step parameters.
const (
	// ParamName names what a step makes: the chart's name for chart (used),
	// else informational.
	ParamName = "name"
	// ParamVersion is the chart step's chart version.
	ParamVersion = "version"
	// ParamCompression is the pack step's compression algorithm: "gzip".
	ParamCompression = "compression"
	// ParamLevel is the pack step's compression level, "0" to "9".
	ParamLevel = "level"
	// ParamBundleKindPrefix prefixes the pack-index step's params that give
	// each bundle's kind ("bundleKind.NAME": "evidence"): an input has no
	// field for it.
	ParamBundleKindPrefix = "bundleKind."

	// ParamPackage, ParamGOOS, ParamGOARCH and ParamLDFlags are a go-build
	// step's main package (relative to its module, "./cmd/x"), target
	// platform and linker flags.
	ParamPackage = "package"
	ParamGOOS    = "goos"
	ParamGOARCH  = "goarch"
	ParamLDFlags = "ldflags"

	// Release step params: the runner bundle's name and version and SBOM
	// supplier and license; the dataset bundle's name and the {hash} of its
	// file names; the offline kit's name; the signing key reference
	// ("env://VAR" or a file) and the provenance builder id and build type.
	ParamRunner        = "runner"
	ParamRunnerVersion = "runnerVersion"
	ParamSupplier      = "supplier"
	ParamLicense       = "license"
	ParamDataset       = "dataset"
	ParamDatasetHash   = "datasetHash"
	ParamKit           = "kit"
	ParamKey           = "key"
	ParamBuilderID     = "builderId"
	ParamBuildType     = "buildType"
	// ParamModePrefix prefixes a release step's params giving a file
	// input's mode in its bundle ("mode.R/bin/x": "0755"); files without
	// one are 0644.
	ParamModePrefix = "mode."
)

// CompressionGzip is the one compression algorithm packs use.
const CompressionGzip = "gzip"

// CheckSteps checks that the plan's steps follow the step contract and
// agree with the rest of the plan: known actions and params, inputs of the
// right kinds, needs of the right actions, image inputs whose digest is
// the one their manifests say, chart params matching the chart input, one
// pack-index, pack and checksum step per bootstrap pack, and the targets'
// artifacts exactly what the steps produce. It assumes Validate's checks
// of ids, input keys and needs order have passed; Validate calls it.
//
// An edited plan (an image's digest swapped for another's, an artifact
// added or dropped) fails here, naming the step or input at fault, rather
// than building a pack that disagrees with itself.
func (p *Plan) CheckSteps() error {
	for i, in := range p.Inputs {
		if err := checkImageInput(in); err != nil {
			return fmt.Errorf("plan inputs[%d] (%s): %w", i, in.Key(), err)
		}
	}
	byID := make(map[string]Step, len(p.Steps))
	for i, s := range p.Steps {
		if err := p.checkStep(s, byID); err != nil {
			return fmt.Errorf("plan steps[%d] (%s %s): %w", i, s.Action, s.ID, err)
		}
		byID[s.ID] = s
	}
	return p.checkTargets()
}

// checkImageInput checks an image input's digest against its manifests:
// a single-manifest image's digest, size and media type are its
// manifest's, and an index's chosen platforms are its manifests'.
func checkImageInput(in Input) error {
	if in.Kind != KindImage {
		if in.Image != nil {
			return fmt.Errorf("a %s input with an image section", in.Kind)
		}
		return nil
	}
	img := in.Image
	if img == nil || len(img.Manifests) == 0 {
		return fmt.Errorf("image input without manifests")
	}
	if !img.Index {
		m := img.Manifests[0]
		if len(img.Manifests) != 1 || img.Filtered != nil || len(img.Platforms) != 0 {
			return fmt.Errorf("a single-manifest image with %d manifests, platforms or a filtered index", len(img.Manifests))
		}
		if m.Digest != in.Digest || m.Size != in.Size {
			return fmt.Errorf("digest %s (%d bytes) is not its manifest's %s (%d bytes)", in.Digest, in.Size, m.Digest, m.Size)
		}
		if in.MediaType != "" && m.MediaType != in.MediaType {
			return fmt.Errorf("media type %s is not its manifest's %s", in.MediaType, m.MediaType)
		}
		return nil
	}
	if len(img.Platforms) != len(img.Manifests) {
		return fmt.Errorf("%d platforms but %d manifests", len(img.Platforms), len(img.Manifests))
	}
	for j, m := range img.Manifests {
		if m.Platform != img.Platforms[j] {
			return fmt.Errorf("manifests[%d] is for platform %q, platforms[%d] says %q", j, m.Platform, j, img.Platforms[j])
		}
		if m.Digest == in.Digest || (img.Filtered != nil && m.Digest == img.Filtered.Digest) {
			return fmt.Errorf("manifests[%d] has the index's own digest %s", j, m.Digest)
		}
	}
	if f := img.Filtered; f != nil && (!ValidDigest(f.Digest) || f.Size < 0) {
		return fmt.Errorf("filtered index %q size %d: want sha256:<64 hex> and a size >= 0", f.Digest, f.Size)
	}
	return nil
}

// imageDigests returns the digests of every blob an image input pins.
func imageDigests(in Input) map[string]bool {
	ds := map[string]bool{in.Digest: true}
	if in.Image.Filtered != nil {
		ds[in.Image.Filtered.Digest] = true
	}
	for _, m := range in.Image.Manifests {
		ds[m.Digest], ds[m.Config.Digest] = true, true
		for _, l := range m.Layers {
			ds[l.Digest] = true
		}
	}
	return ds
}

// checkTargets checks that each target's artifacts are exactly what its
// steps produce: every artifact a step output, every step output an
// artifact or an entry of a pack artifact, no artifact made twice, and the
// pack of a bootstrap pack built from one pack-index with the pack's entry
// steps.
func (p *Plan) checkTargets() error {
	declared := map[string]string{} // artifact -> target name
	targets := map[string]Target{}  // name -> target
	for i, t := range p.Targets {
		targets[t.Name] = t
		switch t.Kind {
		case TargetBootstrapPack:
			want := []string{t.Name + ".tar", t.Name + ".tar.sha256"}
			if !slices.Equal(t.Artifacts, want) {
				return fmt.Errorf("plan targets[%d] (%s): artifacts %q, a bootstrap pack has %q", i, t.Name, t.Artifacts, want)
			}
			if t.Compression.Algorithm != CompressionGzip || t.Compression.Level < 0 || t.Compression.Level > 9 {
				return fmt.Errorf("plan targets[%d] (%s): compression %s level %d: want gzip 0 to 9", i, t.Name, t.Compression.Algorithm, t.Compression.Level)
			}
		case TargetRelease:
			if len(t.Artifacts) == 0 {
				return fmt.Errorf("plan targets[%d] (%s): a release without artifacts", i, t.Name)
			}
		default:
			return fmt.Errorf("plan targets[%d] (%s): unknown kind %q", i, t.Name, t.Kind)
		}
		for _, a := range t.Artifacts {
			if _, dup := declared[a]; dup {
				return fmt.Errorf("plan targets[%d] (%s): artifact %s is declared twice", i, t.Name, a)
			}
			declared[a] = t.Name
		}
	}
	made := map[string]string{}      // artifact -> step id
	packOf := map[string]Step{}      // pack artifact -> its pack step
	indexOf := map[string][]Step{}   // pack artifact -> its pack-index steps
	entryOf := map[string][]string{} // pack artifact -> ids of its entry steps
	releaseOf := map[string]Step{}   // release target -> its release step
	builtIn := map[string]string{}   // runner bundle -> a go-build step making an entry of it
	targetOf := make([]Target, len(p.Steps))
	for i, s := range p.Steps {
		at := fmt.Sprintf("plan steps[%d] (%s %s)", i, s.Action, s.ID)
		rule, _ := Rule(s.Action) // checkStep found it
		var art string
		for _, o := range s.Outputs {
			a, _, entry := CutEntry(o)
			if art != "" && a != art && s.Action != ActionRelease {
				return fmt.Errorf("%s: outputs in both %s and %s", at, art, a)
			}
			art = a
			if _, ok := declared[a]; !ok {
				return fmt.Errorf("%s: output %q belongs to no target's artifact", at, o)
			}
			switch isEntry := rule.Entries; {
			case isEntry && !entry:
				return fmt.Errorf("%s: output %q: a %s step writes entries inside a pack", at, o, s.Action)
			case !isEntry && entry:
				return fmt.Errorf("%s: output %q: a %s step writes whole artifacts", at, o, s.Action)
			}
			if entry {
				continue
			}
			if prev, ok := made[a]; ok {
				return fmt.Errorf("%s: artifact %s is also made by step %s", at, a, prev)
			}
			made[a] = s.ID
		}
		if len(s.Outputs) == 0 {
			return fmt.Errorf("%s: no outputs", at)
		}
		targetOf[i] = targets[declared[art]]
		switch s.Action {
		case ActionPack:
			if len(s.Outputs) != 1 {
				return fmt.Errorf("%s: a pack step writes one artifact", at)
			}
			packOf[art] = s
		case ActionChecksum:
			if len(s.Outputs) != 1 {
				return fmt.Errorf("%s: a checksum step writes one artifact", at)
			}
			pk := p.step(s.Needs[0])
			if len(pk.Outputs) != 1 || pk.Outputs[0]+".sha256" != art {
				return fmt.Errorf("%s: writes %s, the checksum of %s, from pack step %s, which writes %s", at, art, strings.TrimSuffix(art, ".sha256"), pk.ID, strings.Join(pk.Outputs, ", "))
			}
		case ActionPackIndex:
			indexOf[art] = append(indexOf[art], s)
		case ActionRelease:
			// Its outputs are its target's artifacts, exactly.
			for _, t := range p.Targets {
				if t.Name == declared[art] && (t.Kind != TargetRelease || !slices.Equal(t.Artifacts, s.Outputs)) {
					return fmt.Errorf("%s: outputs %q are not release target %s's artifacts %q", at, s.Outputs, t.Name, t.Artifacts)
				}
			}
			releaseOf[declared[art]] = s
		case ActionGoBuild:
			builtIn[art] = s.ID
		default:
			entryOf[art] = append(entryOf[art], s.ID)
		}
	}
	for a, t := range declared {
		if _, ok := made[a]; !ok {
			return fmt.Errorf("plan target %s: no step makes artifact %s", t, a)
		}
	}
	for a, pk := range packOf {
		if len(indexOf[a]) != 1 {
			return fmt.Errorf("plan: pack %s has %d pack-index steps, want 1", a, len(indexOf[a]))
		}
		ix := indexOf[a][0]
		entries := slices.Sorted(slices.Values(entryOf[a]))
		if got := slices.Sorted(slices.Values(ix.Needs)); !slices.Equal(got, entries) {
			return fmt.Errorf("plan: pack-index step %s of %s needs %d steps, the pack has %d entry steps", ix.ID, a, len(got), len(entries))
		}
		want := slices.Sorted(slices.Values(append([]string{ix.ID}, entries...)))
		if got := slices.Sorted(slices.Values(pk.Needs)); !slices.Equal(got, want) {
			return fmt.Errorf("plan: pack step %s of %s needs %d steps, want its pack-index step and the %d entry steps", pk.ID, a, len(got), len(entries))
		}
		bundles := 0
		for _, in := range p.Inputs {
			if in.Kind == KindBundle {
				bundles++
			}
		}
		if len(ix.Inputs) != bundles {
			return fmt.Errorf("plan: pack-index step %s of %s names %d of the plan's %d bundles", ix.ID, a, len(ix.Inputs), bundles)
		}
	}
	for a := range entryOf {
		if _, ok := packOf[a]; !ok {
			return fmt.Errorf("plan: entries of %s, which no pack step writes", a)
		}
	}
	for i, t := range p.Targets {
		if _, ok := releaseOf[t.Name]; ok != (t.Kind == TargetRelease) {
			return fmt.Errorf("plan targets[%d] (%s): a %s target is built by a release step exactly when it is a release", i, t.Name, t.Kind)
		}
	}
	for a, id := range builtIn {
		rel, ok := releaseOf[declared[a]]
		if !ok || made[a] != rel.ID || !slices.Contains(rel.Needs, id) {
			return fmt.Errorf("plan: go-build step %s writes into %s, which no release step needing it writes", id, a)
		}
		if want := rel.Params[ParamRunner] + ".tar.gz"; a != want {
			return fmt.Errorf("plan: go-build step %s writes into %s, not the runner bundle %s", id, a, want)
		}
	}
	// Last, the paths: every step declares exactly what its row makes.
	for i, s := range p.Steps {
		if err := p.checkOutputs(targetOf[i], s); err != nil {
			return fmt.Errorf("plan steps[%d] (%s %s): %w", i, s.Action, s.ID, err)
		}
	}
	return nil
}

// step returns the step with id, or a zero step.
func (p *Plan) step(id string) Step {
	for _, s := range p.Steps {
		if s.ID == id {
			return s
		}
	}
	return Step{}
}
