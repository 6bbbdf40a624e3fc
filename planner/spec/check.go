package spec

import (
	"fmt"
	"regexp"
	"strings"

	"cuelang.org/go/cue"
	"github.com/Masterminds/semver/v3"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/schemas"
)

// checker holds the rules CUE cannot say clearly: exactly one source, no
// duplicates, parseable references, and the lint warnings.
type checker struct {
	wd       string
	v        cue.Value
	fallback string
	diags    Diagnostics
}

func (c *checker) check() {
	pack := c.v.LookupPath(cue.ParsePath("bootstrapPack"))
	rel := c.v.LookupPath(cue.ParsePath("release"))
	if !pack.Exists() && !rel.Exists() {
		c.diags = append(c.diags, Diagnostic{File: c.fallback, Line: 1, Column: 1, Severity: SeverityError,
			Message: "spec defines nothing: add a bootstrapPack or a release"})
		return
	}
	if pack.Exists() {
		c.images(pack.LookupPath(cue.ParsePath("images")), "bootstrapPack.images")
		c.charts(pack.LookupPath(cue.ParsePath("charts")), "bootstrapPack.charts")
		c.unique(pack.LookupPath(cue.ParsePath("signatures")), "bootstrapPack.signatures", "name", "signature")
		c.unique(pack.LookupPath(cue.ParsePath("bundles")), "bootstrapPack.bundles", "name", "bundle")
	}
	if rel.Exists() {
		c.signing(rel.LookupPath(cue.ParsePath("signing")))
		c.files(rel.LookupPath(cue.ParsePath("runner.files")), "release.runner.files")
		if ds := rel.LookupPath(cue.ParsePath("dataset")); ds.Exists() {
			c.files(ds.LookupPath(cue.ParsePath("files")), "release.dataset.files")
		}
	}
}

func (c *checker) add(sev Severity, v cue.Value, format string, args ...any) {
	d := Diagnostic{Severity: sev, Message: fmt.Sprintf(format, args...)}
	if p := v.Pos(); p.IsValid() && p.Filename() != schemas.Filename {
		d.File, d.Line, d.Column = rel(c.wd, p.Filename()), p.Line(), p.Column()
	} else {
		d.File, d.Line, d.Column = c.fallback, 1, 1
	}
	c.diags = append(c.diags, d)
}

func (c *checker) where(v cue.Value) string {
	p := v.Pos()
	if !p.IsValid() || p.Filename() == schemas.Filename {
		return "earlier"
	}
	return fmt.Sprintf("at %s:%d:%d", rel(c.wd, p.Filename()), p.Line(), p.Column())
}

func elems(list cue.Value) []cue.Value {
	var out []cue.Value
	it, err := list.List()
	if err != nil {
		return nil
	}
	for it.Next() {
		out = append(out, it.Value())
	}
	return out
}

func str(v cue.Value, path string) (string, cue.Value, bool) {
	f := v.LookupPath(cue.ParsePath(path))
	if !f.Exists() {
		return "", f, false
	}
	s, err := f.String()
	return s, f, err == nil
}

// oneOf reports an element that sets none, or more than one, of the source
// fields; it returns the one field that is set.
func (c *checker) oneOf(el cue.Value, at, what string, fields ...string) string {
	var set []string
	var second cue.Value
	for _, f := range fields {
		if fv := el.LookupPath(cue.ParsePath(f)); fv.Exists() {
			set = append(set, f)
			if len(set) == 2 {
				second = fv
			}
		}
	}
	choices := strings.Join(fields[:len(fields)-1], ", ") + " or " + fields[len(fields)-1]
	switch len(set) {
	case 0:
		c.add(SeverityError, el, "%s: %s has no source: set one of %s", at, what, choices)
		return ""
	case 1:
		return set[0]
	default:
		c.add(SeverityError, second, "%s: %s has %d sources (%s): set exactly one of %s", at, what, len(set), strings.Join(set, ", "), choices)
		return ""
	}
}

