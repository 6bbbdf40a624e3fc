package diff

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/bale-build/bale/internal/canonjson"
)

// JSON writes the report as indented JSON with a trailing newline.
func (r *Report) JSON(w io.Writer) error {
	return canonjson.NewEncoder(w, true).Encode(r)
}

// Text writes the report for people. Colour is for terminals only.
func (r *Report) Text(w io.Writer, colour bool) error {
	bw := bufio.NewWriter(w)
	paint := func(code, s string) string {
		if !colour {
			return s
		}
		return "\x1b[" + code + "m" + s + "\x1b[0m"
	}
	fmt.Fprintf(bw, "--- %s  %s\n+++ %s  %s\n", r.Old, r.OldPlanID, r.New, r.NewPlanID)
	if r.Empty() {
		fmt.Fprintln(bw, "no changes")
		return bw.Flush()
	}
	section := func(title string, n int) {
		if n > 0 {
			fmt.Fprintf(bw, "\n%s (%d)\n", paint("1", title), n)
		}
	}
	if r.Spec != nil {
		section("spec", 1)
		fmt.Fprintf(bw, "  %s\n  %s\n", paint("31", "- "+r.Spec.Old), paint("32", "+ "+r.Spec.New))
	}
	if r.SourceDateEpoch != nil {
		section("build timestamp", 1)
		fmt.Fprintf(bw, "  %s -> %s\n", r.SourceDateEpoch.Old, r.SourceDateEpoch.New)
	}
	section("builder", len(r.Builder))
	for _, c := range r.Builder {
		fmt.Fprintf(bw, "  %s: %s -> %s\n", c.Field, c.Old, c.New)
	}
	section("targets", len(r.Targets))
	for _, c := range r.Targets {
		fmt.Fprintf(bw, "  %s: %q -> %q\n", c.Field, c.Old, c.New)
	}
	section("inputs added", len(r.Added))
	for _, in := range r.Added {
		fmt.Fprintf(bw, "  %s %s  %s\n", paint("32", "+ "+in.Key), in.Digest, in.Source)
	}
	section("inputs removed", len(r.Removed))
	for _, in := range r.Removed {
		fmt.Fprintf(bw, "  %s %s  %s\n", paint("31", "- "+in.Key), in.Digest, in.Source)
	}
	section("inputs re-pinned", len(r.Repinned))
	for _, rp := range r.Repinned {
		fmt.Fprintf(bw, "  %s %s\n    %s -> %s\n", paint("33", "~ "+rp.Key), rp.Source, rp.Old, rp.New)
		for _, pc := range rp.Platforms {
			fmt.Fprintf(bw, "    %s: %s -> %s\n", pc.Platform, orNone(pc.Old), orNone(pc.New))
		}
	}
	section("sources changed", len(r.SourceChanged))
	for _, s := range r.SourceChanged {
		fmt.Fprintf(bw, "  %s\n    %s -> %s\n", paint("33", "~ "+s.Key), s.Old, s.New)
	}
	section("steps added", len(r.StepsAdded))
	for _, s := range r.StepsAdded {
		fmt.Fprintf(bw, "  + %s %s\n", s.Action, short(s.ID))
	}
	section("steps removed", len(r.StepsRemoved))
	for _, s := range r.StepsRemoved {
		fmt.Fprintf(bw, "  - %s %s\n", s.Action, short(s.ID))
	}
	section("outputs", len(r.Outputs))
	for _, o := range r.Outputs {
		switch o.Change {
		case Added:
			fmt.Fprintf(bw, "  %s%s\n", paint("32", "+ "+o.Path), unlessNamed(o.Path, o.New))
		case Removed:
			fmt.Fprintf(bw, "  %s%s\n", paint("31", "- "+o.Path), unlessNamed(o.Path, o.Old))
		default:
			fmt.Fprintf(bw, "  %s  %s -> %s\n", paint("33", "~ "+o.Path), short(o.Old), short(o.New))
		}
	}
	return bw.Flush()
}

