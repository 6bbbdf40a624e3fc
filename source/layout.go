package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/bale-build/bale/pack"
	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner/spec"
)

// layoutSource reads an image from an OCI image layout. Every digest is
// validated before it becomes a file name, and every file is opened
// through os.Root with no symbolic link at any element (see local.go), so
// neither a hostile index.json nor a linked blobs/sha256 directory reaches
// outside the workspace.
type layoutSource struct {
	r   *Resolver
	rel string // the layout directory, relative to the workspace root
}

// blobRel returns the workspace path of blob d.
func (s *layoutSource) blobRel(d string) (string, error) {
	if !plan.ValidDigest(d) {
		return "", fmt.Errorf("digest %q: want sha256:<64 lowercase hex>", d)
	}
	return s.rel + "/blobs/sha256/" + strings.TrimPrefix(d, "sha256:"), nil
}

// open opens blob d. Blobs may have several hard links: their bytes are
// checked against d (see linkPolicy).
func (s *layoutSource) open(d string) (*os.File, error) {
	rel, err := s.blobRel(d)
	if err != nil {
		return nil, err
	}
	f, _, err := s.r.openLocal(rel, anyLinks)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	return f, nil
}

func (s *layoutSource) manifest(ctx context.Context, d string, size int64) ([]byte, string, error) {
	rc, err := s.blob(ctx, d)
	if err != nil {
		return nil, "", err
	}
	defer rc.Close()
	raw, err := readLimited(rc, pack.MaxManifestSize, "manifest "+d)
	if err != nil {
		return nil, "", err
	}
	if err := checkManifestBytes(raw, d, size); err != nil {
		return nil, "", err
	}
	return raw, "", nil
}

func (s *layoutSource) blob(_ context.Context, d string) (io.ReadCloser, error) {
	return s.open(d)
}

// openLayout opens the layout directory rel and reads its index.json, up
// to pack.MaxManifestSize bytes, checking every entry's digest and size: a
// hostile index.json may hold "sha256:../../x".
func (r *Resolver) openLayout(rel string) (*layoutSource, []pack.Descriptor, error) {
	f, _, err := r.openLocal(rel+"/index.json", singleLink)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	raw, err := readLimited(f, pack.MaxManifestSize, rel+"/index.json")
	if err != nil {
		return nil, nil, err
	}
	entries, err := parseLayoutIndex(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("%s/index.json: %w", rel, err)
	}
	return &layoutSource{r: r, rel: rel}, entries, nil
}

// parseLayoutIndex decodes an OCI layout's index.json and checks its
// entries.
func parseLayoutIndex(raw []byte) ([]pack.Descriptor, error) {
	if len(raw) > pack.MaxManifestSize {
		return nil, fmt.Errorf("%d bytes, more than the %d-byte limit", len(raw), pack.MaxManifestSize)
	}
	var idx pack.ManifestOrIndex
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if len(idx.Manifests) > MaxIndexEntries {
		return nil, fmt.Errorf("lists %d manifests, more than the limit of %d", len(idx.Manifests), MaxIndexEntries)
	}
	for i, e := range idx.Manifests {
		if err := checkDesc(e, fmt.Sprintf("entry %d", i), pack.MaxManifestSize); err != nil {
			return nil, err
		}
	}
	return idx.Manifests, nil
}

// imageLayout pins an image from an OCI layout, selected by ref name, by
// the pinned digest, or as the layout's only entry.
func (r *Resolver) imageLayout(ctx context.Context, specDir string, img spec.Image) (plan.Input, error) {
	rel, err := r.local(specDir, img.Layout.Path)
	if err != nil {
		return plan.Input{}, err
	}
	src, entries, err := r.openLayout(rel)
	if err != nil {
		return plan.Input{}, err
	}
	var pick []pack.Descriptor
	switch {
	case img.Layout.RefName != "":
		var names []string
		for _, e := range entries {
			if n := e.Annotations[refNameAnnotation]; n == img.Layout.RefName {
				pick = append(pick, e)
			} else if n != "" {
				names = append(names, n)
			}
		}
		if len(pick) == 0 {
			sort.Strings(names)
			return plan.Input{}, fmt.Errorf("no entry with %s %q (the layout has %s)", refNameAnnotation, img.Layout.RefName, strings.Join(names, ", "))
		}
	case img.Digest != "":
		for _, e := range entries {
			if e.Digest == img.Digest {
				pick = append(pick, e)
			}
		}
		if len(pick) == 0 {
			return plan.Input{}, fmt.Errorf("no layout entry has the pinned digest %s", img.Digest)
		}
	default:
		pick = entries
		if len(pick) == 0 {
			return plan.Input{}, errors.New("the layout's index.json lists no images")
		}
	}
	for _, e := range pick[1:] {
		if e.Digest != pick[0].Digest {
			return plan.Input{}, fmt.Errorf("%d layout entries match (%s, %s, …); set layout.refName or digest", len(pick), pick[0].Digest, e.Digest)
		}
	}
	e := pick[0]
	raw, _, err := src.manifest(ctx, e.Digest, e.Size)
	if err != nil {
		return plan.Input{}, err
	}
	var tags []string
	if n := e.Annotations[refNameAnnotation]; n != "" {
		tags = []string{n}
	}
	return r.finishImage(ctx, img, src, raw, e.MediaType, tags,
		plan.Source{Type: plan.SourceLayout, Path: rel, Select: img.Layout.RefName})
}

// --- executor access ---
