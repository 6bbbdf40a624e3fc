package spec

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// CheckPaths reports every local path the spec names that does not exist,
// or that inRoot refuses, at its position in the spec: vet's answer to "is
// this spec buildable here?" before anything is resolved. Paths are
// relative to the spec's directory; env:// keys are not paths. inRoot is
// the resolver's workspace rule (source.InRoot), given by the caller
// because the resolver's package is above this one; whether a path is a
// regular file or directory without links is checked when it is resolved.
func (in *Instance) CheckPaths(inRoot func(path string) error) Diagnostics {
	if in.Dir == "" {
		return nil // parsed from bytes: nothing on disk to check
	}
	var ds Diagnostics
	check := func(at, p string) {
		if p == "" || strings.HasPrefix(p, "env://") {
			return
		}
		file, line, col := in.Pos(at)
		if inRoot != nil {
			if err := inRoot(p); err != nil {
				ds = append(ds, Diagnostic{File: file, Line: line, Column: col, Severity: SeverityError,
					Message: fmt.Sprintf("%s: %v", at, err)})
				return
			}
		}
		full := filepath.FromSlash(p)
		if !filepath.IsAbs(full) {
			full = filepath.Join(in.Dir, full)
		}
		_, err := os.Lstat(full)
		if err == nil {
			return
		}
		msg := err.Error()
		if errors.Is(err, fs.ErrNotExist) {
			msg = "no such file or directory"
		} else if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
			msg = pe.Err.Error()
		}
		ds = append(ds, Diagnostic{File: file, Line: line, Column: col, Severity: SeverityError,
			Message: fmt.Sprintf("%s: %s: %s (paths are relative to the spec's directory)", at, p, msg)})
	}
	if bp := in.Spec.BootstrapPack; bp != nil {
		for i, c := range bp.Charts {
			check(fmt.Sprintf("bootstrapPack.charts[%d].path", i), c.Path)
		}
		for i, img := range bp.Images {
			if img.Layout != nil {
				check(fmt.Sprintf("bootstrapPack.images[%d].layout.path", i), img.Layout.Path)
			}
			if img.Tarball != nil {
				check(fmt.Sprintf("bootstrapPack.images[%d].tarball.path", i), img.Tarball.Path)
			}
		}
		for i, s := range bp.Signatures {
			check(fmt.Sprintf("bootstrapPack.signatures[%d].path", i), s.Path)
		}
		for i, b := range bp.Bundles {
			check(fmt.Sprintf("bootstrapPack.bundles[%d].path", i), b.Path)
		}
	}
	if rel := in.Spec.Release; rel != nil {
		check("release.signing.key", rel.Signing.Key)
		if dk := rel.Signing.DevKey; dk != nil {
			check("release.signing.devKey.key", dk.Key)
			check("release.signing.devKey.publicKey", dk.PublicKey)
		}
		for i, f := range rel.Runner.Files {
			check(fmt.Sprintf("release.runner.files[%d].path", i), f.Path)
		}
		if ds := rel.Dataset; ds != nil {
			for i, f := range ds.Files {
				check(fmt.Sprintf("release.dataset.files[%d].path", i), f.Path)
			}
		}
	}
	return ds
}
