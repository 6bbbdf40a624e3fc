package digest

import (
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	t.Parallel()
	good := strings.Repeat("0123456789abcdef", 4)
	for _, tc := range []struct {
		in        string
		hex, full bool
	}{
		{good, true, false},
		{Prefix + good, false, true},
		{strings.ToUpper(good), false, false},
		{Prefix + strings.ToUpper(good), false, false},
		{good[:63], false, false},
		{good + "0", false, false},
		{Prefix + good[:63] + "g", false, false},
		{"sha512:" + good, false, false},
		{Prefix + "../../" + good[6:], false, false},
		{"", false, false},
	} {
		if got := ValidHex(tc.in); got != tc.hex {
			t.Errorf("ValidHex(%q) = %v", tc.in, got)
		}
		if got := Valid(tc.in); got != tc.full {
			t.Errorf("Valid(%q) = %v", tc.in, got)
		}
		want := ""
		if tc.full {
			want = good
		}
		if got := Hex(tc.in); got != want {
			t.Errorf("Hex(%q) = %q", tc.in, got)
		}
	}
	if !LowerHex(strings.Repeat("a1", 20), 20) || LowerHex(strings.Repeat("a1", 20), 32) || LowerHex(strings.Repeat("A1", 20), 20) {
		t.Error("LowerHex of a sha1")
	}
}
