package kit

import (
	"context"
	"testing"
)

// BenchmarkVerify is bale's in-process verification of the AOC kit: every
// file hashed, three signatures, the SBOM and dataset manifest against their
// tarballs. Compare with `sh verify.sh` (three cosign processes).
func BenchmarkVerify(b *testing.B) {
	dir, _ := buildKit(b, aocInput(devKey(b)))
	for b.Loop() {
		r, err := Verify(context.Background(), dir, VerifyOptions{})
		if err != nil || !r.OK() {
			b.Fatal(err, r.Err())
		}
	}
}
