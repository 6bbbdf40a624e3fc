package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/bale-build/bale/planner/spec"
)

// evalLimits bound the evaluation of a spec. CUE's evaluator can be neither
// cancelled nor bounded from outside, and a few lines of comprehension
// (list.Range(0, 1e9, 1)) make it generate values until the machine runs
// out of memory; the spec's count caps only apply once evaluation is over.
// bale is a command-line process, so past a limit it says which limit was
// hit and exits: nothing has been written by then.
type evalLimits struct {
	timeout time.Duration
	memory  byteSize
}

// Defaults: generous for a spec at the schema's caps (10,000 images vet in
// seconds and a few hundred MiB), small next to a CI machine.
const (
	defaultEvalTimeout = 2 * time.Minute
	defaultEvalMemory  = 4 << 30
)

// register adds --eval-timeout and --eval-memory to a command that loads
// specs.
func (l *evalLimits) register(cmd *cobra.Command) {
	l.memory = defaultEvalMemory
	fs := cmd.Flags()
	fs.DurationVar(&l.timeout, "eval-timeout", defaultEvalTimeout, "stop if evaluating the spec takes longer (CUE evaluation cannot be interrupted otherwise)")
	fs.Var(&l.memory, "eval-memory", "stop if evaluating the spec holds more memory than this (B, KiB, MiB, GiB…)")
}

// load is spec.Load under the limits: past one, the process exits 1.
func (l evalLimits) load(ctx context.Context, stderr io.Writer, args []string, opts spec.Options) ([]*spec.Instance, spec.Diagnostics, error) {
	stop := guardEval(stderr, l, os.Exit)
	defer stop()
	return spec.Load(ctx, args, opts)
}

// heapMetric is the live heap, cheap to sample without stopping the world.
const heapMetric = "/memory/classes/heap/objects:bytes"

// guardEval watches the process while a spec is evaluated and calls exit(1)
// after a message on stderr if evaluation takes longer than l.timeout or
// the heap grows past l.memory. The returned stop ends the watch; it must
// be called as soon as evaluation is over.
func guardEval(stderr io.Writer, l evalLimits, exit func(int)) (stop func()) {
	done := make(chan struct{})
	var once sync.Once
	go func() {
		deadline := time.NewTimer(l.timeout)
		defer deadline.Stop()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		sample := []metrics.Sample{{Name: heapMetric}}
		for {
			select {
			case <-done:
				return
			case <-deadline.C:
				fmt.Fprintf(stderr, "bale: evaluating the spec took longer than --eval-timeout %s (a comprehension generating huge values?); stopped\n", l.timeout)
				exit(1)
				return
			case <-tick.C:
				metrics.Read(sample)
				if sample[0].Value.Kind() == metrics.KindUint64 && int64(sample[0].Value.Uint64()) > int64(l.memory) {
					fmt.Fprintf(stderr, "bale: evaluating the spec used more than --eval-memory %s of memory (a comprehension generating huge values?); stopped\n", l.memory.String())
					exit(1)
					return
				}
			}
		}
	}()
	return func() { once.Do(func() { close(done) }) }
}
