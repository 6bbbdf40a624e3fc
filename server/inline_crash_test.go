package server

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestInlineCrashNotForwarded: an evaluation child that dies as a Go
// program does on a panic or a fatal runtime error prints a goroutine
// trace naming the server's build and source paths. The client gets a
// 422 saying the evaluation crashed, never the trace; the server's log
// keeps it. The child here is a script printing such a trace and exiting
// 2, as a crashing Go binary does.
func TestInlineCrashNotForwarded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	trace := "panic: runtime error: index out of range [3] with length 3\n\ngoroutine 1 [running]:\n" +
		"cuelang.org/go/internal/core/adt.(*OpContext).evalState(...)\n\t/root/go/pkg/mod/cuelang.org/go@v0.12.0/internal/core/adt/context.go:771 +0x1d\n" +
		"main.main()\n\t" + dir + "/secret-build-dir/cmd/bale/main.go:12 +0x25\nexit status 2\n"
	script := filepath.Join(dir, "crash.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\ncat >/dev/null\nprintf '%s' '"+trace+"' >&2\nexit 2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	h := startServer(t, "", func(c *Config) {
		c.InlineCommand = []string{script}
		c.InlineTimeout = 10 * time.Second
	})
	r := h.do(http.MethodPost, exportsPath, "rw", inlineBody(t, "package p\n"))
	if r.StatusCode != http.StatusUnprocessableEntity || problemType(t, r) != "spec-invalid" {
		t.Fatalf("crashed evaluation: %d %s, want 422 spec-invalid", r.StatusCode, r.body)
	}
	for _, leak := range []string{"goroutine", "/root/go", "secret-build-dir", ".go:"} {
		if strings.Contains(string(r.body), leak) {
			t.Errorf("the answer carries the child's crash trace (%q): %s", leak, r.body)
		}
	}
	if !strings.Contains(string(r.body), "crashed") {
		t.Errorf("the answer does not say the evaluation crashed: %s", r.body)
	}
	if !strings.Contains(h.logs.String(), "secret-build-dir") {
		t.Error("the server's log lacks the crash trace")
	}
}