func (c *checker) images(list cue.Value, at string) {
	seen := map[string]cue.Value{}
	for i, el := range elems(list) {
		ep := fmt.Sprintf("%s[%d]", at, i)
		nm, nv, _ := str(el, "name")
		what := fmt.Sprintf("image %q", nm)
		if first, dup := seen[nm]; dup {
			c.add(SeverityError, nv, "%s.name: duplicate image name %q (first %s)", ep, nm, c.where(first))
		} else {
			seen[nm] = nv
		}
		src := c.oneOf(el, ep, what, "ref", "layout", "tarball")
		digest, dv, hasDigest := str(el, "digest")
		switch src {
		case "ref":
			ref, rv, _ := str(el, "ref")
			// Docker Hub's short names ("alpine:3.19") are references
			// as docker, crane and helm read them: no StrictValidation.
			r, err := name.ParseReference(ref)
			if err != nil {
				c.add(SeverityError, rv, "%s.ref: invalid image reference %q: %v", ep, ref, err)
				break
			}
			if err := plan.ValidateRepository(r.Context().RepositoryStr()); err != nil {
				c.add(SeverityError, rv, "%s.ref: %v", ep, err)
				break
			}
			full, _ := plan.NormalizeRef(ref)
			spelt := fmt.Sprintf("%q", ref)
			if full != ref {
				spelt += " (" + full + ")"
			}
			base, _, byDigest := strings.Cut(ref, "@")
			hasTag := strings.LastIndexByte(base, ':') > strings.LastIndexByte(base, '/')
			if d, ok := r.(name.Digest); ok && byDigest {
				if hasDigest && d.DigestStr() != digest {
					c.add(SeverityError, dv, "%s.digest: %s disagrees with the reference's digest %s", ep, digest, d.DigestStr())
				}
			} else if !hasDigest && !allowed(rv, AllowUnpinned) {
				if hasTag {
					c.add(SeverityWarning, rv, "%s.ref: %s is a tag without a pinned digest; a moved tag changes the build", ep, spelt)
				} else {
					c.add(SeverityWarning, rv, "%s.ref: %s has no tag or digest; it resolves \":latest\", which moves", ep, spelt)
				}
			}
		case "layout":
			if _, _, ok := str(el, "layout.refName"); !ok && !hasDigest && !allowed(el.LookupPath(cue.ParsePath("layout")), AllowUnpinned) {
				c.add(SeverityWarning, el.LookupPath(cue.ParsePath("layout")), "%s.layout: neither refName nor digest is set; the layout must hold exactly one image", ep)
			}
		}
		c.noDuplicates(el.LookupPath(cue.ParsePath("platforms")), ep+".platforms", "platform")
		c.noDuplicates(el.LookupPath(cue.ParsePath("tags")), ep+".tags", "tag")
		for i, t := range elems(el.LookupPath(cue.ParsePath("tags"))) {
			c.repoTag(t, fmt.Sprintf("%s.tags[%d]", ep, i))
		}
		if t := el.LookupPath(cue.ParsePath("tarball.tag")); t.Exists() {
			c.repoTag(t, ep+".tarball.tag")
		}
	}
}

// AllowUnpinned, in a field's attribute @bale(allow="unpinned"), mutes the
// lint warning that the input the field names is not pinned (an image ref
// by tag without a digest, a local chart path without a version, a layout
// without refName or digest): the author knows and means it, and
// --strict and bale pin --check accept it.
const AllowUnpinned = "unpinned"

// allowed says whether v carries @bale(allow="what"), muting that lint
// warning for it.
func allowed(v cue.Value, what string) bool {
	if !v.Exists() {
		return false
	}
	a := v.Attribute("bale")
	if a.Err() != nil {
		return false
	}
	s, ok, err := a.Lookup(0, "allow")
	return err == nil && ok && s == what
}

// repoTagRE is the schema's #RepoTag pattern, which CUE checks and reports.
var repoTagRE = regexp.MustCompile(`^` + plan.RepositoryPattern + `:` + plan.TagPattern + `$`)

