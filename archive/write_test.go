package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the TZ subprocess test needs zones the host may lack

	"github.com/klauspost/compress/gzip"

	"github.com/bale-build/bale/testsupport/tooltest"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.sha256")

// buildTime is the seed's pinned build timestamp.
var buildTime = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func fileEntry(name string, mode int64, body string) Entry {
	return Entry{
		Name: name,
		Mode: mode,
		Size: int64(len(body)),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil },
	}
}

// Names that exercise each header layout: USTAR name only, USTAR
// prefix+name split, and PAX (too long to split, and non-ASCII).
var (
	splitName   = strings.Repeat("d", 120) + "/" + strings.Repeat("f", 90)
	paxLongName = strings.Repeat("p", 200) + "/" + strings.Repeat("q", 150)
	paxUTF8Name = "charts/\u00e9t\u00e9.yaml"
)

// fixedEntries is the small archive pinned by the golden test. It is listed
// out of order and omits parents on purpose.
func fixedEntries() []Entry {
	return []Entry{
		fileEntry("charts/app/values.yaml", 0, "replicas: 1\n"),
		fileEntry("charts/app/Chart.yaml", 0o644, "apiVersion: v2\nname: app\nversion: 1.0.0\n"),
		fileEntry("bin/install.sh", 0o755, "#!/bin/sh\necho ok\n"),
		{Name: "empty", Dir: true},
		fileEntry("index.json", 0, `{"schemaVersion":2}`+"\n"),
		fileEntry(splitName, 0, "split\n"),
		fileEntry(paxLongName, 0, "pax\n"),
		fileEntry(paxUTF8Name, 0, "utf8\n"),
		fileEntry("zero", 0, ""),
	}
}

func writeTar(t testing.TB, entries []Entry, mtime time.Time) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteTar(context.Background(), &buf, entries, mtime); err != nil {
		t.Fatalf("WriteTar: %v", err)
	}
	return buf.Bytes()
}

func writeTarGz(t testing.TB, entries []Entry, level int, mtime time.Time) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := NewGzipWriter(&buf, level, mtime)
	if err != nil {
		t.Fatalf("NewGzipWriter: %v", err)
	}
	if err := WriteTar(context.Background(), zw, entries, mtime); err != nil {
		t.Fatalf("WriteTar: %v", err)
	}
	if err := zw.Close(); err != nil {
		t.Fatalf("close gzip: %v", err)
	}
	return buf.Bytes()
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestWriteTarIsDeterministic(t *testing.T) {
	want := writeTarGz(t, fixedEntries(), 6, buildTime)
	reversed := fixedEntries()
	slices.Reverse(reversed)
	shuffled := fixedEntries()
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) {
		shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
	})
	tests := []struct {
		name    string
		entries []Entry
		mtime   time.Time
	}{
		{"same input", fixedEntries(), buildTime},
		{"reversed order", reversed, buildTime},
		{"shuffled order", shuffled, buildTime},
		{"UTC+14", fixedEntries(), buildTime.In(time.FixedZone("K", 14*3600))},
		{"UTC-3:30", fixedEntries(), buildTime.In(time.FixedZone("N", -(3*3600 + 1800)))},
		{"sub-second mtime", fixedEntries(), buildTime.Add(999 * time.Millisecond)},
		{"monotonic clock reading", fixedEntries(), func() time.Time { n := time.Now(); return n.Add(buildTime.Sub(n)) }()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := writeTarGz(t, tt.entries, 6, tt.mtime)
			if !bytes.Equal(got, want) {
				t.Fatalf("bytes differ: sha256 %s, want %s", sha(got), sha(want))
			}
		})
	}
}

