package archive

import (
	"archive/tar"
	"bytes"
	stdgzip "compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/bale-build/bale/testsupport/tooltest"
)

// walked is what Walk reported for one entry.
type walked struct {
	typ  byte
	body string
}

func walkAll(ctx context.Context, r io.Reader, lim Limits) (map[string]walked, []string, error) {
	got := map[string]walked{}
	var order []string
	err := Walk(ctx, r, lim, func(h *tar.Header, body io.Reader) error {
		b, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		got[h.Name] = walked{h.Typeflag, string(b)}
		order = append(order, h.Name)
		return nil
	})
	return got, order, err
}

func TestWalkRoundTrip(t *testing.T) {
	for _, compressed := range []bool{false, true} {
		t.Run(fmt.Sprintf("gzip=%v", compressed), func(t *testing.T) {
			data := writeTar(t, fixedEntries(), buildTime)
			if compressed {
				data = writeTarGz(t, fixedEntries(), 6, buildTime)
			}
			got, order, err := walkAll(context.Background(), bytes.NewReader(data), DefaultLimits())
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]walked{
				"bin": {tar.TypeDir, ""}, "bin/install.sh": {tar.TypeReg, "#!/bin/sh\necho ok\n"},
				"charts": {tar.TypeDir, ""}, "charts/app": {tar.TypeDir, ""},
				"charts/app/Chart.yaml":  {tar.TypeReg, "apiVersion: v2\nname: app\nversion: 1.0.0\n"},
				"charts/app/values.yaml": {tar.TypeReg, "replicas: 1\n"},
				paxUTF8Name:              {tar.TypeReg, "utf8\n"},
				strings.Repeat("d", 120): {tar.TypeDir, ""}, splitName: {tar.TypeReg, "split\n"},
				"empty": {tar.TypeDir, ""}, "index.json": {tar.TypeReg, `{"schemaVersion":2}` + "\n"},
				strings.Repeat("p", 200): {tar.TypeDir, ""}, paxLongName: {tar.TypeReg, "pax\n"},
				"zero": {tar.TypeReg, ""},
			}
			if len(got) != len(want) || len(order) != len(want) {
				t.Fatalf("got %d entries (%d calls), want %d", len(got), len(order), len(want))
			}
			for name, w := range want {
				if got[name] != w {
					t.Errorf("%s: got %+v, want %+v", name, got[name], w)
				}
			}
		})
	}
}

// TestWalkGNUTar reads what GNU tar writes for `tar -czf x.tgz -C dir .`:
// a "./" root entry, "./"-prefixed names, and record-size zero padding.
func TestWalkGNUTar(t *testing.T) {
	tarPath := tooltest.RequireGNUTar(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "sub", "f.txt"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, z := range []string{"", "-z"} {
		t.Run("flags="+z, func(t *testing.T) {
			out := filepath.Join(dir, "x"+z+".tar")
			args := []string{"-c", "-f", out, "-C", src, "."}
			if z != "" {
				args = append([]string{z}, args...)
			}
			if b, err := exec.Command(tarPath, args...).CombinedOutput(); err != nil {
				t.Fatalf("tar: %v\n%s", err, b)
			}
			f, err := os.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, _, err := walkAll(context.Background(), f, ChartLimits())
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]walked{"sub": {tar.TypeDir, ""}, "sub/f.txt": {tar.TypeReg, "hi\n"}}
			if len(got) != len(want) || got["sub"] != want["sub"] || got["sub/f.txt"] != want["sub/f.txt"] {
				t.Fatalf("got %+v, want %+v", got, want)
			}
		})
	}
}

// mkTar builds an archive with archive/tar, the way an attacker would.
func mkTar(t testing.TB, write func(tw *tar.Writer)) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	write(tw)
	if err := tw.Close(); err != nil {
		t.Fatalf("build archive: %v", err)
	}
	return buf.Bytes()
}

func add(t testing.TB, tw *tar.Writer, h *tar.Header, body string) {
	t.Helper()
	if h.Typeflag == tar.TypeReg && h.Size == 0 {
		h.Size = int64(len(body))
	}
	if h.Mode == 0 && h.Typeflag != tar.TypeXGlobalHeader {
		h.Mode = 0o644
	}
	if err := tw.WriteHeader(h); err != nil {
		t.Fatalf("write header %q: %v", h.Name, err)
	}
	if _, err := io.WriteString(tw, body); err != nil {
		t.Fatalf("write body %q: %v", h.Name, err)
	}
}

