package push

import (
	"encoding/json"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"helm.sh/helm/v3/pkg/chart"

	"github.com/bale-build/bale/inspect"
	"github.com/bale-build/bale/pack"
)

// OCI annotation keys Helm sets on a chart's manifest.
const (
	annotationTitle       = "org.opencontainers.image.title"
	annotationVersion     = "org.opencontainers.image.version"
	annotationDescription = "org.opencontainers.image.description"
	annotationURL         = "org.opencontainers.image.url"
	annotationCreated     = "org.opencontainers.image.created"
	annotationSource      = "org.opencontainers.image.source"
	annotationAuthors     = "org.opencontainers.image.authors"
)

// chartManifest returns the OCI manifest `helm push` would write for a
// chart, with one difference that makes it byte-stable: the creation time
// is the pack's build timestamp, not the time of the push. meta is the
// chart's Chart.yaml as JSON, which is also the manifest's config.
func chartManifest(ch inspect.Chart, meta []byte, created string) (doc, error) {
	var md chart.Metadata
	if err := json.Unmarshal(meta, &md); err != nil {
		return doc{}, fmt.Errorf("parse Chart.yaml: %w", err)
	}
	ann := map[string]string{}
	for k, v := range md.Annotations {
		ann[k] = v
	}
	set := func(k, v string) {
		if v != "" {
			ann[k] = v
		}
	}
	set(annotationDescription, md.Description)
	set(annotationTitle, md.Name)
	set(annotationVersion, md.Version)
	set(annotationURL, md.Home)
	set(annotationCreated, created)
	if len(md.Sources) > 0 {
		set(annotationSource, md.Sources[0])
	}
	var authors []string
	for _, m := range md.Maintainers {
		if m == nil {
			continue
		}
		a := m.Name
		if m.Email != "" {
			a += " (" + m.Email + ")"
		}
		authors = append(authors, a)
	}
	set(annotationAuthors, strings.Join(authors, ", "))
	cfg, err := v1.NewHash(digestOf(meta))
	if err != nil {
		return doc{}, err
	}
	layer, err := v1.NewHash("sha256:" + ch.SHA256)
	if err != nil {
		return doc{}, fmt.Errorf("chart archive digest: %w", err)
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        v1.Descriptor{MediaType: MediaTypeHelmConfig, Digest: cfg, Size: int64(len(meta))},
		Layers:        []v1.Descriptor{{MediaType: MediaTypeHelmChart, Digest: layer, Size: ch.Size}},
		Annotations:   ann,
	}
	raw, err := pack.EncodeJSON(&m)
	if err != nil {
		return doc{}, err
	}
	return doc{digest: digestOf(raw), mediaType: pack.MediaTypeOCIManifest, raw: raw}, nil
}
