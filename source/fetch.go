package source

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/bale-build/bale/plan"
)

// Blobs are fetched with a plain GET through an authenticated transport
// rather than through go-containerregistry's remote.Layer, whose reader
// hashes every byte to verify it: bale verifies exactly once, where the
// bytes land (the planner's verifier for the configs it reads, the
// executor's store for everything it stores). Each fetched byte is then
// hashed once instead of three times.

// pullTransport returns a transport authenticated to pull from repo, made
// once per repository and Resolver, so the ping and token exchange happen
// once, as go-containerregistry's Puller does for manifests.
func (r *Resolver) pullTransport(ctx context.Context, repo name.Repository) (http.RoundTripper, error) {
	key := repo.String()
	r.pullMu.Lock()
	t, ok := r.pulls[key]
	r.pullMu.Unlock()
	if ok {
		return t, nil
	}
	auth, err := authn.Resolve(ctx, r.opts.Keychain, repo)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", repo, err)
	}
	t, err = transport.NewWithContext(ctx, repo.Registry, auth, r.rt, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, err
	}
	r.pullMu.Lock()
	defer r.pullMu.Unlock()
	if prev, ok := r.pulls[key]; ok {
		return prev, nil
	}
	if r.pulls == nil {
		r.pulls = map[string]http.RoundTripper{}
	}
	r.pulls[key] = t
	return t, nil
}

// fetchBlob opens blob d of repo with a GET of /v2/REPO/blobs/D. The bytes
// are not hashed here; the caller verifies them. size, if not negative, is
// checked against Content-Length before any byte is read.
func (r *Resolver) fetchBlob(ctx context.Context, repo name.Repository, d string, size int64) (io.ReadCloser, error) {
	rc, _, err := r.fetchBlobAt(ctx, repo, d, size, 0)
	return rc, err
}

// fetchBlobAt is fetchBlob from byte offset on, asked for with an HTTP
// Range request when offset is above zero. It returns where the body
// starts: offset when the registry honoured the range (206 with the
// matching Content-Range), 0 when it sent the whole blob (200).
func (r *Resolver) fetchBlobAt(ctx context.Context, repo name.Repository, d string, size, offset int64) (io.ReadCloser, int64, error) {
	if !plan.ValidDigest(d) {
		return nil, 0, fmt.Errorf("digest %q: want sha256:<64 lowercase hex>", d)
	}
	if offset < 0 || offset > 0 && (size < 0 || offset >= size) {
		return nil, 0, fmt.Errorf("blob %s: offset %d outside 0..%d", d, offset, size)
	}
	t, err := r.pullTransport(ctx, repo)
	if err != nil {
		return nil, 0, err
	}
	u := url.URL{
		Scheme: repo.Scheme(),
		Host:   repo.RegistryStr(),
		Path:   fmt.Sprintf("/v2/%s/blobs/%s", repo.RepositoryStr(), d),
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("User-Agent", "bale")
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	client := &http.Client{Transport: t, CheckRedirect: r.client.CheckRedirect}
	resp, err := client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	if err := transport.CheckError(resp, http.StatusOK, http.StatusPartialContent); err != nil {
		resp.Body.Close()
		return nil, 0, err
	}
	start := int64(0)
	if resp.StatusCode == http.StatusPartialContent {
		// Only the range asked for, exactly: anything else would splice
		// the wrong bytes (the digest check at the end would catch it,
		// after a wasted download).
		want := fmt.Sprintf("bytes %d-%d/%d", offset, size-1, size)
		if offset == 0 || resp.Header.Get("Content-Range") != want {
			resp.Body.Close()
			return nil, 0, fmt.Errorf("GET %s: Content-Range %q, asked for %q", u.Redacted(), resp.Header.Get("Content-Range"), want)
		}
		start = offset
	}
	if size >= 0 && resp.ContentLength >= 0 && resp.ContentLength != size-start {
		resp.Body.Close()
		return nil, 0, fmt.Errorf("GET %s: Content-Length %d, the blob is %d bytes from byte %d", u.Redacted(), resp.ContentLength, size, start)
	}
	return resp.Body, start, nil
}

// OpenRawBlobAt is OpenRawBlob from byte offset on, for resuming an
// interrupted download: a registry blob is asked for with an HTTP Range
// request. It returns where the reader starts: offset when the source
// honoured it, 0 when it sends the blob whole (a registry that ignores
// Range, a local source). The caller verifies the whole blob.
func (r *Resolver) OpenRawBlobAt(ctx context.Context, in plan.Input, digest string, offset int64) (io.ReadCloser, int64, int64, error) {
	if offset > 0 && in.Kind == plan.KindImage && in.Image != nil && in.Source.Type == plan.SourceRegistry {
		if isManifest, size, ok := findBlob(in, digest); ok && !isManifest && size >= 0 && size <= MaxBlobSize {
			src, err := r.sourceFor(ctx, in)
			if err != nil {
				return nil, 0, 0, fmt.Errorf("open blob %s of image %s (%s): %w", digest, in.Name, sourceString(in.Source), err)
			}
			if rs, ok := src.(*registrySource); ok {
				rc, start, err := r.fetchBlobAt(ctx, rs.repo, digest, size, offset)
				if err != nil {
					return nil, 0, 0, fmt.Errorf("open blob %s of image %s (%s): %w", digest, in.Name, sourceString(in.Source), err)
				}
				return limitedBody{io.LimitReader(rc, size-start+1), rc}, start, size, nil
			}
		}
	}
	rc, size, err := r.OpenRawBlob(ctx, in, digest)
	return rc, 0, size, err
}

// OpenRawBlob is OpenBlob without the hash: the reader returns the
// source's bytes as they come, at most the planned size plus one byte, and
// the caller must verify them against digest and size. The executor's
// store does, as it writes them, so a fetched byte is hashed once.
// Manifests and indexes (a few KiB, parsed by the planner) are still
// checked here.
func (r *Resolver) OpenRawBlob(ctx context.Context, in plan.Input, digest string) (io.ReadCloser, int64, error) {
	rc, size, err := r.openBlob(ctx, in, digest, false)
	if err != nil {
		return nil, 0, fmt.Errorf("open blob %s of image %s (%s): %w", digest, in.Name, sourceString(in.Source), err)
	}
	return rc, size, nil
}

// limitedBody bounds a raw body to the planned size plus one byte, enough
// for the caller to see it is too long.
type limitedBody struct {
	io.Reader
	io.Closer
}
