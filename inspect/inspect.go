// Package inspect reports what a bale bootstrap pack holds without
// extracting it: `bale inspect`.
//
// Scan reads the pack once through pack.Scan, the hostile pack reader
// `bale verify` and `bale push` share (entry, size and decompression
// limits; no links, devices or escaping names), which keeps only the
// small documents (the pack index, images/index.json, every image index
// or manifest blob, within fixed byte budgets); Read then opens each chart
// archive again through the reader for its Chart.yaml and values.yaml,
// with a second hostile walk of the chart. Layers are counted, never
// held. Inspect does not check the pack: `bale verify` does; a pack that
// is not what it claims gives a report that says so only where the
// documents disagree.
package inspect

import (
	"archive/tar"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/internal/capread"
	"github.com/bale-build/bale/internal/ctxio"
	"github.com/bale-build/bale/internal/digest"
	"github.com/bale-build/bale/pack"
)

// Report is what `bale inspect` prints; it encodes as JSON for
// `--format json`. Lists are sorted largest first, then by name.
type Report struct {
	// Path is the pack inspected.
	Path string `json:"path"`
	// SHA256 is the hex sha256 of the pack file: what `bale push --sha256`
	// expects.
	SHA256 string `json:"artifactSha256"`
	// Size is the pack file's size in bytes.
	Size int64 `json:"size"`
	// RootHash is the hex sha256 of pack-index.json.
	RootHash        string `json:"rootHash"`
	Name            string `json:"name"`
	PlanID          string `json:"planId"`
	SpecDigest      string `json:"specDigest"`
	SourceDateEpoch string `json:"sourceDateEpoch"`
	// Images are the pack's images, largest first.
	Images []Image `json:"images"`
	// Layers are every distinct layer of every image, largest first, with
	// the images that use each.
	Layers     []Layer       `json:"layers"`
	Charts     []Chart       `json:"charts"`
	Signatures []File        `json:"signatures"`
	Bundles    []pack.Bundle `json:"bundles"`
	Totals     Totals        `json:"totals"`
}

// Image is one image of the pack.
type Image struct {
	Name string `json:"name"`
	// Digest is the image's pinned digest; LayoutDigest the one the pack's
	// OCI layout lists (a filtered index's when only some platforms were
	// kept).
	Digest       string   `json:"digest"`
	LayoutDigest string   `json:"layoutDigest"`
	MediaType    string   `json:"mediaType"`
	Tags         []string `json:"tags"`
	Platforms    []string `json:"platforms"`
	// Size is the compressed size of every blob the image needs (indexes,
	// manifests, configs, layers), each counted once.
	Size int64 `json:"size"`
	// Layers counts the image's distinct layers; SharedLayers those of
	// them another image of the pack also uses.
	Layers       int        `json:"layers"`
	SharedLayers int        `json:"sharedLayers"`
	Manifests    []Manifest `json:"manifests"`
}

// Manifest is one image manifest of an image: the only one, or one per
// platform of an index.
type Manifest struct {
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	// Platform is "os/arch[/variant]" as the index lists it; "" for a
	// single-manifest image.
	Platform string `json:"platform"`
	Size     int64  `json:"size"`
	Config   Blob   `json:"config"`
	Layers   []Blob `json:"layers"`
}

// Blob is a content descriptor.
type Blob struct {
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	Size      int64  `json:"size"`
}

// Layer is one distinct layer and the images that use it.
type Layer struct {
	Blob
	Images []string `json:"images"`
}

// Chart is one chart archive of the pack.
type Chart struct {
	// Path is the archive's path in the pack.
	Path       string `json:"path"`
	Name       string `json:"name"`
	Version    string `json:"version"`
	AppVersion string `json:"appVersion"`
	Size       int64  `json:"size"`
	SHA256     string `json:"sha256"`
	// UpstreamDigest and Source are the pack index's: the digest the plan
	// pinned and where the chart came from.
	UpstreamDigest string           `json:"upstreamDigest,omitempty"`
	Source         pack.ChartSource `json:"source"`
	// Values is the values-airgap.yaml travelling with the chart, if any.
	Values *pack.Entry `json:"values,omitempty"`
	// Images are the image references the chart's default values hold.
	Images []ValuesImage `json:"images"`
	// ValuesError says why values.yaml could not be read for images.
	ValuesError string `json:"valuesError,omitempty"`
}

