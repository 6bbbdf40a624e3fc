package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/bale-build/bale/plan"
)

// maxTagList bounds the tag list an error message reads: it is a courtesy
// to the reader, not something a registry may make bale buffer without
// bound.
const maxTagList = 1 << 20

// shownTags is how many of a repository's tags a "not found" error lists.
const shownTags = 10

// registryErr says in a spec author's words why the registry did not give
// the manifest ref names: a tag that is not there (with the tags that
// are), a manifest that is not there, a registry that cannot be reached.
// Anything else is returned as it is.
func (r *Resolver) registryErr(ctx context.Context, ref name.Reference, err error) error {
	repo := ref.Context()
	var te *transport.Error
	if errors.As(err, &te) && notFound(te) {
		switch ref := ref.(type) {
		case name.Tag:
			return fmt.Errorf("tag %s not found in %s%s", ref.TagStr(), repo.Name(), r.tagList(ctx, repo))
		case name.Digest:
			return fmt.Errorf("manifest %s not found in %s", ref.DigestStr(), repo.Name())
		}
	}
	var oe *net.OpError
	var de *net.DNSError
	if errors.As(err, &oe) || errors.As(err, &de) {
		return fmt.Errorf("registry %s unreachable: %w", repo.RegistryStr(), lastCause(err))
	}
	return err
}

// notFound says whether a registry error means "no such manifest" (or no
// such repository, which a registry reports the same way to a reader who
// may not list it).
func notFound(te *transport.Error) bool {
	if te.StatusCode == http.StatusNotFound {
		return true
	}
	for _, d := range te.Errors {
		switch d.Code {
		case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode:
			return true
		}
	}
	return false
}

// lastCause drops go-containerregistry's "Get URL: …; Get URL: …" (one per
// scheme it tried) down to the network error itself.
func lastCause(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return de
	}
	return err
}

// tagList returns " (tags: a, b, …)" for repo, at most shownTags of them
// from the first page of its tag list, or "" when the registry does not
// say (listing may need more rights than pulling).
func (r *Resolver) tagList(ctx context.Context, repo name.Repository) string {
	t, err := r.pullTransport(ctx, repo)
	if err != nil {
		return ""
	}
	u := url.URL{
		Scheme:   repo.Scheme(),
		Host:     repo.RegistryStr(),
		Path:     fmt.Sprintf("/v2/%s/tags/list", repo.RepositoryStr()),
		RawQuery: "n=1000",
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return ""
	}
	req.Header.Set("User-Agent", "bale")
	resp, err := (&http.Client{Transport: t, CheckRedirect: r.client.CheckRedirect}).Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	b, err := readLimited(resp.Body, maxTagList, "tag list")
	if err != nil {
		return ""
	}
	var list struct {
		Tags []string `json:"tags"`
	}
	if json.Unmarshal(b, &list) != nil {
		return ""
	}
	if len(list.Tags) == 0 {
		return " (the repository has no tags)"
	}
	tags := make([]string, 0, len(list.Tags))
	for _, tg := range list.Tags {
		// A hostile registry's tag reaches a terminal: only the grammar's.
		if plan.ValidateTag(tg) == nil {
			tags = append(tags, tg)
		}
	}
	return " (tags: " + shownList(tags) + ")"
}

// shownList formats names from a remote index for an error message: sorted,
// at most shownTags of them, each quoted if it holds anything but
// printable ASCII (a hostile index's names reach a terminal).
func shownList(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	names = append([]string(nil), names...)
	sort.Strings(names)
	more := 0
	if len(names) > shownTags {
		names, more = names[:shownTags], len(names)-shownTags
	}
	for i, n := range names {
		for _, c := range n {
			if c < 0x21 || c > 0x7e || c == ',' {
				names[i] = strconv.QuoteToASCII(n)
				break
			}
		}
	}
	s := strings.Join(names, ", ")
	if more > 0 {
		s += fmt.Sprintf(", … %d more", more)
	}
	return s
}
