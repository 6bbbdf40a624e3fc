package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/bale-build/bale/publish"
	"github.com/bale-build/bale/source"
)

// publishOptions are bale publish's flags.
type publishOptions struct {
	to, format, endpoint, caFile string
	pathStyle, insecure, trust   bool
	jobs                         int
	partSize                     byteSize
	net                          netFlags
}

func newPublish() *cobra.Command {
	o := publishOptions{partSize: publish.DefaultPartSize}
	cmd := &cobra.Command{
		Use:   "publish OUT --to s3://BUCKET[/PREFIX] | oci://REGISTRY/REPO:TAG",
		Short: "Upload a build's output directory to a release bucket or an OCI registry",
		Long: `publish uploads every file of a build's output directory OUT (a pack, its
.sha256, a kit's SHA256SUMS...). Each file is hashed first and checked
against the NAME.sha256 and SHA256SUMS beside it; symbolic links are
refused. Checksum files (and SHA256SUMS.cosign.bundle) go last, so a reader
never sees sums for a file that is not there yet.

s3://BUCKET/PREFIX: credentials and region from the standard AWS chain
(AWS_ACCESS_KEY_ID..., ~/.aws, SSO, instance roles); --endpoint and
--path-style for S3-compatible servers. Each object carries
x-amz-checksum-sha256 (per part above --part-size) and its hex sha256 as
metadata "sha256". An object already there with that sha256 and size is not
uploaded again but read back and hashed (unless --trust-existing); every
upload is read back too. An object whose bytes on the server are not the
file's is uploaded again and reported as repaired.

oci://REGISTRY/REPO:TAG: one OCI artifact (artifactType
application/vnd.bale.release.v1), one layer per file titled with its path
(org.opencontainers.image.title), so bale pull, oras pull and crane fetch it.
A file whose path bale pull would refuse is not published.

Every request keeps the network limits of bale plan: --timeout (also
between bytes sent), --speed-limit over --speed-time, --request-timeout.`,
		Example: `  bale publish out --to s3://releases/bale/v1.0.0
  bale publish out --to s3://releases/v1 --endpoint http://127.0.0.1:7070 --path-style
  bale publish out --to oci://registry.example/releases/airgap:v1.0.0`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rep, err := o.run(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return renderPublish(cmd.OutOrStdout(), o.format, rep)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.to, "to", "", "destination: s3://BUCKET[/PREFIX] or oci://REGISTRY/REPO:TAG")
	_ = cmd.MarkFlagRequired("to")
	f.StringVar(&o.format, "format", "text", "output format: text or json")
	f.StringVar(&o.endpoint, "endpoint", "", "S3-compatible server URL (default AWS)")
	f.BoolVar(&o.pathStyle, "path-style", false, "address the bucket in the URL path, not the host name")
	f.Var(&o.partSize, "part-size", "multipart part size, and the size above which files go in parts (at least 5MiB)")
	f.BoolVar(&o.trust, "trust-existing", false, "do not read back objects already present with the file's sha256")
	f.IntVar(&o.jobs, "jobs", publish.DefaultJobs, "concurrent uploads")
	f.BoolVar(&o.insecure, "insecure", false, "oci://: use plain HTTP (loopback registries always may)")
	f.StringVar(&o.caFile, "ca-file", "", "oci://: PEM CA certificates to trust beside the system's")
	o.net.register(cmd)
	return cmd
}

// run uploads the directory dir to --to.
func (o *publishOptions) run(ctx context.Context, dir string) (*publish.Report, error) {
	if err := checkFormat(o.format, "text", "json"); err != nil {
		return nil, err
	}
	switch {
	case strings.HasPrefix(o.to, "s3://"):
		newClient, err := o.s3Client()
		if err != nil {
			return nil, err
		}
		return publish.S3(ctx, dir, o.to, publish.S3Options{
			Endpoint: o.endpoint, PathStyle: o.pathStyle, Jobs: o.jobs, PartSize: int64(o.partSize), TrustExisting: o.trust,
			NewHTTPClient: newClient,
		})
	case strings.HasPrefix(o.to, "oci://"):
		ref, err := publish.ParseOCI(o.to, o.insecure, true)
		if err != nil {
			return nil, err
		}
		rt, err := o.net.registryTransport(o.caFile, o.insecure, ref.Context().RegistryStr())
		if err != nil {
			return nil, err
		}
		return publish.OCI(ctx, dir, o.to, publish.OCIOptions{Jobs: o.jobs, Insecure: o.insecure, Transport: rt})
	}
	return nil, fmt.Errorf("--to %q: want s3://BUCKET[/PREFIX] or oci://REGISTRY/REPO:TAG", o.to)
}

// s3Client makes the S3 SDK's HTTP client: source's, under the network
// limits, over the transport the SDK configured. An --endpoint given as
// http:// is the user's choice of plain HTTP for that host.
func (o *publishOptions) s3Client() (func(http.RoundTripper) (*http.Client, error), error) {
	opts, err := o.net.options()
	if err != nil {
		return nil, err
	}
	if o.endpoint != "" {
		u, err := url.Parse(o.endpoint)
		if err != nil || u.Host == "" || u.Scheme != "http" && u.Scheme != "https" {
			return nil, fmt.Errorf("--endpoint %q: want an http:// or https:// URL", o.endpoint)
		}
		if u.Scheme == "http" {
			opts.Insecure = []string{u.Host}
		}
	}
	return func(base http.RoundTripper) (*http.Client, error) {
		o := opts
		o.Transport = base
		return source.NewClient(o)
	}, nil
}

// renderPublish prints what publish or pull did, as a table or JSON.
func renderPublish(w io.Writer, format string, rep *publish.Report) error {
	if format == "json" {
		return writeJSON(w, rep)
	}
	return writePublish(w, rep)
}

func newPull() *cobra.Command {
	var (
		out, format, caFile string
		insecure            bool
		jobs                int
		maxSize             = byteSize(publish.DefaultMaxPull)
		net                 netFlags
	)
	cmd := &cobra.Command{
		Use:   "pull oci://REGISTRY/REPO:TAG|@DIGEST -o DIR",
		Short: "Fetch what bale publish put in a registry, verified",
		Long: `pull fetches an artifact bale publish --to oci://... wrote into DIR, which must
be empty or absent, all or nothing: the files are written into a staging
directory (beside DIR, or inside an existing empty DIR such as a mount
point), each checked against its digest as it is written, then every
.sha256 and SHA256SUMS against the files; only then are they put in
place. A failed pull leaves DIR as it was.

Before a byte is fetched, pull refuses a title that is not a relative path
a spec may name (ASCII letters, digits, '.', '_', '+', '-', '/' between
segments: no escape sequence or line break reaches a file name or the
terminal), that repeats or clashes with another, and layers that declare
more than --max-size in all or more than DIR's file system has free.

Every request keeps the network limits of bale plan: --timeout,
--speed-limit over --speed-time, --request-timeout, 10 redirects.`,
		Example: `  bale pull oci://registry.example/releases/airgap:v1.0.0 -o kit/
  bale pull oci://registry.example/releases/airgap@sha256:… -o kit/ --format json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, "text", "json"); err != nil {
				return err
			}
			ref, err := publish.ParseOCI(args[0], insecure, false)
			if err != nil {
				return err
			}
			rt, err := net.registryTransport(caFile, insecure, ref.Context().RegistryStr())
			if err != nil {
				return err
			}
			if maxSize <= 0 {
				return fmt.Errorf("--max-size %s: want a positive size", &maxSize)
			}
			rep, err := publish.Pull(cmd.Context(), args[0], out, publish.OCIOptions{Jobs: jobs, Insecure: insecure, Transport: rt, MaxSize: int64(maxSize)})
			if err != nil {
				return err
			}
			return renderPublish(cmd.OutOrStdout(), format, rep)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&out, "output", "o", "", "directory to write the files into (empty or absent)")
	_ = cmd.MarkFlagRequired("output")
	f.StringVar(&format, "format", "text", "output format: text or json")
	f.IntVar(&jobs, "jobs", publish.DefaultJobs, "concurrent downloads")
	f.BoolVar(&insecure, "insecure", false, "use plain HTTP (loopback registries always may)")
	f.StringVar(&caFile, "ca-file", "", "PEM CA certificates to trust beside the system's")
	f.Var(&maxSize, "max-size", "refuse an artifact whose files declare more than this in all (B, KiB, MiB, GiB…)")
	net.register(cmd)
	return cmd
}

func writePublish(out io.Writer, rep *publish.Report) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "%s", rep.To)
	if rep.Digest != "" {
		fmt.Fprintf(w, "  %s", rep.Digest)
	}
	if rep.Uploaded+rep.Existing+rep.Repaired > 0 {
		fmt.Fprintf(w, "\n  %d uploaded, %d already there (read back unless --trust-existing), %d repaired", rep.Uploaded, rep.Existing, rep.Repaired)
	}
	fmt.Fprintf(w, "\n  %d files\n\nACTION\tSIZE\tPATH\tSHA256\n", len(rep.Files))
	for _, f := range rep.Files {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", f.Action, humanBytes(f.Size), f.Path, f.SHA256)
	}
	return w.Flush()
}
