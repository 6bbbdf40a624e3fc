package schemas

import "testing"

// TestRules: Check holds single values to the schema's definitions, so a
// name from a registry or a disk gets the rule a spec's name gets.
func TestRules(t *testing.T) {
	t.Parallel()
	r, err := Compile()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		def, value string
		ok         bool
	}{
		{"#RelPath", "aoc-offline-kit.tar.gz", true},
		{"#RelPath", "kit/SHA256SUMS", true},
		{"#RelPath", "\x1b]0;owned\x07", false},
		{"#RelPath", "a\nb", false},
		{"#RelPath", "a\u2028b", false},
		{"#RelPath", "../x", false},
		{"#RelPath", "/etc/passwd", false},
		{"#RelPath", "a//b", false},
		{"#Name", "bootstrap-pack-v1", true},
		{"#Name", ".hidden", false},
		{"#Digest", "sha256:abc", false},
	} {
		err := r.Check(tc.def, tc.value)
		if (err == nil) != tc.ok {
			t.Errorf("Check(%s, %q) = %v, want ok=%v", tc.def, tc.value, err, tc.ok)
		}
	}
	if err := r.Check("#Nope", "x"); err == nil {
		t.Error("an unknown definition passed")
	}
}
