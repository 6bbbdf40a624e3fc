package server

import (
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDataDirBoundToDatabase: servers sharing a Postgres database must
// share the data directory: a server started with a data directory of its
// own is refused at start, naming both; one sharing the first's starts.
func TestDataDirBoundToDatabase(t *testing.T) {
	t.Parallel()
	db := postgresDB(t)
	toks, _ := testTokens(t)
	start := func(data string) (*Server, error) {
		return New(t.Context(), Config{DataDir: data, Database: db, Tokens: toks, Logger: slog.New(slog.DiscardHandler)})
	}
	shared := t.TempDir()
	first, err := start(shared)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	own := t.TempDir()
	if s, err := start(own); err == nil {
		s.Close()
		t.Fatal("a second server on the database with a data directory of its own started")
	} else if !strings.Contains(err.Error(), own) || !strings.Contains(err.Error(), "must share one data directory") {
		t.Fatalf("refusal %q does not name the directory and the rule", err)
	}
	second, err := start(shared)
	if err != nil {
		t.Fatalf("a second server sharing the data directory: %v", err)
	}
	second.Close()
}

// airgapWorkspace copies the airgap spec and the fixtures it names into a
// new workspace, and returns the spec's directory there.
func airgapWorkspace(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	os.Mkdir(filepath.Join(root, ".git"), 0o755)
	for _, d := range []string{"specs/airgap", "testdata/charts", "testdata/oci/bootstrap", "testdata/images", "testdata/signatures", "testdata/bundles"} {
		if err := os.CopyFS(filepath.Join(root, d), os.DirFS(filepath.Join("..", d))); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(root, "specs", "airgap")
}

// TestPlanBuiltElsewhere: a plan made by one server is built by another
// sharing its database and data directory whose copy of the spec lies at
// another path (the first server's copy is gone, as it would be on
// another machine): the build finds the spec's files by the spec's name
// on the building server, checked against the plan's digests, and makes
// the pack bale build makes.
func TestPlanBuiltElsewhere(t *testing.T) {
	t.Parallel()
	db := postgresDB(t)
	data := t.TempDir()
	planner, builder := airgapWorkspace(t), airgapWorkspace(t)
	toks, byRole := testTokens(t)
	cfg := Config{DataDir: data, Database: db, Specs: []string{planner}, Tokens: toks,
		Logger: slog.New(slog.NewJSONHandler(&syncBuffer{}, nil)), Rate: 1000, Burst: 1000}
	cfg.Resolve.Offline = true
	is := startIdle(t, cfg, byRole)
	e := is.export(is.post("rw", `{"spec":"airgap"}`))
	if err := os.RemoveAll(filepath.Dir(filepath.Dir(planner))); err != nil {
		t.Fatal(err)
	}
	startServer(t, db, func(c *Config) { c.DataDir, c.Specs = data, []string{builder} })
	st := is.wait(e.ExportID)
	if st.Status != statusSucceeded {
		t.Fatalf("export planned on one server, built on another: %s %s", st.Status, st.Reason)
	}
	if want := fmt.Sprintf("%x", sha256.Sum256(localBuild(t))); st.ArtifactSha256 != want {
		t.Fatalf("artifactSha256 %s, bale build gives %s", st.ArtifactSha256, want)
	}
}
