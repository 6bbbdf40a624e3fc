package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"text/tabwriter"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"

	"github.com/bale-build/bale/push"
)

func newPush() *cobra.Command {
	var (
		format, sha, caFile, valuesDir string
		jobs                           int
		insecure, trustExisting        bool
		net                            netFlags
	)
	cmd := &cobra.Command{
		Use:   "push PACK REGISTRY[/PREFIX]",
		Short: "Verify a bootstrap pack, then push its images and charts to a registry",
		Long: `push loads a bootstrap pack into a registry, typically the mirror on the far
side of an air gap. It first verifies the pack as bale verify does and
refuses one that fails, or whose sha256 is not --sha256.

Every image goes to REGISTRY/PREFIX/REPO:TAG for each tag the pack records
(REPO is the tag's repository path without its registry), or to
REGISTRY/PREFIX/NAME by digest if it has no tag; indexes, manifests,
configs and layers keep their bytes and digests. Every chart becomes a Helm
OCI artifact at REGISTRY/PREFIX/charts/NAME:VERSION, so
helm pull oci://REGISTRY/PREFIX/charts/NAME --version VERSION fetches it.

Blobs the registry has are skipped (HEAD first) and read back to check
them unless --trust-existing; an interrupted push is finished by running it
again. Credentials come from the docker config and credential helpers.
Every request keeps the network limits of bale plan: --timeout (also
between bytes sent), --speed-limit over --speed-time, --request-timeout.

--values-airgap DIR writes NAME-VERSION.values-airgap.yaml per chart, for
helm install -f, setting only the keys it rewrites in the chart's default
values: a string KEY.image becomes REGISTRY/PREFIX/REPO:TAG; in a map with
"repository", KEY.repository becomes REGISTRY/PREFIX/REPO, or PREFIX/REPO
with KEY.registry set to REGISTRY when the map has a "registry" key; tags
and digests are kept. References inside lists are left alone.`,
		Example: `  bale push out/bootstrap-pack-v1.tar mirror.example:5000/airgap \
      --sha256 "$(cut -d' ' -f1 out/bootstrap-pack-v1.tar.sha256)"
  bale push pack.tar localhost:5000 --format json | jq -r '.refs[].ref'
  bale push pack.tar mirror.internal/airgap --ca-file ca.pem --values-airgap values/`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, "text", "json"); err != nil {
				return err
			}
			reg, _, err := push.ParseTarget(args[1], insecure)
			if err != nil {
				return err
			}
			rt, err := net.registryTransport(caFile, insecure, reg.RegistryStr())
			if err != nil {
				return err
			}
			rep, err := push.Push(cmd.Context(), args[0], push.Options{
				Target: args[1], SHA256: sha, Jobs: jobs, Insecure: insecure,
				Transport: rt, TrustExisting: trustExisting, ValuesDir: valuesDir,
			})
			if err != nil {
				return err
			}
			if format == "json" {
				return writeJSON(cmd.OutOrStdout(), rep)
			}
			return writePush(cmd.OutOrStdout(), rep)
		},
	}
	f := cmd.Flags()
	f.StringVar(&format, "format", "text", "output format: text or json")
	f.StringVar(&sha, "sha256", "", "refuse the pack unless its sha256 (artifactSha256, hex) is this")
	f.IntVar(&jobs, "jobs", push.DefaultJobs, "concurrent uploads and checks")
	f.BoolVar(&insecure, "insecure", false, "use plain HTTP for the registry (loopback registries always may)")
	f.StringVar(&caFile, "ca-file", "", "PEM file of CA certificates to trust for the registry, beside the system's")
	f.BoolVar(&trustExisting, "trust-existing", false, "do not read back blobs the registry says it already has")
	f.StringVar(&valuesDir, "values-airgap", "", "write NAME-VERSION.values-airgap.yaml per chart into this directory")
	net.register(cmd)
	return cmd
}

// registryTransport is the transport of push, publish and pull: ggcr's
// default transport, trusting the CA certificates in caFile as well as the
// system's, under the network limits; with insecure, host may be reached
// over plain HTTP.
func (f *netFlags) registryTransport(caFile string, insecure bool, host string) (http.RoundTripper, error) {
	base, err := caTransport(caFile)
	if err != nil {
		return nil, err
	}
	var hosts []string
	if insecure {
		hosts = append(hosts, host)
	}
	return f.transport(base, hosts...)
}

// caTransport is ggcr's default transport, trusting the CA certificates in
// caFile as well as the system's.
func caTransport(caFile string) (http.RoundTripper, error) {
	if caFile == "" {
		return remote.DefaultTransport, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca-file %s: no PEM certificate in it", caFile)
	}
	base, ok := remote.DefaultTransport.(*http.Transport)
	if !ok {
		return nil, errors.New("--ca-file: the default transport is not an *http.Transport")
	}
	t := base.Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return t, nil
}

func writePush(out io.Writer, rep *push.Report) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "pushed %s (sha256 %s) to %s\n", rep.Pack, rep.SHA256, rep.Target)
	b := rep.Blobs
	fmt.Fprintf(w, "  blobs: %d uploaded (%s), %d already there (%s, %d read back and checked)\n",
		b.Uploaded, humanBytes(b.UploadedBytes), b.Existing, humanBytes(b.ExistingBytes), b.Checked)
	fmt.Fprintf(w, "\nKIND\tNAME\tREF\tDIGEST\n")
	for _, r := range rep.Refs {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", r.Kind, r.Name, r.Ref, r.Digest)
	}
	for _, v := range rep.ValuesFiles {
		fmt.Fprintf(w, "\nwrote %s", v)
	}
	if len(rep.ValuesFiles) > 0 {
		fmt.Fprintln(w)
	}
	return w.Flush()
}
