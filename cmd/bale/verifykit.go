package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bale-build/bale/kit"
)

// isKitPath reports whether path is an offline kit (a directory, or a
// .tar.gz kit archive) rather than a bootstrap pack.
func isKitPath(path string) bool {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return true
	}
	return strings.HasSuffix(path, ".tar.gz")
}

// kitVerifyOutput is verify's JSON for a kit, under pack verify's key names
// (path, sha256, checks, failures[].entry/check/detail) plus the kit's.
type kitVerifyOutput struct {
	Path string `json:"path"`
	Kind string `json:"kind"`
	Name string `json:"name,omitempty"`
	// SHA256 is the kit archive's sha256, when an archive was verified.
	SHA256   string       `json:"sha256,omitempty"`
	DevKey   bool         `json:"devKey"`
	Checks   []string     `json:"checks"`
	Failures []kitFailure `json:"failures"`
}

type kitFailure struct {
	Entry  string `json:"entry,omitempty"`
	Check  string `json:"check"`
	Detail string `json:"detail"`
}

// verifyKit verifies the kit at path and reports as verify does for packs.
func verifyKit(cmd *cobra.Command, path, format, keyFile string) error {
	var opts kit.VerifyOptions
	if keyFile != "" {
		pem, err := os.ReadFile(keyFile)
		if err != nil {
			return fmt.Errorf("verify: trusted key: %w", err)
		}
		opts.TrustedKey = pem
	}
	ctx := cmd.Context()
	var (
		rep *kit.Report
		err error
		sum string
	)
	if fi, serr := os.Stat(path); serr == nil && fi.IsDir() {
		rep, err = kit.Verify(ctx, path, opts)
	} else {
		rep, err = kit.VerifyArchive(ctx, path, opts)
		if err == nil {
			sum, err = fileSHA256(path)
		}
	}
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	if format == "json" {
		o := kitVerifyOutput{Path: path, Kind: kit.ManifestKind, Name: rep.Name, SHA256: sum, DevKey: rep.DevKey, Checks: rep.Checks, Failures: []kitFailure{}}
		for _, f := range rep.Failures {
			o.Failures = append(o.Failures, kitFailure{Entry: f.File, Check: f.Check, Detail: f.Detail})
		}
		if err := writeJSON(w, o); err != nil {
			return err
		}
	} else if rep.OK() {
		fmt.Fprintf(w, "ok  %s (offline kit %s)\n", path, rep.Name)
		if sum != "" {
			fmt.Fprintf(w, "  artifactSha256  %s\n", sum)
		}
		fmt.Fprintf(w, "  checks: %v\n", rep.Checks)
	} else {
		for _, f := range rep.Failures {
			fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", path, f.String())
		}
	}
	if rep.DevKey {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s is signed with a DEVELOPMENT key (COSIGN_ALLOW_DEV_KEY=1); do not trust it in production\n", path)
	}
	if !rep.OK() {
		return &exitError{code: 1, reported: true}
	}
	return nil
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
