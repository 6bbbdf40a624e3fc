package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/bale-build/bale/kit"
	"github.com/bale-build/bale/verify"
)

// isKitPath reports whether path is an offline kit (a directory, or a
// .tar.gz kit archive) rather than a bootstrap pack.
func isKitPath(path string) bool {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return true
	}
	return strings.HasSuffix(path, ".tar.gz")
}

// kit verifies the offline kit at path, a directory or a K.tar.gz
// archive (whose sha256 the report then carries).
func (o *verifyOptions) kit(ctx context.Context, path string) (*verify.Report, error) {
	var opts kit.VerifyOptions
	if o.keyFile != "" {
		pem, err := os.ReadFile(o.keyFile)
		if err != nil {
			return nil, fmt.Errorf("verify: trusted key: %w", err)
		}
		opts.TrustedKey = pem
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return kit.Verify(ctx, path, opts)
	}
	rep, err := kit.VerifyArchive(ctx, path, opts)
	if err != nil {
		return nil, err
	}
	if rep.SHA256, err = fileSHA256(path); err != nil {
		return nil, err
	}
	return rep, nil
}

// fileSHA256 returns the hex sha256 of the file at path.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
