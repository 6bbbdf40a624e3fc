// Package digest is the one check of bale's digest strings: a sha256
// digest is "sha256:" and 64 lowercase hex digits, and its hex part alone
// (in file names, sums and JSON fields named sha256) is the 64 digits.
// Every digest from a spec, plan, pack or server passes one of these before
// it names a path or is compared.
package digest

import "strings"

// Prefix is the algorithm prefix of every digest bale writes or accepts.
const Prefix = "sha256:"

// ValidHex reports whether s is 64 lowercase hex digits.
func ValidHex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Valid reports whether d is "sha256:" followed by ValidHex digits.
func Valid(d string) bool {
	hex, ok := strings.CutPrefix(d, Prefix)
	return ok && ValidHex(hex)
}

// Hex returns d's hex part, or "" when d is not Valid.
func Hex(d string) string {
	if !Valid(d) {
		return ""
	}
	return d[len(Prefix):]
}
