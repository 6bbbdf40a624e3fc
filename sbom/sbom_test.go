package sbom

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx"
	"github.com/spdx/tools-golang/spdxlib"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var buildTime = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// fileFrom is FileOf over bytes in memory.
func fileFrom(t *testing.T, name string, data []byte) File {
	t.Helper()
	f, err := FileOf(name, bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func textInput(t *testing.T) Input {
	return Input{
		Name: "aoc-backfill-runner", Version: "19.5.0",
		Supplier: "Organization: StellaOps", License: "AGPL-3.0-or-later",
		Tool: "bale-v0.0.0-test", Created: buildTime,
		ArchiveName:   "aoc-backfill-runner.tar.gz",
		ArchiveSHA256: strings.Repeat("ab", 32),
		Files: []File{
			fileFrom(t, "scripts/run.sh", []byte("#!/bin/sh\necho run\n")),
			fileFrom(t, "README.md", []byte("# runner\n")),
			fileFrom(t, "config/backfill.yaml", []byte("tenant: dev\n")),
		},
	}
}

// validate parses doc with the SPDX project's Go library, runs its
// document validation, and checks what SPDX 2.3 makes mandatory for the
// elements bale writes.
func validate(t *testing.T, data []byte) *spdx.Document {
	t.Helper()
	doc, err := spdxjson.Read(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("tools-golang cannot parse the SBOM: %v", err)
	}
	if err := spdxlib.ValidateDocument(doc); err != nil {
		t.Fatalf("tools-golang: invalid SBOM: %v", err)
	}
	if doc.SPDXVersion != "SPDX-2.3" || doc.DataLicense != "CC0-1.0" || doc.DocumentName == "" ||
		doc.CreationInfo == nil || len(doc.CreationInfo.Creators) == 0 || doc.CreationInfo.Created == "" {
		t.Fatalf("document header incomplete: %+v", doc)
	}
	if strings.Contains(doc.DocumentNamespace, "#") || !strings.HasPrefix(doc.DocumentNamespace, "https://") {
		t.Errorf("documentNamespace %q is not an absolute URI without #", doc.DocumentNamespace)
	}
	idRE := regexp.MustCompile(`^SPDXRef-[A-Za-z0-9.-]+$`)
	seen := map[string]bool{}
	for _, p := range doc.Packages {
		id := string(p.PackageSPDXIdentifier)
		if !idRE.MatchString("SPDXRef-"+id) || seen[id] {
			t.Errorf("package id %q invalid or repeated", id)
		}
		seen[id] = true
		if p.PackageName == "" || p.PackageDownloadLocation == "" {
			t.Errorf("package %s: name or downloadLocation missing", id)
		}
		if p.FilesAnalyzed && (p.PackageVerificationCode == nil || len(p.PackageVerificationCode.Value) != 40) {
			t.Errorf("package %s: filesAnalyzed without a verification code", id)
		}
	}
	for _, f := range doc.Files {
		id := string(f.FileSPDXIdentifier)
		if seen[id] {
			t.Errorf("file id %q repeated", id)
		}
		seen[id] = true
		algs := map[string]bool{}
		for _, c := range f.Checksums {
			algs[string(c.Algorithm)] = true
		}
		if !algs["SHA1"] || !algs["SHA256"] {
			t.Errorf("file %s: checksums %v, want SHA1 and SHA256", f.FileName, f.Checksums)
		}
	}
	return doc
}

func TestMarshalGolden(t *testing.T) {
	got, err := Marshal(textInput(t))
	if err != nil {
		t.Fatal(err)
	}
	validate(t, got)
	// Input order does not matter.
	in := textInput(t)
	slices.Reverse(in.Files)
	again, err := Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, again) {
		t.Fatal("file order changes the SBOM")
	}
	golden := filepath.Join("testdata", "text.spdx.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("SBOM differs from %s (-update to rewrite):\n%s", golden, got)
	}

	doc, err := Parse(got)
	if err != nil {
		t.Fatal(err)
	}
	sums, err := doc.FileChecksums()
	if err != nil {
		t.Fatal(err)
	}
	if sums["README.md"]["SHA256"] != textInput(t).Files[1].SHA256 {
		t.Errorf("FileChecksums: %v", sums)
	}

	// A changed file changes the namespace (derived from the contents).
	in = textInput(t)
	in.Files[0] = fileFrom(t, "scripts/run.sh", []byte("#!/bin/sh\necho changed\n"))
	changed, _ := New(in)
	orig, _ := New(textInput(t))
	if changed.DocumentNamespace == orig.DocumentNamespace {
		t.Error("documentNamespace does not follow the contents")
	}
}

func TestNewRefuses(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Input)
		want string
	}{
		{"no version", func(in *Input) { in.Version = "" }, "name and a version"},
		{"no tool", func(in *Input) { in.Tool = "" }, "creator tool"},
		{"no time", func(in *Input) { in.Created = time.Time{} }, "build timestamp"},
		{"absolute file", func(in *Input) { in.Files[0].Name = "/etc/passwd" }, `file name "/etc/passwd"`},
		{"duplicate file", func(in *Input) { in.Files[1] = in.Files[0] }, "listed twice"},
		{"bad checksum", func(in *Input) { in.Files[0].SHA1 = "xyz" }, "checksums"},
		{"bad archive digest", func(in *Input) { in.ArchiveSHA256 = "AB" }, "archive sha256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := textInput(t)
			tt.edit(&in)
			if _, err := New(in); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want %q", err, tt.want)
			}
		})
	}
}

