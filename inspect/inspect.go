// Package inspect reports what a bale bootstrap pack holds without
// extracting it: `bale inspect`.
//
// Scan reads the pack once, as a stream, through archive.Walk's hostile
// reader (entry, size and decompression limits; no links, devices or
// escaping names). It keeps only the small documents it needs (the pack
// index, images/index.json and every image index or manifest blob, within
// fixed byte budgets) and, for each chart archive, the chart's Chart.yaml
// and values.yaml, read by a second hostile walk of the chart as it
// streams past. Layers are counted, never held. Inspect does not check the
// pack: `bale verify` does; a pack that is not what it claims gives a
// report that says so only where the documents disagree.
package inspect

import (
	"archive/tar"
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/internal/ctxio"
	"github.com/bale-build/bale/pack"
	"github.com/bale-build/bale/plan"
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
	// Docs maps the digest of every index and manifest blob reachable from
	// images/index.json to its exact bytes.
	Docs map[string][]byte
	// Blobs maps every blob of the OCI layout to its size.
	Blobs map[string]int64
	// Tops maps each image name to the descriptor images/index.json lists
	// for it.
	Tops map[string]pack.Descriptor
	// ChartMeta maps a chart's pack path to its Chart.yaml, as JSON
	// (Helm's OCI config).
	ChartMeta map[string][]byte
}

// Byte budgets for what Scan keeps in memory.
const (
	// maxDocBytes bounds the index and manifest blobs kept, all together.
	maxDocBytes = 256 << 20
	// maxChartFile bounds Chart.yaml and values.yaml (Helm's own cap on a
	// chart file).
	maxChartFile = 5 << 20
	// maxDepth bounds index nesting, so a cycle of indexes cannot loop.
	maxDepth  = 4
	sniffSize = 512
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
	f, err := os.Open(packPath)
	if err != nil {
		return nil, fmt.Errorf("inspect pack: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("inspect pack: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("inspect pack %s: not a regular file", packPath)
	}
	s := &scanner{
		ctx:       ctx,
		docs:      map[string][]byte{},
		blobs:     map[string]int64{},
		chartMeta: map[string][]byte{},
	}
	sum := sha256.New()
	src := io.TeeReader(f, sum)
	lim := archive.DefaultLimits()
	lim.GzipMembers = true
	if err := archive.Walk(ctx, src, lim, s.entry); err != nil {
		return nil, fmt.Errorf("inspect pack %s: %w", packPath, err)
	}
	if _, err := io.Copy(io.Discard, ctxio.Reader(ctx, src)); err != nil {
		return nil, fmt.Errorf("inspect pack %s: %w", packPath, err)
	}
	rep, err := s.report()
	if err != nil {
		return nil, fmt.Errorf("inspect pack %s: %w", packPath, err)
	}
	rep.Path = packPath
	rep.SHA256 = hex.EncodeToString(sum.Sum(nil))
	rep.Size = st.Size()
	return &Contents{Report: rep, Docs: s.reachable, Blobs: s.blobs, Tops: s.tops, ChartMeta: s.chartMeta}, nil
}

// scanner holds what Scan keeps across the walk.
type scanner struct {
	ctx      context.Context
	entries  int
	index    []byte // pack-index.json
	ociIndex []byte // images/index.json
	// docs holds blobs that look like JSON, by digest, within maxDocBytes.
	docs      map[string][]byte
	docBytes  int64
	blobs     map[string]int64
	charts    []Chart
	chartMeta map[string][]byte
	sigs      []File
	// Filled by report.
	reachable map[string][]byte
	tops      map[string]pack.Descriptor
}

// entry handles one entry as archive.Walk streams it.
func (s *scanner) entry(h *tar.Header, body io.Reader) error {
	s.entries++
	if h.Typeflag != tar.TypeReg {
		return nil
	}
	name := h.Name
	switch {
	case name == pack.IndexPath:
		b, err := readCapped(body, pack.MaxIndexSize)
		s.index = b
		return err
	case name == pack.OCIIndexPath:
		b, err := readCapped(body, pack.MaxManifestSize)
		s.ociIndex = b
		return err
	case strings.HasPrefix(name, pack.BlobsDir+"/"):
		return s.blob(name, h.Size, body)
	case isChart(name):
		return s.chart(name, h.Size, body)
	case strings.HasPrefix(name, pack.SignaturesDir+"/"):
		sum := sha256.New()
		n, err := io.Copy(sum, body)
		if err != nil {
			return err
		}
		s.sigs = append(s.sigs, File{Path: name, Size: n, SHA256: hex.EncodeToString(sum.Sum(nil))})
	}
	return nil
}

// blob records a blob's size and keeps it if it looks like an index or
// manifest.
func (s *scanner) blob(name string, size int64, body io.Reader) error {
	hexName := strings.TrimPrefix(name, pack.BlobsDir+"/")
	digest := "sha256:" + hexName
	if !plan.ValidDigest(digest) {
		return fmt.Errorf("blob name is not a sha256 digest")
	}
	s.blobs[digest] = size
	if size > pack.MaxManifestSize || s.docBytes+size > maxDocBytes {
		return nil
	}
	br := bufio.NewReaderSize(body, sniffSize)
	peek, _ := br.Peek(sniffSize)
	if t := bytes.TrimLeft(peek, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return nil
	}
	b, err := readCapped(br, pack.MaxManifestSize)
	if err != nil {
		return err
	}
	s.docBytes += int64(len(b))
	s.docs[digest] = b
	return nil
}

// readCapped reads r to its end, refusing more than max bytes.
func readCapped(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("larger than %d bytes", max)
	}
	return b, nil
}