func files(t testing.TB, names ...string) []byte {
	return mkTar(t, func(tw *tar.Writer) {
		for _, n := range names {
			add(t, tw, &tar.Header{Typeflag: tar.TypeReg, Name: n}, "x")
		}
	})
}

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := stdgzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// setType rewrites the type flag of the header block at off and fixes its
// checksum, for entry kinds archive/tar will not write.
func setType(b []byte, off int, typ byte) []byte {
	b = bytes.Clone(b)
	b[off+156] = typ
	fixChecksum(b[off : off+512])
	return b
}

// fixChecksum recomputes a header block's checksum after an edit.
func fixChecksum(blk []byte) {
	copy(blk[148:156], "        ")
	var sum int
	for _, c := range blk {
		sum += int(c)
	}
	copy(blk[148:156], fmt.Sprintf("%06o\x00 ", sum))
}

// sparsePAX is a regular file announced as PAX "GNU sparse 0.1".
func sparsePAX(t testing.TB) []byte {
	recs := "GNU.sparse.size=5\nGNU.sparse.numblocks=1\nGNU.sparse.map=0,5\n"
	var pax strings.Builder
	for _, kv := range strings.Split(strings.TrimSuffix(recs, "\n"), "\n") {
		// A record is "LEN KEY=VALUE\n" where LEN counts the whole record.
		n := len(kv) + 3
		if len(fmt.Sprint(n)) == 2 {
			n++ // the length itself is two digits long
		}
		fmt.Fprintf(&pax, "%d %s\n", n, kv)
	}
	b := mkTar(t, func(tw *tar.Writer) {
		add(t, tw, &tar.Header{Typeflag: tar.TypeReg, Name: "PaxHeaders/s"}, pax.String())
		add(t, tw, &tar.Header{Typeflag: tar.TypeReg, Name: "s"}, "12345")
	})
	return setType(b, 0, tar.TypeXHeader)
}

