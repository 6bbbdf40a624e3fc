package plan

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// The OCI distribution grammar, as github.com/distribution/reference
// writes it: a repository is an optional domain (host names, IPv4 or a
// bracketed IPv6 address, an optional port) and slash-separated lowercase
// path components; a tag is at most 128 word characters, dots and dashes,
// not starting with a dot or dash. Anything else (a NUL, a right-to-left
// override, "../../x") would reach a pack's manifest.json and the tools
// that read it. schemas/bale.cue's #RepoTag holds the same expressions.
const (
	// TagPattern is the distribution spec's tag grammar.
	TagPattern = `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`
	// RepositoryPattern is the distribution grammar for a repository name,
	// domain included.
	RepositoryPattern = `(?:` + domainPattern + `/)?` + pathComponent + `(?:/` + pathComponent + `)*`

	domainComponent = `(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])`
	domainPattern   = `(?:` + domainComponent + `(?:\.` + domainComponent + `)*|\[[A-Fa-f0-9:]+\])(?::[0-9]+)?`
	pathComponent   = `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
)

var (
	tagRE        = regexp.MustCompile(`^` + TagPattern + `$`)
	repositoryRE = regexp.MustCompile(`^` + RepositoryPattern + `$`)
)

// MaxRepositoryLength is the longest repository name, domain included, that
// the distribution grammar allows.
const MaxRepositoryLength = 255

// ValidateTag checks t against the OCI distribution tag grammar.
func ValidateTag(t string) error {
	if !tagRE.MatchString(t) {
		return fmt.Errorf("tag %s: want 1 to 128 of A-Z a-z 0-9 _ . - not starting with . or -", quote(t))
	}
	return nil
}

// ValidateRepository checks r against the distribution grammar for a
// repository name: an optional domain and path components of lowercase
// letters and digits joined by '.', '_', "__" or dashes; at most 255
// characters in all.
func ValidateRepository(r string) error {
	if len(r) > MaxRepositoryLength {
		return fmt.Errorf("repository %s: longer than %d characters", quote(r), MaxRepositoryLength)
	}
	if !repositoryRE.MatchString(r) {
		return fmt.Errorf("repository %s: want [host[:port]/]path, path components of lowercase letters and digits joined by '.', '_', \"__\" or '-'", quote(r))
	}
	return nil
}

// ValidateRepoTag checks a "repository:tag" name as written to a docker-save
// manifest.json's RepoTags: both parts must follow the distribution
// grammar.
func ValidateRepoTag(s string) error {
	i := strings.LastIndexByte(s, ':')
	if i < 0 || strings.Contains(s[i+1:], "/") {
		return fmt.Errorf("image tag %s: want repository:tag", quote(s))
	}
	if err := ValidateRepository(s[:i]); err != nil {
		return fmt.Errorf("image tag %s: %w", quote(s), err)
	}
	if err := ValidateTag(s[i+1:]); err != nil {
		return fmt.Errorf("image tag %s: %w", quote(s), err)
	}
	return nil
}

// DockerHub is the registry a reference without one names, as docker,
// crane and helm read it: "alpine:3.19" is
// "index.docker.io/library/alpine:3.19".
const DockerHub = name.DefaultRegistry

// NormalizeRef returns image reference s with its registry and repository
// in full, the tag and digest as written: Docker Hub's short forms
// ("alpine:3.19", "library/alpine", "docker.io/library/alpine@sha256:…")
// become "index.docker.io/library/alpine…". Plans and packs record the
// full form, so one image has one name whichever way a spec spells it.
// A reference without a tag stays without one (it resolves ":latest").
func NormalizeRef(s string) (string, error) {
	r, err := name.ParseReference(s)
	if err != nil {
		return "", err
	}
	out := r.Context().Name()
	base, dig, hasDigest := strings.Cut(s, "@")
	if i := strings.LastIndexByte(base, ':'); i > strings.LastIndexByte(base, '/') {
		out += base[i:]
	}
	if hasDigest {
		out += "@" + dig
	}
	return out, nil
}

// quote quotes s for a message, escaped (a hostile name's control and
// bidirectional characters never reach a terminal) and shortened.
func quote(s string) string {
	if len(s) > 80 {
		return fmt.Sprintf("%.64q… (%d bytes)", s, len(s))
	}
	return fmt.Sprintf("%q", s)
}
