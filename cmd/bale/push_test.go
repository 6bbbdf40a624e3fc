package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/bale-build/bale/push"
	"github.com/bale-build/bale/testsupport/demopack"
	"github.com/bale-build/bale/testsupport/testrepo"
)

// TestPushKilledThenRerun kills a `bale push` process with SIGKILL in the
// middle of an upload, then runs the push again: it must finish, find the
// blobs the first run committed, and leave every image valid.
func TestPushKilledThenRerun(t *testing.T) {
	t.Parallel()
	root, err := testrepo.Root()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pk, err := demopack.Build(context.Background(), root, filepath.Join(dir, "out"), filepath.Join(dir, "cache"))
	if err != nil {
		t.Fatal(err)
	}
	var commits atomic.Int64
	var hold atomic.Bool
	hold.Store(true)
	hit := make(chan struct{}, 1)
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upload := strings.Contains(r.URL.Path, "/blobs/uploads/")
		// After two blobs are committed, the next upload hangs until the
		// client goes away: that is where the process is killed.
		if upload && r.Method == http.MethodPatch && hold.Load() && commits.Load() >= 2 {
			select {
			case hit <- struct{}{}:
			default:
			}
			// Reading the body ends when the killed client's connection
			// closes; the request's context would not see it mid-body.
			_, _ = io.Copy(io.Discard, r.Body)
			return
		}
		reg.ServeHTTP(w, r)
		if upload && r.Method == http.MethodPut {
			commits.Add(1)
		}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	target := host + "/airgap"

	cmd := exec.Command(os.Args[0], "push", pk, target, "--jobs", "1")
	cmd.Env = append(os.Environ(), "BALE_TEST_CLI=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-hit:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("the push never reached its third upload:\n%s", out.String())
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatalf("killed push exited 0:\n%s", out.String())
	}
	hold.Store(false)

	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"push", pk, target, "--format", "json"}, &stdout, &stderr); code != 0 {
		t.Fatalf("rerun: exit %d\n%s", code, stderr.String())
	}
	var rep push.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Blobs.Existing < 2 || rep.Blobs.Uploaded == 0 {
		t.Errorf("rerun blobs %+v: want the two committed before the kill found and the rest uploaded", rep.Blobs)
	}
	for _, r := range rep.Refs {
		if r.Kind != "image" {
			continue
		}
		if err := demopack.ValidatePushed(r.Ref); err != nil {
			t.Error(err)
		}
	}
	t.Logf("rerun: %+v", rep.Blobs)
}
