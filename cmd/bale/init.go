package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// starterSpec is what bale init writes: a bootstrap pack that vets clean
// and builds (an empty pack), with every kind of input shown in comments.
const starterSpec = `package pack

// A bootstrap pack: Helm charts, OCI images and signatures in one
// byte-stable tar.gz. bale vet checks this file, bale plan resolves every
// input to a digest, bale build writes out/NAME.tar. The schema reference
// is docs/schema.md in bale's repository.
bootstrapPack: {
	name: %q

	// The one build timestamp: every mtime in the pack. RFC 3339 or Unix
	// seconds; SOURCE_DATE_EPOCH in the environment overrides it.
	sourceDateEpoch: "2025-01-01T00:00:00Z"

	charts: [
		// A chart directory or .tgz, relative to this file:
		// {name: "my-app", path: "charts/my-app", version: "1.0.0"},
		// From a chart repository, an exact version:
		// {name: "redis", repository: "https://charts.example/stable", version: "19.0.1"},
		// From an OCI registry:
		// {name: "podinfo", oci: "oci://ghcr.io/stefanprodan/charts/podinfo", version: "6.7.0"},
	]

	images: [
		// From a registry, by tag: run bale pin to write its digest here.
		// Short names are Docker Hub's: "alpine:3.20" is
		// index.docker.io/library/alpine:3.20.
		// {name: "alpine", ref: "alpine:3.20", platforms: ["linux/amd64", "linux/arm64/v8"]},
		// From an OCI layout directory or a docker-save tarball:
		// {name: "app", layout: {path: "images/app", refName: "1.0"}},
		// {name: "tool", tarball: {path: "images/tool.tar"}},
		// A tag you mean to follow, without the lint warning:
		// {name: "nightly", ref: "r.example/app:nightly" @bale(allow="unpinned")},
	]

	// DSSE or TUF metadata copied into signatures/, never re-signed:
	// signatures: [{name: "root.json", kind: "tuf", path: "root.json"}]
}
`

func newInit() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "init [DIR]",
		Short: "Write a commented starter spec",
		Long: `init writes DIR/pack.cue (DIR defaults to the current directory): a bootstrap
pack that vets clean and builds, with every kind of chart and image source
shown in comments. It never overwrites a file.`,
		Example: `  bale init specs/mypack --name mypack-v1 && bale vet specs/mypack`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			path, err := writeStarter(dir, name)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\nnext: bale vet %s && bale build %s -o out\n", path, dir, dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "bootstrap-pack-v1", "the pack's name: NAME.tar")
	return cmd
}

// writeStarter writes the starter spec for a pack named name as
// dir/pack.cue, never over a file, and returns its path.
func writeStarter(dir, name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("init: %w", err)
	}
	path := filepath.Join(dir, "pack.cue")
	// O_EXCL: never over a file, one made meanwhile included.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("init: %s exists; bale init does not overwrite", path)
	} else if err != nil {
		return "", fmt.Errorf("init: %w", err)
	}
	_, err = fmt.Fprintf(f, starterSpec, name)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path) // no partial spec under the name
		return "", fmt.Errorf("init: %w", err)
	}
	return path, nil
}

// checkName refuses a pack name that is not safe as a file name (the
// schema's rule, said before a spec is written with it).
func checkName(n string) error {
	if n == "" || len(n) > 128 || n[0] == '.' || strings.Contains(n, "..") ||
		strings.IndexFunc(n, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._+-", r))
		}) >= 0 {
		return fmt.Errorf("--name %q: want letters, digits, '.', '_', '+', '-', not starting with '.', no \"..\", at most 128 characters", n)
	}
	return nil
}
