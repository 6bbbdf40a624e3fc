package pack

import (
	"cmp"
	"encoding/json"
	"fmt"
)

// MaxIndexDepth bounds how deep image indexes nest below the descriptor an
// image starts from: an index at this depth may not name another index,
// so a chain or cycle of indexes ends.
const MaxIndexDepth = 4

// Layout is what WalkImage reads an OCI image layout through: the sizes of
// its blobs and the bytes of its index and manifest blobs. A Reader is
// one.
type Layout interface {
	// BlobSize returns the size of the blob with digest d, if present.
	BlobSize(d string) (int64, bool)
	// Manifest returns the bytes of the index or manifest blob with
	// digest d, if present and readable.
	Manifest(d string) ([]byte, bool)
}

// Graph is what an image's descriptor reaches.
type Graph struct {
	// Docs are the indexes and manifests reached, each once, every one
	// after the documents it names: the last is the image's own.
	Docs []Doc
	// Manifests are the image manifests reached, each once, in the order
	// the indexes list them.
	Manifests []Manifest
}

// Doc is an index or manifest blob.
type Doc struct {
	Digest string
	// MediaType is the document's own mediaType, else its descriptor's.
	MediaType string
	Raw       []byte
}

// Manifest is an image manifest reached from an image's descriptor.
type Manifest struct {
	// Descriptor is the manifest's, as the index naming it lists it.
	Descriptor Descriptor
	// Platform is "os/arch[/variant]" as that index lists it; "" for a
	// manifest that is the image's own descriptor.
	Platform string
	// MediaType is the manifest's own mediaType, else its descriptor's.
	MediaType string
	Config    Descriptor
	Layers    []Descriptor
}

// LayoutError is one problem WalkImage found.
type LayoutError struct {
	// Entry is the pack path at fault: the document that names a missing
	// or invalid blob, or the blob itself.
	Entry string
	// Size marks a blob whose size is not the one a descriptor gives it.
	Size   bool
	Detail string
}

func (e *LayoutError) Error() string { return e.Entry + ": " + e.Detail }

// ImageWalker walks image descriptors over one layout. It walks each
// index or manifest once, however many images or indexes name it, so a
// layout whose indexes name one another many times over costs what its
// documents hold, not the product of their lengths.
type ImageWalker struct {
	l    Layout
	memo map[walkKey]*walked
}

type walkKey struct {
	digest string
	depth  int
}

// walked is one descriptor's subtree.
type walked struct {
	docs      []Doc
	manifests []Manifest
	// manifest is set when the descriptor is itself an image manifest.
	manifest bool
}

// NewImageWalker returns a walker over l.
func NewImageWalker(l Layout) *ImageWalker {
	return &ImageWalker{l: l, memo: map[walkKey]*walked{}}
}

// WalkImage follows top, listed in the document at pack path from,
// through indexes (at most MaxIndexDepth deep) to image manifests and
// their configs and layers, checking every descriptor on the way: the
// blob is present, its size is the descriptor's, an index or manifest is
// one (JSON, at most MaxManifestSize bytes) and names at most MaxLayers
// layers. The graph holds what could be followed; the errors list every
// problem found, each once.
func WalkImage(l Layout, from string, top Descriptor) (*Graph, []*LayoutError) {
	return NewImageWalker(l).Walk(from, top)
}

// Walk is WalkImage over the walker's layout.
func (w *ImageWalker) Walk(from string, top Descriptor) (*Graph, []*LayoutError) {
	var errs []*LayoutError
	n := w.walk(from, top, 0, &errs)
	if n == nil {
		return &Graph{}, errs
	}
	return &Graph{Docs: n.docs, Manifests: n.manifests}, errs
}

