package plan

import (
	"fmt"
	"regexp"
	"strings"
)

// The OCI distribution grammar (github.com/distribution/reference, the
// distribution spec's "Pulling manifests"): a repository is an optional
// domain and slash-separated lowercase path components; a tag is at most
// 128 word characters, dots and dashes, not starting with a dot or dash.
// Anything else (a NUL, a right-to-left override, "../../x") would reach a
// pack's manifest.json and the tools that read it.
var (
	tagRE           = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)
	pathComponentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$`)
	domainRE        = regexp.MustCompile(`^(?:(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])(?:\.(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]))*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$`)
)

// MaxRepositoryLength is the longest repository name, domain included, that
// the distribution grammar allows.
const MaxRepositoryLength = 255

// ValidateTag checks t against the OCI distribution tag grammar:
// [A-Za-z0-9_][A-Za-z0-9._-]{0,127}.
func ValidateTag(t string) error {
	if !tagRE.MatchString(t) {
		return fmt.Errorf("tag %q: want 1 to 128 of A-Z a-z 0-9 _ . - not starting with . or -", t)
	}
	return nil
}

// ValidateRepository checks r against the distribution grammar for a
// repository name: an optional domain (a first component holding a '.' or
// ':', or "localhost") and path components of lowercase letters and digits
// joined by '.', '_', "__" or dashes; at most 255 characters in all.
func ValidateRepository(r string) error {
	if r == "" {
		return fmt.Errorf("repository %q: empty", r)
	}
	if len(r) > MaxRepositoryLength {
		return fmt.Errorf("repository %.40q…: longer than %d characters", r, MaxRepositoryLength)
	}
	comps := strings.Split(r, "/")
	if len(comps) > 1 && (strings.ContainsAny(comps[0], ".:") || comps[0] == "localhost") {
		if !domainRE.MatchString(comps[0]) {
			return fmt.Errorf("repository %q: domain %q is not a host name or address with an optional port", r, comps[0])
		}
		comps = comps[1:]
	}
	for _, c := range comps {
		if !pathComponentRE.MatchString(c) {
			return fmt.Errorf("repository %q: path component %q: want lowercase letters and digits joined by '.', '_', \"__\" or '-'", r, c)
		}
	}
	return nil
}

// ValidateRepoTag checks a "repository:tag" name as written to a docker-save
// manifest.json's RepoTags: both parts must follow the distribution
// grammar.
func ValidateRepoTag(s string) error {
	i := strings.LastIndexByte(s, ':')
	if i < 0 || strings.Contains(s[i+1:], "/") {
		return fmt.Errorf("image tag %q: want repository:tag", s)
	}
	if err := ValidateRepository(s[:i]); err != nil {
		return fmt.Errorf("image tag %q: %w", s, err)
	}
	if err := ValidateTag(s[i+1:]); err != nil {
		return fmt.Errorf("image tag %q: %w", s, err)
	}
	return nil
}
