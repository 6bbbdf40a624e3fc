package server

import (
	"fmt"
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
)

// inlineHeadroom is the address space an inline child may map past its
// memory limit: the Go runtime reserves its heap in 64 MiB arenas, so a
// heap at the limit may hold one arena more, and the evaluation guard
// (which stops at the limit of live heap, with the clearer message) must
// be able to fire before the kernel refuses an allocation.
const inlineHeadroom = 64 << 20

// LimitInlineMemory holds the calling process, an inline spec's child, to
// limit bytes of memory for the rest of its life (evaluation and
// planning), enforced by the kernel: RLIMIT_AS, soft and hard, is set to
// the address space mapped now plus limit and inlineHeadroom. Past it an
// allocation fails and the Go runtime exits with "out of memory", which
// the server reports as the memory limit. The evaluation guard's heap
// check stops most specs earlier with a clearer message, but a single
// allocation (a string built by nested strings.Repeat) passes a sampled
// heap check before it is seen; the kernel refuses the allocation itself.
//
// It is called before the spec is read, and is relative to what the
// process holds then because a Go process reserves (without using) 1.1 to
// 1.8 GiB of address space at start, depending on the build (cgo threads
// reserve 8 MiB stacks and 64 MiB malloc arenas) and on GOMAXPROCS: a
// fixed RLIMIT_AS set by the parent would be either too small to start or
// far looser than limit. RLIMIT_DATA would count only writable mappings,
// but Linux does not charge a MAP_FIXED mapping over an existing
// PROT_NONE reservation to it, which is exactly how the Go runtime grows
// its heap: measured, a child with RLIMIT_DATA at 288 MiB mapped 1.5 GiB.
// The GC's soft limit is set to limit too, so the heap is collected
// before it reaches the hard one.
func LimitInlineMemory(limit int64) error {
	if limit <= 0 {
		return fmt.Errorf("limit inline memory: %d bytes, want more than 0", limit)
	}
	statm, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return fmt.Errorf("limit inline memory: %w", err)
	}
	// The first field is the process's mapped address space, in pages.
	first, _, _ := strings.Cut(string(statm), " ")
	pages, err := strconv.ParseInt(first, 10, 64)
	if err != nil || pages <= 0 {
		return fmt.Errorf("limit inline memory: /proc/self/statm %q: not a size in pages", first)
	}
	as := uint64(pages)*uint64(os.Getpagesize()) + uint64(limit) + inlineHeadroom
	if err := syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: as, Max: as}); err != nil {
		return fmt.Errorf("limit inline memory: set RLIMIT_AS to %d bytes: %w", as, err)
	}
	debug.SetMemoryLimit(limit)
	return nil
}

// outOfMemory reports whether a child's standard error is the Go
// runtime's fatal error for memory refused by its address-space limit: a
// heap allocation, a mapping for the runtime's own structures or a new
// thread's stack. Only the part before the goroutine traces is read.
func outOfMemory(stderr string) bool {
	head, _, _ := strings.Cut(stderr, "\ngoroutine ")
	for _, p := range []string{
		"fatal error: out of memory",
		"fatal error: runtime: out of memory",
		"fatal error: runtime: cannot allocate memory",
		"runtime: out of memory: cannot allocate",
		"runtime: failed to create new OS thread",
		"runtime/cgo: pthread_create failed",
		"fatal error: failed to reserve",
	} {
		if strings.Contains(head, p) {
			return true
		}
	}
	return false
}

// peakRSS is a finished child's peak resident set in bytes, from its
// rusage (Linux reports ru_maxrss in KiB), or 0 if unknown. It is at
// least the server's own peak RSS when the child started: Linux charges
// a child's exec with the memory it ran in before, the server's (Go
// starts children with vfork).
func peakRSS(cmd *exec.Cmd) int64 {
	if cmd.ProcessState == nil {
		return 0
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0
	}
	return ru.Maxrss << 10
}

// sizeFlag formats n bytes as a size flag's value, in MiB when whole.
func sizeFlag(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return strconv.FormatInt(n>>20, 10) + "MiB"
	}
	return strconv.FormatInt(n, 10) + "B"
}