// blob checks that the layout holds d's blob at d's size.
func (w *ImageWalker) blob(from string, d Descriptor, errs *[]*LayoutError) bool {
	p := BlobPath(d.Digest)
	if p == "" {
		*errs = append(*errs, &LayoutError{Entry: from, Detail: fmt.Sprintf("refers to invalid digest %q", d.Digest)})
		return false
	}
	size, ok := w.l.BlobSize(d.Digest)
	if !ok {
		*errs = append(*errs, &LayoutError{Entry: from, Detail: fmt.Sprintf("refers to blob %s, which is not in the pack", d.Digest)})
		return false
	}
	if size != d.Size {
		*errs = append(*errs, &LayoutError{Entry: p, Size: true, Detail: fmt.Sprintf("%d bytes, %s says %d", size, from, d.Size)})
		return false
	}
	return true
}

func (w *ImageWalker) walk(from string, d Descriptor, depth int, errs *[]*LayoutError) *walked {
	key := walkKey{d.Digest, depth}
	if n, ok := w.memo[key]; ok {
		return n
	}
	// Marked before the walk, so a document met again below itself (it
	// cannot name itself, but a hostile layout may try) ends there.
	w.memo[key] = nil
	if !w.blob(from, d, errs) {
		return nil
	}
	p := BlobPath(d.Digest)
	raw, ok := w.l.Manifest(d.Digest)
	if !ok {
		*errs = append(*errs, &LayoutError{Entry: p, Detail: fmt.Sprintf("not a JSON document of at most %d bytes", MaxManifestSize)})
		return nil
	}
	var doc ManifestOrIndex
	if err := json.Unmarshal(raw, &doc); err != nil {
		*errs = append(*errs, &LayoutError{Entry: p, Detail: fmt.Sprintf("invalid JSON: %v", err)})
		return nil
	}
	self := Doc{Digest: d.Digest, MediaType: cmp.Or(doc.MediaType, d.MediaType), Raw: raw}
	n := &walked{}
	switch {
	case doc.Manifests != nil:
		if depth >= MaxIndexDepth {
			*errs = append(*errs, &LayoutError{Entry: p, Detail: fmt.Sprintf("indexes nested deeper than %d", MaxIndexDepth)})
			return nil
		}
		docs, mans, indexes := map[string]bool{}, map[string]bool{}, map[string]bool{}
		for _, c := range doc.Manifests {
			if indexes[c.Digest] {
				continue // an index named again adds nothing
			}
			cn := w.walk(p, c, depth+1, errs)
			if cn == nil {
				continue
			}
			if !cn.manifest {
				indexes[c.Digest] = true
			}
			for _, cd := range cn.docs {
				if !docs[cd.Digest] {
					docs[cd.Digest] = true
					n.docs = append(n.docs, cd)
				}
			}
			if cn.manifest {
				// The index lists the manifest: its descriptor and
				// platform are the index's.
				m := cn.manifests[0]
				m.Descriptor, m.Platform = c, c.Platform.String()
				n.manifests = append(n.manifests, m)
				continue
			}
			for _, m := range cn.manifests {
				if !mans[m.Descriptor.Digest] {
					mans[m.Descriptor.Digest] = true
					n.manifests = append(n.manifests, m)
				}
			}
		}
	case doc.Config != nil:
		if len(doc.Layers) > MaxLayers {
			*errs = append(*errs, &LayoutError{Entry: p, Detail: fmt.Sprintf("%d layers, more than %d", len(doc.Layers), MaxLayers)})
			return nil
		}
		// A missing or wrong config or layer is reported; the manifest
		// still stands for the image, so what refers to it can be checked.
		w.blob(p, *doc.Config, errs)
		for _, l := range doc.Layers {
			w.blob(p, l, errs)
		}
		n.manifest = true
		n.manifests = []Manifest{{Descriptor: d, MediaType: self.MediaType, Config: *doc.Config, Layers: doc.Layers}}
	default:
		*errs = append(*errs, &LayoutError{Entry: p, Detail: "neither an image index nor a manifest"})
		return nil
	}
	n.docs = append(n.docs, self)
	w.memo[key] = n
	return n
}