// repoTag reports what the schema's pattern cannot say: a repository longer
// than the distribution grammar's 255 characters. The rest of the grammar
// is the schema's, and reported by CUE.
func (c *checker) repoTag(v cue.Value, at string) {
	s, err := v.String()
	if err != nil || !repoTagRE.MatchString(s) {
		return
	}
	if err := plan.ValidateRepoTag(s); err != nil {
		c.add(SeverityError, v, "%s: %v", at, err)
	}
}

func (c *checker) noDuplicates(list cue.Value, at, what string) {
	seen := map[string]cue.Value{}
	for i, el := range elems(list) {
		s, err := el.String()
		if err != nil {
			continue
		}
		if first, dup := seen[s]; dup {
			c.add(SeverityError, el, "%s[%d]: duplicate %s %q (first %s)", at, i, what, s, c.where(first))
			continue
		}
		seen[s] = el
	}
}

func (c *checker) charts(list cue.Value, at string) {
	seen := map[string]cue.Value{}
	for i, el := range elems(list) {
		ep := fmt.Sprintf("%s[%d]", at, i)
		nm, nv, _ := str(el, "name")
		if first, dup := seen[nm]; dup {
			c.add(SeverityError, nv, "%s.name: duplicate chart name %q (first %s)", ep, nm, c.where(first))
		} else {
			seen[nm] = nv
		}
		src := c.oneOf(el, ep, fmt.Sprintf("chart %q", nm), "path", "repository", "oci")
		version, vv, hasVersion := str(el, "version")
		muted := allowed(el.LookupPath(cue.ParsePath(src)), AllowUnpinned)
		switch {
		case src == "oci" && (!hasVersion || !exactVersion(version)):
			// A registry lists tags, not versions: no range to choose in.
			c.add(SeverityError, el.LookupPath(cue.ParsePath(src)), "%s.version: chart %q from %s needs an exact version", ep, nm, src)
		case src == "repository" && !hasVersion && !muted:
			c.add(SeverityWarning, el, "%s: chart %q has no pinned version; the newest in the repository is used (bale pin writes it)", ep, nm)
		case src == "path" && !hasVersion && !muted:
			c.add(SeverityWarning, el, "%s: chart %q has no pinned version; the version in its Chart.yaml is used as found", ep, nm)
		case hasVersion && !exactVersion(version) && !muted:
			c.add(SeverityWarning, vv, "%s.version: %q is a range; the newest version in it is used (bale pin writes it)", ep, version)
		}
	}
}

func (c *checker) unique(list cue.Value, at, field, what string) {
	seen := map[string]cue.Value{}
	for i, el := range elems(list) {
		s, v, ok := str(el, field)
		if !ok {
			continue
		}
		if first, dup := seen[s]; dup {
			c.add(SeverityError, v, "%s[%d].%s: duplicate %s %s %q (first %s)", at, i, field, what, field, s, c.where(first))
			continue
		}
		seen[s] = v
	}
}

func (c *checker) files(list cue.Value, at string) {
	seen := map[string]cue.Value{}
	for i, el := range elems(list) {
		ep := fmt.Sprintf("%s[%d]", at, i)
		src := c.oneOf(el, ep, "file", "path", "url")
		if src == "url" {
			if _, _, ok := str(el, "digest"); !ok {
				c.add(SeverityError, el.LookupPath(cue.ParsePath("url")), "%s.digest: a url file needs a pinned sha256 digest", ep)
			}
		}
		if d, dv, ok := str(el, "dest"); ok {
			if first, dup := seen[d]; dup {
				c.add(SeverityError, dv, "%s.dest: duplicate destination %q (first %s)", ep, d, c.where(first))
			} else {
				seen[d] = dv
			}
		}
	}
}

func (c *checker) signing(s cue.Value) {
	_, _, hasKey := str(s, "key")
	if !hasKey && !s.LookupPath(cue.ParsePath("devKey")).Exists() {
		c.add(SeverityError, s, "release.signing: set key, devKey, or both")
	}
}

