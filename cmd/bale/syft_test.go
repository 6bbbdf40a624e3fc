package main

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bale-build/bale/sbom"
	"github.com/bale-build/bale/testsupport/tooltest"
)

// TestReleaseSBOMAgainstSyft runs syft, an independent SBOM generator, on
// the runner binary of the kit bale build wrote for specs/aoc: every Go
// module syft finds is in the kit's SBOM, at the same version and purl. The
// runner links only the standard library, so the same check runs on this
// test binary (bale's whole dependency tree) through the same sbom code.
func TestReleaseSBOMAgainstSyft(t *testing.T) {
	syft := tooltest.Lookup(t, "BALE_SYFT", "syft")
	out, _ := buildAOC(t)
	bin := tarMember(t, filepath.Join(out, aocRunner), "bin/aoc-backfill")
	data, err := os.ReadFile(filepath.Join(out, "aoc-backfill-runner.sbom.json"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := sbom.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if n := checkSyft(t, syft, bin, doc); n < 1 {
		t.Errorf("syft finds %d Go modules in the runner, want at least its main module", n)
	}

	t.Run("bale test binary", func(t *testing.T) {
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(exe)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		file, err := sbom.FileOf("bin/bale.test", f, st.Size())
		if err != nil {
			t.Fatal(err)
		}
		doc, err := sbom.New(sbom.Input{Name: "bale-test", Version: "0", Tool: "bale-test", Created: time.Unix(0, 0), Files: []sbom.File{file}})
		if err != nil {
			t.Fatal(err)
		}
		if n := checkSyft(t, syft, exe, doc); n < 20 {
			t.Errorf("syft finds %d Go modules in bale's test binary; it links far more", n)
		}
	})
}

// checkSyft runs syft on the binary at bin and fails the test for every Go
// module (a package with a pkg:golang purl) that doc does not list at the
// same name and version with the same purl. It returns how many modules
// syft found. Two readings differ by design and are compared by name only:
// the main module, whose version syft may guess from -X ldflags where the
// build information says "(devel)", and the standard library, which syft
// versions name with or without the "go" prefix.
func checkSyft(t *testing.T, syft, bin string, doc *sbom.Document) int {
	t.Helper()
	// "syft SOURCE" is the scan in every release (v0.x's "packages",
	// v1's "scan"); -q keeps the log off stdout.
	cmd := exec.Command(syft, "file:"+bin, "-o", "spdx-json", "-q")
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CACHE_HOME="+home, "SYFT_CHECK_FOR_APP_UPDATE=false")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("syft file:%s: %v\n%s", bin, err, stderr.String())
	}
	var theirs struct {
		Packages []struct {
			Name         string `json:"name"`
			VersionInfo  string `json:"versionInfo"`
			ExternalRefs []struct {
				Type    string `json:"referenceType"`
				Locator string `json:"referenceLocator"`
			} `json:"externalRefs"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(stdout, &theirs); err != nil {
		t.Fatalf("syft's SPDX JSON: %v", err)
	}

	type module struct{ version, purl string }
	ours := map[string][]module{}
	main := map[string]bool{}
	for _, p := range doc.Packages {
		for _, r := range p.ExternalRefs {
			if r.Type == "purl" && strings.HasPrefix(r.Locator, "pkg:golang/") {
				ours[p.Name] = append(ours[p.Name], module{p.VersionInfo, r.Locator})
			}
		}
	}
	// The main module is the one a file CONTAINS.
	for _, r := range doc.Relationships {
		if r.Type == "CONTAINS" && strings.HasPrefix(r.Element, "SPDXRef-File-") {
			for _, p := range doc.Packages {
				if p.SPDXID == r.Related {
					main[p.Name] = true
				}
			}
		}
	}

	found := 0
	for _, p := range theirs.Packages {
		purl := ""
		for _, r := range p.ExternalRefs {
			if r.Type == "purl" && strings.HasPrefix(r.Locator, "pkg:golang/") {
				purl, _, _ = strings.Cut(r.Locator, "?")
			}
		}
		if purl == "" {
			continue
		}
		found++
		have := ours[p.Name]
		switch {
		case len(have) == 0:
			t.Errorf("%s: syft finds Go module %s %s (%s); bale's SBOM lacks it", filepath.Base(bin), p.Name, p.VersionInfo, purl)
		case main[p.Name] || p.Name == "stdlib":
			if p.Name == "stdlib" && strings.TrimPrefix(have[0].version, "go") != strings.TrimPrefix(p.VersionInfo, "go") {
				t.Errorf("%s: syft finds the standard library %s, bale's SBOM says %s", filepath.Base(bin), p.VersionInfo, have[0].version)
			}
		default:
			ok := false
			for _, m := range have {
				ok = ok || (m.version == p.VersionInfo && m.purl == purl)
			}
			if !ok {
				t.Errorf("%s: syft finds Go module %s %s (%s); bale's SBOM has %v", filepath.Base(bin), p.Name, p.VersionInfo, purl, have)
			}
		}
	}
	t.Logf("%s: syft finds %d Go modules, compared with bale's SBOM", filepath.Base(bin), found)
	return found
}

// tarMember writes the member name of the gzip'd tar at archive to a
// temporary file and returns its path.
func tarMember(t *testing.T, archive, name string) string {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s has no member %s", archive, name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimPrefix(h.Name, "./") != name {
			continue
		}
		p := filepath.Join(t.TempDir(), filepath.Base(name))
		o, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(o, tr); err != nil {
			t.Fatal(err)
		}
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
		return p
	}
}
