package spec

import (
	"fmt"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/token"
)

// A cap is a limit on the length of a list in a spec; the numbers are the
// schema's (#MaxImages and so on), where they are documented.
type listCap struct {
	path, max, what string
}

var (
	topCaps = []listCap{
		{"bootstrapPack.images", "#MaxImages", "images"},
		{"bootstrapPack.charts", "#MaxCharts", "charts"},
		{"bootstrapPack.signatures", "#MaxSignatures", "signature files"},
		{"bootstrapPack.bundles", "#MaxBundles", "bundle references"},
		{"release.runner.files", "#MaxFiles", "files"},
		{"release.dataset.files", "#MaxFiles", "files"},
	}
	imageCaps = []listCap{
		{"tags", "#MaxTags", "tags"},
		{"platforms", "#MaxPlatforms", "platforms"},
	}
)

// caps reports every list of the user's value that is longer than the
// schema allows. It runs before the spec is checked against the schema, so
// a spec with a million images is refused in the time it takes to count
// them, not to check each.
func (c *checker) caps(schema cue.Value) {
	maxes := capMaxes(schema)
	check := func(v cue.Value, at string, lc listCap) {
		l := v.LookupPath(cue.ParsePath(lc.path))
		if l.IncompleteKind() != cue.ListKind {
			return
		}
		n, err := l.Len().Int64()
		if err != nil {
			return
		}
		if max := maxes[lc.max]; n > max {
			c.add(SeverityError, l, "%s: %d %s; bale allows at most %d (%s in bale's schema)", at+lc.path, n, lc.what, max, lc.max)
		}
	}
	for _, lc := range topCaps {
		check(c.v, "", lc)
	}
	if len(c.diags) > 0 {
		return
	}
	for i, img := range elems(c.v.LookupPath(cue.ParsePath("bootstrapPack.images"))) {
		for _, lc := range imageCaps {
			check(img, fmt.Sprintf("bootstrapPack.images[%d].", i), lc)
		}
	}
}

// sourceCaps counts the list literals of the spec's syntax, before CUE
// evaluates anything: a spec written out with 100,000 images is refused in
// the time it takes to parse it. (Lists that comprehensions compute are
// counted by caps, once CUE has evaluated them.)
func (c *checker) sourceCaps(files []*ast.File, schema cue.Value) {
	maxes := capMaxes(schema)
	limits := map[string]listCap{}
	for _, lc := range topCaps {
		limits[lc.path] = lc
	}
	for _, lc := range imageCaps {
		limits["bootstrapPack.images[]."+lc.path] = lc
	}
	// key is the path with list indexes left out, at the path as a spec
	// author reads it.
	var walk func(decls []ast.Decl, key, at string)
	walk = func(decls []ast.Decl, key, at string) {
		for _, d := range decls {
			f, ok := d.(*ast.Field)
			if !ok {
				continue
			}
			name, _, err := ast.LabelName(f.Label)
			if err != nil {
				continue
			}
			k, a := key+name, at+name
			switch v := f.Value.(type) {
			case *ast.StructLit:
				walk(v.Elts, k+".", a+".")
			case *ast.ListLit:
				if lc, ok := limits[k]; ok {
					if max := maxes[lc.max]; int64(len(v.Elts)) > max {
						c.addPos(v.Pos(), "%s: %d %s; bale allows at most %d (%s in bale's schema)", a, len(v.Elts), lc.what, max, lc.max)
						continue
					}
				}
				for i, el := range v.Elts {
					if s, ok := el.(*ast.StructLit); ok {
						walk(s.Elts, k+"[].", fmt.Sprintf("%s[%d].", a, i))
					}
				}
			}
		}
	}
	for _, f := range files {
		walk(f.Decls, "", "")
	}
}

// addPos is add for a position in the syntax.
func (c *checker) addPos(pos token.Pos, format string, args ...any) {
	d := Diagnostic{Severity: SeverityError, Message: fmt.Sprintf(format, args...), File: c.fallback, Line: 1, Column: 1}
	if pos.IsValid() {
		d.File, d.Line, d.Column = rel(c.wd, pos.Filename()), pos.Line(), pos.Column()
	}
	c.diags = append(c.diags, d)
}

// capMaxes reads the caps' numbers from the schema, once per spec.
func capMaxes(schema cue.Value) map[string]int64 {
	m := map[string]int64{}
	for _, lc := range append(append([]listCap(nil), topCaps...), imageCaps...) {
		n, err := schema.LookupPath(cue.ParsePath(lc.max)).Int64()
		if err != nil {
			// The schema is embedded and tested; this is a bale bug.
			panic(fmt.Sprintf("bale's schema has no integer %s: %v", lc.max, err))
		}
		m[lc.max] = n
	}
	return m
}