func isChart(name string) bool {
	rest, ok := strings.CutPrefix(name, pack.ChartsDir+"/")
	return ok && strings.HasSuffix(rest, ".tgz") && !strings.Contains(rest, "/")
}

// chart reads a chart archive's Chart.yaml and values.yaml with a second
// hostile walk over the archive's bytes as they stream past.
func (s *scanner) chart(name string, size int64, body io.Reader) error {
	sum := sha256.New()
	tee := io.TeeReader(body, sum)
	c := Chart{Path: name, Size: size, Images: []ValuesImage{}}
	var meta, values []byte
	err := archive.Walk(s.ctx, tee, archive.ChartLimits(), func(h *tar.Header, body io.Reader) error {
		dir, file, ok := strings.Cut(h.Name, "/")
		if !ok || strings.Contains(file, "/") || h.Typeflag != tar.TypeReg {
			return nil
		}
		var err error
		switch {
		case file == "Chart.yaml" && meta == nil:
			meta, err = readCapped(body, maxChartFile)
			c.Name = dir
		case file == "values.yaml" && values == nil:
			values, err = readCapped(body, maxChartFile)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("read chart archive: %w", err)
	}
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return err
	}
	c.SHA256 = hex.EncodeToString(sum.Sum(nil))
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
	s.chartMeta[name] = metaJSON
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
	if s.index == nil {
		return nil, fmt.Errorf("%s: missing: %w", pack.IndexPath, ErrNotPack)
	}
	ix, err := pack.ParseIndex(s.index)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pack.IndexPath, err)
	}
	rep := &Report{
		RootHash:        pack.RootHash(s.index),
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
	s.reachable = map[string][]byte{}
	s.tops = map[string]pack.Descriptor{}
	var layout pack.ManifestOrIndex
	if len(ix.Images) > 0 {
		if s.ociIndex == nil {
			return nil, fmt.Errorf("%s: missing, but the pack index lists %d images", pack.OCIIndexPath, len(ix.Images))
		}
		if err := json.Unmarshal(s.ociIndex, &layout); err != nil {
			return nil, fmt.Errorf("%s: %w", pack.OCIIndexPath, err)
		}
	}
	layers := map[string]*Layer{}
	for _, im := range ix.Images {
		top, ok := findTop(layout.Manifests, im)
		if !ok {
			return nil, fmt.Errorf("%s: no descriptor for image %s (%s)", pack.OCIIndexPath, im.Name, im.LayoutDigest)
		}
		s.tops[im.Name] = top
		img := Image{
			Name: im.Name, Digest: im.Digest, LayoutDigest: im.LayoutDigest, MediaType: top.MediaType,
			Tags: im.Tags, Platforms: im.Platforms, Manifests: []Manifest{},
		}
		need := map[string]int64{}
		if err := s.walk(&img, top, "", need, 0); err != nil {
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
	t.Entries = s.entries
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

// walk follows descriptor d of image img: an index's manifests, a
// manifest's config and layers. need collects every blob the image needs
// with its size.
func (s *scanner) walk(img *Image, d pack.Descriptor, platform string, need map[string]int64, depth int) error {
	size, ok := s.blobs[d.Digest]
	if !ok {
		return fmt.Errorf("blob %s is not in the pack", d.Digest)
	}
	if size != d.Size {
		return fmt.Errorf("blob %s is %d bytes, its descriptor says %d", d.Digest, size, d.Size)
	}
	need[d.Digest] = size
	raw, ok := s.docs[d.Digest]
	if !ok {
		return fmt.Errorf("%s %s: not a JSON document of at most %d bytes", d.MediaType, d.Digest, pack.MaxManifestSize)
	}
	s.reachable[d.Digest] = raw
	var doc pack.ManifestOrIndex
	if err := json.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("%s: %w", d.Digest, err)
	}
	switch {
	case doc.Manifests != nil:
		if depth >= maxDepth {
			return fmt.Errorf("%s: indexes nested deeper than %d", d.Digest, maxDepth)
		}
		for _, c := range doc.Manifests {
			if err := s.walk(img, c, c.Platform.String(), need, depth+1); err != nil {
				return err
			}
		}
		return nil
	case doc.Config != nil:
		if len(doc.Layers) > pack.MaxLayers {
			return fmt.Errorf("%s: %d layers, more than %d", d.Digest, len(doc.Layers), pack.MaxLayers)
		}
		m := Manifest{Digest: d.Digest, MediaType: cmp.Or(doc.MediaType, d.MediaType), Platform: platform, Size: size, Layers: []Blob{}}
		blob := func(b pack.Descriptor) (Blob, error) {
			n, ok := s.blobs[b.Digest]
			if !ok {
				return Blob{}, fmt.Errorf("manifest %s: blob %s is not in the pack", d.Digest, b.Digest)
			}
			if n != b.Size {
				return Blob{}, fmt.Errorf("manifest %s: blob %s is %d bytes, the manifest says %d", d.Digest, b.Digest, n, b.Size)
			}
			need[b.Digest] = n
			return Blob{Digest: b.Digest, MediaType: b.MediaType, Size: n}, nil
		}
		var err error
		if m.Config, err = blob(*doc.Config); err != nil {
			return err
		}
		for _, l := range doc.Layers {
			b, err := blob(l)
			if err != nil {
				return err
			}
			m.Layers = append(m.Layers, b)
		}
		img.Manifests = append(img.Manifests, m)
		return nil
	default:
		return fmt.Errorf("%s: neither an image index nor a manifest", d.Digest)
	}
}
