// Package pin writes what a plan resolved back into a spec's CUE source:
// the digest of every image named by tag, and of every chart the spec
// gives no digest, and the exact version of every chart that gives none or
// a range, so that vet --strict, plan --strict and build --strict accept
// the spec and a chart republished under its version is caught. The source is edited as a CUE syntax
// tree and printed with cue/format, so comments and the rest of the file
// stay as they were.
package pin

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/format"
	"cuelang.org/go/cue/parser"
	"cuelang.org/go/cue/token"

	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner/spec"
	"github.com/bale-build/bale/source"
)

// Pin is one value a spec leaves open.
type Pin struct {
	// Path is the CUE path of the field to add, such as
	// "bootstrapPack.images[0].digest".
	Path string
	// Input is the plan input's key, such as "image/web".
	Input string
	// Field is the field to add ("digest" or "version") and After the
	// field of the same struct it follows ("ref", "layout", "path").
	Field, After string
	// Value is what the plan resolved; empty until Resolve.
	Value string
	// Range is the version range the spec gives (Field is "version"): the
	// pin replaces it with the version resolved in it, and After is
	// "version" too.
	Range string
	// Pinned is the digest the spec pins now, for a pin of bale pin
	// --update: the pin replaces it, and After is "digest" too.
	Pinned string
}

// Anchor is the CUE path of the field the pin follows.
func (p Pin) Anchor() string {
	return strings.TrimSuffix(p.Path, "."+p.Field) + "." + p.After
}

// Missing lists what inst leaves unpinned, in spec order: images named by
// tag (or an OCI layout without refName) with no digest; charts with no
// version, a version range, or no digest. An input whose source field is
// marked @bale(allow="unpinned") is not listed. It needs no network.
func Missing(inst *spec.Instance) []Pin {
	var out []Pin
	bp := inst.Spec.BootstrapPack
	if bp == nil {
		return nil
	}
	for i, img := range bp.Images {
		if img.Digest != "" {
			continue
		}
		at := fmt.Sprintf("bootstrapPack.images[%d]", i)
		if inst.Allowed(at+".ref", spec.AllowUnpinned) || inst.Allowed(at+".layout", spec.AllowUnpinned) {
			continue
		}
		switch {
		case img.Ref != "" && !strings.Contains(img.Ref, "@"):
			out = append(out, Pin{Path: at + ".digest", Input: plan.KindImage + "/" + img.Name, Field: "digest", After: "ref"})
		case img.Layout != nil && img.Layout.RefName == "":
			out = append(out, Pin{Path: at + ".digest", Input: plan.KindImage + "/" + img.Name, Field: "digest", After: "layout"})
		}
	}
	for i, c := range bp.Charts {
		at := fmt.Sprintf("bootstrapPack.charts[%d]", i)
		src := c.SourceField()
		if inst.Allowed(at+"."+src, spec.AllowUnpinned) {
			continue
		}
		input := plan.KindChart + "/" + c.Name
		switch {
		case c.Version == "":
			out = append(out, Pin{Path: at + ".version", Input: input, Field: "version", After: src})
		case !source.IsExactVersion(c.Version):
			out = append(out, Pin{Path: at + ".version", Input: input, Field: "version", After: "version", Range: c.Version})
		}
		// A version names a chart but not its bytes: a repository may
		// publish them again, a directory may change.
		if c.Digest == "" {
			after := src
			if c.Version != "" {
				after = "version"
			}
			out = append(out, Pin{Path: at + ".digest", Input: input, Field: "digest", After: after})
		}
	}
	return out
}

// Update lists the digests inst pins that a source can move, for bale pin
// --update: every image's, except an image named by digest in its ref, and
// every chart's. With names, only the images and charts of those names are
// listed, and a name the spec has no image or chart of is an error. It
// returns, beside the pins, a copy of inst without those digests, which
// planning then resolves afresh from the sources (with them, a moved tag
// fails planning). It needs no network.
func Update(inst *spec.Instance, names []string) (*spec.Instance, []Pin, error) {
	bp := inst.Spec.BootstrapPack
	if bp == nil {
		if len(names) > 0 {
			return nil, nil, fmt.Errorf("pin --update: the spec has no bootstrapPack, so no image or chart named %s", strings.Join(names, ", "))
		}
		return inst, nil, nil
	}
	unknown := map[string]bool{}
	for _, n := range names {
		unknown[n] = true
	}
	named := func(n string) bool {
		delete(unknown, n)
		return len(names) == 0 || slices.Contains(names, n)
	}
	// A copy: inst stays what the spec says.
	s, b := *inst.Spec, *bp
	b.Images, b.Charts = slices.Clone(b.Images), slices.Clone(b.Charts)
	s.BootstrapPack = &b
	var out []Pin
	for i := range b.Images {
		img := &b.Images[i]
		if !named(img.Name) || img.Digest == "" || strings.Contains(img.Ref, "@") {
			continue
		}
		out = append(out, Pin{Path: fmt.Sprintf("bootstrapPack.images[%d].digest", i), Input: plan.KindImage + "/" + img.Name, Field: "digest", After: "digest", Pinned: img.Digest})
		img.Digest = ""
	}
	for i := range b.Charts {
		c := &b.Charts[i]
		if !named(c.Name) || c.Digest == "" {
			continue
		}
		out = append(out, Pin{Path: fmt.Sprintf("bootstrapPack.charts[%d].digest", i), Input: plan.KindChart + "/" + c.Name, Field: "digest", After: "digest", Pinned: c.Digest})
		c.Digest = ""
	}
	if len(unknown) > 0 {
		return nil, nil, fmt.Errorf("pin --update: the spec has no image or chart named %s", strings.Join(slices.Sorted(maps.Keys(unknown)), ", "))
	}
	in := *inst
	in.Spec = &s
	return &in, out, nil
}

