package pack

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/bale-build/bale/archive"
)

// FuzzScan reads arbitrary bytes as a pack. Scan must never panic or fail
// on content (only Err says what is wrong), its SHA256 must be the file's,
// and every entry it lists must open to exactly the bytes it hashed.
func FuzzScan(f *testing.F) {
	layer := bytes.Repeat([]byte("layer "), 300<<10/6)
	seed := func(files map[string][]byte) []byte {
		var entries []archive.Entry
		for name, b := range files {
			entries = append(entries, bytesEntry(name, b))
		}
		var out bytes.Buffer
		if err := archive.WriteMembers(context.Background(), &out, entries, buildTime, archive.MembersOptions{Level: 1}); err != nil {
			f.Fatal(err)
		}
		return out.Bytes()
	}
	good := seed(map[string][]byte{IndexPath: []byte("{}\n"), BlobsDir + "/" + hexSum(layer): layer, "signatures/a": []byte("sig")})
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(append(bytes.Clone(good), 0x1f, 0x8b, 8, 0))
	f.Add([]byte{})
	lim := archive.Limits{MaxEntries: 64, MaxEntrySize: 1 << 20, MaxTotalSize: 4 << 20}
	f.Fuzz(func(t *testing.T, data []byte) {
		pr, err := Scan(context.Background(), bytes.NewReader(data), int64(len(data)), ScanOptions{Limits: lim})
		if err != nil {
			t.Fatalf("Scan failed on content: %v", err)
		}
		if pr.SHA256() != hexSum(data) {
			t.Fatal("SHA256 is not the file's")
		}
		for _, fi := range pr.Files() {
			if fi.Dir {
				continue
			}
			rc, err := fi.Open()
			if err != nil {
				t.Fatalf("%s: %v", fi.Name, err)
			}
			b, err := io.ReadAll(rc)
			if err != nil || int64(len(b)) != fi.Size || hexSum(b) != fi.SHA256 {
				t.Fatalf("%s: Open gave %d bytes (%v), the scan %d", fi.Name, len(b), err, fi.Size)
			}
		}
	})
}
