package executor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bale-build/bale/executor/cas"
)

// TestValuesFile: the real spec's values-airgap.yaml travels beside its
// chart and is listed with it; a values file that is not a YAML mapping,
// too large, or changed since planning fails the build naming the file,
// and leaves no artifact.
func TestValuesFile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		content string // "" keeps the spec's file
		edit    string // written after planning, if set
		wantErr string
	}{
		{name: "the spec's own"},
		{name: "a list", content: "- a\n- b\n", wantErr: "not a YAML mapping"},
		{name: "a scalar", content: "just text\n", wantErr: "not a YAML mapping"},
		{name: "broken yaml", content: "a: [1, 2\n", wantErr: "not a YAML mapping"},
		{name: "too large", content: "a: " + strings.Repeat("x", maxValuesSize) + "\n", wantErr: "more than the 1048576 a values file may have"},
		{name: "changed since planning", edit: "image: {repository: evil.example/x}\n", wantErr: "changed since planning"},
		{name: "changed since planning, same size", edit: "same size", wantErr: "sha256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			copyWorkspace(t, root)
			values := filepath.Join(root, realSpecDir, "values-airgap.yaml")
			if tc.content != "" {
				if err := os.WriteFile(values, []byte(tc.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			rp := mustPlanWorkspace(t, root, nil)
			if tc.edit != "" {
				edit := []byte(tc.edit)
				if tc.edit == "same size" {
					b, _ := os.ReadFile(values)
					edit = []byte(strings.Replace(string(b), "mirror.local", "mirror.evil!", 1))
				}
				if err := os.WriteFile(values, edit, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			store, err := cas.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			out := t.TempDir()
			_, err = Execute(context.Background(), rp.sealed, rp.src, Options{OutDir: out, Store: store})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				files, _ := readPack(t, filepath.Join(out, packName+".tar"))
				want, _ := os.ReadFile(values)
				if got := files["charts/airgap-controller-1.4.2.values-airgap.yaml"]; string(got) != string(want) {
					t.Errorf("values in the pack: %q, want the spec's file", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "values-airgap.yaml") {
				t.Fatalf("err = %v, want it to name the values file and say %q", err, tc.wantErr)
			}
			if arts := readArtifacts(t, out); len(arts) != 0 {
				t.Errorf("failed build left %v", sortedNames(arts))
			}
		})
	}
}