func TestWalkRejectsHostileArchives(t *testing.T) {
	good := files(t, "a")
	goodGz := gz(t, good)
	small := Limits{MaxEntries: 3, MaxEntrySize: 5, MaxTotalSize: 1 << 20}
	tests := []struct {
		name    string
		input   []byte
		lim     Limits
		is      error  // errors.Is target, if any
		want    string // in the error
		gzipped bool   // also try the gzip'd input (same expectation)
	}{
		{name: "absolute", input: files(t, "/etc/passwd"), is: ErrUnsafeEntry, want: `"/etc/passwd"`, gzipped: true},
		{name: "dotdot", input: files(t, "../evil"), is: ErrUnsafeEntry, want: `"../evil"`, gzipped: true},
		{name: "escaping dotdot", input: files(t, "a/../../evil"), is: ErrUnsafeEntry, want: `"a/../../evil"`},
		{name: "inner dotdot", input: files(t, "a/../b"), is: ErrUnsafeEntry, want: `"a/../b"`},
		{name: "dotdot in PAX long name", input: files(t, strings.Repeat("x/", 80)+"../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../etc/passwd"), is: ErrUnsafeEntry, want: `etc/passwd"`},
		{name: "dotdot in GNU long name", input: mkTar(t, func(tw *tar.Writer) {
			add(t, tw, &tar.Header{Typeflag: tar.TypeReg, Name: "../" + strings.Repeat("g", 120), Format: tar.FormatGNU}, "x")
		}), is: ErrUnsafeEntry, want: `"../ggg`},
		{name: "backslash", input: files(t, `..\evil`), is: ErrUnsafeEntry, want: `"..\\evil"`},
		{name: "symlink", input: mkTar(t, func(tw *tar.Writer) {
			add(t, tw, &tar.Header{Typeflag: tar.TypeSymlink, Name: "link", Linkname: "/etc/passwd"}, "")
		}), is: ErrUnsafeEntry, want: `"link": unsafe archive entry: link entries are not allowed`, gzipped: true},
		{name: "hardlink", input: mkTar(t, func(tw *tar.Writer) {
			add(t, tw, &tar.Header{Typeflag: tar.TypeReg, Name: "a"}, "x")
			add(t, tw, &tar.Header{Typeflag: tar.TypeLink, Name: "b", Linkname: "a"}, "")
		}), is: ErrUnsafeEntry, want: `"b": unsafe archive entry: link entries are not allowed`},
		{name: "char device", input: mkTar(t, func(tw *tar.Writer) {
			add(t, tw, &tar.Header{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3}, "")
		}), is: ErrUnsafeEntry, want: `"null": unsafe archive entry: device and FIFO`},
		{name: "block device", input: mkTar(t, func(tw *tar.Writer) {
			add(t, tw, &tar.Header{Typeflag: tar.TypeBlock, Name: "sda", Devmajor: 8}, "")
		}), is: ErrUnsafeEntry, want: `"sda": unsafe archive entry: device and FIFO`},
		{name: "fifo", input: mkTar(t, func(tw *tar.Writer) {
			add(t, tw, &tar.Header{Typeflag: tar.TypeFifo, Name: "pipe"}, "")
		}), is: ErrUnsafeEntry, want: `"pipe": unsafe archive entry: device and FIFO`},
		{name: "contiguous file type", input: setType(files(t, "c"), 0, tar.TypeCont), is: ErrUnsafeEntry, want: `"c": unsafe archive entry: entry type '7'`},
		{name: "global PAX header", input: mkTar(t, func(tw *tar.Writer) {
			add(t, tw, &tar.Header{Typeflag: tar.TypeXGlobalHeader, PAXRecords: map[string]string{"path": "evil"}}, "")
			add(t, tw, &tar.Header{Typeflag: tar.TypeReg, Name: "a"}, "x")
		}), is: ErrUnsafeEntry, want: `global PAX headers are not allowed`},
		{name: "PAX sparse", input: sparsePAX(t), is: ErrUnsafeEntry, want: `"s": unsafe archive entry: sparse`},
		{name: "directory with size", input: mkTar(t, func(tw *tar.Writer) {
			add(t, tw, &tar.Header{Typeflag: tar.TypeDir, Name: "d/", Size: 4096, Mode: 0o755}, "")
		}), is: ErrUnsafeEntry, want: `"d/": unsafe archive entry: directory with size`},
		{name: "duplicate", input: files(t, "a", "b", "a"), is: ErrUnsafeEntry, want: `"a": unsafe archive entry: duplicate`, gzipped: true},
		{name: "duplicate after cleaning", input: files(t, "a/b", "./a//b"), is: ErrUnsafeEntry, want: `"./a//b": unsafe archive entry: duplicate`},
		{name: "duplicate directory", input: mkTar(t, func(tw *tar.Writer) {
			add(t, tw, &tar.Header{Typeflag: tar.TypeDir, Name: "d/"}, "")
			add(t, tw, &tar.Header{Typeflag: tar.TypeDir, Name: "d"}, "")
		}), is: ErrUnsafeEntry, want: `"d": unsafe archive entry: duplicate`},
		{name: "file under a file", input: files(t, "a", "a/b"), is: ErrUnsafeEntry, want: `"a/b": unsafe archive entry: parent "a" is a file`},
		{name: "file over a directory", input: files(t, "a/b", "a"), is: ErrUnsafeEntry, want: `"a": unsafe archive entry: both a file and a directory`},
		{name: "too many entries", input: files(t, "a", "b", "c", "d"), lim: small, is: ErrLimit, want: `"d": archive limit exceeded: more than 3 entries`, gzipped: true},
		{name: "too many implied directories", input: files(t, "a/b/c/d"), lim: small, is: ErrLimit, want: `"a/b/c/d": archive limit exceeded: more than 3 paths`},
		{name: "entry too large", input: mkTar(t, func(tw *tar.Writer) {
			add(t, tw, &tar.Header{Typeflag: tar.TypeReg, Name: "big"}, "123456")
		}), lim: small, is: ErrLimit, want: `"big": archive limit exceeded: size 6 exceeds the 5-byte entry limit`, gzipped: true},
		{name: "declared total too large", input: mkTar(t, func(tw *tar.Writer) {
			add(t, tw, &tar.Header{Typeflag: tar.TypeReg, Name: "a"}, strings.Repeat("a", 600<<10))
			add(t, tw, &tar.Header{Typeflag: tar.TypeReg, Name: "b"}, strings.Repeat("b", 600<<10))
		}), lim: Limits{MaxEntrySize: 1 << 20, MaxTotalSize: 1 << 20}, is: ErrLimit, want: `"b": archive limit exceeded: sizes total more than`, gzipped: true},
		{name: "headers count toward the total", input: mkTar(t, func(tw *tar.Writer) {
			for i := range 3000 {
				add(t, tw, &tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprint(i)}, "")
			}
		}), lim: Limits{MaxTotalSize: 1 << 20}, is: ErrLimit, want: `decompressed stream exceeds 1048576 bytes`, gzipped: true},
		{name: "gzip bomb after the end marker", input: gz(t, append(bytes.Clone(good), make([]byte, 16<<20)...)), lim: Limits{MaxTotalSize: 1 << 20}, is: ErrLimit, want: `decompressed stream exceeds 1048576 bytes`},
		{name: "empty input", input: nil, is: ErrTruncated, want: `read archive: truncated archive: no end-of-archive marker`},
		{name: "gzip header only", input: goodGz[:10], is: ErrTruncated, want: `truncated`},
		{name: "truncated gzip", input: goodGz[:len(goodGz)-12], is: ErrTruncated, want: `truncated`},
		{name: "truncated tar body", input: func() []byte {
			return mkTar(t, func(tw *tar.Writer) {
				add(t, tw, &tar.Header{Typeflag: tar.TypeReg, Name: "body"}, strings.Repeat("b", 1000))
			})[:512+700]
		}(), is: ErrTruncated, want: `walk tar entry "body": read body: truncated`, gzipped: true},
		{name: "truncated tar padding", input: good[:512+1], is: ErrTruncated, want: `after "a": truncated archive`, gzipped: true},
		{name: "truncated tar header", input: good[:100], is: ErrTruncated, want: `truncated`, gzipped: true},
		{name: "no end marker", input: good[:1024], is: ErrTruncated, want: `after "a": truncated archive: no end-of-archive marker`, gzipped: true},
		{name: "half end marker", input: good[:1024+512], is: ErrTruncated, want: `no end-of-archive marker`, gzipped: true},
		{name: "data after end marker", input: append(bytes.Clone(good), append(make([]byte, 512), "evil"...)...), want: `non-zero data after end-of-archive marker`, gzipped: true},
		{name: "trailing garbage after gzip", input: append(bytes.Clone(goodGz), "garbage"...), want: `trailing data after gzip stream`},
		{name: "second gzip member", input: append(bytes.Clone(goodGz), gz(t, files(t, "evil"))...), want: `trailing data after gzip stream`},
		// Where members are allowed, what follows the end marker is still
		// refused, in another member or after the last.
		{name: "trailing garbage after gzip members", input: append(bytes.Clone(goodGz), "garbage after the last member"...), lim: Limits{GzipMembers: true}, want: `invalid header`},
		{name: "entries in a member after the end marker", input: append(bytes.Clone(goodGz), gz(t, files(t, "evil"))...), lim: Limits{GzipMembers: true}, want: `non-zero data after end-of-archive marker`},
		{name: "gzip checksum", input: func() []byte {
			b := bytes.Clone(goodGz)
			b[len(b)-8] ^= 0xff // first CRC32 byte
			return b
		}(), want: `checksum`},
		{name: "zstd", input: []byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0}, want: `zstd compression is not supported`},
		{name: "xz", input: []byte{0xfd, '7', 'z', 'X', 'Z', 0, 0, 0}, want: `xz compression is not supported`},
		{name: "not an archive", input: bytes.Repeat([]byte("hello world\n"), 100), want: `invalid tar header`},
		{name: "negative limits", input: good, lim: Limits{MaxEntries: -1}, want: `invalid archive limits`},
	}
	for _, tt := range tests {
		inputs := map[string][]byte{"plain": tt.input}
		if tt.gzipped {
			inputs["gzip"] = gz(t, tt.input)
		}
		for kind, in := range inputs {
			t.Run(tt.name+"/"+kind, func(t *testing.T) {
				calls := 0
				err := Walk(context.Background(), bytes.NewReader(in), tt.lim, func(h *tar.Header, body io.Reader) error {
					calls++
					_, err := io.Copy(io.Discard, body)
					return err
				})
				if err == nil {
					t.Fatalf("Walk accepted the archive (%d entries)", calls)
				}
				if tt.is != nil && !errors.Is(err, tt.is) {
					t.Errorf("error %q is not %v", err, tt.is)
				}
				if !strings.Contains(err.Error(), tt.want) {
					t.Errorf("error %q does not contain %q", err, tt.want)
				}
			})
		}
	}
}

