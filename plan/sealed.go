package plan

import (
	"bytes"
	"fmt"
	"io"
)

// Sealed is a plan checked and encoded once: the plan, its canonical
// bytes and its id. Planning and Read return one, and the executor, the
// server and the CLI pass it on: none of them validates, encodes or hashes
// the plan again, and a plan id can never name other bytes than the plan
// it travels with.
type Sealed struct {
	plan  *Plan
	bytes []byte
	id    string
}

// Seal validates p and returns it sealed. p must not be modified
// afterwards: the seal holds it, not a copy.
func Seal(p *Plan) (*Sealed, error) {
	if p == nil {
		return nil, fmt.Errorf("seal plan: no plan")
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	b, err := Marshal(p)
	if err != nil {
		return nil, err
	}
	return &Sealed{plan: p, bytes: b, id: ID(b)}, nil
}

// Read decodes a plan as Decode does (the plan is hostile input) and
// seals it. Bytes that are not the plan's canonical encoding (a plan
// re-indented by hand or by another tool) are refused: the plan id is the
// sha256 of the bytes as written, so that sha256sum of the file gives it,
// and another encoding would carry another id.
func Read(r io.Reader) (*Sealed, error) {
	var raw bytes.Buffer
	p, err := decode(io.TeeReader(r, &raw))
	if err != nil {
		return nil, err
	}
	s, err := Seal(p)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(raw.Bytes(), s.bytes) {
		return nil, fmt.Errorf("decode plan: not in canonical form (as bale plan writes it): the plan id %s is of the canonical bytes, which differ from these at byte %d", s.id, firstDiff(raw.Bytes(), s.bytes))
	}
	return s, nil
}

func firstDiff(a, b []byte) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// Plan returns the sealed plan. The caller must not modify it.
func (s *Sealed) Plan() *Plan { return s.plan }

// Bytes returns the plan's canonical bytes. The caller must not modify
// them.
func (s *Sealed) Bytes() []byte { return s.bytes }

// ID returns the plan id: "sha256:" and the hex sha256 of Bytes.
func (s *Sealed) ID() string { return s.id }
