package pin

import (
	"fmt"
	"io"
	"strings"
)

// maxDiffCells bounds the line-matching table of Diff; beyond it the whole
// file is shown as replaced.
const maxDiffCells = 4 << 20

// Diff writes a unified diff of the edit, with three lines of context,
// naming the file as name.
func (e Edit) Diff(w io.Writer, name string) error {
	a, b := lines(string(e.Old)), lines(string(e.New))
	ops := diffLines(a, b)
	if _, err := fmt.Fprintf(w, "--- %s\n+++ %s\n", name, name); err != nil {
		return err
	}
	const ctx = 3
	for i := 0; i < len(ops); {
		if ops[i].kind == ' ' {
			i++
			continue
		}
		// A hunk: from ctx lines before this change to ctx lines after
		// the last change within 2*ctx of the next.
		start := max(0, i-ctx)
		end := i
		for j := i; j < len(ops); j++ {
			if ops[j].kind != ' ' {
				end = j
			} else if j-end > 2*ctx {
				break
			}
		}
		end = min(len(ops), end+ctx+1)
		oa, ob, na, nb := 0, 0, 0, 0
		for _, o := range ops[:start] {
			if o.kind != '+' {
				oa++
			}
			if o.kind != '-' {
				na++
			}
		}
		for _, o := range ops[start:end] {
			if o.kind != '+' {
				ob++
			}
			if o.kind != '-' {
				nb++
			}
		}
		if _, err := fmt.Fprintf(w, "@@ -%d,%d +%d,%d @@\n", oa+1, ob, na+1, nb); err != nil {
			return err
		}
		for _, o := range ops[start:end] {
			if _, err := fmt.Fprintf(w, "%c%s\n", o.kind, o.text); err != nil {
				return err
			}
		}
		i = end
	}
	return nil
}

type op struct {
	kind byte // ' ', '-' or '+'
	text string
}

func lines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// diffLines matches a and b by longest common subsequence, after their
// common prefix and suffix.
func diffLines(a, b []string) []op {
	var ops []op
	p := 0
	for p < len(a) && p < len(b) && a[p] == b[p] {
		ops = append(ops, op{' ', a[p]})
		p++
	}
	s := 0
	for s < len(a)-p && s < len(b)-p && a[len(a)-1-s] == b[len(b)-1-s] {
		s++
	}
	ma, mb := a[p:len(a)-s], b[p:len(b)-s]
	if len(ma)*len(mb) > maxDiffCells {
		for _, l := range ma {
			ops = append(ops, op{'-', l})
		}
		for _, l := range mb {
			ops = append(ops, op{'+', l})
		}
	} else {
		// lcs[i][j] is the LCS length of ma[i:] and mb[j:].
		lcs := make([][]int, len(ma)+1)
		for i := range lcs {
			lcs[i] = make([]int, len(mb)+1)
		}
		for i := len(ma) - 1; i >= 0; i-- {
			for j := len(mb) - 1; j >= 0; j-- {
				if ma[i] == mb[j] {
					lcs[i][j] = lcs[i+1][j+1] + 1
				} else {
					lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
				}
			}
		}
		i, j := 0, 0
		for i < len(ma) || j < len(mb) {
			switch {
			case i < len(ma) && j < len(mb) && ma[i] == mb[j]:
				ops = append(ops, op{' ', ma[i]})
				i++
				j++
			case i < len(ma) && (j == len(mb) || lcs[i+1][j] >= lcs[i][j+1]):
				ops = append(ops, op{'-', ma[i]})
				i++
			default:
				ops = append(ops, op{'+', mb[j]})
				j++
			}
		}
	}
	for _, l := range a[len(a)-s:] {
		ops = append(ops, op{' ', l})
	}
	return ops
}
