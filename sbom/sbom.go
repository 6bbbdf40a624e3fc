// Package sbom writes SPDX 2.3 JSON software bills of materials for release
// bundles, from the bundle's real contents.
//
// The document is a pure function of its Input: created is the build
// timestamp, the namespace and every SPDXID are derived from digests, and
// packages, files and relationships are sorted, so a rebuild writes the
// same bytes. Every file carries SHA1 (required by SPDX 2.3) and SHA256
// checksums. A file that is a Go binary contributes its main module and
// every dependency recorded in its build information (debug/buildinfo) as
// packages with pkg:golang purls:
//
//	root package  CONTAINS    file
//	file          CONTAINS    main module
//	main module   DEPENDS_ON  each dependency (and the Go standard library)
package sbom

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/bale-build/bale/internal/canonjson"
	"github.com/bale-build/bale/internal/digest"
	"github.com/bale-build/bale/internal/strictjson"
)

// SPDX constants bale writes.
const (
	SPDXVersion   = "SPDX-2.3"
	DataLicense   = "CC0-1.0"
	DocumentID    = "SPDXRef-DOCUMENT"
	NoAssertion   = "NOASSERTION"
	namespaceBase = "https://github.com/bale-build/bale/spdx/"
)

// File is one file of the bundle with its digests and, for a Go binary, its
// build information. FileOf fills it from the file's bytes.
type File struct {
	Name   string // path inside the bundle (its dest), slash-separated
	Size   int64
	SHA1   string // hex
	SHA256 string // hex
	Go     *GoBinary
}

// GoBinary is what debug/buildinfo reports about a Go executable.
type GoBinary struct {
	GoVersion string   // "go1.26.8"
	Main      Module   // the main module
	Deps      []Module // every dependency module linked in, replacements applied
}

// Module is a Go module at a version.
type Module struct {
	Path    string
	Version string
}

// FileOf hashes the file r (size bytes) and reads its Go build information
// when it is a Go executable (ELF, Mach-O, PE, XCOFF or wasm with a Go build
// info blob); other files simply have no Go part.
func FileOf(name string, r io.ReaderAt, size int64) (File, error) {
	h1, h256 := sha1.New(), sha256.New()
	n, err := io.Copy(io.MultiWriter(h1, h256), io.NewSectionReader(r, 0, size))
	if err != nil {
		return File{}, fmt.Errorf("sbom: hash %s: %w", name, err)
	}
	if n != size {
		return File{}, fmt.Errorf("sbom: hash %s: read %d bytes, want %d", name, n, size)
	}
	f := File{Name: name, Size: size, SHA1: hex.EncodeToString(h1.Sum(nil)), SHA256: hex.EncodeToString(h256.Sum(nil))}
	if bi, err := buildinfo.Read(io.NewSectionReader(r, 0, size)); err == nil {
		f.Go = goBinary(bi)
	}
	return f, nil
}

// goBinary keeps from bi what the SBOM records; a replaced dependency is
// recorded as its replacement, which is what was compiled in.
func goBinary(bi *buildinfo.BuildInfo) *GoBinary {
	g := &GoBinary{GoVersion: bi.GoVersion, Main: Module{Path: bi.Main.Path, Version: bi.Main.Version}}
	if g.Main.Path == "" {
		// go run / a package outside any module: the main package path.
		g.Main.Path = bi.Path
	}
	for _, d := range bi.Deps {
		m := Module{Path: d.Path, Version: d.Version}
		if d.Replace != nil {
			m = Module{Path: d.Replace.Path, Version: d.Replace.Version}
		}
		g.Deps = append(g.Deps, m)
	}
	return g
}

// Input describes the bundle the SBOM is for.
type Input struct {
	Name     string    // the bundle's name, e.g. "aoc-backfill-runner"
	Version  string    // its version
	Supplier string    // SPDX supplier, e.g. "Organization: StellaOps"; empty: NOASSERTION
	License  string    // declared SPDX license expression; empty: NOASSERTION
	Tool     string    // the creator tool, e.g. "bale-v0.3.0" ("Tool: " is added)
	Created  time.Time // the build timestamp
	// ArchiveName and ArchiveSHA256 name the bundle's tarball, when known;
	// they become the root package's packageFileName and checksum.
	ArchiveName   string
	ArchiveSHA256 string
	Files         []File
}