// Markdown writes the report as a pull-request comment.
func (r *Report) Markdown(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "### bale plan diff\n\n`%s` → `%s`\n\n", short(r.OldPlanID), short(r.NewPlanID))
	if r.Empty() {
		fmt.Fprintln(bw, "No changes.")
		return bw.Flush()
	}
	var summary []string
	count := func(n int, what string) {
		if n > 0 {
			summary = append(summary, fmt.Sprintf("%d %s", n, what))
		}
	}
	count(len(r.Added), "added")
	count(len(r.Removed), "removed")
	count(len(r.Repinned), "re-pinned")
	count(len(r.SourceChanged), "source changed")
	count(len(r.StepsAdded)+len(r.StepsRemoved), "step changes")
	if len(summary) > 0 {
		fmt.Fprintf(bw, "**%s**\n\n", strings.Join(summary, " · "))
	}
	if r.SourceDateEpoch != nil {
		fmt.Fprintf(bw, "- Build timestamp: `%s` → `%s`\n", r.SourceDateEpoch.Old, r.SourceDateEpoch.New)
	}
	for _, c := range r.Builder {
		fmt.Fprintf(bw, "- Builder %s: `%s` → `%s`\n", c.Field, c.Old, c.New)
	}
	if r.Spec != nil {
		fmt.Fprintf(bw, "- Spec: `%s` → `%s`\n", r.Spec.Old, r.Spec.New)
	}
	if r.SourceDateEpoch != nil || len(r.Builder) > 0 || r.Spec != nil {
		fmt.Fprintln(bw)
	}
	table := func(title string, header string, rows []string) {
		if len(rows) == 0 {
			return
		}
		fmt.Fprintf(bw, "#### %s\n\n%s\n", title, header)
		for _, row := range rows {
			fmt.Fprintln(bw, row)
		}
		fmt.Fprintln(bw)
	}
	var rows []string
	for _, rp := range r.Repinned {
		plats := ""
		for _, pc := range rp.Platforms {
			plats += fmt.Sprintf("%s: `%s` → `%s`<br>", pc.Platform, short(orNone(pc.Old)), short(orNone(pc.New)))
		}
		rows = append(rows, fmt.Sprintf("| `%s` | `%s` | `%s` | `%s` | %s |", rp.Key, md(rp.Source), short(rp.Old), short(rp.New), plats))
	}
	table("Re-pinned", "| input | source | old | new | platforms |\n|---|---|---|---|---|", rows)
	rows = nil
	for _, in := range r.Added {
		rows = append(rows, fmt.Sprintf("| `%s` | `%s` | `%s` |", in.Key, short(in.Digest), md(in.Source)))
	}
	table("Added", "| input | digest | source |\n|---|---|---|", rows)
	rows = nil
	for _, in := range r.Removed {
		rows = append(rows, fmt.Sprintf("| `%s` | `%s` | `%s` |", in.Key, short(in.Digest), md(in.Source)))
	}
	table("Removed", "| input | digest | source |\n|---|---|---|", rows)
	rows = nil
	for _, s := range r.SourceChanged {
		rows = append(rows, fmt.Sprintf("| `%s` | `%s` | `%s` |", s.Key, md(s.Old), md(s.New)))
	}
	table("Sources changed", "| input | old | new |\n|---|---|---|", rows)
	if len(r.Outputs) > 0 {
		fmt.Fprintf(bw, "<details><summary>%d outputs differ</summary>\n\n| | output | old | new |\n|---|---|---|---|\n", len(r.Outputs))
		for _, o := range r.Outputs {
			fmt.Fprintf(bw, "| %s | `%s` | `%s` | `%s` |\n", o.Change, md(o.Path), short(orNone(o.Old)), short(orNone(o.New)))
		}
		fmt.Fprintln(bw, "\n</details>")
	}
	return bw.Flush()
}

// unlessNamed renders digest d after path p, unless p is named by it (a
// blob's path is its digest).
func unlessNamed(p, d string) string {
	if hex, ok := strings.CutPrefix(d, "sha256:"); ok && strings.HasSuffix(p, "/"+hex) {
		return ""
	}
	return "  " + short(d)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// short abbreviates a digest (or "recipe:" and a digest) for people; JSON
// keeps it whole.
func short(d string) string {
	step, rest := "", d
	if r, ok := strings.CutPrefix(d, "recipe:"); ok {
		step, rest = "recipe ", r
	}
	if strings.HasPrefix(rest, "sha256:") && len(rest) > 19 {
		return step + rest[:19]
	}
	return step + rest
}

// md keeps a value from breaking a Markdown table cell.
func md(s string) string {
	return strings.NewReplacer("|", "\\|", "`", "'", "\n", " ").Replace(s)
}
