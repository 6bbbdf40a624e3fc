package server

import (
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/bale-build/bale/plan"
)

// A POST by spec name would plan the spec each time (22 ms of CPU for
// specs/airgap): the plan is kept for as long as nothing it was made from
// can have changed. That is:
//
//   - every file and directory the spec's loading read or looked at (its
//     CUE files, embeds, cue.mod; spec.Instance.Sources), and every local
//     input the plan names (files, chart directories and archives, OCI
//     layouts, tarballs, values files, Go source trees), as they were
//     when it was planned: size, modification and change times, inode,
//     mode; a directory's own times change when an entry comes or goes.
//     A file changed while the spec was planned (modified within
//     racyWindow of the planning's start) is not trusted, and the plan
//     is not kept.
//   - for a plan with an input resolved from a registry or a chart
//     repository (an image or chart by tag or version, whose digest the
//     plan records), Config.PlanCacheTTL from its planning: within it,
//     POSTs get the same resolution, and the plan id names it.

// racyWindow is how close to a planning's start a file's modification
// time may be for its fingerprint to be trusted: coarse file system
// clocks round to a second or two.
const racyWindow = 2 * time.Second

// fileState is what a dependency looked like: enough that a write, a
// replacement, an addition to a directory or a removal changes it.
type fileState struct {
	missing      bool
	size         int64
	mode         fs.FileMode
	mtime, ctime int64 // nanoseconds
	dev, ino     uint64
}

// stateOf stats path (following links: a link's target is what is read).
func stateOf(path string) fileState {
	fi, err := os.Stat(path)
	if err != nil {
		return fileState{missing: true}
	}
	st := fileState{size: fi.Size(), mode: fi.Mode(), mtime: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ctime = time.Unix(int64(sys.Ctim.Sec), int64(sys.Ctim.Nsec)).UnixNano()
		st.dev, st.ino = uint64(sys.Dev), sys.Ino
	}
	return st
}

// dep is one file or directory a plan depends on, as it was.
type dep struct {
	path  string
	state fileState
}

// cachedPlan is a served spec's plan and what it depends on.
type cachedPlan struct {
	pl   *planned
	deps []dep
	// expires is when a registry's or chart repository's resolution is
	// to be asked again; zero for a plan with none.
	expires time.Time
}

// fresh reports whether nothing the plan depends on has changed by now.
func (c *cachedPlan) fresh(now time.Time) bool {
	if !c.expires.IsZero() && !now.Before(c.expires) {
		return false
	}
	for _, d := range c.deps {
		if stateOf(d.path) != d.state {
			return false
		}
	}
	return true
}

// planCache holds each served spec's last plan, by spec name.
type planCache struct {
	mu     sync.Mutex
	byName map[string]*cachedPlan
}

func (c *planCache) get(name string) *cachedPlan {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byName[name]
}

func (c *planCache) put(name string, cp *cachedPlan) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byName == nil {
		c.byName = map[string]*cachedPlan{}
	}
	if cp == nil {
		delete(c.byName, name)
		return
	}
	c.byName[name] = cp
}

// remotelyResolved reports whether an input's digest came from a
// registry's or chart repository's answer that may change (a tag, a
// version in an index).
func remotelyResolved(in plan.Input) bool {
	switch in.Source.Type {
	case plan.SourceRegistry, plan.SourceRepository, plan.SourceOCI:
		return true
	}
	return false
}

// planDeps fingerprints what plan sp, made from a spec whose loading read
// sources, depends on: the sources and every local input under root,
// walked. It reports false when one was modified within racyWindow of
// started (the planning's start): then the plan may not be what the
// files now hold, and it is not kept.
func planDeps(sources []string, sp *plan.Sealed, root string, started time.Time) ([]dep, bool, error) {
	var deps []dep
	seen := map[string]bool{}
	add := func(p string) bool {
		if seen[p] {
			return true
		}
		seen[p] = true
		st := stateOf(p)
		deps = append(deps, dep{path: p, state: st})
		return st.missing || time.Unix(0, st.mtime).Before(started.Add(-racyWindow))
	}
	ok := true
	for _, p := range sources {
		ok = add(p) && ok
	}
	for _, in := range sp.Plan().Inputs {
		if in.Source.Path == "" {
			continue
		}
		top := filepath.Join(root, filepath.FromSlash(in.Source.Path))
		err := filepath.WalkDir(top, func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			ok = add(p) && ok
			return nil
		})
		if err != nil {
			return nil, false, err
		}
	}
	return deps, ok, nil
}