// Document is an SPDX 2.3 document in its JSON form (the subset bale
// writes), field order as SPDX's examples.
type Document struct {
	SPDXVersion       string         `json:"spdxVersion"`
	DataLicense       string         `json:"dataLicense"`
	SPDXID            string         `json:"SPDXID"`
	Name              string         `json:"name"`
	DocumentNamespace string         `json:"documentNamespace"`
	CreationInfo      CreationInfo   `json:"creationInfo"`
	Packages          []Package      `json:"packages"`
	Files             []DocFile      `json:"files"`
	Relationships     []Relationship `json:"relationships"`
}

// CreationInfo is SPDX's creationInfo.
type CreationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

// Package is an SPDX package.
type Package struct {
	Name                    string            `json:"name"`
	SPDXID                  string            `json:"SPDXID"`
	VersionInfo             string            `json:"versionInfo,omitempty"`
	PackageFileName         string            `json:"packageFileName,omitempty"`
	Supplier                string            `json:"supplier,omitempty"`
	DownloadLocation        string            `json:"downloadLocation"`
	FilesAnalyzed           bool              `json:"filesAnalyzed"`
	PackageVerificationCode *VerificationCode `json:"packageVerificationCode,omitempty"`
	Checksums               []Checksum        `json:"checksums,omitempty"`
	LicenseConcluded        string            `json:"licenseConcluded"`
	LicenseDeclared         string            `json:"licenseDeclared"`
	CopyrightText           string            `json:"copyrightText"`
	ExternalRefs            []ExternalRef     `json:"externalRefs,omitempty"`
	PrimaryPackagePurpose   string            `json:"primaryPackagePurpose,omitempty"`
}

// VerificationCode is SPDX's packageVerificationCode.
type VerificationCode struct {
	Value string `json:"packageVerificationCodeValue"`
}

// Checksum is an SPDX checksum.
type Checksum struct {
	Algorithm string `json:"algorithm"`
	Value     string `json:"checksumValue"`
}

// ExternalRef is an SPDX external reference (bale writes purls).
type ExternalRef struct {
	Category string `json:"referenceCategory"`
	Type     string `json:"referenceType"`
	Locator  string `json:"referenceLocator"`
}

// DocFile is an SPDX file.
type DocFile struct {
	FileName         string     `json:"fileName"`
	SPDXID           string     `json:"SPDXID"`
	FileTypes        []string   `json:"fileTypes,omitempty"`
	Checksums        []Checksum `json:"checksums"`
	LicenseConcluded string     `json:"licenseConcluded"`
	CopyrightText    string     `json:"copyrightText"`
}

// Relationship is an SPDX relationship.
type Relationship struct {
	Element string `json:"spdxElementId"`
	Type    string `json:"relationshipType"`
	Related string `json:"relatedSpdxElement"`
}