func TestWalkAcceptsPadding(t *testing.T) {
	// GNU tar pads to 10 KiB records with zeros; that is not garbage.
	in := append(files(t, "a"), make([]byte, 10240)...)
	for kind, b := range map[string][]byte{"plain": in, "gzip": gz(t, in)} {
		if _, _, err := walkAll(context.Background(), bytes.NewReader(b), DefaultLimits()); err != nil {
			t.Errorf("%s: %v", kind, err)
		}
	}
}

func TestWalkAcceptsExactLimits(t *testing.T) {
	in := mkTar(t, func(tw *tar.Writer) {
		add(t, tw, &tar.Header{Typeflag: tar.TypeReg, Name: "d/a"}, "12345")
		add(t, tw, &tar.Header{Typeflag: tar.TypeReg, Name: "d/b"}, "12345")
	})
	lim := Limits{MaxEntries: 3, MaxEntrySize: 5, MaxTotalSize: int64(len(in))}
	if _, _, err := walkAll(context.Background(), bytes.NewReader(in), lim); err != nil {
		t.Fatalf("archive at exactly its limits refused: %v", err)
	}
}

func TestWalkEmptyArchive(t *testing.T) {
	got, _, err := walkAll(context.Background(), bytes.NewReader(make([]byte, 1024)), DefaultLimits())
	if err != nil || len(got) != 0 {
		t.Fatalf("got %v, %v; want no entries, no error", got, err)
	}
}

