package sign

import (
	"crypto/sha256"
	"testing"
)

// BenchmarkSignBlob is the per-signature cost of a blob bundle (digest
// given: hashing the blob is the caller's, once per artifact anyway).
func BenchmarkSignBlob(b *testing.B) {
	k := devKey(b)
	d := sha256.Sum256([]byte("blob"))
	for b.Loop() {
		if _, err := k.SignBlob(d); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyBlob is the in-process verification of one blob bundle.
func BenchmarkVerifyBlob(b *testing.B) {
	k := devKey(b)
	d := sha256.Sum256([]byte("blob"))
	bundle, _ := k.SignBlob(d)
	v := k.Verifier()
	for b.Loop() {
		if err := v.VerifyBlob(bundle, d); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadKey is decrypting a cosign key (scrypt N=2^15..2^16 by
// cosign's parameters): paid once per build.
func BenchmarkLoadKey(b *testing.B) {
	for b.Loop() {
		devKey(b)
	}
}
