// Package sums is the sha256sum line format bale writes and reads:
// "HEX  NAME\n", 64 lowercase hex digits, two spaces (sha256sum's text
// mode), the name, a newline. A NAME.sha256 file is one such line; a
// SHA256SUMS file is one per file, sorted by name in byte order. Both are
// what `sha256sum -c` accepts. Reading is strict: bale reads back only what
// it wrote, so anything else is refused, naming the line.
package sums

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/bale-build/bale/internal/digest"
)

// Sum is one line: a file's name and the hex sha256 of its bytes.
type Sum struct {
	Name   string
	SHA256 string
}

// Line returns the line for one file, "HEX  NAME\n": the content of a
// NAME.sha256 file.
func Line(hexSum, name string) []byte {
	return []byte(hexSum + "  " + name + "\n")
}

// ValidName reports whether name can stand in a line that sha256sum reads
// back as written: not empty, no newline, carriage return, backslash (which
// sha256sum would escape) or NUL.
func ValidName(name string) bool {
	return name != "" && !strings.ContainsAny(name, "\n\r\\\x00")
}

// Marshal renders sums sorted by name: a SHA256SUMS file. A name repeated
// or not ValidName, or a digest not 64 lowercase hex digits, is an error.
func Marshal(sums []Sum) ([]byte, error) {
	s := slices.Clone(sums)
	slices.SortFunc(s, func(a, b Sum) int { return strings.Compare(a.Name, b.Name) })
	var b bytes.Buffer
	for i, x := range s {
		if err := x.check(); err != nil {
			return nil, err
		}
		if i > 0 && s[i-1].Name == x.Name {
			return nil, fmt.Errorf("%s listed twice", x.Name)
		}
		b.Write(Line(x.SHA256, x.Name))
	}
	return b.Bytes(), nil
}

func (x Sum) check() error {
	if !ValidName(x.Name) {
		return fmt.Errorf("file name %q cannot be listed", x.Name)
	}
	if !digest.ValidHex(x.SHA256) {
		return fmt.Errorf("%s: digest %q is not 64 lowercase hex digits", x.Name, x.SHA256)
	}
	return nil
}

// Parse reads what Marshal writes: "HEX  NAME" lines each ending in a
// newline, names sorted in byte order, none repeated. Errors name the line.
func Parse(data []byte) ([]Sum, error) {
	text := string(data)
	if text == "" {
		return nil, nil
	}
	if !strings.HasSuffix(text, "\n") {
		return nil, fmt.Errorf("last line has no newline")
	}
	var out []Sum
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		s, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		if len(out) > 0 && out[len(out)-1].Name >= s.Name {
			return nil, fmt.Errorf("line %d: %s is out of order or repeated", i+1, s.Name)
		}
		out = append(out, s)
	}
	return out, nil
}

// ParseAny reads sha256sum output bale did not necessarily write, as
// `sha256sum -c` reads it: each line HEX, a space, a space or '*' (binary
// mode), the name; blank lines are skipped and order is free. Names must
// still be ValidName. Errors name the line.
func ParseAny(data []byte) ([]Sum, error) {
	var out []Sum
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			continue
		}
		if len(line) < 66 || line[64] != ' ' || (line[65] != ' ' && line[65] != '*') {
			return nil, fmt.Errorf("line %d: %q is not a sha256sum line", i+1, line)
		}
		s := Sum{SHA256: line[:64], Name: line[66:]}
		if err := s.check(); err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// ParseLine reads a NAME.sha256 file: exactly one line as Line writes it.
func ParseLine(data []byte) (Sum, error) {
	line, ok := strings.CutSuffix(string(data), "\n")
	if !ok || strings.Contains(line, "\n") {
		return Sum{}, fmt.Errorf("not one sha256sum line \"HEX  NAME\\n\"")
	}
	return parseLine(line)
}

func parseLine(line string) (Sum, error) {
	hexSum, name, ok := strings.Cut(line, "  ")
	s := Sum{Name: name, SHA256: hexSum}
	if !ok || s.check() != nil {
		return Sum{}, fmt.Errorf("%q is not \"HEX  NAME\"", line)
	}
	return s, nil
}
