package kit

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/verify"
)

// VerifyArchive verifies a kit carried as its archive (K.tar.gz, as Build
// writes it beside the kit): the archive must hold one top directory of
// plain files only, which are extracted into a private temporary directory
// and checked with Verify. The report's Dir is path.
func VerifyArchive(ctx context.Context, path string, opts VerifyOptions) (*verify.Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("verify kit archive: %w", err)
	}
	defer f.Close()
	tmp, err := os.MkdirTemp("", "bale-kit-*")
	if err != nil {
		return nil, fmt.Errorf("verify kit archive %s: %w", path, err)
	}
	defer os.RemoveAll(tmp)

	top := ""
	var bad *verify.Failure
	err = archive.Walk(ctx, f, opts.Limits, func(h *tar.Header, body io.Reader) error {
		dir, name, nested := strings.Cut(h.Name, "/")
		switch {
		case top == "":
			top = dir
		case dir != top:
			bad = &verify.Failure{Entry: h.Name, Check: CheckFiles, Detail: fmt.Sprintf("outside the kit's top directory %s", top)}
			return errStop
		}
		if h.Typeflag == tar.TypeDir {
			if nested && name != "" {
				bad = &verify.Failure{Entry: h.Name, Check: CheckFiles, Detail: "a kit has no subdirectories"}
				return errStop
			}
			return nil
		}
		if !nested || !ValidName(name) || strings.Contains(name, "/") {
			bad = &verify.Failure{Entry: h.Name, Check: CheckFiles, Detail: "not a plain file in the kit's top directory"}
			return errStop
		}
		out, err := os.OpenFile(filepath.Join(tmp, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, body); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if bad != nil {
		r := newReport(path)
		r.Ran(CheckFiles)
		r.Failures = append(r.Failures, *bad)
		return r, nil
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("verify kit archive %s: %w", path, ctx.Err())
		}
		r := newReport(path)
		r.Ran(CheckFiles)
		r.Fail("", CheckFiles, fmt.Sprintf("read archive: %v", err))
		return r, nil
	}
	r, err := Verify(ctx, tmp, opts)
	if err != nil {
		return nil, fmt.Errorf("verify kit archive %s: %w", path, err)
	}
	r.Path = path
	if top != r.Name {
		r.Fail(top+"/", CheckFiles, fmt.Sprintf("top directory is not the kit's name %q", r.Name))
	}
	return r, nil
}

// errStop ends an archive walk once a failure is recorded.
var errStop = errors.New("stop")
