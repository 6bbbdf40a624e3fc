package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/bale-build/bale/internal/capread"
	"github.com/bale-build/bale/verify"
)

// verifyOptions are bale verify's flags.
type verifyOptions struct {
	format  string
	keyFile string
}

func newVerify() *cobra.Command {
	var o verifyOptions
	cmd := &cobra.Command{
		Use:   "verify PACK | KIT",
		Short: "Check a bootstrap pack or a release's offline kit, offline",
		Long: `verify checks a bootstrap pack with nothing but the pack: the gzip and tar
structure, uniform metadata (owner 0/0, modes 0644/0755, every mtime the
build timestamp, sorted entries, explicit directories), every entry against
the pack index, every OCI blob against its digest and size, index.json
against manifest.json, and the NAME.sha256 file beside the pack if present.

Given a release's offline kit (the directory bale build wrote, or its
NAME.tar.gz archive) it checks, in process: exactly the kit's files, each a
regular file, SHA256SUMS and its signature, offline-kit.json, every cosign
bundle, every DSSE envelope over its PAE, the provenance subject digests,
the SBOM's file checksums against the runner tarball, the dataset manifest
against the dataset tarball, and, beside a directory, that the kit archive
holds exactly the directory's files. A kit archive is read as a stream;
nothing is extracted. Without --key the kit is checked against its own
cosign.pub (integrity, not origin). A directory is a kit; a file is a kit
archive when it is one gzip member without a pack's header, else a pack.
A kit signed with the repository's development key is warned about,
whatever its offline-kit.json says.

It names the entry (or kit file) and the check behind each failure. Exit
status: 0 good, 1 any failure.`,
		Example: `  bale verify out/bootstrap-pack-v1.tar
  bale verify out/bootstrap-pack-v1.tar --format json | jq .failures
  bale verify out/aoc --key cosign.pub
  bale verify out/aoc/aoc-offline-kit.tar.gz --format json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rep, err := o.run(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return o.render(cmd.OutOrStdout(), cmd.ErrOrStderr(), rep)
		},
	}
	cmd.Flags().StringVar(&o.format, "format", "text", "output format: text or json")
	cmd.Flags().StringVar(&o.keyFile, "key", "", "an offline kit must be signed with this PEM public key (cosign.pub from a trusted place)")
	return cmd
}

// run verifies the pack or offline kit at path (verify.Path decides which).
func (o *verifyOptions) run(ctx context.Context, path string) (*verify.Report, error) {
	if err := checkFormat(o.format, "text", "json"); err != nil {
		return nil, err
	}
	var opts verify.Options
	if o.keyFile != "" {
		pem, err := capread.ReadFile(o.keyFile, maxTrustedKey)
		if err != nil {
			return nil, fmt.Errorf("verify: trusted key: %w", err)
		}
		opts.TrustedKey = pem
	}
	return verify.Path(ctx, path, opts)
}

// maxTrustedKey bounds the --key file; a PEM public key is a few hundred
// bytes.
const maxTrustedKey = 64 << 10

// render prints the report: the JSON object, or "ok" and what was
// checked, or each failure on stderr (exit 1).
func (o *verifyOptions) render(stdout, stderr io.Writer, rep *verify.Report) error {
	switch {
	case o.format == "json":
		if err := writeJSON(stdout, rep); err != nil {
			return err
		}
	case !rep.OK():
		for _, f := range rep.Failures {
			fmt.Fprintf(stderr, "%s: %s\n", rep.Path, f.String())
		}
	case rep.KitFacts != nil:
		fmt.Fprintf(stdout, "ok  %s (offline kit %s)\n", rep.Path, rep.Name)
		if rep.SHA256 != "" {
			fmt.Fprintf(stdout, "  artifactSha256  %s\n", rep.SHA256)
		}
		fmt.Fprintf(stdout, "  checks: %v\n", rep.Checks)
	default:
		fmt.Fprintf(stdout, "ok  %s\n  artifactSha256  %s\n  rootHash        %s\n  %s, checks: %v\n", rep.Path, rep.SHA256, rep.RootHash, count(rep.Entries, "entry"), rep.Checks)
	}
	if rep.KitFacts != nil && rep.DevKey {
		fmt.Fprintf(stderr, "warning: %s is signed with a DEVELOPMENT key (COSIGN_ALLOW_DEV_KEY=1; its private half is public); do not trust it in production\n", rep.Path)
	}
	if !rep.OK() {
		return &exitError{code: 1, reported: true}
	}
	return nil
}
