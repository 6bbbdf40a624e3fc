package server

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// inlinePeaks returns the peak RSS of every inline child the server ran,
// in order, from its log.
func inlinePeaks(t *testing.T, h *harness) []int64 {
	t.Helper()
	var peaks []int64
	sc := bufio.NewScanner(strings.NewReader(h.logs.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e struct {
			Msg     string `json:"msg"`
			PeakRSS int64  `json:"peakRSS"`
		}
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Msg == "inline evaluation" {
			peaks = append(peaks, e.PeakRSS)
		}
	}
	return peaks
}

// TestInlineMemoryCap: --inline-memory holds whatever the shape of the
// expression. A 1.5 GB string built by nested strings.Repeat calls is one
// allocation the evaluation guard's sampled heap check cannot see coming:
// it drove the child to 798 MiB of RSS under a 128 MiB limit before the
// guard fired. The kernel's address-space limit refuses the allocation
// itself. Each form is a 422 naming the memory limit (the flat form past
// CUE's own count limit is CUE's refusal), and the child's peak RSS, from
// its rusage, stays under the limit plus the runtime's headroom and what
// the runtime and the binary hold at start (judged while the test
// process's own RSS, which a child's rusage includes, is under that).
func TestInlineMemoryCap(t *testing.T) {
	t.Parallel()
	bin := buildBale(t)
	const limit = 128 << 20
	// What a child holds resident at start (the runtime, bale's code and
	// CUE's builtins: about 45 MiB measured) on top of the limit and the
	// headroom it may map past it.
	const margin = inlineHeadroom + 64<<20
	h := startServer(t, "", withInline(bin, time.Minute), func(c *Config) { c.InlineMemory = limit })
	const imports = "package p\n\nimport (\n\t\"list\"\n\t\"strings\"\n)\n\n_l: list.Range(0, 1, 1)\n\n"
	for _, tc := range []struct {
		name, expr, want string
	}{
		{"nested", `x: strings.Repeat(strings.Repeat(strings.Repeat("x", 1000), 1000), 1500)`, "--inline-memory 128MiB"},
		{"flat", `x: strings.Repeat("` + strings.Repeat("x", 1500) + `", 1000000)`, "--inline-memory 128MiB"},
		{"flat past CUE's count limit", `x: strings.Repeat("x", 1500000000)`, "exceeds limit"},
		{"list of strings", `x: [for i in list.Range(0, 1500, 1) {strings.Repeat("x", 1000000)}]`, "--inline-memory 128MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(http.MethodPost, exportsPath, "rw", inlineBody(t, imports+tc.expr+"\n"))
			if r.StatusCode != http.StatusUnprocessableEntity || problemType(t, r) != "spec-invalid" {
				t.Fatalf("%d %s, want a 422 spec-invalid problem", r.StatusCode, r.body)
			}
			var p problem
			if err := json.Unmarshal(r.body, &p); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(p.Detail, tc.want) {
				t.Errorf("detail %q does not name %q", p.Detail, tc.want)
			}
			peaks := inlinePeaks(t, h)
			if len(peaks) == 0 {
				t.Fatal("the server logged no inline child's peak RSS")
			}
			peak := peaks[len(peaks)-1]
			t.Logf("peak RSS %d MiB: %s", peak>>20, p.Detail)
			// A child's ru_maxrss is at least its parent's peak RSS when
			// it started (see peakRSS): only below the bound does the
			// server's own leave the child's to be judged.
			var self syscall.Rusage
			if err := syscall.Getrusage(syscall.RUSAGE_SELF, &self); err != nil {
				t.Fatal(err)
			}
			if server := self.Maxrss << 10; server >= limit+margin {
				t.Logf("the server's own peak RSS, %d MiB (the race detector's?), hides the child's; not judged", server>>20)
				return
			}
			if peak <= 0 || peak > limit+margin {
				t.Errorf("the child's peak RSS was %d MiB, over the %d MiB limit + %d MiB", peak>>20, limit>>20, margin>>20)
			}
		})
	}
}
