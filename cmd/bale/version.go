package main

import (
	"fmt"
	"runtime/debug"

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
			v := versionInfo{Version: "(devel)", Modules: map[string]string{}}
			if bi, ok := debug.ReadBuildInfo(); ok {
				v.Version = bi.Main.Version
				v.Go = bi.GoVersion
				for _, d := range bi.Deps {
					switch d.Path {
					case "cuelang.org/go", "github.com/klauspost/compress", "github.com/google/go-containerregistry", "helm.sh/helm/v3":
						v.Modules[d.Path] = d.Version
					}
				}
			}
			if format == "json" {
				return writeJSON(cmd.OutOrStdout(), v)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "bale %s (%s)\n", v.Version, v.Go)
			for _, m := range []string{"cuelang.org/go", "github.com/google/go-containerregistry", "github.com/klauspost/compress", "helm.sh/helm/v3"} {
				if ver, ok := v.Modules[m]; ok {
					fmt.Fprintf(cmd.OutOrStdout(), "  %s %s\n", m, ver)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "output format: text or json")
	return cmd
}

type versionInfo struct {
	Version string            `json:"version"`
	Go      string            `json:"go"`
	Modules map[string]string `json:"modules"`
}