// TestHelperWriteArchive is not a test: TestWriteTarAcrossTZAndGOMAXPROCS
// runs it in a subprocess with another TZ and GOMAXPROCS.
func TestHelperWriteArchive(t *testing.T) {
	out := os.Getenv("BALE_ARCHIVE_HELPER_OUT")
	if out == "" {
		t.Skip("subprocess helper")
	}
	// time.Unix returns local time, so the zone from TZ is really in play.
	mtime := time.Unix(buildTime.Unix(), 0)
	if name, off := mtime.Zone(); os.Getenv("TZ") != "UTC" && off == 0 {
		t.Fatalf("TZ=%s did not take effect: zone %s offset 0", os.Getenv("TZ"), name)
	}
	entries := fixedEntries()
	slices.Reverse(entries)
	if err := os.WriteFile(out, writeTarGz(t, entries, 6, mtime), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWriteTarAcrossTZAndGOMAXPROCS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs subprocesses")
	}
	want := sha(writeTarGz(t, fixedEntries(), 6, buildTime))
	for _, env := range []struct{ tz, procs string }{
		{"UTC", "1"},
		{"Pacific/Kiritimati", "2"},
		{"America/St_Johns", "7"},
	} {
		t.Run(env.tz+"/"+env.procs, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.tar.gz")
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriteArchive$", "-test.count=1")
			cmd.Env = append(os.Environ(),
				"BALE_ARCHIVE_HELPER_OUT="+out, "TZ="+env.tz, "GOMAXPROCS="+env.procs)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("helper: %v\n%s", err, b)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if sha(got) != want {
				t.Fatalf("sha256 %s under TZ=%s GOMAXPROCS=%s, want %s", sha(got), env.tz, env.procs, want)
			}
		})
	}
}

// TestGolden pins the bytes of the fixed archive. If it fails, the output
// of bale changed: a tar or gzip change must be deliberate (and recorded by
// a new Compressor), then regenerate with `go test -run TestGolden -update`.
func TestGolden(t *testing.T) {
	tarBytes := writeTar(t, fixedEntries(), buildTime)
	tgz := writeTarGz(t, fixedEntries(), 6, buildTime)
	got := fmt.Sprintf("%s  fixed.tar\n%s  fixed.tar.gz\n", sha(tarBytes), sha(tgz))
	golden := filepath.Join("testdata", "golden.sha256")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden (run with -update to create): %v", err)
	}
	if got != string(want) {
		t.Fatalf("archive bytes changed:\ngot\n%swant\n%s", got, want)
	}
}