// buildGoBinary builds testdata/gobin (which links klauspost/compress and
// x/sync from bale's go.mod) as a release would: -trimpath, no cgo, no VCS
// stamping.
func buildGoBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a Go binary")
	}
	out := filepath.Join(t.TempDir(), "gobin")
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-o", out, "./testdata/gobin")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=readonly")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

// goVersionM lists the modules `go version -m` reports for a binary: the
// go tool's own reading of the same build information, as "path@version".
func goVersionM(t *testing.T, bin string) (main string, deps []string) {
	t.Helper()
	b, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatalf("go version -m: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "mod":
			main = f[1]
		case len(f) >= 3 && f[0] == "dep":
			deps = append(deps, f[1]+"@"+f[2])
		case len(f) >= 3 && f[0] == "=>":
			deps[len(deps)-1] = f[1] + "@" + f[2]
		}
	}
	return main, deps
}

func TestGoBinary(t *testing.T) {
	bin := buildGoBinary(t)
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	f := fileFrom(t, "bin/gobin", data)
	if f.Go == nil {
		t.Fatal("FileOf did not read the Go build information")
	}
	wantMain, wantDeps := goVersionM(t, bin)
	if f.Go.Main.Path != wantMain || f.Go.Main.Path != "github.com/bale-build/bale" {
		t.Errorf("main module %q, go version -m says %q", f.Go.Main.Path, wantMain)
	}
	if len(wantDeps) < 2 {
		t.Fatalf("go version -m lists %v: the fixture should link two modules", wantDeps)
	}

	in := textInput(t)
	in.Files = append(in.Files, f)
	out, err := Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	doc := validate(t, out)

	// Every module go version -m lists is a package with its purl, and the
	// main module DEPENDS_ON it.
	byPurl := map[string]string{} // purl → SPDXID
	for _, p := range doc.Packages {
		for _, r := range p.PackageExternalReferences {
			if r.RefType == "purl" {
				byPurl[r.Locator] = string(p.PackageSPDXIdentifier)
			}
		}
	}
	mainID := byPurl["pkg:golang/github.com/bale-build/bale"]
	if mainID == "" {
		t.Fatalf("no package for the main module; purls %v", byPurl)
	}
	rels := map[string]bool{}
	for _, r := range doc.Relationships {
		rels[string(r.RefA.ElementRefID)+" "+r.Relationship+" "+string(r.RefB.ElementRefID)] = true
	}
	for _, d := range append(wantDeps, "stdlib@"+f.Go.GoVersion) {
		path, version, _ := strings.Cut(d, "@")
		purl := "pkg:golang/" + path + "@" + version
		id := byPurl[purl]
		if id == "" {
			t.Errorf("module %s missing (want purl %s)", d, purl)
			continue
		}
		if !rels[mainID+" DEPENDS_ON "+id] {
			t.Errorf("no %s DEPENDS_ON %s", mainID, id)
		}
	}
	for _, want := range []string{"pkg:golang/github.com/klauspost/compress@v1.20.3", "pkg:golang/golang.org/x/sync@"} {
		found := false
		for purl := range byPurl {
			found = found || strings.HasPrefix(purl, want)
		}
		if !found {
			t.Errorf("no purl %s…", want)
		}
	}
	var fileID string
	for _, df := range doc.Files {
		if df.FileName == "./bin/gobin" {
			fileID = string(df.FileSPDXIdentifier)
		}
	}
	if !rels[fileID+" CONTAINS "+mainID] {
		t.Errorf("binary %s does not CONTAIN the main module %s", fileID, mainID)
	}

	// The same binary built again is the same bytes, so the same SBOM.
	data2, err := os.ReadFile(buildGoBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	in.Files[len(in.Files)-1] = fileFrom(t, "bin/gobin", data2)
	out2, _ := Marshal(in)
	if !bytes.Equal(out, out2) {
		t.Error("rebuilding the binary changed the SBOM")
	}

	// cmd/bale's TestReleaseSBOMAgainstSyft checks the same reading
	// against syft, where syft is installed.
}

func TestFileOfNotGo(t *testing.T) {
	for _, p := range []string{"/bin/sh", "testdata/gobin/main.go"} {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if f := fileFrom(t, "x", data); f.Go != nil {
			t.Errorf("%s read as a Go binary: %+v", p, f.Go)
		}
	}
	// Truncated Go binary: hashed, no Go part, no error or panic.
	if f := fileFrom(t, "x", []byte("\x7fELF\x02\x01\x01")); f.Go != nil || f.Size != 7 {
		t.Errorf("truncated ELF: %+v", f)
	}
}

// TestModulePurl: a module's purl percent-encodes what the purl
// specification reserves, as syft and OSV write it: "+incompatible" is
// "%2Bincompatible" (syft's purl and bale's differed for every
// +incompatible module; TestReleaseSBOMAgainstSyft found it).
func TestModulePurl(t *testing.T) {
	for _, tc := range []struct {
		m    Module
		want string
	}{
		{Module{"github.com/docker/cli", "v29.7.2+incompatible"}, "pkg:golang/github.com/docker/cli@v29.7.2%2Bincompatible"},
		{Module{"golang.org/x/sync", "v0.10.0"}, "pkg:golang/golang.org/x/sync@v0.10.0"},
		{Module{"example.com/m", "v0.0.0-20250101000000-abcdef012345"}, "pkg:golang/example.com/m@v0.0.0-20250101000000-abcdef012345"},
		{Module{"example.com/a~b_c", "(devel)"}, "pkg:golang/example.com/a~b_c"},
	} {
		if got := modulePackage(tc.m).ExternalRefs[0].Locator; got != tc.want {
			t.Errorf("%s@%s: purl %s, want %s", tc.m.Path, tc.m.Version, got, tc.want)
		}
	}
}
