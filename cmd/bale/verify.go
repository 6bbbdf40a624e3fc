package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/bale-build/bale/verify"
)

func newVerify() *cobra.Command {
	var format, keyFile string
	cmd := &cobra.Command{
		Use:   "verify PACK | KIT",
		Short: "Check a bootstrap pack or a release's offline kit, offline",
		Long: `verify checks a bootstrap pack with nothing but the pack: the gzip and tar
structure, uniform metadata (owner 0/0, modes 0644/0755, every mtime the
build timestamp, sorted entries, explicit directories), every entry against
the pack index, every OCI blob against its digest and size, index.json
against manifest.json, and the NAME.sha256 file beside the pack if present.

Given a release's offline kit (the directory bale build wrote, or its
NAME.tar.gz archive) it checks, in process: exactly the kit's files,
SHA256SUMS and its signature, offline-kit.json, every cosign bundle, every
DSSE envelope over its PAE, the provenance subject digests, the SBOM's file
checksums against the runner tarball and the dataset manifest against the
dataset tarball. Without --key the kit is checked against its own
cosign.pub (integrity, not origin).

It names the entry (or kit file) and the check behind each failure. Exit
status: 0 good, 1 any failure.`,
		Example: `  bale verify out/bootstrap-pack-v1.tar
  bale verify out/bootstrap-pack-v1.tar --format json | jq .failures
  bale verify out/aoc --key cosign.pub
  bale verify out/aoc/aoc-offline-kit.tar.gz --format json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, "text", "json"); err != nil {
				return err
			}
			if isKitPath(args[0]) {
				return verifyKit(cmd, args[0], format, keyFile)
			}
			if keyFile != "" {
				return fmt.Errorf("verify: --key applies to offline kits; a bootstrap pack is not signed")
			}
			rep, err := verify.Pack(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if format == "json" {
				if err := writeJSON(w, rep); err != nil {
					return err
				}
			} else if rep.OK() {
				fmt.Fprintf(w, "ok  %s\n  artifactSha256  %s\n  rootHash        %s\n  %d entries, checks: %v\n", rep.Path, rep.SHA256, rep.RootHash, rep.Entries, rep.Checks)
			} else {
				for _, f := range rep.Failures {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", rep.Path, f.String())
				}
			}
			if !rep.OK() {
				return &exitError{code: 1, reported: true}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "output format: text or json")
	cmd.Flags().StringVar(&keyFile, "key", "", "an offline kit must be signed with this PEM public key (cosign.pub from a trusted place)")
	return cmd
}
