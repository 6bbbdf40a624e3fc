package executor

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/executor/cas"
)

// TestMemberCacheInStore writes a pack's members through the store-backed
// cache: members that compress well are stored, members of incompressible
// data (an image layer is already compressed) are not; a warm rebuild
// gives the same bytes, and after one entry changes only its members are
// stored anew, while the pack equals one written without any cache.
func TestMemberCacheInStore(t *testing.T) {
	t.Parallel()
	store, err := cas.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	random := func(seed uint64) []byte {
		b := make([]byte, 2<<20+100)
		rand.NewChaCha8([32]byte{byte(seed)}).Read(b)
		return b
	}
	text := func(seed int) []byte {
		var b bytes.Buffer
		for i := 0; b.Len() < 3<<20; i++ {
			fmt.Fprintf(&b, "{\"seed\":%d,\"row\":%d,\"name\":\"user-%d\"}\n", seed, i, i*7%1000)
		}
		return b.Bytes()
	}
	entries := func(third []byte) []archive.Entry {
		var es []archive.Entry
		for i, b := range [][]byte{random(1), text(2), third} {
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
	cold := write(entries(text(3)), c)
	if n := acCount(); n != 2 {
		t.Fatalf("%d entries' members cached, want 2 (the text ones, not the random one)", n)
	}
	if warm := write(entries(text(3)), c); !bytes.Equal(warm, cold) {
		t.Fatal("warm rebuild differs from the cold build")
	}
	changed := write(entries(text(4)), c)
	if n := acCount(); n != 3 {
		t.Errorf("%d entries' members cached after one entry changed, want 3", n)
	}
	if fresh := write(entries(text(4)), nil); !bytes.Equal(changed, fresh) {
		t.Error("a pack assembled from cached members differs from one written without a cache")
	}
	if bytes.Equal(changed, cold) {
		t.Error("changing an entry did not change the pack")
	}
}