// New builds the document for in.
func New(in Input) (*Document, error) {
	switch {
	case in.Name == "" || in.Version == "":
		return nil, errors.New("sbom: the bundle needs a name and a version")
	case in.Tool == "":
		return nil, errors.New("sbom: no creator tool")
	case in.Created.IsZero():
		return nil, errors.New("sbom: no build timestamp")
	case in.ArchiveSHA256 != "" && !digest.LowerHex(in.ArchiveSHA256, sha256.Size):
		return nil, fmt.Errorf("sbom: archive sha256 %q is not 64 lowercase hex digits", in.ArchiveSHA256)
	}
	files := slices.Clone(in.Files)
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	for i, f := range files {
		switch {
		case f.Name == "" || strings.HasPrefix(f.Name, "/") || strings.Contains(f.Name, "\\"):
			return nil, fmt.Errorf("sbom: file name %q: want a relative slash-separated path", f.Name)
		case !digest.LowerHex(f.SHA1, sha1.Size) || !digest.LowerHex(f.SHA256, sha256.Size):
			return nil, fmt.Errorf("sbom: file %s: checksums are not lowercase hex SHA1 and SHA256", f.Name)
		case i > 0 && files[i-1].Name == f.Name:
			return nil, fmt.Errorf("sbom: file %s listed twice", f.Name)
		}
	}

	// The content id: the sha256 of the bundle's sha256sum listing, so the
	// namespace and root id change exactly when a file or name does.
	var listing bytes.Buffer
	for _, f := range files {
		fmt.Fprintf(&listing, "%s  %s\n", f.SHA256, f.Name)
	}
	content := sha256.Sum256(listing.Bytes())
	contentHex := hex.EncodeToString(content[:])

	rootID := "SPDXRef-Package-" + idSafe(in.Name) + "-" + contentHex[:16]
	root := Package{
		Name:                    in.Name,
		SPDXID:                  rootID,
		VersionInfo:             in.Version,
		PackageFileName:         in.ArchiveName,
		Supplier:                orNoAssertion(in.Supplier),
		DownloadLocation:        NoAssertion,
		FilesAnalyzed:           true,
		PackageVerificationCode: &VerificationCode{Value: verificationCode(files)},
		LicenseConcluded:        NoAssertion,
		LicenseDeclared:         orNoAssertion(in.License),
		CopyrightText:           NoAssertion,
		PrimaryPackagePurpose:   "APPLICATION",
	}
	if in.ArchiveSHA256 != "" {
		root.Checksums = []Checksum{{Algorithm: "SHA256", Value: in.ArchiveSHA256}}
	}

	doc := &Document{
		SPDXVersion:       SPDXVersion,
		DataLicense:       DataLicense,
		SPDXID:            DocumentID,
		Name:              in.Name + "-" + in.Version,
		DocumentNamespace: namespaceBase + url.PathEscape(in.Name) + "-" + url.PathEscape(in.Version) + "-" + contentHex,
		CreationInfo: CreationInfo{
			Created:  in.Created.UTC().Format("2006-01-02T15:04:05Z"),
			Creators: []string{"Tool: " + in.Tool},
		},
		Files: []DocFile{},
		Relationships: []Relationship{
			{Element: DocumentID, Type: "DESCRIBES", Related: rootID},
		},
	}

	mods := map[string]Package{} // by SPDXID
	for _, f := range files {
		fileID := "SPDXRef-File-" + shortHash(f.Name+"\x00"+f.SHA256)
		df := DocFile{
			FileName: "./" + f.Name,
			SPDXID:   fileID,
			Checksums: []Checksum{
				{Algorithm: "SHA1", Value: f.SHA1},
				{Algorithm: "SHA256", Value: f.SHA256},
			},
			LicenseConcluded: NoAssertion,
			CopyrightText:    NoAssertion,
		}
		doc.Relationships = append(doc.Relationships, Relationship{Element: rootID, Type: "CONTAINS", Related: fileID})
		if f.Go != nil {
			df.FileTypes = []string{"BINARY"}
			mainPkg := modulePackage(f.Go.Main)
			mods[mainPkg.SPDXID] = mainPkg
			doc.Relationships = append(doc.Relationships, Relationship{Element: fileID, Type: "CONTAINS", Related: mainPkg.SPDXID})
			deps := slices.Clone(f.Go.Deps)
			if f.Go.GoVersion != "" {
				deps = append(deps, Module{Path: "stdlib", Version: f.Go.GoVersion})
			}
			for _, d := range deps {
				p := modulePackage(d)
				mods[p.SPDXID] = p
				doc.Relationships = append(doc.Relationships, Relationship{Element: mainPkg.SPDXID, Type: "DEPENDS_ON", Related: p.SPDXID})
			}
		}
		doc.Files = append(doc.Files, df)
	}

	pkgs := make([]Package, 0, len(mods))
	for _, p := range mods {
		pkgs = append(pkgs, p)
	}
	slices.SortFunc(pkgs, func(a, b Package) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.VersionInfo, b.VersionInfo)
	})
	doc.Packages = append([]Package{root}, pkgs...)

	// DESCRIBES first, then the rest sorted; a dependency shared by two
	// binaries of the same main module is one relationship.
	rest := doc.Relationships[1:]
	slices.SortFunc(rest, func(a, b Relationship) int {
		return strings.Compare(a.Element+"\x00"+a.Type+"\x00"+a.Related, b.Element+"\x00"+b.Type+"\x00"+b.Related)
	})
	doc.Relationships = append(doc.Relationships[:1], slices.Compact(rest)...)
	return doc, nil
}

