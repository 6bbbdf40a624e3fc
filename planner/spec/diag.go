package spec

import (
	"fmt"
	"sort"
	"strings"
	"unicode"

	"cuelang.org/go/cue"
	cueerrors "cuelang.org/go/cue/errors"
)

// Severity is how bad a Diagnostic is.
type Severity string

// The severities. A warning is a lint finding; vet --strict treats it as an
// error.
const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// Diagnostic is one problem in a spec, at a position in a spec file.
type Diagnostic struct {
	File     string   `json:"file"`
	Line     int      `json:"line"`
	Column   int      `json:"column"`
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
}

// String formats d the way compilers do: file:line:col: message, with
// "warning: " before the message of a warning.
func (d Diagnostic) String() string {
	pos := d.File
	if d.Line > 0 {
		pos = fmt.Sprintf("%s:%d:%d", d.File, d.Line, d.Column)
	}
	if d.Severity == SeverityWarning {
		return pos + ": warning: " + d.Message
	}
	return pos + ": " + d.Message
}

// didYouMean starts the suggestion an unknown field's message may end with.
const didYouMean = "; did you mean "

// Diagnostics is a list of problems. As an error it reads as one line per
// problem.
type Diagnostics []Diagnostic

// Error lists every diagnostic, one a line.
func (ds Diagnostics) Error() string {
	lines := make([]string, len(ds))
	for i, d := range ds {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}

// HasErrors says whether any diagnostic is an error.
func (ds Diagnostics) HasErrors() bool {
	for _, d := range ds {
		if d.Severity == SeverityError {
			return true
		}
	}
	return false
}

// dedupe drops a diagnostic that repeats another's position and message,
// and a CUE "unknown field" that the closedness walk also reported.
func (ds Diagnostics) dedupe() Diagnostics {
	// The walk's "unknown field" may add a suggestion CUE's lacks: keep
	// the one that helps.
	suggested := map[string]bool{}
	for _, d := range ds {
		if base, _, ok := strings.Cut(d.String(), didYouMean); ok {
			suggested[base] = true
		}
	}
	seen := map[string]bool{}
	out := ds[:0]
	for _, d := range ds {
		k := d.String()
		if seen[k] || suggested[k] {
			continue
		}
		seen[k] = true
		out = append(out, d)
	}
	return out
}

func (ds Diagnostics) sort() {
	sort.SliceStable(ds, func(i, j int) bool {
		a, b := ds[i], ds[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Column != b.Column {
			return a.Column < b.Column
		}
		return a.Message < b.Message
	})
}

// describe says, for a schema constraint CUE reports by quoting it (a
// regular expression, a builtin), what a spec author should write instead:
// a person should not have to read regular expressions.
func describe(bound string) string {
	const safeName = `a name safe as a file name: letters, digits, '.', '_', '+', '-', not starting with '.', no "..", at most 128 characters`
	const relPath = `a relative path inside the artifact: no leading '/', no "." or ".." segment, no empty segment`
	for _, w := range []struct{ pattern, want string }{
		{`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`, `an image tag "repository:tag" in the OCI distribution grammar: the repository is lowercase path components joined by '/' after an optional registry host, the tag 1 to 128 of A-Z a-z 0-9 _ . - not starting with '.' or '-'`},
		{`sha256:[0-9a-f]{64}`, `a digest: "sha256:" and 64 lowercase hex digits`},
		{`[A-Za-z0-9][A-Za-z0-9._+-]*`, safeName},
		{`[a-z0-9]+/[a-z0-9_]+`, `a platform "os/arch" or "os/arch/variant", e.g. "linux/arm64/v8"`},
		{`[A-Za-z0-9._+-]+(/`, relPath},
		{`(^|/)\\.\\.?(/|$)`, relPath},
		{`\\.\\.`, safeName},
		{`^https?://`, `an http:// or https:// URL`},
		{`^oci://`, `an oci:// reference`},
		{`^[^\\s]+$`, `a value without spaces`},
		{`MaxRunes(128)`, `at most 128 characters`},
		{`MaxRunes(255)`, `at most 255 characters`},
	} {
		if strings.Contains(bound, w.pattern) {
			return w.want
		}
	}
	return "a value that satisfies " + bound
}

// leafWant describes fields whose schema is a disjunction; CUE reports
// those as one error per alternative.
func leafWant(leaf string) string {
	switch leaf {
	case "sourceDateEpoch":
		return "an RFC 3339 time such as \"2025-01-01T00:00:00Z\", or Unix seconds"
	case "mode":
		return "0o644, or 0o755 for an executable file"
	case "algorithm":
		return `"gzip"`
	case "level":
		return "a gzip level from 0 to 9"
	case "format":
		return `"spdx-2.3-json"`
	case "kind":
		return "one of the kinds the schema lists"
	case "name":
		return `a name safe as a file name: letters, digits, '.', '_', '+', '-', not starting with '.', no "..", at most 128 characters`
	case "checksums", "verifyScript":
		return "a name safe as a file name"
	case "builderId", "buildType":
		return "an http:// or https:// URL"
	}
	return ""
}

// message renders the errors at one path as one sentence that names the
// field and what was expected.
func message(path []string, errs []cueerrors.Error, disj bool, user cue.Value) string {
	field := fieldPath(path)
	if field == "" {
		// Errors with no path come from parsing or loading.
		return errs[0].Error()
	}
	leaf := ""
	if len(path) > 0 {
		leaf = path[len(path)-1]
	}
	first := errs[0].Error()
	if i := strings.Index(first, ": "); i >= 0 && !strings.Contains(first[:i], " ") {
		first = first[i+2:]
	}
	switch {
	case strings.HasPrefix(first, "field not allowed"):
		return fmt.Sprintf("%s: unknown field %q", field, leaf)
	case strings.Contains(first, "field is required but not present"):
		return fmt.Sprintf("%s: required field is missing", field)
	}
	got := ""
	if user.Exists() {
		if v := user.LookupPath(cuePath(path)); v.Exists() {
			if b, err := v.MarshalJSON(); err == nil {
				got = printable(string(b))
				if len(got) > 64 {
					got = fmt.Sprintf("%s… (%d characters)", got[:48], len(got))
				}
			}
		}
	}
	if disj {
		want := leafWant(leaf)
		if want == "" {
			var alts []string
			for _, e := range errs {
				alts = append(alts, strings.TrimPrefix(e.Error(), strings.Join(append([]string{"spec"}, path...), ".")+": "))
			}
			want = "one of the allowed forms (" + strings.Join(alts, "; ") + ")"
		}
		if got != "" {
			return fmt.Sprintf("%s: invalid value %s: want %s", field, got, want)
		}
		return fmt.Sprintf("%s: want %s", field, want)
	}
	if i := strings.Index(first, "(out of bound "); i >= 0 {
		want := describe(strings.TrimSuffix(first[i+len("(out of bound "):], ")"))
		if got != "" {
			return fmt.Sprintf("%s: invalid value %s: want %s", field, got, want)
		}
		return fmt.Sprintf("%s: want %s", field, want)
	}
	if strings.Contains(first, "mismatched types") {
		if i := strings.Index(first, "(mismatched types "); i >= 0 {
			types := strings.TrimSuffix(first[i+len("(mismatched types "):], ")")
			if parts := strings.SplitN(types, " and ", 2); len(parts) == 2 {
				// CUE names the user's type first when the user's value
				// came first; say which is which.
				have, want := parts[0], parts[1]
				if got == "" || !kindMatches(user.LookupPath(cuePath(path)), have) {
					have, want = want, have
				}
				if got != "" {
					return fmt.Sprintf("%s: invalid value %s: want %s, got %s", field, got, article(want), have)
				}
				return fmt.Sprintf("%s: want %s, got %s", field, article(want), have)
			}
		}
	}
	if strings.Contains(first, "does not satisfy") || strings.Contains(first, "invalid value") {
		if want := leafWant(leaf); want != "" && got != "" {
			return fmt.Sprintf("%s: invalid value %s: want %s", field, got, want)
		}
	}
	return fmt.Sprintf("%s: %s", field, first)
}

func kindMatches(v cue.Value, typ string) bool {
	if !v.Exists() {
		return false
	}
	k := v.IncompleteKind()
	switch typ {
	case "string":
		return k == cue.StringKind
	case "int":
		return k == cue.IntKind
	case "float", "number":
		return k&cue.NumberKind != 0
	case "bool":
		return k == cue.BoolKind
	case "list":
		return k == cue.ListKind
	case "struct":
		return k == cue.StructKind
	case "null":
		return k == cue.NullKind
	}
	return false
}

func article(typ string) string {
	switch typ {
	case "int":
		return "an integer"
	case "list":
		return "a list"
	case "struct":
		return "a struct"
	case "string":
		return "a string"
	case "bool":
		return "a bool"
	}
	return typ
}

// printable escapes what a terminal would interpret rather than show
// (control characters, bidirectional overrides), so a hostile value is
// shown as written, not as it would like to look.
func printable(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsPrint(r) {
			b.WriteRune(r)
			continue
		}
		fmt.Fprintf(&b, "\\u%04x", r)
	}
	return b.String()
}
