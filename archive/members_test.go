package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
)

// memCache is a MemberCache in memory that counts hits and stores.
type memCache struct {
	mu                 sync.Mutex
	m                  map[string][]byte
	hits, puts, aborts int
}

func (c *memCache) Get(_ context.Context, key string) (io.ReadCloser, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.m[key]
	if ok {
		c.hits++
	}
	return io.NopCloser(bytes.NewReader(b)), ok, nil
}

func (c *memCache) Create(_ context.Context, key string) (MemberWriter, error) {
	return &memWriter{c: c, key: key}, nil
}

type memWriter struct {
	c   *memCache
	key string
	buf bytes.Buffer
}

func (w *memWriter) Write(p []byte) (int, error) { return w.buf.Write(p) }

func (w *memWriter) Commit() error {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	if w.c.m == nil {
		w.c.m = map[string][]byte{}
	}
	w.c.m[w.key] = w.buf.Bytes()
	w.c.puts++
	return nil
}

func (w *memWriter) Abort() { w.c.mu.Lock(); w.c.aborts++; w.c.mu.Unlock() }

// bigEntry is a file of size bytes from a deterministic sample, with a
// digest standing for its content and a count of how often it is opened.
func bigEntry(name string, size int64, digest string, opens *atomic.Int64) Entry {
	return Entry{
		Name: name, Size: size, Digest: digest,
		Open: func() (io.ReadCloser, error) {
			opens.Add(1)
			return io.NopCloser(io.LimitReader(&cycleReader{sample: textSample()}, size)), nil
		},
	}
}

func writeMembers(t testing.TB, entries []Entry, opt MembersOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteMembers(context.Background(), &buf, entries, buildTime, opt); err != nil {
		t.Fatalf("WriteMembers: %v", err)
	}
	return buf.Bytes()
}

func gunzip(t testing.TB, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestWriteMembersIsWriteTar checks the member layout changes only the
// gzip framing: the decompressed stream is WriteTar's, byte for byte,
// whatever the workers, the cache and its state.
func TestWriteMembersIsWriteTar(t *testing.T) {
	var opens atomic.Int64
	entries := append(fixedEntries(),
		bigEntry("images/blobs/sha256/aa", 3<<20+7, "sha256:aa", &opens),
		bigEntry("images/blobs/sha256/bb", 1<<20, "sha256:bb", &opens),
		bigEntry("images/blobs/sha256/cc", 2<<20, "", &opens), // no digest: never cached
	)
	want := writeTar(t, entries, buildTime)
	cache := &memCache{}
	var packs [][]byte
	for _, opt := range []MembersOptions{
		{Level: 6, Workers: 1},
		{Level: 6, Workers: 4},
		{Level: 6, Workers: 2, Cache: cache}, // cold
		{Level: 6, Workers: 2, Cache: cache}, // warm
	} {
		b := writeMembers(t, entries, opt)
		if got := gunzip(t, b); !bytes.Equal(got, want) {
			t.Fatalf("workers %d: decompressed stream differs from WriteTar's", opt.Workers)
		}
		packs = append(packs, b)
	}
	for i, p := range packs[1:] {
		if !bytes.Equal(p, packs[0]) {
			t.Errorf("pack %d differs from pack 0", i+1)
		}
	}
	if cache.puts != 2 || cache.hits != 2 {
		t.Errorf("cache: %d stores, %d hits; want 2 and 2 (the two big entries with digests)", cache.puts, cache.hits)
	}
	// Opens: 3 big bodies for WriteTar and each of the first three
	// packs, then only the uncached one.
	if got := opens.Load(); got != 4*3+1 {
		t.Errorf("big bodies opened %d times, want 13", got)
	}
	if lvl1 := writeMembers(t, entries, MembersOptions{Level: 1}); bytes.Equal(lvl1, packs[0]) {
		t.Error("level 1 and level 6 packs are identical")
	}
}

// TestMemberKeyCoversEverything changes each input to a member's bytes in
// turn: every change must change the key.
func TestMemberKeyCoversEverything(t *testing.T) {
	base := Entry{Name: "a/b", Mode: 0o644, Size: 10, Digest: "sha256:aa"}
	key := func(e Entry, level int, mtime time.Time) string {
		k, ok := MemberKey(e, level, mtime)
		if !ok {
			t.Fatalf("no key for %+v", e)
		}
		return k
	}
	k0 := key(base, 6, buildTime)
	if k := key(Entry{Name: "a/b", Size: 10, Digest: "sha256:aa"}, 6, buildTime); k != k0 {
		t.Error("mode 0 and 0644 (the same bytes) have different keys")
	}
	seen := map[string]string{k0: "base"}
	for name, k := range map[string]string{
		"name":   key(Entry{Name: "a/c", Mode: 0o644, Size: 10, Digest: "sha256:aa"}, 6, buildTime),
		"mode":   key(Entry{Name: "a/b", Mode: 0o755, Size: 10, Digest: "sha256:aa"}, 6, buildTime),
		"size":   key(Entry{Name: "a/b", Mode: 0o644, Size: 11, Digest: "sha256:aa"}, 6, buildTime),
		"digest": key(Entry{Name: "a/b", Mode: 0o644, Size: 10, Digest: "sha256:ab"}, 6, buildTime),
		"level":  key(base, 5, buildTime),
		"mtime":  key(base, 6, buildTime.Add(time.Second)),
	} {
		if other, dup := seen[k]; dup {
			t.Errorf("changing the %s gives the key of %s", name, other)
		}
		seen[k] = name
	}
	if _, ok := MemberKey(Entry{Name: "a", Size: 1}, 6, buildTime); ok {
		t.Error("an entry without a digest has a key")
	}
}

// TestWriteMembersCancel stops a write in the middle of a big body; every
// goroutine returns and the error is the context's.
func TestWriteMembersCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var entries []Entry
	for i := range 8 {
		entries = append(entries, Entry{
			Name: "f" + string(rune('a'+i)), Size: 1 << 30,
			Open: func() (io.ReadCloser, error) {
				return io.NopCloser(&cancelAfter{n: 4 << 20, cancel: cancel}), nil
			},
		})
	}
	done := make(chan error, 1)
	go func() {
		done <- WriteMembers(ctx, io.Discard, entries, buildTime, MembersOptions{Level: 1, Workers: 2})
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("WriteMembers did not return after cancel")
	}
}

