package plan

import (
	"fmt"
	"slices"

	"github.com/bale-build/bale/pack"
)

// How an image input lays out inside a pack: the rules the planner lays
// steps out by and the executor writes by (see Outputs).

// ImageTop returns the descriptor index.json lists for image input in (without
// annotations): its filtered index when the plan records one
// (Image.Filtered), else its pinned index or manifest.
func ImageTop(in Input) (pack.Descriptor, error) {
	img := in.Image
	if img == nil {
		return pack.Descriptor{}, fmt.Errorf("image %s: no image details in the plan", in.Name)
	}
	mt := in.MediaType
	if !img.Index {
		if mt == "" && len(img.Manifests) == 1 {
			mt = img.Manifests[0].MediaType
		}
		return pack.Descriptor{MediaType: mt, Digest: in.Digest, Size: in.Size}, nil
	}
	if mt == "" {
		mt = pack.MediaTypeOCIIndex
	}
	if f := img.Filtered; f != nil {
		return pack.Descriptor{MediaType: mt, Digest: f.Digest, Size: f.Size}, nil
	}
	return pack.Descriptor{MediaType: mt, Digest: in.Digest, Size: in.Size}, nil
}

// ImageEntries returns the pack paths an image step writes for image input
// in, sorted and without duplicates: the blob of the image's top-level
// descriptor (see ImageTop: the filtered index if the plan records one, else the
// pinned index or manifest) and of every chosen manifest, config and layer.
// An index the plan filtered is not itself in the pack: the filtered copy
// stands in for it, so no blob in the pack names a manifest that is not.
func ImageEntries(in Input) ([]string, error) {
	img := in.Image
	if img == nil {
		return nil, fmt.Errorf("image %s: no image details in the plan", in.Name)
	}
	if len(img.Manifests) == 0 {
		return nil, fmt.Errorf("image %s: no manifests in the plan", in.Name)
	}
	if !img.Index && (len(img.Manifests) != 1 || img.Manifests[0].Digest != in.Digest || img.Manifests[0].Size != in.Size) {
		return nil, fmt.Errorf("image %s: not an index, yet its plan manifests are not exactly its digest %s", in.Name, in.Digest)
	}
	if !img.Index && img.Filtered != nil {
		return nil, fmt.Errorf("image %s: a filtered index for an image that is not an index", in.Name)
	}
	top, err := ImageTop(in)
	if err != nil {
		return nil, err
	}
	digests := []string{top.Digest}
	for _, m := range img.Manifests {
		if len(m.Layers) > pack.MaxLayers {
			return nil, fmt.Errorf("image %s: manifest %s has %d layers, more than %d", in.Name, m.Digest, len(m.Layers), pack.MaxLayers)
		}
		if n := len(digests) + 2 + len(m.Layers); n > pack.MaxImageBlobs {
			return nil, fmt.Errorf("image %s: its manifests list more than %d blobs (manifests, configs and layers), more than a pack holds", in.Name, pack.MaxImageBlobs)
		}
		digests = append(digests, m.Digest, m.Config.Digest)
		for _, l := range m.Layers {
			digests = append(digests, l.Digest)
		}
	}
	paths := make([]string, 0, len(digests))
	for _, d := range digests {
		p := pack.BlobPath(d)
		if p == "" {
			return nil, fmt.Errorf("image %s: blob digest %q: want sha256:<64 hex>", in.Name, d)
		}
		paths = append(paths, p)
	}
	slices.Sort(paths)
	return slices.Compact(paths), nil
}

// DockerManifest returns the manifest of image input in that the
// docker-save manifest.json describes: the only one of a single-manifest
// image; for an index, the linux/amd64 manifest if chosen, else the first
// chosen one in plan order.
func DockerManifest(in Input) (Manifest, error) {
	img := in.Image
	if img == nil || len(img.Manifests) == 0 {
		return Manifest{}, fmt.Errorf("image %s: no manifests in the plan", in.Name)
	}
	for _, m := range img.Manifests {
		if m.Platform == pack.DockerPlatform {
			return m, nil
		}
	}
	return img.Manifests[0], nil
}