// allocDuring returns the bytes allocated while f runs.
func allocDuring(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// entryStream generates an uncompressed tar stream of n empty files named
// f0000000, f0000001, ... without holding it in memory, and counts how much
// of it was read.
type entryStream struct {
	n, i int
	tmpl []byte
	buf  []byte
	read int64
}

func newEntryStream(t testing.TB, n int) *entryStream {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "f0000000", Mode: 0o644, Format: tar.FormatUSTAR}); err != nil {
		t.Fatal(err)
	}
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	return &entryStream{n: n, tmpl: b.Bytes()[:512]}
}

func (s *entryStream) Read(p []byte) (int, error) {
	if len(s.buf) == 0 {
		switch {
		case s.i < s.n:
			blk := bytes.Clone(s.tmpl)
			copy(blk[1:8], fmt.Sprintf("%07d", s.i))
			fixChecksum(blk)
			s.buf = blk
		case s.i == s.n:
			s.buf = make([]byte, 1024)
		default:
			return 0, io.EOF
		}
		s.i++
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	s.read += int64(n)
	return n, nil
}

// gzipPipe compresses r on the fly, only as fast as the result is read.
func gzipPipe(t *testing.T, r io.Reader) io.Reader {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		zw := stdgzip.NewWriter(pw)
		_, err := io.Copy(zw, r)
		if err == nil {
			err = zw.Close()
		}
		pw.CloseWithError(err)
	}()
	t.Cleanup(func() {
		pr.CloseWithError(errors.New("test over"))
		<-done
	})
	return pr
}