// Marshal is New followed by the document's fixed encoding: two-space
// indented JSON, no HTML escaping, a final newline.
func Marshal(in Input) ([]byte, error) {
	doc, err := New(in)
	if err != nil {
		return nil, err
	}
	b, err := canonjson.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("sbom: encode: %w", err)
	}
	return b, nil
}

// modulePackage is the SPDX package of a Go module, its SPDXID derived from
// path and version.
func modulePackage(m Module) Package {
	version := m.Version
	purlVersion := version
	if version == "" || version == "(devel)" {
		// A main module built from a work tree has no version; the purl then
		// carries none rather than an invented one.
		purlVersion = ""
	}
	purl := "pkg:golang/" + purlPath(m.Path)
	if purlVersion != "" {
		purl += "@" + purlEscape(purlVersion)
	}
	return Package{
		Name:                  m.Path,
		SPDXID:                "SPDXRef-Package-go-" + shortHash(m.Path+"@"+version),
		VersionInfo:           version,
		DownloadLocation:      NoAssertion,
		LicenseConcluded:      NoAssertion,
		LicenseDeclared:       NoAssertion,
		CopyrightText:         NoAssertion,
		ExternalRefs:          []ExternalRef{{Category: "PACKAGE-MANAGER", Type: "purl", Locator: purl}},
		PrimaryPackagePurpose: "LIBRARY",
	}
}

// purlPath escapes each segment of a module path for a purl (namespace and
// name segments are percent-encoded; "/" separates them).
func purlPath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = purlEscape(s)
	}
	return strings.Join(segs, "/")
}

// purlEscape percent-encodes a purl component: every byte but RFC 3986's
// unreserved characters, as the purl specification asks and as syft and
// OSV write them ("v3.5.1+incompatible" is "v3.5.1%2Bincompatible";
// url.PathEscape would keep the "+").
func purlEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// verificationCode is SPDX's package verification code: the SHA1 of the
// sorted, concatenated SHA1 hex digests of the package's files.
func verificationCode(files []File) string {
	sums := make([]string, len(files))
	for i, f := range files {
		sums[i] = f.SHA1
	}
	slices.Sort(sums)
	h := sha1.Sum([]byte(strings.Join(sums, "")))
	return hex.EncodeToString(h[:])
}

// shortHash is 16 hex digits of sha256(s): enough to keep SPDXIDs unique
// within one document, short enough to read.
func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}

// idSafe keeps the characters SPDXIDs allow (letters, digits, '.', '-').
func idSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-':
			return r
		}
		return '-'
	}, s)
}

func orNoAssertion(s string) string {
	if s == "" {
		return NoAssertion
	}
	return s
}

// maxDocument bounds an SBOM read back for verification.
const maxDocument = 64 << 20

// Parse reads an SBOM bale wrote, refusing unknown fields and documents
// that are not SPDX 2.3.
func Parse(data []byte) (*Document, error) {
	var doc Document
	if err := strictjson.Unmarshal(data, maxDocument, &doc); err != nil {
		return nil, fmt.Errorf("parse sbom: %w", err)
	}
	if doc.SPDXVersion != SPDXVersion || doc.SPDXID != DocumentID {
		return nil, fmt.Errorf("sbom: spdxVersion %q SPDXID %q, want %q %q", doc.SPDXVersion, doc.SPDXID, SPDXVersion, DocumentID)
	}
	return &doc, nil
}

// FileChecksums returns each file's checksums by bundle path (without the
// leading "./"), algorithm name to hex value.
func (d *Document) FileChecksums() (map[string]map[string]string, error) {
	out := make(map[string]map[string]string, len(d.Files))
	for _, f := range d.Files {
		name, ok := strings.CutPrefix(f.FileName, "./")
		if !ok {
			return nil, fmt.Errorf("sbom: file name %q does not start with ./", f.FileName)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("sbom: file %s listed twice", name)
		}
		sums := make(map[string]string, len(f.Checksums))
		for _, c := range f.Checksums {
			sums[c.Algorithm] = c.Value
		}
		out[name] = sums
	}
	return out, nil
}