// Resolve fills in each pin's value from plan p.
func Resolve(pins []Pin, p *plan.Plan) error {
	for i := range pins {
		in, ok := p.Input(pins[i].Input)
		if !ok {
			return fmt.Errorf("pin %s: the plan has no input %s", pins[i].Path, pins[i].Input)
		}
		switch pins[i].Field {
		case "digest":
			pins[i].Value = in.Digest
		case "version":
			if in.Chart == nil {
				return fmt.Errorf("pin %s: input %s is not a chart", pins[i].Path, pins[i].Input)
			}
			pins[i].Value = in.Chart.Version
		}
	}
	return nil
}

// Edit is one spec file with pins written into it.
type Edit struct {
	// File is the file's full name.
	File string
	Old  []byte
	New  []byte
}

// Apply writes pins into the source files of inst that hold the structs
// they belong to. It reads the files but writes nothing: the caller shows
// and writes the edits. A pin whose struct the spec does not write as a
// literal beside the field it follows (a value computed by an expression,
// say) is an error naming it, for the author to pin by hand.
func Apply(inst *spec.Instance, pins []Pin) ([]Edit, error) {
	type key struct {
		pos   token.Pos
		field string
	}
	byFile := map[string][]located{}
	seen := map[key]string{}
	for _, pn := range pins {
		anchor := pn.Anchor()
		pos, ok := inst.SourcePos(anchor)
		if !ok {
			return nil, fmt.Errorf("pin %s: the spec does not write %s in a file", pn.Path, anchor)
		}
		if other, dup := seen[key{pos, pn.Field}]; dup {
			// One struct in the source makes both (a comprehension, a
			// shared definition): one value cannot pin both.
			return nil, fmt.Errorf("pin %s: %s and %s are written by the same struct at %s; pin them by hand", pn.Path, other, anchor, pos)
		}
		seen[key{pos, pn.Field}] = anchor
		byFile[pos.Filename()] = append(byFile[pos.Filename()], located{pin: pn, line: pos.Line(), col: pos.Column()})
	}
	files := make([]string, 0, len(byFile))
	for f := range byFile {
		files = append(files, f)
	}
	sort.Strings(files)
	var edits []Edit
	for _, name := range files {
		src, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("pin: %w", err)
		}
		f, err := parser.ParseFile(name, src, parser.ParseComments)
		if err != nil {
			return nil, fmt.Errorf("pin: parse %s: %w", name, err)
		}
		added := map[ast.Decl]bool{}
		for _, l := range byFile[name] {
			if err := insert(f, l, added); err != nil {
				return nil, err
			}
		}
		out, err := format.Node(f)
		if err != nil {
			return nil, fmt.Errorf("pin: format %s: %w", name, err)
		}
		edits = append(edits, Edit{File: name, Old: src, New: out})
	}
	return edits, nil
}

// located is a pin and the position of the field it follows.
type located struct {
	pin       Pin
	line, col int
}

// insert adds l's field after the field at l's position, in the struct
// literal holding it, and after the fields already added there (added),
// so that pins keep their order; or, for a range, replaces the range.
func insert(f *ast.File, l located, added map[ast.Decl]bool) error {
	var (
		stack []ast.Node
		done  bool
	)
	ast.Walk(f, func(n ast.Node) bool {
		if done {
			return false
		}
		// after runs only for a node whose children were walked: push
		// only when returning true.
		descend := func() bool { stack = append(stack, n); return true }
		fd, ok := n.(*ast.Field)
		if !ok || fd.Value == nil || len(stack) == 0 {
			return descend()
		}
		// CUE places a field's value at its label.
		p := fd.Pos()
		if p.Line() != l.line || p.Column() != l.col || label(fd) != l.pin.After {
			return descend()
		}
		var elts *[]ast.Decl
		switch s := stack[len(stack)-1].(type) {
		case *ast.StructLit:
			elts = &s.Elts
		case *ast.File:
			elts = &s.Decls
		default:
			return descend()
		}
		for i, d := range *elts {
			if d != fd {
				continue
			}
			if l.pin.After == l.pin.Field { // a range or an update
				v := ast.NewString(l.pin.Value)
				// A comment on the range stays with the version.
				ast.SetComments(v, ast.Comments(fd.Value))
				ast.SetPos(v, fd.Value.Pos())
				fd.Value = v
				done = true
				return false
			}
			for i+1 < len(*elts) && added[(*elts)[i+1]] {
				i++
			}
			nf := &ast.Field{Label: ast.NewIdent(l.pin.Field), Value: ast.NewString(l.pin.Value)}
			// One field a line, or all on one, as the struct is written.
			if p.RelPos() >= token.Newline {
				ast.SetRelPos(nf, token.Newline)
			} else {
				ast.SetRelPos(nf, token.Blank)
			}
			*elts = append((*elts)[:i+1], append([]ast.Decl{nf}, (*elts)[i+1:]...)...)
			added[nf] = true
			done = true
			return false
		}
		return descend()
	}, func(ast.Node) { stack = stack[:len(stack)-1] })
	if !done {
		return fmt.Errorf("pin %s: %s is not written as a field of a struct literal; add %s: %s by hand", l.pin.Path, l.pin.After, l.pin.Field, strconv.Quote(l.pin.Value))
	}
	return nil
}

// label returns a field's name as written, quoted or not.
func label(fd *ast.Field) string {
	name, _, err := ast.LabelName(fd.Label)
	if err != nil {
		return ""
	}
	return name
}

// Changed says whether the edit changes the file.
func (e Edit) Changed() bool { return !bytes.Equal(e.Old, e.New) }
