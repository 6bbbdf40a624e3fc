package plan

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

func dg(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func sample() *Plan {
	p := &Plan{
		FormatVersion:   FormatVersion,
		Spec:            SpecRef{Digest: dg("spec")},
		SourceDateEpoch: "2025-01-01T00:00:00Z",
		Builder:         Builder{Tar: "t", Compressor: "c"},
		Targets:         []Target{{Kind: "bootstrapPack", Name: "p", Compression: Compression{"gzip", 1}, Artifacts: []string{"p.tar", "p.tar.sha256"}}},
		Inputs: []Input{
			{Kind: KindChart, Name: "web", Source: Source{Type: SourceDir, Path: "charts/web"}, Digest: dg("chart"), Size: 10, Chart: &Chart{Version: "1.0.0"}},
			{Kind: KindImage, Name: "web", Source: Source{Type: SourceRegistry, Ref: "r.example/web:1"}, Digest: dg("img"), Size: 5,
				Image: &Image{Tags: []string{"r.example/web:1"}, Manifests: []Manifest{{Digest: dg("img"), Size: 5, MediaType: "m", Config: Blob{Digest: dg("cfg"), Size: 2}}}}},
		},
	}
	var ids []string
	add := func(s Step) string {
		s.ID = StepID(s)
		p.Steps = append(p.Steps, s)
		return s.ID
	}
	chart := add(Step{Action: ActionChart, Inputs: []string{"chart/web"}, Params: map[string]string{ParamName: "web", ParamVersion: "1.0.0"}, Outputs: []string{"p.tar:charts/web-1.0.0.tgz"}})
	img := add(Step{Action: ActionImage, Inputs: []string{"image/web"}, Outputs: []string{"p.tar:images/blobs/sha256/" + dg("img")[7:], "p.tar:images/blobs/sha256/" + dg("cfg")[7:]}})
	layout := add(Step{Action: ActionOCILayout, Inputs: []string{"image/web"}, Needs: []string{img}, Outputs: []string{"p.tar:images/index.json", "p.tar:images/manifest.json", "p.tar:images/oci-layout"}})
	ids = append(ids, chart, img, layout)
	index := add(Step{Action: ActionPackIndex, Needs: ids, Outputs: []string{"p.tar:pack-index.json"}})
	pk := add(Step{Action: ActionPack, Needs: append([]string{index}, ids...), Params: map[string]string{"level": "1", "compression": "gzip"}, Outputs: []string{"p.tar"}})
	add(Step{Action: ActionChecksum, Needs: []string{pk}, Outputs: []string{"p.tar.sha256"}})
	return p
}

func TestRoundTrip(t *testing.T) {
	b, err := Marshal(sample())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(b, []byte("}\n")) || !bytes.HasPrefix(b, []byte("{\n  \"formatVersion\": 2,\n  \"spec\"")) {
		t.Errorf("not canonical:\n%s", b)
	}
	if bytes.Index(b, []byte(`"compression": "gzip"`)) > bytes.Index(b, []byte(`"level": "1"`)) {
		t.Error("params are not encoded with sorted keys")
	}
	p, err := Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	again, _ := Marshal(p)
	if !bytes.Equal(b, again) || ID(b) != ID(again) {
		t.Error("decode + encode changed the bytes")
	}
	if in, ok := p.Input("image/web"); !ok || in.Digest != dg("img") {
		t.Errorf("Input lookup: %v %+v", ok, in)
	}
	if _, ok := p.Input("image/nope"); ok {
		t.Error("Input found a missing key")
	}
}

// TestDecodeHostile: a plan file is input like any other.
func TestDecodeHostile(t *testing.T) {
	good, _ := Marshal(sample())
	tests := []struct {
		name string
		edit func(string) string
		want string
	}{
		{"not json", func(string) string { return "{" }, "decode plan"},
		{"trailing data", func(s string) string { return s + "{}" }, "trailing data"},
		{"unknown field", func(s string) string {
			return strings.Replace(s, `"formatVersion": 2,`, `"formatVersion": 2, "extra": 1,`, 1)
		}, `unknown field "extra"`},
		{"future format", func(s string) string { return strings.Replace(s, `"formatVersion": 2`, `"formatVersion": 9`, 1) }, "formatVersion 9"},
		{"bad spec digest", func(s string) string { return strings.Replace(s, dg("spec"), "sha256:xyz", 1) }, "spec.digest"},
		{"bad timestamp", func(s string) string { return strings.Replace(s, "2025-01-01T00:00:00Z", "yesterday", 1) }, "sourceDateEpoch"},
		{"traversal digest", func(s string) string { return strings.Replace(s, dg("cfg"), "sha256:../../../../etc/passwd", 1) }, "blob"},
		{"path leaves workspace", func(s string) string { return strings.Replace(s, `"charts/web"`, `"../../etc"`, 1) }, "leaves the workspace"},
		{"absolute path", func(s string) string { return strings.Replace(s, `"charts/web"`, `"/etc"`, 1) }, "leaves the workspace"},
		{"edited step", func(s string) string { return strings.Replace(s, `"level": "1"`, `"level": "9"`, 1) }, "does not match its content"},
		{"output escapes", func(s string) string {
			return strings.Replace(s, `"p.tar:charts/web-1.0.0.tgz"`, `"p.tar:../x"`, 1)
		}, "does not match its content"},
		{"target name escapes", func(s string) string { return strings.Replace(s, `"name": "p"`, `"name": "../p"`, 1) }, "not a safe file name"},
		{"unsorted inputs", func(s string) string {
			return strings.Replace(strings.Replace(s, `"kind": "chart"`, `"kind": "zzz"`, 1), `"chart/web"`, `"zzz/web"`, 1)
		}, "not sorted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(strings.NewReader(tt.edit(string(good))))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestValidateStepOrder: a step may only need earlier steps, and only
// known inputs; these are checked even when the id is recomputed.
func TestValidateStepOrder(t *testing.T) {
	p := sample()
	n := len(p.Steps)
	p.Steps[n-2], p.Steps[n-1] = p.Steps[n-1], p.Steps[n-2]
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "not an earlier step") {
		t.Errorf("out-of-order steps: %v", err)
	}
	p = sample()
	p.Steps[0].Inputs = []string{"chart/nope"}
	p.Steps[0].ID = StepID(p.Steps[0])
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "unknown input") {
		t.Errorf("unknown input: %v", err)
	}
	p = sample()
	p.Steps[0].Outputs = []string{"p.tar:../../x"}
	p.Steps[0].ID = StepID(p.Steps[0])
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "leaves the output directory") {
		t.Errorf("escaping output: %v", err)
	}
}

func TestValidPathAndDigest(t *testing.T) {
	for p, want := range map[string]bool{
		"a/b": true, "a": true, "": false, "/a": false, "..": false, "../a": false, "a/../b": false,
		"a//b": false, "a/./b": false, `a\b`: false, "a\x00": false, "..a": true,
	} {
		if got := ValidPath(p); got != want {
			t.Errorf("ValidPath(%q) = %v, want %v", p, got, want)
		}
	}
	for d, want := range map[string]bool{
		dg("x"): true, strings.ToUpper(dg("x")): false, "sha256:" + strings.Repeat("a", 63): false,
		"sha512:" + strings.Repeat("a", 64): false, "sha256:" + strings.Repeat("g", 64): false,
	} {
		if got := ValidDigest(d); got != want {
			t.Errorf("ValidDigest(%q) = %v, want %v", d, got, want)
		}
	}
}

func TestFilterIndex(t *testing.T) {
	idx := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` +
		`{"mediaType":"m","digest":"` + dg("amd") + `","size":1,"platform":{"os":"linux","architecture":"amd64"}},` +
		`{"mediaType":"m","digest":"` + dg("arm") + `","size":2,"platform":{"os":"linux","architecture":"arm64"}},` +
		`{"mediaType":"m","digest":"` + dg("s390") + `","size":3,"platform":{"os":"linux","architecture":"s390x"}}],` +
		`"annotations":{"b":"2","a":"1"}}`
	got, err := FilterIndex([]byte(idx), map[string]bool{dg("s390"): true, dg("amd"): true})
	if err != nil {
		t.Fatal(err)
	}
	// Top-level keys are sorted; nested values keep their bytes.
	want := `{"annotations":{"b":"2","a":"1"},"manifests":[` +
		`{"mediaType":"m","digest":"` + dg("amd") + `","size":1,"platform":{"os":"linux","architecture":"amd64"}},` +
		`{"mediaType":"m","digest":"` + dg("s390") + `","size":3,"platform":{"os":"linux","architecture":"s390x"}}],` +
		`"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}`
	if string(got) != want {
		t.Errorf("FilterIndex:\n got %s\nwant %s", got, want)
	}
	if _, err := FilterIndex([]byte(idx), map[string]bool{dg("none"): true}); err == nil {
		t.Error("a filter that keeps nothing must fail")
	}
	if _, err := FilterIndex([]byte(`{"manifests":{}}`), nil); err == nil {
		t.Error("a malformed index must fail")
	}
}
