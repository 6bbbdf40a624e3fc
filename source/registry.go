package source

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner/spec"
)

// registrySource reads an image from a registry repository.
type registrySource struct {
	r    *Resolver
	repo name.Repository
}

func (s *registrySource) manifest(ctx context.Context, d string, size int64) ([]byte, string, error) {
	desc, err := s.r.puller.Get(ctx, s.repo.Digest(d))
	if err != nil {
		return nil, "", err
	}
	if err := checkManifestBytes(desc.Manifest, d, size); err != nil {
		return nil, "", err
	}
	return desc.Manifest, string(desc.MediaType), nil
}

// blob fetches blob d unverified (see fetchBlob): every caller verifies.
func (s *registrySource) blob(ctx context.Context, d string) (io.ReadCloser, error) {
	return s.r.fetchBlob(ctx, s.repo, d, -1)
}

// imageRegistry pins an image from a registry. A tag is resolved by
// fetching the manifest and hashing its bytes: the Docker-Content-Digest
// header is not trusted.
func (r *Resolver) imageRegistry(ctx context.Context, img spec.Image) (plan.Input, error) {
	ref, err := r.parseRef(img.Ref)
	if err != nil {
		return plan.Input{}, err
	}
	if d, ok := ref.(name.Digest); ok && img.Digest != "" && d.DigestStr() != img.Digest {
		return plan.Input{}, fmt.Errorf("spec pins %s but the ref names %s", img.Digest, d.DigestStr())
	}
	if err := r.offline(img.Ref); err != nil {
		return plan.Input{}, err
	}
	desc, err := r.puller.Get(ctx, ref)
	if err != nil {
		return plan.Input{}, r.registryErr(ctx, ref, err)
	}
	raw := desc.Manifest
	if d, ok := ref.(name.Digest); ok {
		if got := sha256Digest(raw); got != d.DigestStr() {
			return plan.Input{}, fmt.Errorf("registry served a manifest with digest %s for %s", got, d.DigestStr())
		}
	}
	var tags []string
	if t := refTag(img.Ref); t != "" {
		tags = []string{t}
	}
	src := &registrySource{r: r, repo: ref.Context()}
	return r.finishImage(ctx, img, src, raw, string(desc.MediaType), tags, plan.Source{Type: plan.SourceRegistry, Ref: img.Ref})
}

// refTag returns the tag a reference names, in full form
// ("registry/repo:tag"), or "" for a reference by digest alone.
func refTag(s string) string {
	base, _, byDigest := strings.Cut(s, "@")
	if byDigest {
		// Only an explicit tag counts: "repo@sha256:…" has none.
		if i := strings.LastIndex(base, ":"); i < 0 || i < strings.LastIndex(base, "/") {
			return ""
		}
	}
	t, err := name.NewTag(base)
	if err != nil {
		return ""
	}
	return t.Name()
}

// --- layout ---