// File is a file of the pack, such as a signature.
type File struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Totals sums the report.
type Totals struct {
	Entries    int `json:"entries"`
	Images     int `json:"images"`
	Manifests  int `json:"manifests"`
	Layers     int `json:"layers"`
	Charts     int `json:"charts"`
	Signatures int `json:"signatures"`
	Bundles    int `json:"bundles"`
	// Blobs and BlobBytes count the OCI layout's distinct blobs.
	Blobs     int   `json:"blobs"`
	BlobBytes int64 `json:"blobBytes"`
	// SharedLayers counts layers used by more than one image, and
	// SharedBytes what sharing them saves: the sum over images of their
	// sizes, less BlobBytes.
	SharedLayers   int   `json:"sharedLayers"`
	SharedBytes    int64 `json:"sharedBytes"`
	ChartBytes     int64 `json:"chartBytes"`
	SignatureBytes int64 `json:"signatureBytes"`
}

// Contents is what Scan read: the report, and what `bale push` needs
// beyond it.
type Contents struct {
	Report *Report
	// Images maps each image name to what the descriptor images/index.json
	// lists for it reaches: its indexes and manifests, exact bytes,
	// children first, and its image manifests, as pack's one descriptor
	// walker found them.
	Images map[string]*pack.Graph
	// Blobs maps every blob of the OCI layout to its size.
	Blobs map[string]int64
	// ChartMeta maps a chart's pack path to its Chart.yaml, as JSON
	// (Helm's OCI config).
	ChartMeta map[string][]byte
}

// Byte budgets for what Read keeps in memory.
const (
	// maxChartFile bounds Chart.yaml and values.yaml (Helm's own cap on a
	// chart file).
	maxChartFile = 5 << 20
)

// Pack inspects the pack at path.
func Pack(ctx context.Context, path string) (*Report, error) {
	c, err := Scan(ctx, path)
	if err != nil {
		return nil, err
	}
	return c.Report, nil
}

// Scan reads the pack at path as described in the package documentation.
func Scan(ctx context.Context, packPath string) (*Contents, error) {
	f, size, err := pack.OpenFile(packPath)
	if err != nil {
		return nil, fmt.Errorf("inspect pack: %w", err)
	}
	defer f.Close()
	pr, err := pack.Scan(ctx, f, size, pack.ScanOptions{})
	if err == nil {
		err = pr.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("inspect pack %s: %w", packPath, err)
	}
	c, err := Read(ctx, pr)
	if err != nil {
		return nil, fmt.Errorf("inspect pack %s: %w", packPath, err)
	}
	c.Report.Path = packPath
	return c, nil
}

// Read makes the report, and what push needs beyond it, from a pack
// pack.Scan read: from the documents it kept, and each chart archive read
// again through pr. The report's Path is left for the caller.
func Read(ctx context.Context, pr *pack.Reader) (*Contents, error) {
	s := &scanner{
		ctx:       ctx,
		pr:        pr,
		blobs:     map[string]int64{},
		chartMeta: map[string][]byte{},
	}
	for _, f := range pr.Files() {
		if err := s.entry(f); err != nil {
			return nil, fmt.Errorf("%q: %w", f.Name, err)
		}
	}
	rep, err := s.report()
	if err != nil {
		return nil, err
	}
	rep.SHA256 = pr.SHA256()
	rep.Size = pr.Size()
	return &Contents{Report: rep, Images: s.graphs, Blobs: s.blobs, ChartMeta: s.chartMeta}, nil
}

// scanner holds what Read gathers.
type scanner struct {
	ctx       context.Context
	pr        *pack.Reader
	blobs     map[string]int64
	charts    []Chart
	chartMeta map[string][]byte
	sigs      []File
	// Filled by report.
	graphs map[string]*pack.Graph
}

// entry handles one entry of the scanned pack.
func (s *scanner) entry(f *pack.File) error {
	if f.Dir {
		return nil
	}
	switch name := f.Name; {
	case strings.HasPrefix(name, pack.BlobsDir+"/"):
		d := "sha256:" + strings.TrimPrefix(name, pack.BlobsDir+"/")
		if !digest.Valid(d) {
			return fmt.Errorf("blob name is not a sha256 digest")
		}
		s.blobs[d] = f.Size
	case isChart(name):
		return s.chart(f)
	case strings.HasPrefix(name, pack.SignaturesDir+"/"):
		s.sigs = append(s.sigs, File{Path: name, Size: f.Size, SHA256: f.SHA256})
	}
	return nil
}

