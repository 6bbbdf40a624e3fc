package source

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/bale-build/bale/pack"
	"github.com/bale-build/bale/planner/spec"
)

// rawManifest is a manifest or index pushed as its bytes.
type rawManifest struct {
	b  []byte
	mt types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.b, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

// fetchCounts counts the requests a registry got for manifests and for
// blobs.
type fetchCounts struct{ manifests, blobs atomic.Int64 }

func (c *fetchCounts) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			switch {
			case strings.Contains(r.URL.Path, "/manifests/"):
				c.manifests.Add(1)
			case strings.Contains(r.URL.Path, "/blobs/"):
				c.blobs.Add(1)
			}
		}
		h.ServeHTTP(w, r)
	})
}

// hostileImages pushes to host's repository team/big images whose
// manifests list many small layers (descriptors only: no layer blob is
// pushed, since planning fetches none). A manifest's layers are distinct
// descriptors, numbered from seed.
type hostileImages struct {
	t      *testing.T
	host   string
	config []byte
}

// raw returns a manifest of layers distinct layers, numbered from seed.
func (h hostileImages) raw(seed, layers int) []byte {
	h.t.Helper()
	ls := make([]map[string]any, layers)
	for i := range ls {
		ls[i] = map[string]any{"mediaType": string(types.OCILayer), "digest": digestOf(fmt.Appendf(nil, "layer %d/%d", seed, i)), "size": 1}
	}
	b, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     string(types.OCIManifestSchema1),
		"config":        map[string]any{"mediaType": string(types.OCIConfigJSON), "digest": digestOf(h.config), "size": len(h.config)},
		"layers":        ls,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return b
}

// manifest pushes raw(seed, layers) by digest and returns its index
// descriptor, for platform linux/arch.
func (h hostileImages) manifest(seed, layers int, arch string) map[string]any {
	h.t.Helper()
	b := h.raw(seed, layers)
	d := digestOf(b)
	h.put(d, rawManifest{b, types.OCIManifestSchema1})
	return forPlatform(map[string]any{"mediaType": string(types.OCIManifestSchema1), "digest": d, "size": len(b)}, arch)
}

// forPlatform is a copy of index descriptor d for platform linux/arch.
func forPlatform(d map[string]any, arch string) map[string]any {
	c := maps.Clone(d)
	c["platform"] = map[string]string{"os": "linux", "architecture": arch}
	return c
}

// put pushes m to team/big at tag or digest.
func (h hostileImages) put(at string, m rawManifest) {
	h.t.Helper()
	sep := ":"
	if strings.HasPrefix(at, "sha256:") {
		sep = "@"
	}
	ref, err := name.ParseReference(h.host + "/team/big" + sep + at)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := remote.Put(ref, m); err != nil {
		h.t.Fatalf("push %s: %v", ref, err)
	}
}

// index pushes an index of manifests, tagged tag.
func (h hostileImages) index(tag string, manifests []map[string]any) {
	h.t.Helper()
	b, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": string(types.OCIImageIndex), "manifests": manifests})
	if err != nil {
		h.t.Fatal(err)
	}
	h.put(tag, rawManifest{b, types.OCIImageIndex})
}

// TestImageLimitsAsFetched: the resolver refuses an image the pack cannot
// hold as soon as its manifests show it, and fetches nothing more. Its
// limits are the pack's (pack.MaxLayers, pack.MaxImageBlobs): before, the
// resolver allowed 10,000 layers a manifest and any number across an
// index, and planning refused only after fetching all of it — an index of
// 400 manifests × 10,000 layers drove an inline child to 1,229 MiB.
func TestImageLimitsAsFetched(t *testing.T) {
	t.Parallel()
	var counts fetchCounts
	host := startRegistry(t, counts.wrap)
	imgs := hostileImages{t: t, host: host, config: []byte(`{"os":"linux","architecture":"amd64","rootfs":{"type":"layers"}}`)}
	ref, err := name.ParseReference(host + "/team/big:x")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteLayer(ref.Context(), static.NewLayer(imgs.config, types.OCIConfigJSON)); err != nil {
		t.Fatal(err)
	}

	// One manifest at the layer limit, and one past it.
	imgs.put("at-limit", rawManifest{imgs.raw(1, pack.MaxLayers), types.OCIManifestSchema1})
	imgs.put("1001-layers", rawManifest{imgs.raw(2, pack.MaxLayers+1), types.OCIManifestSchema1})
	// The attack: 400 platforms, each a manifest of 10,000 layers (one
	// manifest, listed for every platform, keeps the test small: the
	// resolver fetches each platform's manifest all the same).
	huge := imgs.manifest(3, 10_000, "")
	var wide []map[string]any
	for i := range 400 {
		wide = append(wide, forPlatform(huge, fmt.Sprintf("arch%03d", i)))
	}
	imgs.index("400x10000", wide)
	// 400 distinct manifests of 1,000 layers each: every one within the
	// layer limit, together 40 times what a pack holds.
	var many []map[string]any
	for i := range 400 {
		many = append(many, imgs.manifest(100+i, pack.MaxLayers, fmt.Sprintf("arch%03d", i)))
	}
	imgs.index("400x1000", many)

	r := newResolver(t, Options{})
	for _, tc := range []struct {
		tag          string
		want         string // "" for accepted
		manifests    int64  // at most this many manifest requests
		blobsFetched bool   // whether the config may be fetched
	}{
		{tag: "at-limit", manifests: 1, blobsFetched: true},
		{tag: "1001-layers", want: "1001 layers, more than the limit of 1000", manifests: 1},
		{tag: "400x10000", want: "10000 layers, more than the limit of 1000", manifests: 2},
		// 1 + 9 × 1,002 blobs fit; the tenth manifest passes the limit.
		{tag: "400x1000", want: "10 of its 400 chosen platforms list more than 10000 blobs", manifests: 11},
	} {
		t.Run(tc.tag, func(t *testing.T) {
			counts.manifests.Store(0)
			counts.blobs.Store(0)
			_, err := r.Image(bg, "/", spec.Image{Name: "big", Ref: host + "/team/big:" + tc.tag})
			t.Logf("%v; %d manifest and %d blob requests", err, counts.manifests.Load(), counts.blobs.Load())
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "image big")):
				t.Fatalf("%v, want a refusal of image big saying %q", err, tc.want)
			}
			if n := counts.manifests.Load(); n > tc.manifests {
				t.Errorf("%d manifest requests, want at most %d: fetching went on past the limit", n, tc.manifests)
			}
			if n := counts.blobs.Load(); !tc.blobsFetched && n != 0 {
				t.Errorf("%d blob requests for an image refused by its manifest", n)
			}
		})
	}
}
