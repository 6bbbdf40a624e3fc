package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestMain lets a test run this binary as the bale command: with
// BALE_TEST_CLI=1 it is bale, so whole-process behaviour (an exit from
// the evaluation guard) is tested without building another binary.
func TestMain(m *testing.M) {
	if os.Getenv("BALE_TEST_CLI") == "1" {
		os.Exit(runProcess())
	}
	os.Exit(m.Run())
}

func TestGuardEval(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		lim  evalLimits
		wait time.Duration
		want string // "" means the guard must not fire
	}{
		{"memory", evalLimits{timeout: time.Minute, memory: 1}, time.Second, "--eval-memory 1B"},
		{"timeout", evalLimits{timeout: 30 * time.Millisecond, memory: 1 << 40}, time.Second, "longer than --eval-timeout 30ms"},
		{"within limits", evalLimits{timeout: time.Minute, memory: 1 << 40}, 100 * time.Millisecond, ""},
	}
	for _, tt := range tests {
		// In a synctest bubble the guard's timer and ticker run on the
		// bubble's clock: "within wait" is exact, whatever the machine's
		// load.
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var stderr bytes.Buffer
				exited := make(chan int, 1)
				stop := guardEval(&stderr, tt.lim, func(code int) { exited <- code })
				select {
				case code := <-exited:
					stop()
					if tt.want == "" {
						t.Fatalf("guard fired (exit %d): %s", code, stderr.String())
					}
					if code != 1 || !strings.Contains(stderr.String(), tt.want) {
						t.Fatalf("exit %d, stderr %q; want 1 and %q", code, stderr.String(), tt.want)
					}
				case <-time.After(tt.wait):
					stop()
					if tt.want != "" {
						t.Fatalf("guard did not fire within %s", tt.wait)
					}
				}
				synctest.Wait()
			})
		})
	}
}

// TestEvalGuardStopsComprehension is the attack the count caps cannot
// stop: a comprehension that makes CUE generate fifty million images. The
// caps apply only after evaluation, which would run for many minutes and
// many GiB; the guard ends the process within its limits.
func TestEvalGuardStopsComprehension(t *testing.T) {
	dir := t.TempDir()
	src := `package x

import "list"

bootstrapPack: {
	sourceDateEpoch: "2025-01-01T00:00:00Z"
	images: [for i in list.Range(0, 50000000, 1) {name: "i\(i)", ref: "r.example/a:\(i)"}]
}
`
	if err := os.WriteFile(filepath.Join(dir, "pack.cue"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"vet", "--eval-memory", "256MiB", "--eval-timeout", "1m"}, "--eval-memory 256MiB"},
		{[]string{"plan", "--offline", "--eval-memory", "64GiB", "--eval-timeout", "2s"}, "--eval-timeout 2s"},
	} {
		t.Run(tt.args[0], func(t *testing.T) {
			cmd := exec.Command(os.Args[0], append(tt.args, dir)...)
			cmd.Env = append(os.Environ(), "BALE_TEST_CLI=1")
			start := time.Now()
			out, err := cmd.CombinedOutput()
			took := time.Since(start)
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 1 {
				t.Fatalf("exit %v, want 1\n%s", err, out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Fatalf("output lacks %q:\n%s", tt.want, out)
			}
			// No bound on took: the message naming the limit is what shows
			// the guard stopped it (without the guard, evaluation runs on and
			// ends, if ever, at the count caps, with another message).
			t.Logf("stopped after %s: %s", took.Round(time.Millisecond), strings.TrimSpace(string(out)))
		})
	}
}
