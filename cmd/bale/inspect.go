package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/bale-build/bale/inspect"
	"github.com/bale-build/bale/verify"
)

func newInspect() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect PACK|KIT",
		Short: "Show what a bootstrap pack or offline kit holds, without extracting it",
		Long: `inspect reads a bootstrap pack as a stream, as untrusted input, and prints
what it holds: its planId, specDigest and build timestamp; every image
(tags, digest, platforms, compressed size, layers, and how many of them
other images share); every layer with the images that use it; every chart
with the image references its default values hold; the signatures and the
bundles the pack references; totals. Lists are sorted largest first.

For an offline kit (its directory or its K.tar.gz archive) it prints
offline-kit.json's release, build timestamp and artifacts (kind, size,
sha256, signer), largest first, and any artifact missing or of another size.

inspect does not check the pack; bale verify does.`,
		Example: `  bale inspect out/bootstrap-pack-v1.tar
  bale inspect out/bootstrap-pack-v1.tar --format json | jq '.images[] | {name, size}'
  bale inspect out/aoc-offline-kit`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, "text", "json"); err != nil {
				return err
			}
			// One rule tells a pack from a kit, for inspect and verify.
			kind, err := verify.Detect(args[0])
			if err != nil {
				return fmt.Errorf("inspect: %w", err)
			}
			if kind != verify.KindPack {
				return inspectKit(cmd, args[0], format)
			}
			rep, err := inspect.Pack(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if format == "json" {
				return writeJSON(cmd.OutOrStdout(), rep)
			}
			return writeInspect(cmd.OutOrStdout(), rep)
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "output format: text or json")
	return cmd
}

// writeInspect renders a report for people: a header, then one table per
// kind of content, largest first.
func writeInspect(out io.Writer, rep *inspect.Report) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	t := rep.Totals
	fmt.Fprintf(w, "%s\t%s\n", rep.Name, rep.Path)
	fmt.Fprintf(w, "  artifactSha256\t%s\n", rep.SHA256)
	fmt.Fprintf(w, "  rootHash\t%s\n", rep.RootHash)
	fmt.Fprintf(w, "  planId\t%s\n", rep.PlanID)
	fmt.Fprintf(w, "  specDigest\t%s\n", rep.SpecDigest)
	fmt.Fprintf(w, "  sourceDateEpoch\t%s\n", rep.SourceDateEpoch)
	fmt.Fprintf(w, "  size\t%d (%s)\n", rep.Size, humanBytes(rep.Size))
	fmt.Fprintf(w, "  contents\t%s (%s, %s, %s of blobs; %s save %s), %s (%s), %s, %s\n",
		count(t.Images, "image"), count(t.Manifests, "manifest"), count(t.Layers, "layer"), humanBytes(t.BlobBytes), count(t.SharedLayers, "shared layer"), humanBytes(t.SharedBytes),
		count(t.Charts, "chart"), humanBytes(t.ChartBytes), count(t.Signatures, "signature"), count(t.Bundles, "bundle"))
	if len(rep.Images) > 0 {
		fmt.Fprintf(w, "\nIMAGES\nSIZE\tNAME\tDIGEST\tPLATFORMS\tLAYERS\tSHARED\tTAGS\n")
		for _, im := range rep.Images {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", humanBytes(im.Size), im.Name, im.Digest,
				orDash(strings.Join(im.Platforms, ",")), im.Layers, im.SharedLayers, orDash(strings.Join(im.Tags, ",")))
		}
	}
	if len(rep.Layers) > 0 {
		fmt.Fprintf(w, "\nLAYERS\nSIZE\tDIGEST\tIMAGES\n")
		for _, l := range rep.Layers {
			fmt.Fprintf(w, "%s\t%s\t%s\n", humanBytes(l.Size), l.Digest, strings.Join(l.Images, ","))
		}
	}
	if len(rep.Charts) > 0 {
		fmt.Fprintf(w, "\nCHARTS\nSIZE\tNAME\tVERSION\tAPP VERSION\tUPSTREAM\tVALUES IMAGES\n")
		for _, c := range rep.Charts {
			refs := make([]string, len(c.Images))
			for i, im := range c.Images {
				refs[i] = im.Key + "=" + im.Ref
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", humanBytes(c.Size), c.Name, c.Version, orDash(c.AppVersion), orDash(c.UpstreamDigest), orDash(strings.Join(refs, " ")))
		}
	}
	if len(rep.Signatures) > 0 {
		fmt.Fprintf(w, "\nSIGNATURES\nSIZE\tPATH\tSHA256\n")
		for _, s := range rep.Signatures {
			fmt.Fprintf(w, "%s\t%s\t%s\n", humanBytes(s.Size), s.Path, s.SHA256)
		}
	}
	if len(rep.Bundles) > 0 {
		fmt.Fprintf(w, "\nBUNDLES\nNAME\tKIND\tDIGEST\tURL\n")
		for _, b := range rep.Bundles {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", b.Name, b.Kind, b.Digest, b.URL)
		}
	}
	return w.Flush()
}

func inspectKit(cmd *cobra.Command, path, format string) error {
	rep, err := inspect.Kit(cmd.Context(), path)
	if err != nil {
		return err
	}
	if format == "json" {
		return writeJSON(cmd.OutOrStdout(), rep)
	}
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "%s\t%s\n  release\t%s\n  sourceDateEpoch\t%s\n  planId\t%s\n  devKey\t%v\n  contents\t%s, %s\n",
		rep.Name, rep.Path, rep.Release, rep.SourceDateEpoch, orDash(rep.PlanID), rep.DevKey, count(rep.Totals.Artifacts, "artifact"), humanBytes(rep.Totals.Bytes))
	fmt.Fprintf(w, "\nARTIFACTS\nSIZE\tNAME\tKIND\tSHA256\tSIGNED BY\n")
	for _, a := range rep.Artifacts {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", humanBytes(a.Size), a.Name, a.Kind, a.SHA256, orDash(a.SignedBy))
	}
	if len(rep.Missing) > 0 {
		fmt.Fprintf(w, "\nmissing or of another size: %s\n", strings.Join(rep.Missing, ", "))
	}
	return w.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
