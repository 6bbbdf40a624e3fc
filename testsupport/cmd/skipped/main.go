// Command skipped prints the one-line summary of the tests a run skipped
// for want of a tool: make test runs the tests with $BALE_SKIPPED naming a
// file, then this on it (tooltest.Summarize).
package main

import (
	"fmt"
	"os"

	"github.com/bale-build/bale/testsupport/tooltest"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: skipped FILE")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "skipped:", err)
		os.Exit(1)
	}
	defer f.Close()
	if err := tooltest.Summarize(os.Stdout, f); err != nil {
		fmt.Fprintln(os.Stderr, "skipped:", err)
		os.Exit(1)
	}
}
