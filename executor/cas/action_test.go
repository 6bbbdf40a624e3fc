package cas

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// putBlobs stores each content and returns the outputs naming them.
func putBlobs(t *testing.T, s *Dir, contents map[string]string) []Output {
	t.Helper()
	var outs []Output
	for _, path := range []string{"chart.tgz", "index.json", "oci/blob"} {
		c, ok := contents[path]
		if !ok {
			continue
		}
		h := digest([]byte(c))
		if err := s.Put(context.Background(), h, int64(len(c)), strings.NewReader(c)); err != nil {
			t.Fatal(err)
		}
		outs = append(outs, Output{Path: path, Digest: h, Size: int64(len(c))})
	}
	return outs
}

func TestActionCache(t *testing.T) {
	t.Parallel()
	contents := map[string]string{"chart.tgz": "tgz bytes", "index.json": "{}\n", "oci/blob": "layer"}
	tests := []struct {
		name    string
		damage  func(t *testing.T, s *Dir, res *ActionResult)
		wantHit bool
	}{
		{"hit", func(*testing.T, *Dir, *ActionResult) {}, true},
		{"blob removed", func(t *testing.T, s *Dir, res *ActionResult) {
			if err := os.Remove(s.Path(res.Outputs[1].Digest)); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"blob truncated", func(t *testing.T, s *Dir, res *ActionResult) {
			if err := os.Truncate(s.Path(res.Outputs[2].Digest), 1); err != nil {
				t.Fatal(err)
			}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			step := digest([]byte("step " + tt.name))
			if res, ok, err := s.GetAction(context.Background(), step); ok || err != nil || res != nil {
				t.Fatalf("before PutAction: %v, %v, %v; want a clean miss", res, ok, err)
			}
			want := &ActionResult{Outputs: putBlobs(t, s, contents)}
			if err := s.PutAction(context.Background(), step, want); err != nil {
				t.Fatal(err)
			}
			tt.damage(t, s, want)
			got, ok, err := s.GetAction(context.Background(), step)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.wantHit {
				t.Fatalf("hit = %v, want %v", ok, tt.wantHit)
			}
			if ok && !reflect.DeepEqual(got, want) {
				t.Fatalf("got %+v, want %+v", got, want)
			}
			if !ok && got != nil {
				t.Fatalf("miss returned %+v", got)
			}
		})
	}
}

func TestActionEntryFormat(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	step := digest([]byte("step"))
	outs := putBlobs(t, s, map[string]string{"index.json": "{}\n"})
	if err := s.PutAction(context.Background(), step, &ActionResult{Outputs: outs}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(s.Root(), "ac", step.Hex))
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "outputs": [
    {
      "path": "index.json",
      "digest": "` + outs[0].Digest.String() + `",
      "size": 3
    }
  ]
}
`
	if string(got) != want {
		t.Fatalf("entry:\n%s\nwant:\n%s", got, want)
	}
	// An empty result round-trips as a hit with no outputs.
	empty := digest([]byte("empty step"))
	if err := s.PutAction(context.Background(), empty, &ActionResult{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(s.Root(), "ac", empty.Hex)); !bytes.Contains(b, []byte(`"outputs": []`)) {
		t.Errorf("empty result written as %q", b)
	}
	if res, ok, err := s.GetAction(context.Background(), empty); !ok || err != nil || len(res.Outputs) != 0 {
		t.Errorf("empty result: %+v, %v, %v", res, ok, err)
	}
}

func TestActionCacheCorruptEntry(t *testing.T) {
	t.Parallel()
	valid := digest([]byte("x"))
	tests := []struct {
		name  string
		entry string
	}{
		{"not JSON", "garbage"},
		{"truncated", `{"outputs": [{"path": "a", "digest": "` + valid.String()},
		{"unknown field", `{"outputs": [], "exitCode": 0}`},
		{"traversal digest", `{"outputs": [{"path": "a", "digest": "sha256:../../x", "size": 1}]}`},
		{"sha512 digest", `{"outputs": [{"path": "a", "digest": "sha512:` + valid.Hex + valid.Hex + `", "size": 1}]}`},
		{"negative size", `{"outputs": [{"path": "a", "digest": "` + valid.String() + `", "size": -1}]}`},
		{"empty path", `{"outputs": [{"path": "", "digest": "` + valid.String() + `", "size": 1}]}`},
		{"trailing data", `{"outputs": []} {"outputs": []}`},
		{"trailing bracket", `{"outputs": []}]`},
		{"too large", `{"outputs": []}` + strings.Repeat(" ", maxActionSize)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			step := digest([]byte("step"))
			path := filepath.Join(s.Root(), "ac", step.Hex)
			if err := os.WriteFile(path, []byte(tt.entry), 0o644); err != nil {
				t.Fatal(err)
			}
			res, ok, err := s.GetAction(context.Background(), step)
			if ok || res != nil || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, %v, %v; want a miss with ErrCorrupt", res, ok, err)
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Fatalf("corrupt entry not removed: %v", err)
			}
			// Now a clean miss.
			if _, ok, err := s.GetAction(context.Background(), step); ok || err != nil {
				t.Fatalf("second GetAction: %v, %v", ok, err)
			}
		})
	}
}

func TestPutActionRejects(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	step := digest([]byte("step"))
	valid := digest([]byte("x"))
	for name, res := range map[string]*ActionResult{
		"nil":           nil,
		"empty path":    {Outputs: []Output{{Digest: valid, Size: 1}}},
		"negative size": {Outputs: []Output{{Path: "a", Digest: valid, Size: -1}}},
		"zero digest":   {Outputs: []Output{{Path: "a", Digest: v1.Hash{}, Size: 1}}},
	} {
		if err := s.PutAction(context.Background(), step, res); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := os.Stat(filepath.Join(s.Root(), "ac", step.Hex)); !os.IsNotExist(err) {
		t.Fatalf("rejected result was written: %v", err)
	}
}