func TestWriteTarHeaders(t *testing.T) {
	mtime := buildTime.Add(1500 * time.Millisecond).In(time.FixedZone("X", 5*3600))
	raw := writeTar(t, fixedEntries(), mtime)
	type want struct {
		typ    byte
		mode   int64
		size   int64
		format tar.Format
	}
	wants := map[string]want{
		"bin/":                   {tar.TypeDir, 0o755, 0, tar.FormatUSTAR},
		"bin/install.sh":         {tar.TypeReg, 0o755, 18, tar.FormatUSTAR},
		"charts/":                {tar.TypeDir, 0o755, 0, tar.FormatUSTAR},
		"charts/app/":            {tar.TypeDir, 0o755, 0, tar.FormatUSTAR},
		"charts/app/Chart.yaml":  {tar.TypeReg, 0o644, 40, tar.FormatUSTAR},
		"charts/app/values.yaml": {tar.TypeReg, 0o644, 12, tar.FormatUSTAR},
		paxUTF8Name:              {tar.TypeReg, 0o644, 5, tar.FormatPAX},
		// A single element over 100 bytes cannot be split: PAX.
		strings.Repeat("d", 120) + "/": {tar.TypeDir, 0o755, 0, tar.FormatPAX},
		splitName:                      {tar.TypeReg, 0o644, 6, tar.FormatUSTAR},
		"empty/":                       {tar.TypeDir, 0o755, 0, tar.FormatUSTAR},
		"index.json":                   {tar.TypeReg, 0o644, 20, tar.FormatUSTAR},
		strings.Repeat("p", 200) + "/": {tar.TypeDir, 0o755, 0, tar.FormatPAX},
		paxLongName:                    {tar.TypeReg, 0o644, 4, tar.FormatPAX},
		"zero":                         {tar.TypeReg, 0o644, 0, tar.FormatUSTAR},
	}
	tr := tar.NewReader(bytes.NewReader(raw))
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		w, ok := wants[h.Name]
		if !ok {
			t.Errorf("unexpected entry %q", h.Name)
			continue
		}
		if h.Typeflag != w.typ || h.Mode != w.mode || h.Size != w.size || h.Format != w.format {
			t.Errorf("%s: type %q mode %#o size %d format %v, want %q %#o %d %v",
				h.Name, h.Typeflag, h.Mode, h.Size, h.Format, w.typ, w.mode, w.size, w.format)
		}
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: owner %d/%d %q/%q, want 0/0 and empty names", h.Name, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		if !h.ModTime.Equal(buildTime.Add(time.Second)) {
			t.Errorf("%s: mtime %v, want %v", h.Name, h.ModTime, buildTime.Add(time.Second))
		}
		if !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() || h.Linkname != "" {
			t.Errorf("%s: atime %v ctime %v linkname %q, want none", h.Name, h.AccessTime, h.ChangeTime, h.Linkname)
		}
		// The only PAX record bale ever needs is the path: no times, no
		// xattrs (which archive/tar would also report here).
		for k := range h.PAXRecords {
			if k != "path" {
				t.Errorf("%s: PAX record %q", h.Name, k)
			}
		}
		if (h.Format == tar.FormatPAX) != (len(h.PAXRecords) == 1) {
			t.Errorf("%s: format %v with PAX records %v", h.Name, h.Format, h.PAXRecords)
		}
	}
	if len(names) != len(wants) {
		t.Errorf("got %d entries, want %d", len(names), len(wants))
	}
	if !slices.IsSortedFunc(names, func(a, b string) int {
		return strings.Compare(strings.TrimSuffix(a, "/"), strings.TrimSuffix(b, "/"))
	}) {
		t.Errorf("entries not sorted by path: %q", names)
	}
	// Raw bytes: the first header is plain USTAR ("ustar\x0000"), the
	// archive ends with the two-block marker and is block-aligned.
	if got := string(raw[257:265]); got != "ustar\x0000" {
		t.Errorf("first header magic %q, want ustar\\x0000", got)
	}
	if len(raw)%512 != 0 || !bytes.Equal(raw[len(raw)-1024:], make([]byte, 1024)) {
		t.Errorf("archive of %d bytes does not end with a 1024-byte zero marker", len(raw))
	}
}

// TestWriteTarGNUList checks the archive the way users will: through GNU
// tar's own listing.
func TestWriteTarGNUList(t *testing.T) {
	tarPath := tooltest.RequireGNUTar(t)
	file := filepath.Join(t.TempDir(), "x.tar.gz")
	if err := os.WriteFile(file, writeTarGz(t, fixedEntries(), 6, buildTime), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tarPath, "--list", "-v", "--numeric-owner", "--full-time", "-z", "-f", file)
	cmd.Env = append(os.Environ(), "TZ=UTC", "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tar --list: %v\n%s", err, out)
	}
	line := regexp.MustCompile(`^([-dl][rwx-]{9}) (\d+)/(\d+) +(\d+) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (.+)$`)
	want := map[string]string{ // name -> mode string
		"bin/": "drwxr-xr-x", "bin/install.sh": "-rwxr-xr-x",
		"charts/": "drwxr-xr-x", "charts/app/": "drwxr-xr-x",
		"charts/app/Chart.yaml": "-rw-r--r--", "charts/app/values.yaml": "-rw-r--r--",
		paxUTF8Name: "-rw-r--r--", "empty/": "drwxr-xr-x", "index.json": "-rw-r--r--",
		splitName: "-rw-r--r--", paxLongName: "-rw-r--r--", "zero": "-rw-r--r--",
		strings.Repeat("d", 120) + "/": "drwxr-xr-x", strings.Repeat("p", 200) + "/": "drwxr-xr-x",
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(want) {
		t.Fatalf("tar listed %d entries, want %d:\n%s", len(lines), len(want), out)
	}
	for _, l := range lines {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("unparsed tar line %q", l)
			continue
		}
		mode, uid, gid, when, name := m[1], m[2], m[3], m[5], m[6]
		if uid != "0" || gid != "0" {
			t.Errorf("%s: owner %s/%s, want 0/0", name, uid, gid)
		}
		if when != "2025-01-01 00:00:00" {
			t.Errorf("%s: time %s, want 2025-01-01 00:00:00", name, when)
		}
		// GNU tar escapes non-ASCII names in listings; compare unquoted.
		if uq, err := strconv.Unquote(`"` + strings.ReplaceAll(name, `"`, `\"`) + `"`); err == nil {
			name = uq
		}
		if wm, ok := want[name]; !ok {
			t.Errorf("unexpected entry %q", name)
		} else if mode != wm {
			t.Errorf("%s: mode %s, want %s", name, mode, wm)
		}
	}
}

