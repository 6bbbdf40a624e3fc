// Command aoc-backfill is the Concelier AOC backfill runner
// (DEVOPS-STORE-AOC-19-005), a bale test fixture: it validates a seeded
// dataset and prints what a backfill would do; only --dry-run is
// implemented.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// version is set at link time (-ldflags "-X main.version=…").
var version = "dev"

const usage = `Usage: aoc-backfill [OPTIONS]

Backfill Concelier advisory observations and linksets from a seeded AOC
dataset (advisories.ndjson, observations.ndjson, linksets.ndjson).

Options:
  --dataset DIR   dataset directory (default: $AOC_DATASET, else ./dataset)
  --config FILE   runner configuration (default: config/backfill.yaml)
  --tenant NAME   tenant to backfill (default: the config's tenant)
  --dry-run       validate the dataset and print the plan; change nothing
  --version       print the version and exit
  -h, --help      print this help and exit
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("aoc-backfill", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dataset := os.Getenv("AOC_DATASET")
	if dataset == "" {
		dataset = "./dataset"
	}
	exe, _ := os.Executable()
	fs.StringVar(&dataset, "dataset", dataset, "")
	config := fs.String("config", filepath.Join(filepath.Dir(exe), "..", "config", "backfill.yaml"), "")
	tenant := fs.String("tenant", "", "")
	dryRun := fs.Bool("dry-run", false, "")
	showVersion := fs.Bool("version", false, "")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "aoc-backfill: %v\n%s", err, usage)
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stdout, "aoc-backfill %s\n", version)
		return 0
	}
	if *tenant == "" {
		*tenant = configTenant(*config)
	}
	total := 0
	for _, kind := range []string{"advisories", "observations", "linksets"} {
		file := filepath.Join(dataset, kind+".ndjson")
		n, err := countLines(file)
		if err != nil {
			fmt.Fprintf(stderr, "aoc-backfill: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: %d records (%s)\n", kind, n, file)
		total += n
	}
	if *dryRun {
		fmt.Fprintf(stdout, "dry run: would backfill %d records for tenant %s; nothing changed\n", total, *tenant)
		return 0
	}
	fmt.Fprintln(stderr, "aoc-backfill: a live backfill needs a Concelier store; this build supports --dry-run only")
	return 3
}

// configTenant reads the tenant: line of the runner configuration.
func configTenant(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "default"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "tenant:"); ok && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
	}
	return "default"
}

// countLines counts the records of an ndjson file.
func countLines(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		n++
	}
	return n, sc.Err()
}