// TestWalkRefusesWithoutAllocating checks that archives claiming a lot are
// refused at a cost bounded by the limits, not by the claim.
func TestWalkRefusesWithoutAllocating(t *testing.T) {
	t.Run("100,000 entries, default limits", func(t *testing.T) {
		calls := 0
		err := Walk(context.Background(), gzipPipe(t, newEntryStream(t, 100_000)), DefaultLimits(), func(*tar.Header, io.Reader) error {
			calls++
			return nil
		})
		if !errors.Is(err, ErrLimit) || calls != DefaultLimits().MaxEntries {
			t.Fatalf("err %v after %d entries; want ErrLimit after %d", err, calls, DefaultLimits().MaxEntries)
		}
	})
	t.Run("100,000 entries, 1,000 allowed", func(t *testing.T) {
		in := newEntryStream(t, 100_000)
		var err error
		alloc := allocDuring(func() {
			err = Walk(context.Background(), in, Limits{MaxEntries: 1000}, func(*tar.Header, io.Reader) error { return nil })
		})
		if !errors.Is(err, ErrLimit) {
			t.Fatalf("err = %v, want ErrLimit", err)
		}
		// The archive is 51 MB; refusing it at entry 1,001 must cost about
		// what 1,000 entries cost, and read no further than one buffer.
		t.Logf("allocated %d bytes, read %d", alloc, in.read)
		if alloc > 4<<20 {
			t.Errorf("allocated %d bytes refusing the archive", alloc)
		}
		if in.read > 1001*512+64<<10 {
			t.Errorf("read %d bytes of the archive", in.read)
		}
	})
	t.Run("1 TiB declared", func(t *testing.T) {
		// Only the header: the body would never arrive.
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "huge", Size: 1 << 40, Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
		in := gz(t, buf.Bytes())
		var err error
		alloc := allocDuring(func() {
			err = Walk(context.Background(), bytes.NewReader(in), DefaultLimits(), func(*tar.Header, io.Reader) error {
				return errors.New("fn must not be called")
			})
		})
		if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), `"huge"`) {
			t.Fatalf("err = %v, want ErrLimit naming huge", err)
		}
		t.Logf("allocated %d bytes", alloc)
		if alloc > 1<<20 {
			t.Errorf("allocated %d bytes refusing the archive", alloc)
		}
	})
}

func TestWalkContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := files(t, "a", "b", "c")
	calls := 0
	err := Walk(ctx, bytes.NewReader(in), DefaultLimits(), func(*tar.Header, io.Reader) error {
		calls++
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("err %v after %d calls, want context.Canceled after 1", err, calls)
	}
}

func TestWalkFnError(t *testing.T) {
	stop := errors.New("stop here")
	err := Walk(context.Background(), bytes.NewReader(files(t, "a", "b")), DefaultLimits(), func(h *tar.Header, _ io.Reader) error {
		if h.Name == "b" {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || !strings.Contains(err.Error(), `"b"`) {
		t.Fatalf("err = %v, want stop naming b", err)
	}
}

func TestLimitsResolve(t *testing.T) {
	got, err := Limits{MaxEntries: 7}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultLimits()
	want.MaxEntries = 7
	if got != want {
		t.Fatalf("resolve = %+v, want %+v", got, want)
	}
	huge, err := Limits{MaxEntrySize: 1<<63 - 1, MaxTotalSize: 1<<63 - 1}.resolve()
	if err != nil || huge.MaxEntrySize != maxLimit || huge.MaxTotalSize != maxLimit {
		t.Errorf("huge limits resolve to %+v, %v; want capped at %d", huge, err, int64(maxLimit))
	}
	for _, bad := range []Limits{{MaxEntries: -1}, {MaxEntrySize: -1}, {MaxTotalSize: -1}} {
		if _, err := bad.resolve(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestCleanName(t *testing.T) {
	tests := []struct {
		in, want string // want "" means an error
	}{
		{"a", "a"},
		{"a/b.txt", "a/b.txt"},
		{"./a/b", "a/b"},
		{"a//b/", "a/b"},
		{"a/./b", "a/b"},
		{"..a/b..", "..a/b.."},
		{"", ""},
		{".", ""},
		{"./", ""},
		{"/", ""},
		{"/a", ""},
		{"..", ""},
		{"../a", ""},
		{"a/..", ""},
		{"a/../b", ""},
		{`a\b`, ""},
		{"a\x00b", ""},
		{strings.Repeat("a/", MaxNameLen/2) + "b", ""},
		{strings.Repeat("a", 256), ""},
		{strings.Repeat("a", 255), strings.Repeat("a", 255)},
	}
	for _, tt := range tests {
		got, err := CleanName(tt.in)
		if tt.want == "" {
			if err == nil || !errors.Is(err, ErrUnsafeEntry) {
				t.Errorf("CleanName(%.40q) = %q, %v; want ErrUnsafeEntry", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("CleanName(%.40q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}