func TestWriteTarRejects(t *testing.T) {
	failOpen := errors.New("disk on fire")
	tests := []struct {
		name    string
		entries []Entry
		want    string // in the error
	}{
		{"absolute", []Entry{fileEntry("/etc/passwd", 0, "x")}, `"/etc/passwd"`},
		{"dotdot", []Entry{fileEntry("../x", 0, "x")}, `"../x"`},
		{"inner dotdot", []Entry{fileEntry("a/../b", 0, "x")}, `"a/../b"`},
		{"not clean dot", []Entry{fileEntry("a/./b", 0, "x")}, `"a/./b"`},
		{"empty segment", []Entry{fileEntry("a//b", 0, "x")}, `"a//b"`},
		{"trailing slash", []Entry{fileEntry("a/", 0, "x")}, `"a/"`},
		{"leading dot slash", []Entry{fileEntry("./a", 0, "x")}, `"./a"`},
		{"empty", []Entry{fileEntry("", 0, "x")}, `empty name`},
		{"backslash", []Entry{fileEntry(`a\b`, 0, "x")}, `"a\\b"`},
		{"duplicate", []Entry{fileEntry("a", 0, "x"), fileEntry("a", 0, "y")}, `"a": unsafe archive entry: duplicate`},
		{"duplicate dir", []Entry{{Name: "d", Dir: true}, {Name: "d", Dir: true}}, `"d": unsafe archive entry: duplicate`},
		{"file then child", []Entry{fileEntry("a", 0, "x"), fileEntry("a/b", 0, "y")}, `"a/b": unsafe archive entry: parent "a" is a file`},
		{"child then file", []Entry{fileEntry("a/b", 0, "y"), fileEntry("a", 0, "x")}, `"a": unsafe archive entry: both a file and a directory`},
		{"mode 0600", []Entry{fileEntry("a", 0o600, "x")}, `"a": file mode 0600`},
		{"mode 0777", []Entry{fileEntry("a", 0o777, "x")}, `"a": file mode 0777`},
		{"setuid", []Entry{fileEntry("a", 0o4755, "x")}, `"a": file mode 04755`},
		{"dir mode", []Entry{{Name: "d", Dir: true, Mode: 0o700}}, `"d": directory mode 0700`},
		{"dir with body", []Entry{{Name: "d", Dir: true, Size: 1}}, `"d": directory has a size`},
		{"negative size", []Entry{{Name: "a", Size: -1, Open: fileEntry("a", 0, "").Open}}, `"a": negative size`},
		{"no open", []Entry{{Name: "a", Size: 1}}, `"a": file has no Open`},
		{"short body", []Entry{{Name: "a", Size: 5, Open: fileEntry("a", 0, "abc").Open}}, `write tar entry a: body is 3 bytes, header says 5`},
		{"long body", []Entry{{Name: "a", Size: 2, Open: fileEntry("a", 0, "abc").Open}}, `write tar entry a: body is longer than the declared 2 bytes`},
		{"open fails", []Entry{{Name: "a", Size: 1, Open: func() (io.ReadCloser, error) { return nil, failOpen }}}, `open tar entry a: disk on fire`},
		{"read fails", []Entry{{Name: "a", Size: 4, Open: func() (io.ReadCloser, error) {
			return io.NopCloser(io.MultiReader(strings.NewReader("ab"), iotestErrReader{failOpen})), nil
		}}}, `write tar entry a: read body: disk on fire`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := WriteTar(context.Background(), &buf, tt.entries, buildTime)
			if err == nil {
				t.Fatal("WriteTar succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

func TestWriteTarRejectsMtime(t *testing.T) {
	for _, mt := range []time.Time{time.Unix(-1, 0), time.Unix(1<<33, 0), {}} {
		if err := WriteTar(context.Background(), io.Discard, nil, mt); err == nil {
			t.Errorf("mtime %v accepted", mt)
		}
	}
}

func TestWriteTarImpliedAndListedDir(t *testing.T) {
	// A directory listed after a child implied it is written once.
	a := writeTar(t, []Entry{fileEntry("d/f", 0, "x"), {Name: "d", Dir: true}}, buildTime)
	b := writeTar(t, []Entry{fileEntry("d/f", 0, "x")}, buildTime)
	if !bytes.Equal(a, b) {
		t.Fatal("listing an implied directory changed the archive")
	}
}

func TestWriteTarEmpty(t *testing.T) {
	got := writeTar(t, nil, buildTime)
	if !bytes.Equal(got, make([]byte, 1024)) {
		t.Fatalf("empty archive is %d bytes, want the 1024-byte end marker only", len(got))
	}
}

func TestWriteTarContext(t *testing.T) {
	t.Run("cancelled before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := WriteTar(ctx, io.Discard, fixedEntries(), buildTime)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
	t.Run("cancelled during body", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		big := Entry{Name: "big", Size: 1 << 30, Open: func() (io.ReadCloser, error) {
			return io.NopCloser(&cancelAfter{n: 1 << 20, cancel: cancel}), nil
		}}
		err := WriteTar(ctx, io.Discard, []Entry{big}, buildTime)
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "big") {
			t.Fatalf("err = %v, want context.Canceled naming big", err)
		}
	})
}

// cancelAfter yields zeros and calls cancel after n bytes.
type cancelAfter struct {
	n      int
	cancel func()
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	c.n -= len(p)
	if c.n <= 0 {
		c.cancel()
	}
	clear(p)
	return len(p), nil
}

// TestFitsUSTAR cross-checks fitsUSTAR against archive/tar itself: where it
// says USTAR fits, archive/tar must accept the USTAR header, and where it
// says no, archive/tar must refuse it.
func TestFitsUSTAR(t *testing.T) {
	names := []string{
		"a",
		strings.Repeat("a", 100),
		strings.Repeat("a", 101),
		strings.Repeat("a", 155) + "/" + strings.Repeat("b", 100),
		strings.Repeat("a", 155) + "/" + strings.Repeat("b", 101),
		strings.Repeat("a", 156) + "/" + strings.Repeat("b", 100),
		strings.Repeat("a", 155) + "/" + strings.Repeat("b", 99) + "/",
		strings.Repeat("a", 154) + "/" + strings.Repeat("b", 100) + "/",
		"x/" + strings.Repeat("b", 100) + "/",
		"x/" + strings.Repeat("b", 101),
		strings.Repeat("a/", 60) + "c",
		"\u00e9",
	}
	for _, name := range names {
		for _, size := range []int64{0, 1<<33 - 1, 1 << 33} {
			typ := byte(tar.TypeReg)
			if strings.HasSuffix(name, "/") {
				typ = tar.TypeDir
				size = 0
			}
			h := &tar.Header{Typeflag: typ, Name: name, Size: size, Mode: 0o644, ModTime: buildTime, Format: tar.FormatUSTAR}
			err := tar.NewWriter(io.Discard).WriteHeader(h)
			if got := fitsUSTAR(name, size); got != (err == nil) {
				t.Errorf("fitsUSTAR(%d-byte name %.20q..., size %d) = %v, archive/tar USTAR error %v", len(name), name, size, got, err)
			}
		}
	}
}

func TestWriteTarHugeFileUsesPAXSize(t *testing.T) {
	// 8 GiB does not fit USTAR's size field: PAX carries it. Only the
	// header is checked; the body would take too long to stream.
	h := &tar.Header{Typeflag: tar.TypeReg, Name: "big", Size: 1 << 33, Mode: 0o644, ModTime: buildTime, Format: tar.FormatPAX}
	if fitsUSTAR(h.Name, h.Size) {
		t.Fatal("fitsUSTAR accepted an 8 GiB size")
	}
	var buf bytes.Buffer
	if err := tar.NewWriter(&buf).WriteHeader(h); err != nil {
		t.Fatal(err)
	}
	got, err := tar.NewReader(&buf).Next()
	if err != nil {
		t.Fatal(err)
	}
	if got.Size != 1<<33 || got.PAXRecords["size"] != "8589934592" || len(got.PAXRecords) != 1 {
		t.Fatalf("size %d, PAX records %v", got.Size, got.PAXRecords)
	}
}

func TestNewGzipWriterHeader(t *testing.T) {
	for _, level := range []int{gzip.HuffmanOnly, gzip.DefaultCompression, 0, 1, 6, 9} {
		t.Run(fmt.Sprint(level), func(t *testing.T) {
			mtime := buildTime.Add(700 * time.Millisecond).In(time.FixedZone("Y", -7*3600))
			var buf bytes.Buffer
			zw, err := NewGzipWriter(&buf, level, mtime)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := zw.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			if err := zw.Close(); err != nil {
				t.Fatal(err)
			}
			b := buf.Bytes()
			// RFC 1952: ID1 ID2 CM FLG MTIME(4, LE) XFL OS.
			if b[0] != 0x1f || b[1] != 0x8b || b[2] != 8 {
				t.Fatalf("magic/method % x", b[:3])
			}
			if b[3] != 0 {
				t.Errorf("FLG = %#x, want 0 (no name, comment, extra)", b[3])
			}
			if got := uint32(b[4]) | uint32(b[5])<<8 | uint32(b[6])<<16 | uint32(b[7])<<24; int64(got) != buildTime.Unix() {
				t.Errorf("MTIME = %d, want %d", got, buildTime.Unix())
			}
			if b[9] != 255 {
				t.Errorf("OS = %d, want 255", b[9])
			}
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if zr.Name != "" || zr.Comment != "" || zr.Extra != nil || !zr.ModTime.Equal(buildTime) || zr.OS != 255 {
				t.Errorf("header %+v", zr.Header)
			}
			if body, err := io.ReadAll(zr); err != nil || string(body) != "hello" {
				t.Errorf("body %q, %v", body, err)
			}
		})
	}
}

func TestNewGzipWriterRejects(t *testing.T) {
	tests := []struct {
		name  string
		level int
		mtime time.Time
	}{
		{"stateless level", gzip.StatelessCompression, buildTime},
		{"level 10", 10, buildTime},
		{"level -4", -4, buildTime},
		{"before 1970", 6, time.Unix(-1, 0)},
		{"zero time", 6, time.Time{}},
		{"after 2106", 6, time.Unix(1<<32, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewGzipWriter(io.Discard, tt.level, tt.mtime); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestGzipIgnoresWriteSizes guards an assumption byte stability rests on:
// the compressed bytes depend only on the data, not on how it was split
// into Write calls (which varies with the body's reader).
func TestGzipIgnoresWriteSizes(t *testing.T) {
	data := make([]byte, 320<<10)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range data {
		// Half random, half repetitive: both match-finding and literal
		// paths are used.
		if i%(64<<10) < 32<<10 {
			data[i] = byte(rng.Uint32())
		} else {
			data[i] = "yaml: values\n"[i%13]
		}
	}
	for _, level := range []int{gzip.HuffmanOnly, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9} {
		var want []byte
		for _, chunk := range []int{len(data), 100_003, 4093, 61} {
			var buf bytes.Buffer
			zw, err := NewGzipWriter(&buf, level, buildTime)
			if err != nil {
				t.Fatal(err)
			}
			for off := 0; off < len(data); off += chunk {
				if _, err := zw.Write(data[off:min(off+chunk, len(data))]); err != nil {
					t.Fatal(err)
				}
			}
			if err := zw.Close(); err != nil {
				t.Fatal(err)
			}
			if want == nil {
				want = buf.Bytes()
			} else if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("level %d: %d-byte writes give different bytes than one write", level, chunk)
			}
		}
	}
}

// TestCompressorMatchesGoMod fails when go.mod pins another
// klauspost/compress than Compressor names: bump both together, so plans
// record the compressor that really produced their bytes.
func TestCompressorMatchesGoMod(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	mod, version, _ := strings.Cut(Compressor, "@")
	var found []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == "require" {
			f = f[1:]
		}
		if len(f) >= 2 && f[0] == mod {
			found = append(found, f[1])
		}
		if strings.Contains(line, mod) && strings.Contains(line, "=>") {
			t.Errorf("go.mod replaces %s: %q", mod, line)
		}
	}
	if len(found) != 1 || found[0] != version {
		t.Fatalf("go.mod requires %s at %v, Compressor says %s", mod, found, version)
	}
}

// cycleReader streams a sample over and over. Samples are 1 MiB, far
// beyond deflate's 32 KiB window, so the repetition cannot be exploited and
// the compressor sees the sample's own compressibility.
type cycleReader struct {
	sample []byte
	off    int
}

func (c *cycleReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m := copy(p[n:], c.sample[c.off:])
		n += m
		c.off = (c.off + m) % len(c.sample)
	}
	return n, nil
}

// randomSample is incompressible, like image layers (already compressed).
func randomSample() []byte {
	b := make([]byte, 1<<20)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(b)
	return b
}

// textSample is YAML-like text with varying names, tags and numbers, like
// charts and JSON.
func textSample() []byte {
	rng := rand.New(rand.NewPCG(5, 6))
	var b bytes.Buffer
	for b.Len() < 1<<20 {
		fmt.Fprintf(&b, "- name: svc-%d\n  image: registry.example.com/team%d/app-%x:v%d.%d.%d\n  replicas: %d\n  port: %d\n",
			rng.IntN(1e6), rng.IntN(50), rng.Uint32(), rng.IntN(5), rng.IntN(30), rng.IntN(100), rng.IntN(9)+1, 1024+rng.IntN(60000))
	}
	return b.Bytes()[:1<<20]
}

// BenchmarkWriteTarGzip measures the whole writer (tar framing plus gzip)
// over 256 MiB in 16 entries, to choose the default level. "random" stands
// for image layers, "text" for charts and JSON; "tar-only" is the baseline
// without gzip. The out/in metric is the compression ratio; B/op shows
// memory does not grow with the data.
func BenchmarkWriteTarGzip(b *testing.B) {
	const total, files = 256 << 20, 16
	const tarOnly = -100
	samples := map[string][]byte{"random": randomSample(), "text": textSample()}
	for _, kind := range []string{"random", "text"} {
		for _, level := range []int{tarOnly, 0, 1, 6} {
			name := fmt.Sprintf("%s/level=%d", kind, level)
			if level == tarOnly {
				name = kind + "/tar-only"
			}
			b.Run(name, func(b *testing.B) {
				entries := make([]Entry, files)
				for i := range entries {
					entries[i] = Entry{Name: fmt.Sprintf("blobs/%02d", i), Size: total / files, Open: func() (io.ReadCloser, error) {
						r := &cycleReader{sample: samples[kind], off: i * 4099}
						return io.NopCloser(io.LimitReader(r, total/files)), nil
					}}
				}
				b.SetBytes(total)
				b.ReportAllocs()
				var out countWriter
				for b.Loop() {
					out = 0
					if level == tarOnly {
						if err := WriteTar(context.Background(), &out, entries, buildTime); err != nil {
							b.Fatal(err)
						}
						continue
					}
					zw, err := NewGzipWriter(&out, level, buildTime)
					if err != nil {
						b.Fatal(err)
					}
					if err := WriteTar(context.Background(), zw, entries, buildTime); err != nil {
						b.Fatal(err)
					}
					if err := zw.Close(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(out)/total, "out/in")
			})
		}
	}
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}