// TestWriteMembersRejects checks the same validation as WriteTar, and bad
// levels.
func TestWriteMembersRejects(t *testing.T) {
	for name, tc := range map[string]struct {
		entries []Entry
		level   int
		want    string
	}{
		"unclean name": {[]Entry{fileEntry("./a", 0, "x")}, 6, "not clean"},
		"level 10":     {nil, 10, "level 10"},
		"level -1":     {nil, -1, "level -1"},
		"short body":   {[]Entry{{Name: "a", Size: 5, Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("x")), nil }}}, 6, "header says 5"},
	} {
		t.Run(name, func(t *testing.T) {
			err := WriteMembers(context.Background(), io.Discard, tc.entries, buildTime, MembersOptions{Level: tc.level})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseMemberExtra(t *testing.T) {
	good := memberExtra(6)
	p, err := ParseMemberExtra(good)
	if err != nil || p != (MemberParams{Layout: MemberLayout, Level: 6, Compressor: Compressor}) {
		t.Fatalf("ParseMemberExtra(%q) = %+v, %v", good, p, err)
	}
	bad := map[string][]byte{
		"empty":         nil,
		"other id":      append([]byte("XX"), good[2:]...),
		"short length":  good[:len(good)-1],
		"long length":   append(bytes.Clone(good), 'x'),
		"no level":      subfield("bale-members/1 lvl=6 c"),
		"level 99":      subfield("bale-members/1 level=99 c"),
		"extra fields":  subfield("bale-members/1 level=6 c d"),
		"negative":      subfield("bale-members/1 level=-1 c"),
		"length only":   {'B', 'L', 0xff},
		"huge declared": {'B', 'L', 0xff, 0xff, 'a'},
	}
	for _, name := range slices.Sorted(maps.Keys(bad)) {
		if _, err := ParseMemberExtra(bad[name]); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func subfield(s string) []byte {
	return append([]byte{'B', 'L', byte(len(s)), byte(len(s) >> 8)}, s...)
}

// TestWalkGzipMembers: Walk reads a pack's members only when asked; by
// default a second member is trailing data, as in a chart or a kit.
func TestWalkGzipMembers(t *testing.T) {
	b := writeMembers(t, fixedEntries(), MembersOptions{Level: 6})
	err := Walk(context.Background(), bytes.NewReader(b), Limits{}, func(*tar.Header, io.Reader) error { return nil })
	// The first member ends after the first entry, without the marker.
	if !errors.Is(err, ErrTruncated) {
		t.Errorf("default limits: err = %v, want ErrTruncated", err)
	}
	var names []string
	err = Walk(context.Background(), bytes.NewReader(b), Limits{GzipMembers: true}, func(h *tar.Header, _ io.Reader) error {
		names = append(names, h.Name)
		return nil
	})
	if err != nil || len(names) != 14 {
		t.Errorf("GzipMembers: %d entries, err %v", len(names), err)
	}
}

// randomEntry is a file of size incompressible bytes.
func randomEntry(name string, size int64, digest string) Entry {
	return Entry{
		Name: name, Size: size, Digest: digest,
		Open: func() (io.ReadCloser, error) {
			b := make([]byte, size)
			var x uint64 = 88172645463325252
			for i := range b {
				x ^= x << 13
				x ^= x >> 7
				x ^= x << 17
				b[i] = byte(x)
			}
			return io.NopCloser(bytes.NewReader(b)), nil
		},
	}
}

// TestMemberChunks: segments are cut into members of MemberChunk bytes at
// every boundary case; the bytes are WriteTar's once decompressed and are
// exactly what MemberEncoder.Members gives for each segment (the encoding
// `bale verify` compares a pack with); members that do not shrink are not
// cached.
func TestMemberChunks(t *testing.T) {
	const C = MemberChunk
	var opens atomic.Int64
	for _, tc := range []struct {
		name    string
		body    int64 // body size; the segment adds a 512-byte header and padding
		members int
	}{
		{"segment a block under a chunk", C - 1024 - 1, 1},
		{"segment exactly a chunk", C - 512, 1},
		{"segment a block over a chunk", C, 2},
		{"segment exactly three chunks", 3*C - 512, 3},
		{"three chunks and a bit", 3*C + 5, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entries := []Entry{bigEntry("data/text", tc.body, "sha256:text", &opens), randomEntry("data/random", tc.body, "sha256:random")}
			cache := &memCache{}
			got := writeMembers(t, entries, MembersOptions{Level: 6, Workers: 3, Cache: cache})
			if !bytes.Equal(gunzip(t, got), writeTar(t, entries, buildTime)) {
				t.Fatal("decompressed stream differs from WriteTar's")
			}
			// One member per chunk of each file, one for the directory,
			// one for the end of the archive.
			br := bufio.NewReader(bytes.NewReader(got))
			zr, err := gzip.NewReader(br)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for {
				zr.Multistream(false)
				if _, err := io.Copy(io.Discard, zr); err != nil {
					t.Fatal(err)
				}
				n++
				if err := zr.Reset(br); errors.Is(err, io.EOF) {
					break
				} else if err != nil {
					t.Fatal(err)
				}
			}
			if want := 2*tc.members + 2; n != want {
				t.Errorf("%d members, want %d", n, want)
			}
			// The encoding verify uses, segment by segment.
			enc, err := NewMemberEncoder(6, buildTime)
			if err != nil {
				t.Fatal(err)
			}
			all, err := withParents(entries)
			if err != nil {
				t.Fatal(err)
			}
			var want bytes.Buffer
			for _, e := range all {
				m := enc.Members(&want)
				if err := enc.Segment(context.Background(), m, e); err != nil {
					t.Fatal(err)
				}
				if err := m.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if err := enc.End(&want); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want.Bytes()) {
				t.Error("WriteMembers differs from MemberEncoder.Members")
			}
			// The text entry is cached (if it is large enough to be),
			// the random one never.
			wantPuts := 0
			if tc.body >= cacheMin {
				wantPuts = 1
			}
			if cache.puts != wantPuts {
				t.Errorf("%d entries cached, want %d", cache.puts, wantPuts)
			}
			if tc.body >= cacheMin && cache.aborts != 1 {
				t.Errorf("%d cache writes dropped, want 1 (the random entry)", cache.aborts)
			}
			if warm := writeMembers(t, entries, MembersOptions{Level: 6, Workers: 1, Cache: cache}); !bytes.Equal(warm, got) {
				t.Error("warm rebuild differs")
			}
		})
	}
}
