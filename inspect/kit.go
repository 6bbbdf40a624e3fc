package inspect

import (
	"archive/tar"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/internal/capread"
	"github.com/bale-build/bale/kit"
)

// ErrNotPack is wrapped by Scan's error for an archive without a pack
// index: it may be a kit archive instead.
var ErrNotPack = errors.New("not a bootstrap pack")

// KitReport is what `bale inspect` prints for an offline kit.
type KitReport struct {
	Path            string `json:"path"`
	Name            string `json:"name"`
	Release         string `json:"release"`
	SourceDateEpoch string `json:"sourceDateEpoch"`
	PlanID          string `json:"planId,omitempty"`
	SpecDigest      string `json:"specDigest,omitempty"`
	DevKey          bool   `json:"devKey"`
	// Artifacts are offline-kit.json's, largest first.
	Artifacts []kit.Artifact `json:"artifacts"`
	// Missing lists artifacts the kit does not hold, or holds with another
	// size than offline-kit.json says.
	Missing []string `json:"missing"`
	Totals  struct {
		Artifacts int   `json:"artifacts"`
		Bytes     int64 `json:"bytes"`
	} `json:"totals"`
}

// Kit inspects an offline kit: a kit directory, or its archive (K.tar.gz,
// read as a hostile stream). It reads offline-kit.json and the files'
// sizes; `bale verify` and the kit's verify.sh check the bytes.
func Kit(ctx context.Context, path string) (*KitReport, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("inspect kit: %w", err)
	}
	sizes := map[string]int64{}
	var manifest []byte
	if st.IsDir() {
		// Regular files only, checked before anything is opened: a FIFO
		// named offline-kit.json would block an open for ever, a device
		// would never end, and a link could lead out of the kit.
		p := filepath.Join(path, kit.ManifestName)
		fi, err := os.Lstat(p)
		if err != nil {
			return nil, fmt.Errorf("inspect kit %s: %w", path, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("inspect kit %s: %s: not a regular file (%s)", path, kit.ManifestName, fi.Mode().Type())
		}
		if manifest, err = capread.ReadFile(p, kit.MaxSmallFile); err != nil {
			return nil, fmt.Errorf("inspect kit %s: %w", path, err)
		}
		ents, err := os.ReadDir(path)
		if err != nil {
			return nil, fmt.Errorf("inspect kit %s: %w", path, err)
		}
		for _, e := range ents {
			if e.Type().IsRegular() {
				if info, err := e.Info(); err == nil {
					sizes[e.Name()] = info.Size()
				}
			}
		}
	} else {
		f, err := capread.Open(path)
		if err != nil {
			return nil, fmt.Errorf("inspect kit: %w", err)
		}
		defer f.Close()
		top := ""
		err = archive.Walk(ctx, f, archive.DefaultLimits(), func(h *tar.Header, body io.Reader) error {
			dir, name, _ := strings.Cut(h.Name, "/")
			if top == "" {
				top = dir
			}
			if dir != top || strings.Contains(name, "/") {
				return fmt.Errorf("not a plain file in the kit's top directory %s", top)
			}
			if h.Typeflag != tar.TypeReg {
				return nil
			}
			sizes[name] = h.Size
			if name == kit.ManifestName {
				manifest, err = capread.ReadAll(body, kit.MaxSmallFile)
				return err
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("inspect kit %s: %w", path, err)
		}
		if manifest == nil {
			return nil, fmt.Errorf("inspect %s: neither a bootstrap pack (no pack-index.json) nor a kit (no %s)", path, kit.ManifestName)
		}
	}
	m, err := kit.ParseManifest(manifest)
	if err != nil {
		return nil, fmt.Errorf("inspect kit %s: %w", path, err)
	}
	rep := &KitReport{
		Path: path, Name: m.Name, Release: m.Release, SourceDateEpoch: m.SourceDateEpoch,
		PlanID: m.PlanID, SpecDigest: m.SpecDigest, DevKey: m.DevKey,
		Artifacts: slices.Clone(m.Artifacts), Missing: []string{},
	}
	if rep.Artifacts == nil {
		rep.Artifacts = []kit.Artifact{}
	}
	slices.SortFunc(rep.Artifacts, func(a, b kit.Artifact) int { return cmp.Or(cmp.Compare(b.Size, a.Size), cmp.Compare(a.Name, b.Name)) })
	for _, a := range rep.Artifacts {
		rep.Totals.Artifacts++
		rep.Totals.Bytes += a.Size
		if n, ok := sizes[a.Name]; !ok || n != a.Size {
			rep.Missing = append(rep.Missing, a.Name)
		}
	}
	return rep, nil
}
