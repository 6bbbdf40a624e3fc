package executor

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/bale-build/bale/pack"
	"github.com/bale-build/bale/plan"
)

// doOCILayout writes the OCI image layout's metadata for every image of
// the pack: oci-layout, index.json and the docker-save manifest.json (see
// package pack for their content). The blobs themselves come from the image
// steps; blobs shared between images appear once in the pack because
// entries are keyed by path, which is the digest.
//
// Outputs: "PACK:images/oci-layout", "PACK:images/index.json",
// "PACK:images/manifest.json".
func (x *execution) doOCILayout(ctx context.Context, n *node) (outputs, error) {
	images, err := x.images(n)
	if err != nil {
		return nil, err
	}
	index := pack.OCIIndex{SchemaVersion: 2, MediaType: pack.MediaTypeOCIIndex, Manifests: []pack.Descriptor{}}
	docker := []pack.DockerManifest{}
	for _, in := range images {
		top, err := plan.ImageTop(in)
		if err != nil {
			return nil, err
		}
		top.Annotations = map[string]string{pack.AnnotationImageName: in.Name}
		if len(in.Image.Tags) > 0 {
			top.Annotations[pack.AnnotationRefName] = in.Image.Tags[0]
		}
		index.Manifests = append(index.Manifests, top)
		m, err := plan.DockerManifest(in)
		if err != nil {
			return nil, err
		}
		dm := pack.DockerManifest{
			Config:   relBlob(m.Config.Digest),
			RepoTags: append([]string{}, in.Image.Tags...),
			Layers:   []string{},
		}
		for _, l := range m.Layers {
			dm.Layers = append(dm.Layers, relBlob(l.Digest))
		}
		docker = append(docker, dm)
	}
	out := outputs{}
	for _, f := range []struct {
		path string
		v    any
	}{
		{pack.OCILayoutPath, pack.OCILayout{ImageLayoutVersion: "1.0.0"}},
		{pack.OCIIndexPath, index},
		{pack.DockerManifestPath, docker},
	} {
		data, err := pack.EncodeJSON(f.v)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", f.path, err)
		}
		h, size, err := x.putBytes(ctx, data)
		if err != nil {
			return nil, fmt.Errorf("store %s: %w", f.path, err)
		}
		if err := out.add(n.entry(f.path), h, size); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// images returns the image inputs of an oci-layout step, sorted by name,
// each checked to have an image step among the step's needs (which put
// its blobs in the store). A pack of charts or signatures only has none:
// its layout is empty but valid, so tools reading images/ need no special case.
func (x *execution) images(n *node) ([]plan.Input, error) {
	fetched := map[string]bool{}
	for _, d := range needOfAction(n, plan.ActionImage) {
		for _, in := range d.def.Inputs {
			fetched[in.Key()] = true
		}
	}
	var images []plan.Input
	for _, in := range n.def.Inputs {
		k := in.Key()
		if in.Kind != plan.KindImage || in.Image == nil {
			return nil, fmt.Errorf("input %s is not an image", k)
		}
		if !fetched[k] {
			return nil, fmt.Errorf("image %s: no image step among the needs", in.Name)
		}
		if err := safeName("image name", in.Name); err != nil {
			return nil, err
		}
		images = append(images, in)
	}
	slices.SortFunc(images, func(a, b plan.Input) int { return strings.Compare(a.Name, b.Name) })
	return images, nil
}

// relBlob is a blob's path relative to images/, as manifest.json names it.
func relBlob(digest string) string {
	return strings.TrimPrefix(pack.BlobPath(digest), pack.ImagesDir+"/")
}
