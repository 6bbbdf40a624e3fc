package executor

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/executor/cas"
)

// TestMemberCacheInStore writes a pack's members through the store-backed
// cache: a warm rebuild gives the same bytes, and after one entry changes
// only its member is stored anew, while the pack equals one written
// without any cache.
func TestMemberCacheInStore(t *testing.T) {
	store, err := cas.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	blob := func(seed uint64) []byte {
		b := make([]byte, 2<<20)
		rand.NewChaCha8([32]byte{byte(seed)}).Read(b)
		return b
	}
	entries := func(third []byte) []archive.Entry {
		var es []archive.Entry
		for i, b := range [][]byte{blob(1), blob(2), third} {
			e := fileEntry("images/blobs/sha256/"+string(rune('a'+i)), b)
			e.Digest = "sha256:" + sha(b)
			es = append(es, e)
		}
		return es
	}
	write := func(es []archive.Entry, c archive.MemberCache) []byte {
		var buf bytes.Buffer
		if err := archive.WriteMembers(context.Background(), &buf, es, buildTime, archive.MembersOptions{Level: 6, Cache: c}); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	acCount := func() int {
		ds, _ := os.ReadDir(filepath.Join(store.Root(), "ac"))
		return len(ds)
	}
	c := memberCache{store}
	cold := write(entries(blob(3)), c)
	if n := acCount(); n != 3 {
		t.Fatalf("%d members cached, want 3", n)
	}
	if warm := write(entries(blob(3)), c); !bytes.Equal(warm, cold) {
		t.Fatal("warm rebuild differs from the cold build")
	}
	changed := write(entries(blob(4)), c)
	if n := acCount(); n != 4 {
		t.Errorf("%d members cached after one entry changed, want 4", n)
	}
	if fresh := write(entries(blob(4)), nil); !bytes.Equal(changed, fresh) {
		t.Error("a pack assembled from cached members differs from one written without a cache")
	}
	if bytes.Equal(changed, cold) {
		t.Error("changing an entry did not change the pack")
	}
}