// doc returns a pack document the scan kept, or says why it has none.
func (s *scanner) doc(name string, max int64) ([]byte, bool, error) {
	if b, ok := s.pr.Doc(name); ok {
		return b, true, nil
	}
	if f, ok := s.pr.File(name); ok && !f.Dir {
		return nil, false, fmt.Errorf("%s: %d bytes, larger than %d", name, f.Size, max)
	}
	return nil, false, nil
}

func isChart(name string) bool {
	rest, ok := strings.CutPrefix(name, pack.ChartsDir+"/")
	return ok && strings.HasSuffix(rest, ".tgz") && !strings.Contains(rest, "/")
}

// chart reads a chart archive's Chart.yaml and values.yaml with a second
// hostile walk over the archive's bytes, read again through the pack
// reader (which checks them against the scan's digest).
func (s *scanner) chart(f *pack.File) error {
	rc, err := f.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	body := ctxio.Reader(s.ctx, rc)
	c := Chart{Path: f.Name, Size: f.Size, SHA256: f.SHA256, Images: []ValuesImage{}}
	var meta, values []byte
	err = archive.Walk(s.ctx, body, archive.ChartLimits(), func(h *tar.Header, body io.Reader) error {
		dir, file, ok := strings.Cut(h.Name, "/")
		if !ok || strings.Contains(file, "/") || h.Typeflag != tar.TypeReg {
			return nil
		}
		var err error
		switch {
		case file == "Chart.yaml" && meta == nil:
			meta, err = capread.ReadAll(body, maxChartFile)
			c.Name = dir
		case file == "values.yaml" && values == nil:
			values, err = capread.ReadAll(body, maxChartFile)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("read chart archive: %w", err)
	}
	// The rest, so the reader checks the whole archive's digest.
	if _, err := io.Copy(io.Discard, body); err != nil {
		return err
	}
	if meta == nil {
		return errors.New("chart archive has no NAME/Chart.yaml")
	}
	md, metaJSON, err := parseChartMeta(meta)
	if err != nil {
		return fmt.Errorf("chart %s: Chart.yaml: %w", c.Name, err)
	}
	if md.Name != "" {
		c.Name = md.Name
	}
	c.Version, c.AppVersion = md.Version, md.AppVersion
	s.chartMeta[f.Name] = metaJSON
	if values != nil {
		imgs, err := ValuesImages(values, c.AppVersion)
		if err != nil {
			c.ValuesError = err.Error()
		} else {
			c.Images = imgs
		}
	}
	s.charts = append(s.charts, c)
	return nil
}

// report assembles the report from what the walk kept.
func (s *scanner) report() (*Report, error) {
	index, ok, err := s.doc(pack.IndexPath, pack.MaxIndexSize)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%s: missing: %w", pack.IndexPath, ErrNotPack)
	}
	ix, err := pack.ParseIndex(index)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pack.IndexPath, err)
	}
	rep := &Report{
		RootHash:        pack.RootHash(index),
		Name:            ix.Name,
		PlanID:          ix.PlanID,
		SpecDigest:      ix.SpecDigest,
		SourceDateEpoch: ix.SourceDateEpoch,
		Images:          []Image{},
		Layers:          []Layer{},
		Charts:          s.charts,
		Signatures:      s.sigs,
		Bundles:         ix.Bundles,
	}
	if rep.Charts == nil {
		rep.Charts = []Chart{}
	}
	for i := range rep.Charts {
		c := &rep.Charts[i]
		for _, ic := range ix.Charts {
			if ic.Path == c.Path {
				c.UpstreamDigest, c.Source, c.Values = ic.UpstreamDigest, ic.Source, ic.Values
			}
		}
	}
	if rep.Signatures == nil {
		rep.Signatures = []File{}
	}
	s.graphs = map[string]*pack.Graph{}
	var layout pack.ManifestOrIndex
	if len(ix.Images) > 0 {
		ociIndex, ok, err := s.doc(pack.OCIIndexPath, pack.MaxManifestSize)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%s: missing, but the pack index lists %d images", pack.OCIIndexPath, len(ix.Images))
		}
		if err := json.Unmarshal(ociIndex, &layout); err != nil {
			return nil, fmt.Errorf("%s: %w", pack.OCIIndexPath, err)
		}
	}
	w := pack.NewImageWalker(s.pr)
	layers := map[string]*Layer{}
	for _, im := range ix.Images {
		top, ok := findTop(layout.Manifests, im)
		if !ok {
			return nil, fmt.Errorf("%s: no descriptor for image %s (%s)", pack.OCIIndexPath, im.Name, im.LayoutDigest)
		}
		img := Image{
			Name: im.Name, Digest: im.Digest, LayoutDigest: im.LayoutDigest, MediaType: top.MediaType,
			Tags: im.Tags, Platforms: im.Platforms, Manifests: []Manifest{},
		}
		need, err := s.walk(w, &img, top)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", im.Name, err)
		}
		for _, n := range need {
			img.Size += n
		}
		seen := map[string]bool{}
		for _, m := range img.Manifests {
			for _, l := range m.Layers {
				if seen[l.Digest] {
					continue
				}
				seen[l.Digest] = true
				img.Layers++
				if layers[l.Digest] == nil {
					layers[l.Digest] = &Layer{Blob: l}
				}
				layers[l.Digest].Images = append(layers[l.Digest].Images, im.Name)
			}
		}
		rep.Images = append(rep.Images, img)
	}
	var imageBytes int64
	for i := range rep.Images {
		img := &rep.Images[i]
		imageBytes += img.Size
		counted := map[string]bool{}
		for _, m := range img.Manifests {
			for _, l := range m.Layers {
				if !counted[l.Digest] && len(layers[l.Digest].Images) > 1 {
					img.SharedLayers++
				}
				counted[l.Digest] = true
			}
		}
	}
	for _, l := range layers {
		rep.Layers = append(rep.Layers, *l)
		if len(l.Images) > 1 {
			rep.Totals.SharedLayers++
		}
	}
	for _, n := range s.blobs {
		rep.Totals.BlobBytes += n
	}
	bySize := func(sa, sb int64, na, nb string) int {
		return cmp.Or(cmp.Compare(sb, sa), cmp.Compare(na, nb))
	}
	slices.SortFunc(rep.Images, func(a, b Image) int { return bySize(a.Size, b.Size, a.Name, b.Name) })
	slices.SortFunc(rep.Layers, func(a, b Layer) int { return bySize(a.Size, b.Size, a.Digest, b.Digest) })
	slices.SortFunc(rep.Charts, func(a, b Chart) int { return bySize(a.Size, b.Size, a.Path, b.Path) })
	slices.SortFunc(rep.Signatures, func(a, b File) int { return bySize(a.Size, b.Size, a.Path, b.Path) })
	t := &rep.Totals
	t.Entries = len(s.pr.Files())
	t.Images = len(rep.Images)
	t.Layers = len(rep.Layers)
	t.Charts = len(rep.Charts)
	t.Signatures = len(rep.Signatures)
	t.Bundles = len(rep.Bundles)
	t.Blobs = len(s.blobs)
	t.SharedBytes = max(0, imageBytes-t.BlobBytes)
	for _, img := range rep.Images {
		t.Manifests += len(img.Manifests)
	}
	for _, c := range rep.Charts {
		t.ChartBytes += c.Size
	}
	for _, f := range rep.Signatures {
		t.SignatureBytes += f.Size
	}
	return rep, nil
}

