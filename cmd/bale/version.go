package main

import (
	"fmt"
	"io"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/spf13/cobra"
)

func newVersion() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "version",
		Short:   "Print bale's version and the modules that shape its output",
		Example: "  bale version --format json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format, "text", "json"); err != nil {
				return err
			}
			v := readVersion()
			if format == "json" {
				return writeJSON(cmd.OutOrStdout(), v)
			}
			_, err := io.WriteString(cmd.OutOrStdout(), v.text())
			return err
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "output format: text or json")
	return cmd
}

// readVersion reads bale's version and the versions of the modules that
// shape its output from the build information.
func readVersion() versionInfo {
	v := versionInfo{Version: "(devel)", Modules: map[string]string{}}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v.Version = bi.Main.Version
		v.Go = bi.GoVersion
		for _, d := range bi.Deps {
			if slices.Contains(versionModules(), d.Path) {
				v.Modules[d.Path] = d.Version
			}
		}
	}
	return v
}

// versionModules returns the modules whose versions shape bale's output,
// in the order bale version prints them.
func versionModules() []string {
	return []string{"cuelang.org/go", "github.com/google/go-containerregistry", "github.com/klauspost/compress", "helm.sh/helm/v3"}
}

// text is bale version's text output, also printed by bale --version.
func (v versionInfo) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "bale %s (%s)\n", v.Version, v.Go)
	for _, m := range versionModules() {
		if ver, ok := v.Modules[m]; ok {
			fmt.Fprintf(&b, "  %s %s\n", m, ver)
		}
	}
	return b.String()
}

type versionInfo struct {
	Version string            `json:"version"`
	Go      string            `json:"go"`
	Modules map[string]string `json:"modules"`
}
