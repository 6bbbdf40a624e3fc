package schemas

import (
	"bytes"
	"fmt"
	"strings"

	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/format"
	"cuelang.org/go/cue/parser"
	"cuelang.org/go/cue/token"
)

// Reference renders the schema as a Markdown reference: every definition
// with its doc comment, then a table of its fields (nested structs as
// dotted names) with type, default, presence and doc comment. It is made
// from Source itself, so the reference cannot drift from what bale checks;
// docs/schema.md is this output, kept current by a test.
func Reference() ([]byte, error) {
	f, err := parser.ParseFile(Filename, Source, parser.ParseComments)
	if err != nil {
		return nil, fmt.Errorf("parse schema: %w", err)
	}
	var b bytes.Buffer
	b.WriteString("# Spec schema reference\n\n")
	b.WriteString("Generated from `schemas/bale.cue` by `go test ./schemas -update`; do not edit.\n")
	b.WriteString("A spec is checked against `#Spec`. Every struct is closed: a field not listed here is an error.\n")
	b.WriteString("Presence: **required** (`name!`), optional (`name?`), or always present (with its default).\n")
	if pc := packageDoc(f); pc != "" {
		fmt.Fprintf(&b, "\n%s\n", pc)
	}
	for _, d := range f.Decls {
		field, ok := d.(*ast.Field)
		if !ok {
			continue
		}
		label := labelName(field.Label)
		if !strings.HasPrefix(label, "#") {
			continue
		}
		fmt.Fprintf(&b, "\n## %s\n\n", label)
		if doc := docText(field); doc != "" {
			fmt.Fprintf(&b, "%s\n\n", doc)
		}
		st, ok := field.Value.(*ast.StructLit)
		if !ok {
			fmt.Fprintf(&b, "Type: `%s`", expr(field.Value))
			if def := defaultOf(field.Value); def != "" {
				fmt.Fprintf(&b, ", default `%s`", def)
			}
			b.WriteString("\n")
			continue
		}
		b.WriteString("| field | type | default | presence | description |\n| --- | --- | --- | --- | --- |\n")
		if err := writeFields(&b, "", st); err != nil {
			return nil, fmt.Errorf("definition %s: %w", label, err)
		}
	}
	return b.Bytes(), nil
}

func writeFields(b *bytes.Buffer, prefix string, st *ast.StructLit) error {
	for _, el := range st.Elts {
		field, ok := el.(*ast.Field)
		if !ok {
			continue
		}
		name := prefix + labelName(field.Label)
		presence := "always"
		switch field.Constraint {
		case token.NOT:
			presence = "**required**"
		case token.OPTION:
			presence = "optional"
		}
		typ, def := "struct (below)", ""
		inner, isStruct := field.Value.(*ast.StructLit)
		if !isStruct {
			typ, def = expr(field.Value), defaultOf(field.Value)
		}
		fmt.Fprintf(b, "| `%s` | %s | %s | %s | %s |\n", name, code(typ), code(def), presence, cell(docText(field)))
		if isStruct {
			if err := writeFields(b, name+".", inner); err != nil {
				return err
			}
		}
	}
	return nil
}

// expr is an expression in one line of CUE, defaults marked as CUE marks
// them.
func expr(e ast.Expr) string {
	out, err := format.Node(e, format.Simplify())
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(out)), " ")
}

// defaultOf returns the default (a `*x` disjunct) of e, if it has one.
func defaultOf(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.UnaryExpr:
		if x.Op == token.MUL {
			return expr(x.X)
		}
	case *ast.BinaryExpr:
		if x.Op == token.OR || x.Op == token.AND {
			if d := defaultOf(x.X); d != "" {
				return d
			}
			return defaultOf(x.Y)
		}
	case *ast.ParenExpr:
		return defaultOf(x.X)
	}
	return ""
}

func labelName(l ast.Label) string {
	name, _, err := ast.LabelName(l)
	if err != nil {
		return fmt.Sprint(l)
	}
	return name
}

// docText is a node's doc comment as one paragraph.
func docText(n ast.Node) string {
	var lines []string
	for _, cg := range ast.Comments(n) {
		if !cg.Doc {
			continue
		}
		for _, c := range cg.List {
			lines = append(lines, strings.TrimSpace(strings.TrimPrefix(c.Text, "//")))
		}
	}
	return strings.Join(lines, " ")
}

func packageDoc(f *ast.File) string {
	for _, d := range f.Decls {
		if p, ok := d.(*ast.Package); ok {
			return docText(p)
		}
	}
	return ""
}

func code(s string) string {
	if s == "" {
		return ""
	}
	return "`" + strings.ReplaceAll(s, "|", `\|`) + "`"
}

func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
