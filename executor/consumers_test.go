package executor

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/testsupport/tooltest"
)

// stdlibPack reads a pack with Go's own compress/gzip (multistream, the
// default) and archive/tar, not bale's reader.
func stdlibPack(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("compress/gzip + archive/tar: %v", err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = b
		}
	}
	if _, err := io.Copy(io.Discard, zr); err != nil {
		t.Fatalf("compress/gzip after the tar stream: %v", err)
	}
	return files
}

// TestPackMemberLayout reads the pack member by member with Go's
// compress/gzip and checks the layout package pack documents: one member
// per archive.MemberChunk bytes of each tar entry's blocks, each with the same
// header and "BL" extra field, then one member holding the end-of-archive
// marker, then nothing.
func TestPackMemberLayout(t *testing.T) {
	t.Parallel()
	_, out, _ := builtPack(t)
	p := filepath.Join(out, packName+".tar")
	_, dirs := readPack(t, p)
	files := stdlibPack(t, p)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	zr, err := gzip.NewReader(br)
	if err != nil {
		t.Fatal(err)
	}
	var first gzip.Header
	var members [][]byte
	for {
		zr.Multistream(false)
		if len(members) == 0 {
			first = zr.Header
		} else if zr.Header.ModTime != first.ModTime || zr.Header.OS != 255 || !bytes.Equal(zr.Header.Extra, first.Extra) || zr.Header.Name != "" || zr.Header.Comment != "" {
			t.Errorf("member %d header %+v differs from the first's %+v", len(members), zr.Header, first)
		}
		b, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, b)
		if err := zr.Reset(br); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	params, err := archive.ParseMemberExtra(first.Extra)
	if err != nil || params.Layout != archive.MemberLayout || params.Compressor != archive.Compressor {
		t.Fatalf("member parameters %+v, %v", params, err)
	}
	// Each entry's segment (header, body, padding) is cut into members
	// of archive.MemberChunk bytes: walk the members entry by entry.
	big := 0
	for i := 0; i < len(members)-1; i++ {
		m := members[i]
		h, err := tar.NewReader(bytes.NewReader(m)).Next()
		if err != nil {
			t.Fatalf("member %d does not start a tar entry: %v", i, err)
		}
		seg := 512 + (h.Size+511)/512*512
		for got := int64(len(m)); got < seg; got += int64(len(members[i])) {
			if len(m) != archive.MemberChunk {
				t.Fatalf("member %d (%s) is %d bytes and not the entry's last: want %d", i, h.Name, len(m), archive.MemberChunk)
			}
			i++
			big++
			if i >= len(members)-1 {
				t.Fatalf("entry %s: members end before its segment does", h.Name)
			}
			m = members[i]
		}
	}
	if want := len(files) + len(dirs) + big + 1; len(members) != want {
		t.Fatalf("%d members, want one per entry (%d), %d more for chunks, and the end marker", len(members), len(files)+len(dirs), big)
	}
	if big == 0 {
		t.Error("no entry spans several members: the fixture should have one")
	}
	if end := members[len(members)-1]; !bytes.Equal(end, make([]byte, archive.EndOfArchiveSize)) {
		t.Errorf("last member is %d bytes, want the %d-byte end-of-archive marker", len(end), archive.EndOfArchiveSize)
	}
}

// TestPackConsumers has every reader a pack is meant for read it: gzip -t,
// GNU tar -xzf, Python's tarfile, Go's compress/gzip and archive/tar; then
// skopeo and crane read the layout GNU tar extracted. Each must see exactly
// the files bale's own reader sees.
func TestPackConsumers(t *testing.T) {
	t.Parallel()
	fx, out, _ := builtPack(t)
	p := filepath.Join(out, packName+".tar")
	want, _ := readPack(t, p)
	same := func(who string, got map[string][]byte) {
		t.Helper()
		if len(got) != len(want) {
			t.Errorf("%s sees %d files, bale %d", who, len(got), len(want))
		}
		for name, b := range want {
			if g, ok := got[name]; !ok || !bytes.Equal(g, b) {
				t.Errorf("%s: %s differs or is missing", who, name)
			}
		}
	}
	same("compress/gzip + archive/tar", stdlibPack(t, p))

	if gz, ok := tooltest.Find(t, "gzip"); ok {
		if b, err := exec.Command(gz, "-t", "-v", p).CombinedOutput(); err != nil || !strings.Contains(string(b), "OK") {
			t.Errorf("gzip -t: %v\n%s", err, b)
		}
	} else {
		t.Log("gzip not installed")
	}

	if py, ok := tooltest.Find(t, "python3"); ok {
		script := `import hashlib, json, sys, tarfile
t = tarfile.open(sys.argv[1], "r:gz")
print(json.dumps({m.name: hashlib.sha256(t.extractfile(m).read()).hexdigest() for m in t.getmembers() if m.isfile()}))`
		b, err := exec.Command(py, "-c", script, p).Output()
		if err != nil {
			t.Fatalf("python3 tarfile: %v", err)
		}
		var sums map[string]string
		if err := json.Unmarshal(b, &sums); err != nil {
			t.Fatal(err)
		}
		got := map[string][]byte{}
		for name, s := range sums {
			got[name] = want[name]
			if s != sha(want[name]) {
				got[name] = nil
			}
		}
		same("python3 tarfile", got)
	} else {
		t.Log("python3 not installed")
	}

	gtar := tooltest.RequireGNUTar(t)
	dir := t.TempDir()
	if b, err := exec.Command(gtar, "-xzf", p, "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("tar -xzf: %v\n%s", err, b)
	}
	got := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		got[filepath.ToSlash(rel)], err = os.ReadFile(path)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	same("GNU tar -xzf", got)
	skopeo(t, dir, fx)
	craneLayout(t, filepath.Join(dir, "images"))
}