// closed reports every field the user wrote that the schema does not allow,
// walking the user's value beside the schema. CUE reports these too, but
// not when the same struct has other errors; a spec author wants them all
// in one run. m remembers the schema's answers, so the elements of a long
// list cost a map lookup per field, not a schema lookup.
func (c *checker) closed(user, schema cue.Value, path []string, m *schemaMemo) {
	switch user.IncompleteKind() {
	case cue.StructKind:
		if schema.IncompleteKind()&cue.StructKind == 0 {
			return
		}
		it, err := user.Fields(cue.Optional(true))
		if err != nil {
			return
		}
		for it.Next() {
			sel := it.Selector()
			if sel.LabelType() != cue.StringLabel {
				continue // definitions, hidden fields and lets are the author's own
			}
			p := append(append([]string(nil), path...), sel.Unquoted())
			e := m.field(schema, sel)
			if !e.allowed {
				msg := fmt.Sprintf("%s: unknown field %q", fieldPath(p), sel.Unquoted())
				if near := nearest(sel.Unquoted(), m.names(schema)); near != "" {
					msg += fmt.Sprintf("%s%q?", didYouMean, near)
				}
				c.add(SeverityError, it.Value(), "%s", msg)
				continue
			}
			c.closed(it.Value(), e.schema, p, e.memo)
		}
	case cue.ListKind:
		if m.elem == nil {
			m.elem = &memoEntry{schema: schema.LookupPath(cue.MakePath(cue.AnyIndex)), memo: &schemaMemo{}}
		}
		if !m.elem.schema.Exists() {
			return
		}
		for i, el := range elems(user) {
			c.closed(el, m.elem.schema, append(append([]string(nil), path...), fmt.Sprint(i)), m.elem.memo)
		}
	}
}

// schemaMemo caches what closed asks of one schema value.
type schemaMemo struct {
	fields map[string]*memoEntry
	elem   *memoEntry
	known  []string // the schema's field names, once asked for
}

// names returns the field names schema declares, regular, optional or
// required.
func (m *schemaMemo) names(schema cue.Value) []string {
	if m.known != nil {
		return m.known
	}
	m.known = []string{}
	it, err := schema.Fields(cue.Optional(true))
	if err != nil {
		return m.known
	}
	for it.Next() {
		if sel := it.Selector(); sel.LabelType() == cue.StringLabel {
			m.known = append(m.known, sel.Unquoted())
		}
	}
	return m.known
}

// nearest returns the name in names closest to s by edit distance, if it is
// close enough to be the likely intent (at most a third of s's length, and
// at most 3 edits), or "".
func nearest(s string, names []string) string {
	best, bestD := "", min(3, max(1, len(s)/3))+1
	for _, n := range names {
		if d := editDistance(strings.ToLower(s), strings.ToLower(n)); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

type memoEntry struct {
	allowed bool
	schema  cue.Value
	memo    *schemaMemo
}

func (m *schemaMemo) field(schema cue.Value, sel cue.Selector) *memoEntry {
	k := sel.String()
	if e, ok := m.fields[k]; ok {
		return e
	}
	if m.fields == nil {
		m.fields = map[string]*memoEntry{}
	}
	e := &memoEntry{allowed: schema.Allows(sel), memo: &schemaMemo{}}
	if e.allowed {
		e.schema = field(schema, sel)
	}
	m.fields[k] = e
	return e
}

// field looks up a field of a schema struct whether the schema declares it
// regular, optional (name?) or required (name!).
func field(schema cue.Value, sel cue.Selector) cue.Value {
	for _, s := range []cue.Selector{sel, sel.Optional(), sel.Required()} {
		if v := schema.LookupPath(cue.MakePath(s)); v.Exists() {
			return v
		}
	}
	return cue.Value{}
}

// exactVersion says whether a chart version names one version, strict
// SemVer 2 ("1.4.2"), rather than a range ("^1.4").
func exactVersion(v string) bool {
	_, err := semver.StrictNewVersion(v)
	return err == nil
}
