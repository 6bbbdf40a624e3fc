package plan

import (
	"slices"
	"strings"
	"testing"

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
