package plan

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/pack"
)

func rep(c string) string { return "sha256:" + strings.Repeat(c, 64) }

func TestImageEntriesAndTop(t *testing.T) {
	m := func(d, c string, layers ...string) Manifest {
		pm := Manifest{Digest: rep(d), Size: 10, Config: Blob{Digest: rep(c), Size: 5}}
		for _, l := range layers {
			pm.Layers = append(pm.Layers, Blob{Digest: rep(l), Size: 1})
		}
		return pm
	}
	single := Input{Name: "s", Digest: rep("1"), Size: 10, MediaType: pack.MediaTypeOCIManifest,
		Image: &Image{Manifests: []Manifest{m("1", "2", "3", "3")}}}
	got, err := ImageEntries(single)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{pack.BlobPath(rep("1")), pack.BlobPath(rep("2")), pack.BlobPath(rep("3"))}; !slices.Equal(got, want) {
		t.Errorf("single: %v", got)
	}
	idx := Input{Name: "i", Digest: rep("9"), Size: 99, Image: &Image{Index: true,
		Manifests: []Manifest{m("4", "5", "3"), m("6", "7", "3")},
		Filtered:  &Blob{Digest: rep("8"), Size: 50}}}
	got, _ = ImageEntries(idx)
	if len(got) != 6 || slices.Contains(got, pack.BlobPath(rep("9"))) || !slices.Contains(got, pack.BlobPath(rep("8"))) {
		t.Errorf("filtered index: %v", got)
	}
	if top, _ := ImageTop(idx); top.Digest != rep("8") || top.Size != 50 || top.MediaType != pack.MediaTypeOCIIndex {
		t.Errorf("top %+v", top)
	}
	idx.Image.Filtered = nil
	if top, _ := ImageTop(idx); top.Digest != rep("9") {
		t.Errorf("unfiltered top %+v", top)
	}
	bad := single
	bad.Digest = rep("f")
	if _, err := ImageEntries(bad); err == nil {
		t.Error("single manifest with another digest accepted")
	}
}

// TestImageLimits: an image's limits are what a pack can hold. One
// manifest may list pack.MaxLayers layers and no more; an image's chosen
// manifests together may list pack.MaxImageBlobs blobs, the entries of a pack,
// and no more.
func TestImageLimits(t *testing.T) {
	t.Parallel()
	if pack.MaxImageBlobs != archive.DefaultLimits().MaxEntries {
		t.Fatalf("pack.MaxImageBlobs %d, a pack holds %d entries", pack.MaxImageBlobs, archive.DefaultLimits().MaxEntries)
	}
	n := 0
	blob := func() Blob {
		n++
		return Blob{Digest: "sha256:" + fmt.Sprintf("%064x", n), Size: 1}
	}
	manifest := func(layers int) Manifest {
		m := Manifest{Digest: blob().Digest, Size: 10, Config: blob()}
		for range layers {
			m.Layers = append(m.Layers, blob())
		}
		return m
	}
	index := func(perManifest ...int) Input {
		in := Input{Name: "big", Digest: blob().Digest, Size: 10, Image: &Image{Index: true}}
		for _, l := range perManifest {
			in.Image.Manifests = append(in.Image.Manifests, manifest(l))
		}
		return in
	}
	nine := slices.Repeat([]int{pack.MaxLayers}, 9)
	for _, tc := range []struct {
		name string
		in   Input
		want string // "" for accepted
	}{
		{"a manifest at the layer limit", index(pack.MaxLayers), ""},
		{"a manifest past the layer limit", index(pack.MaxLayers + 1), "1001 layers, more than 1000"},
		// 1 index + 9 × (1 manifest + 1 config + 1,000 layers) + 1 + 1 +
		// 979 layers = 10,000 blobs.
		{"an image at the blob limit", index(append(nine, 979)...), ""},
		{"an image past the blob limit", index(append(nine, 980)...), "more than 10000 blobs"},
	} {
		_, err := ImageEntries(tc.in)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}
