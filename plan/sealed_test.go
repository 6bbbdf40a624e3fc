package plan

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

func TestSealAndRead(t *testing.T) {
	t.Parallel()
	s, err := Seal(sample())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(s.Bytes())
	if s.ID() != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("ID %s is not the sha256 of Bytes", s.ID())
	}
	back, err := Read(bytes.NewReader(s.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if back.ID() != s.ID() || !bytes.Equal(back.Bytes(), s.Bytes()) {
		t.Errorf("Read of the sealed bytes: id %s, want %s", back.ID(), s.ID())
	}

	// Another encoding of the same plan carries another sha256: refused,
	// naming the id of the canonical bytes.
	reindented := bytes.ReplaceAll(s.Bytes(), []byte("\n  "), []byte("\n    "))
	if _, err := Read(bytes.NewReader(reindented)); err == nil || !strings.Contains(err.Error(), "not in canonical form") || !strings.Contains(err.Error(), s.ID()) {
		t.Errorf("Read of a re-indented plan: %v", err)
	}
	if _, err := Read(bytes.NewReader(append(bytes.TrimSuffix(s.Bytes(), []byte("\n")), []byte("\n\n")...))); err == nil {
		t.Error("Read accepted a plan with an extra trailing newline")
	}
	// Invalid plans are refused by Seal and Read alike.
	bad := sample()
	bad.FormatVersion = 99
	if _, err := Seal(bad); err == nil {
		t.Error("Seal accepted an invalid plan")
	}
	if _, err := Seal(nil); err == nil {
		t.Error("Seal accepted nil")
	}
}
