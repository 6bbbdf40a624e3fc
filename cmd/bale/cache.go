package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/bale-build/bale/executor/cas"
)

func newCache() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "Inspect and maintain the build cache: du, prune, verify",
		Long: `The build cache (--cache; default $XDG_CACHE_HOME/bale) holds every blob a
build fetched or made, by sha256, and every step's result under a key of everything that decides its bytes.

Builds hold the cache's lock shared, so any number run at once; prune and
verify hold it exclusively and wait for running builds to finish. Temporary
files left by killed builds are removed by the next build once they are 15
minutes old (sooner by prune), never while their writer is alive.`,
		Example: `  bale cache du
  bale cache prune --max-size 20GiB --older-than 30d
  bale cache verify --format json`,
	}
	cmd.AddCommand(newCacheDu(), newCachePrune(), newCacheVerify())
	return cmd
}

// cacheFlags are the flags every cache subcommand takes.
type cacheFlags struct {
	dir    string
	format string
}

func (f *cacheFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.dir, "cache", "", "cache directory (default $XDG_CACHE_HOME/bale)")
	cmd.Flags().StringVar(&f.format, "format", "text", "output format: text or json")
}

func (f *cacheFlags) open() (*cas.Dir, error) {
	if err := checkFormat(f.format, "text", "json"); err != nil {
		return nil, err
	}
	dir := f.dir
	if dir == "" {
		var err error
		if dir, err = defaultCache(); err != nil {
			return nil, err
		}
	}
	s, err := cas.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open cache: %w", err)
	}
	return s, nil
}

func newCacheDu() *cobra.Command {
	var f cacheFlags
	cmd := &cobra.Command{
		Use:   "du",
		Short: "Show what the cache holds on disk",
		Long: `du counts the cache's blobs, step results, verification stamps and temporary
files, and their bytes. It reads directories only, never content, and takes no
lock: under running builds it is a snapshot.`,
		Example: `  bale cache du
  bale cache du --cache /var/cache/bale --format json | jq .bytes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := f.open()
			if err != nil {
				return err
			}
			u, err := s.Usage(cmd.Context())
			if err != nil {
				return err
			}
			if f.format == "json" {
				return writeJSON(cmd.OutOrStdout(), u)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%s\n", u.Root)
			fmt.Fprintf(w, "  blobs       %7d  %s\n", u.Blobs, humanBytes(u.BlobBytes))
			fmt.Fprintf(w, "  steps       %7d  %s\n", u.Actions, humanBytes(u.ActionBytes))
			fmt.Fprintf(w, "  stamps      %7d\n", u.Stamps)
			fmt.Fprintf(w, "  temporary   %7d  %s\n", u.Temps, humanBytes(u.TempBytes))
			fmt.Fprintf(w, "  total                %s (%d bytes)\n", humanBytes(u.Bytes), u.Bytes)
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func newCachePrune() *cobra.Command {
	var (
		f         cacheFlags
		maxSize   string
		olderThan string
	)
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Evict least recently used blobs",
		Long: `prune evicts blobs by last use: a blob's last use is the latest time a build
found a step result naming it (or, for a blob no result names, when it was
written). --older-than evicts every blob unused for that long; --max-size then
evicts the least recently used until the blobs fit. Step results naming an
evicted blob go with it (the next build of such a step runs it again), and so
do temporary files left by killed builds. With neither flag, prune removes only
those temporary files and results that point at nothing.

prune holds the cache's lock exclusively: it waits for running builds.`,
		Example: `  bale cache prune --max-size 20GiB
  bale cache prune --older-than 30d
  bale cache prune --max-size 500MB --older-than 12h --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var opts cas.PruneOptions
			var err error
			if maxSize != "" {
				if opts.MaxSize, err = parseSize(maxSize); err != nil {
					return fmt.Errorf("--max-size: %w", err)
				}
			}
			if olderThan != "" {
				if opts.OlderThan, err = parseAge(olderThan); err != nil {
					return fmt.Errorf("--older-than: %w", err)
				}
			}
			s, err := f.open()
			if err != nil {
				return err
			}
			res, err := s.Prune(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if f.format == "json" {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "evicted %s (%s), kept %d (%s)\n", count(res.Evicted, "blob"), humanBytes(res.EvictedBytes), res.Kept, humanBytes(res.KeptBytes))
			fmt.Fprintf(w, "removed %s and %s (%s)\n", count(res.Actions, "step result"), count(res.Temps, "temporary file"), humanBytes(res.TempBytes))
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&maxSize, "max-size", "", "keep at most this many blob bytes: 1073741824, 500MB, 20GiB")
	cmd.Flags().StringVar(&olderThan, "older-than", "", "evict blobs unused for this long: 30d, 12h, 90m")
	return cmd
}

func newCacheVerify() *cobra.Command {
	var f cacheFlags
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Re-hash every blob in the cache and evict what is wrong",
		Long: `verify reads every blob in the cache in full and compares it with its digest,
whatever its verification stamp says, so it also finds corruption that left
the file's times untouched (a disk image edited below the file system). A
blob that does not match is evicted, and so is every step result that names
it or cannot be read; the next build fetches or rebuilds them.

Exit status: 0 if everything was sound, 2 if something was evicted, 1 on
error. verify holds the cache's lock exclusively: it waits for running builds.`,
		Example: `  bale cache verify
  bale cache verify --format json | jq '.evicted[].name'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := f.open()
			if err != nil {
				return err
			}
			rep, err := s.VerifyAll(cmd.Context())
			if err != nil {
				return err
			}
			if f.format == "json" {
				err = writeJSON(cmd.OutOrStdout(), rep)
			} else {
				printVerify(cmd.OutOrStdout(), rep)
			}
			if err == nil && len(rep.Evicted) > 0 {
				return &exitError{code: 2, reported: true}
			}
			return err
		},
	}
	f.register(cmd)
	return cmd
}

func printVerify(w io.Writer, rep *cas.VerifyReport) {
	for _, e := range rep.Evicted {
		fmt.Fprintf(w, "evicted %s %s: %s\n", e.Kind, e.Name, e.Reason)
	}
	status := "ok"
	if len(rep.Evicted) > 0 {
		status = fmt.Sprintf("%d evicted", len(rep.Evicted))
	}
	fmt.Fprintf(w, "%s: %s (%s) hashed, %s read\n", status, count(rep.Blobs, "blob"), humanBytes(rep.Bytes), count(rep.Actions, "step result"))
}

// parseSize parses a byte count: digits with an optional unit, decimal
// (kB, MB, GB, TB) or binary (KiB, MiB, GiB, TiB; K, M, G, T too).
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	mult := map[string]float64{
		"": 1, "b": 1,
		"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
		"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
	}[strings.ToLower(unit)]
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || mult == 0 || v <= 0 || v*mult > 1<<62 {
		return 0, fmt.Errorf("%q: want a positive size such as 1073741824, 500MB or 20GiB", s)
	}
	return int64(v * mult), nil
}

// parseAge parses a Go duration ("12h", "90m") or a number of days ("30d").
func parseAge(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(strings.TrimSpace(s), "d"); ok {
		n, err := strconv.ParseFloat(d, 64)
		if err == nil && n > 0 && n < 1e5 {
			return time.Duration(n * 24 * float64(time.Hour)), nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d, nil
	}
	return 0, fmt.Errorf("%q: want a positive age such as 30d, 12h or 90m", s)
}
