// Package digest is the one check of bale's digest strings: a sha256
// digest is "sha256:" and 64 lowercase hex digits, and its hex part alone
// (in file names, sums and JSON fields named sha256) is the 64 digits.
// Every digest from a spec, plan, pack or server passes one of these before
// it names a path or is compared.
package digest

import "strings"

// Prefix is the algorithm prefix of every digest bale writes or accepts.
const Prefix = "sha256:"

// ValidHex reports whether s is 64 lowercase hex digits: a sha256.
func ValidHex(s string) bool { return LowerHex(s, 32) }

// LowerHex reports whether s is the lowercase hex form of an n-byte hash
// (2n digits): the form SBOMs and sums files give other hashes in.
func LowerHex(s string, n int) bool {
	if len(s) != 2*n {
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
