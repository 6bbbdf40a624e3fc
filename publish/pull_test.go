package publish

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/bale-build/bale/kit"
)

// TestPullAllOrNothing: a pull whose files were all fetched and checked,
// but whose sums then disagree, leaves the output as it was: absent stays
// absent, an empty directory stays empty, and no staging directory is
// left beside or inside it; a good pull into an empty directory (a mount
// point, the current directory) fills it in place.
func TestPullAllOrNothing(t *testing.T) {
	host := testRegistry(t)
	o := OCIOptions{Keychain: authn.NewMultiKeychain()}
	good := outDir(t)
	to := "oci://" + host + "/releases/good:v1"
	if _, err := OCI(context.Background(), good, to, o); err != nil {
		t.Fatal(err)
	}
	// Files that pass their digests and fail their sums: the failure
	// comes after everything was fetched.
	badRef := putArtifact(t, host, "bad", "v1", map[string]string{"a": "x", "b": strings.Repeat("b", 3<<20), "a.sha256": hexSum([]byte("y")) + "  a\n"}, []string{"a", "b", "a.sha256"})

	leftovers := func(t *testing.T, dirs ...string) {
		t.Helper()
		for _, d := range dirs {
			ents, _ := os.ReadDir(d)
			for _, e := range ents {
				if strings.Contains(e.Name(), "pull-") {
					t.Errorf("staging directory %s left in %s", e.Name(), d)
				}
			}
		}
	}
	t.Run("absent output", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "kit")
		if _, err := Pull(context.Background(), badRef, out, o); err == nil || !strings.Contains(err.Error(), "the sums say") {
			t.Fatalf("Pull: %v", err)
		}
		if _, err := os.Lstat(out); err == nil {
			t.Error("a failed pull made the output directory")
		}
		leftovers(t, filepath.Dir(out))
	})
	t.Run("empty output", func(t *testing.T) {
		out := t.TempDir()
		if _, err := Pull(context.Background(), badRef, out, o); err == nil {
			t.Fatal("Pull passed bad sums")
		}
		if ents, _ := os.ReadDir(out); len(ents) != 0 {
			t.Errorf("a failed pull left %d entries in the output directory", len(ents))
		}
		leftovers(t, out, filepath.Dir(out))
		// The same directory takes a good pull, in place.
		rep, err := Pull(context.Background(), to, out, o)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range rep.Files {
			want, _ := os.ReadFile(filepath.Join(good, f.Path))
			got, err := os.ReadFile(filepath.Join(out, f.Path))
			if err != nil || string(got) != string(want) {
				t.Errorf("%s differs after the pull (%v)", f.Path, err)
			}
		}
		leftovers(t, out, filepath.Dir(out))
	})
	t.Run("current directory", func(t *testing.T) {
		out := t.TempDir()
		t.Chdir(out)
		if _, err := Pull(context.Background(), to, ".", o); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(out, kit.SumsName)); err != nil {
			t.Error(err)
		}
		leftovers(t, out)
	})
}
