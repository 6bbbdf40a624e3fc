package server

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bale-build/bale/testsupport/tooltest"
)

// readmeSessionMarker is the comment in README.md above the API session
// TestREADMEAPISession runs.
const readmeSessionMarker = "<!-- TestREADMEAPISession"

// readmeBlock returns the fenced sh block that follows the line starting
// with marker in the README.
func readmeBlock(t *testing.T, readme, marker string) string {
	t.Helper()
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, marker) {
			continue
		}
		if i+1 >= len(lines) || lines[i+1] != "```sh" {
			t.Fatalf("%s: the line after the marker is not a ```sh fence", readme)
		}
		for j := i + 2; j < len(lines); j++ {
			if lines[j] == "```" {
				return strings.Join(lines[i+2:j], "\n") + "\n"
			}
		}
		t.Fatalf("%s: the API session's fence is not closed", readme)
	}
	t.Fatalf("%s: no line starting with %q", readme, marker)
	return ""
}

// firstTokenRE finds the token bale serve prints at its first start.
var firstTokenRE = regexp.MustCompile(`The token, shown this once:\s+(\S+)`)

// TestREADMEAPISession runs the README's API session as written, with sh,
// curl and jq, against a real bale serve started as the README starts it
// (--specs specs/..., a fresh data directory, the token it prints at its
// first start): it must pass, sha256sum -c and bale verify included.
func TestREADMEAPISession(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"sh", "curl", "jq", "sha256sum"} {
		tooltest.Require(t, tool)
	}
	block := readmeBlock(t, filepath.Join("..", "README.md"), readmeSessionMarker)
	bin := buildBale(t)
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	data := filepath.Join(t.TempDir(), "bale-data")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serve := exec.CommandContext(ctx, bin, "serve", "--specs", "specs/...", "--data", data, "--addr", addr)
	serve.Dir = repo
	stderr := &syncBuffer{}
	serve.Stderr = stderr
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- serve.Wait() }()
	t.Cleanup(func() { cancel(); <-done })
	// Ready once /readyz answers; the token is on stderr by then.
	for {
		if r, err := http.Get("http://" + addr + "/readyz"); err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("bale serve exited: %v\n%s", err, stderr)
		case <-time.After(50 * time.Millisecond):
		}
	}
	m := firstTokenRE.FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("bale serve printed no token at its first start:\n%s", stderr)
	}
	work := t.TempDir()
	sh := exec.Command("sh", "-e")
	sh.Stdin = strings.NewReader(block)
	sh.Dir = work
	sh.Env = append(os.Environ(), "TOKEN="+m[1], "BALE_URL=http://"+addr,
		"PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := sh.CombinedOutput()
	t.Logf("sh -e <<README's API session\n%s\n%s", block, out)
	if err != nil {
		t.Fatalf("the README's API session failed: %v\n%s\nserver:\n%s", err, out, stderr)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	for _, want := range []string{"succeeded", "bootstrap-pack-v1.tar: OK", "ok  bootstrap-pack-v1.tar"} {
		found := false
		for _, l := range lines {
			if l == want {
				found = true
			}
		}
		if !found {
			t.Errorf("the session's output lacks the line %q", want)
		}
	}
	// What curl -OJ saved: the pack and its checksum file, nothing else.
	ents, _ := os.ReadDir(work)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "bootstrap-pack-v1.tar bootstrap-pack-v1.tar.sha256" {
		t.Errorf("the session saved %v", names)
	}
}