// findTop returns the images/index.json descriptor of image im: the one
// annotated with its name, else the one with its layout digest.
func findTop(ds []pack.Descriptor, im pack.Image) (pack.Descriptor, bool) {
	for _, d := range ds {
		if d.Annotations[pack.AnnotationImageName] == im.Name && d.Digest == im.LayoutDigest {
			return d, true
		}
	}
	return pack.Descriptor{}, false
}

// walk follows the image's descriptor top with the pack's one descriptor
// walker: it fills img's manifests, keeps the graph for push, and returns
// every blob the image needs with its size.
func (s *scanner) walk(w *pack.ImageWalker, img *Image, top pack.Descriptor) (map[string]int64, error) {
	g, errs := w.Walk(pack.OCIIndexPath, top)
	if len(errs) > 0 {
		return nil, errs[0]
	}
	s.graphs[img.Name] = g
	need := map[string]int64{}
	for _, d := range g.Docs {
		need[d.Digest] = int64(len(d.Raw))
	}
	blob := func(d pack.Descriptor) Blob {
		need[d.Digest] = d.Size
		return Blob{Digest: d.Digest, MediaType: d.MediaType, Size: d.Size}
	}
	for _, m := range g.Manifests {
		im := Manifest{Digest: m.Descriptor.Digest, MediaType: m.MediaType, Platform: m.Platform, Size: m.Descriptor.Size, Config: blob(m.Config), Layers: []Blob{}}
		for _, l := range m.Layers {
			im.Layers = append(im.Layers, blob(l))
		}
		img.Manifests = append(img.Manifests, im)
	}
	return need, nil
}
