// Package source is where a spec's input bytes come from: registries, OCI
// layouts, docker tarballs, chart directories, archives and repositories,
// files and Go source. Planning pins each spec image, chart, file, signature
// or bundle through it into a plan.Input that names its bytes by digest; a
// build reads exactly those bytes through it, verified.
//
// Nothing a source says about itself is trusted where bale can check it:
// manifests fetched by tag are hashed by bale (never the Docker-Content-Digest
// header), every digest string from a source is validated before it becomes
// part of a file path, chart archives are walked by archive before
// Helm's loader sees them, local inputs are read through os.Root below the
// workspace root with no symbolic link at any path element (see local.go),
// every document is read with a byte cap before it is decoded,
// and every byte handed to the executor is hashed on the way and compared
// with the plan. A source that changed between planning and building is an
// error, never a silent update.
package source

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/bale-build/bale/internal/capread"
)

// Defaults for zero Options fields.
const (
	// DefaultTimeout is Options.Timeout's default.
	DefaultTimeout = 30 * time.Second
	// DefaultRetries is Options.Retries's default.
	DefaultRetries = 3
	// DefaultSpeedLimit is Options.SpeedLimit's default, in bytes per
	// second.
	DefaultSpeedLimit = 1 << 10
	// DefaultSpeedTime is Options.SpeedTime's default.
	DefaultSpeedTime = 30 * time.Second
	// DefaultRequestTimeout is Options.RequestTimeout's default: a 10 GiB
	// layer at 3 MB/s still fits.
	DefaultRequestTimeout = time.Hour
	// MaxRedirects is the most redirects one request follows, on every
	// client bale uses: registries, token servers, chart repositories and
	// URL files. A redirect loop ends with an error after it.
	MaxRedirects = 10
)

// ErrOffline is wrapped by every error about a network access refused
// because Options.Offline is set, so callers can tell "needs the network"
// from "the network failed".
var ErrOffline = errors.New("offline")

// ErrEnvKey is wrapped by the error File returns for a key written as
// "env://VAR". Such a key is a secret read from the environment at build
// time: it has no bytes bale may hash into a plan, so it is not an input.
// Callers skip it (see EnvKey) and the signer reads the variable itself.
var ErrEnvKey = errors.New("key is read from the environment at build time, not pinned in the plan")

// EnvKey reports whether a signing key reference names an environment
// variable ("env://VAR") and returns the variable's name. The planner uses
// it to leave such keys out of the plan's inputs.
func EnvKey(ref string) (variable string, ok bool) {
	v, ok := strings.CutPrefix(ref, "env://")
	return v, ok && v != ""
}

// Options configures a Resolver. The zero value is usable apart from Root.
type Options struct {
	// Root is the absolute workspace root. Every local path must lie below
	// it, and no element of it below the root may be a symbolic link; plans
	// record paths relative to it.
	Root string
	// Keychain finds registry credentials; nil means authn.DefaultKeychain,
	// so ~/.docker/config.json, DOCKER_CONFIG and credential helpers work.
	Keychain authn.Keychain
	// Insecure lists registry hosts ("host" or "host:port") that may be
	// reached over plain HTTP. Loopback hosts are always allowed. Every
	// other plain-HTTP request, including chart repositories, redirects and
	// token endpoints, is refused: a tag or a chart index fetched over HTTP
	// could be swapped on the way.
	Insecure []string
	// Transport is the base transport; nil means a clone of
	// http.DefaultTransport.
	Transport http.RoundTripper
	// Timeout bounds each pause while a request's body is sent, the wait
	// for its response headers after that, and each pause in the response
	// body; 0 means DefaultTimeout.
	Timeout time.Duration
	// SpeedLimit and SpeedTime are a low-speed limit, like curl's
	// --speed-limit and --speed-time: a request or response body that
	// moves fewer than SpeedLimit bytes per second on average over a
	// SpeedTime window is given up on, so a server trickling (or taking) a
	// byte now and then cannot hold bale. 0 means DefaultSpeedLimit and DefaultSpeedTime; a negative
	// SpeedLimit turns the check off.
	SpeedLimit int64
	SpeedTime  time.Duration
	// RequestTimeout bounds each request from sending it to the end of its
	// body; 0 means DefaultRequestTimeout. Retries and redirects are new
	// requests, each with its own deadline.
	RequestTimeout time.Duration
	// Retries is how often a request is retried after a 408, 429 or 5xx
	// status or a reset connection, with exponential backoff; 0 means
	// DefaultRetries, a negative value none. Timeouts and refused
	// connections are not retried: they would only multiply the wait.
	Retries int
	// Offline refuses every network access with an error wrapping
	// ErrOffline that names what needed the network.
	Offline bool
	// PublicOnly refuses to connect to any address that is not public
	// unicast (see PublicAddr): loopback, private, shared, link-local and
	// the like, checked on the address actually dialled, so a name that
	// resolves to one is refused too. It is for specs from API clients,
	// which must not reach what only the server can. It ignores the
	// HTTP(S)_PROXY environment and does not grant loopback hosts plain
	// HTTP. Transport, if set, must then be an *http.Transport.
	PublicOnly bool
	// AllowHosts lists the hosts ("host" or "host:port", as requests
	// name them) PublicOnly still lets through, whatever their address;
	// a loopback host among them may also be reached over plain HTTP.
	AllowHosts []string
}

// Resolver pins spec inputs and opens pinned inputs for the executor. It is
// safe for concurrent use; bounding concurrency is the caller's job.
type Resolver struct {
	root string // absolute, symbolic links resolved
	*network
	puller *remote.Puller

	// pulls holds an authenticated transport per repository (see
	// pullTransport).
	pullMu sync.Mutex
	pulls  map[string]http.RoundTripper
}

// New returns a Resolver for opts.
func New(opts Options) (*Resolver, error) {
	if opts.Root == "" || !filepath.IsAbs(opts.Root) {
		return nil, fmt.Errorf("resolve: workspace root %q is not an absolute path", opts.Root)
	}
	root, err := filepath.EvalSymlinks(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("resolve: workspace root: %w", err)
	}
	if fi, err := os.Stat(root); err != nil {
		return nil, fmt.Errorf("resolve: workspace root: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("resolve: workspace root %s is not a directory", opts.Root)
	}
	if opts.Keychain == nil {
		opts.Keychain = authn.DefaultKeychain
	}
	n, err := newNetwork(opts)
	if err != nil {
		return nil, err
	}
	r := &Resolver{root: root, network: n}
	if err := r.initPuller(); err != nil {
		return nil, err
	}
	return r, nil
}

// initPuller makes the registry client shared by all resolutions, so each
// repository is pinged and authenticated once per Resolver, not per image.
func (r *Resolver) initPuller() error {
	p, err := remote.NewPuller(
		remote.WithTransport(r.rt),
		remote.WithAuthFromKeychain(r.opts.Keychain),
		remote.WithUserAgent("bale"),
		// One attempt: retryTransport retries, and stops on cancel.
		remote.WithRetryBackoff(remote.Backoff{Duration: r.backoff, Steps: 1}),
		remote.WithRetryStatusCodes(retryStatusCodes...),
		remote.WithRetryPredicate(retryable),
	)
	if err != nil {
		return fmt.Errorf("resolve: registry client: %w", err)
	}
	r.puller = p
	return nil
}

// allowHTTP reports whether plain HTTP to host (host or host:port) is
// allowed: a loopback host, or one listed in Options.Insecure. With
// PublicOnly a loopback host must also be in Options.AllowHosts: that
// loopback traffic cannot be tampered with on the way is no reason to
// let a client's spec reach the server's own ports.
func (n *network) allowHTTP(host string) bool {
	host = strings.ToLower(host)
	if n.insecure[host] {
		return true
	}
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if n.insecure[h] {
		return true
	}
	if !loopbackHost(host) {
		return false
	}
	return !n.opts.PublicOnly || n.allow[host] || n.allow[h]
}

// loopbackHost reports whether host (host or host:port) names loopback:
// localhost or a loopback IP.
func loopbackHost(host string) bool {
	h := strings.ToLower(host)
	if hh, _, err := net.SplitHostPort(h); err == nil {
		h = hh
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	ip := net.ParseIP(h)
	return h == "localhost" || ip != nil && ip.IsLoopback()
}

// parseRef parses an image reference, marking its registry insecure when
// plain HTTP to it is allowed, so go-containerregistry may fall back to it.
func (r *Resolver) parseRef(s string) (name.Reference, error) {
	ref, err := name.ParseReference(s)
	if err != nil {
		return nil, err
	}
	if r.allowHTTP(ref.Context().RegistryStr()) {
		return name.ParseReference(s, name.Insecure)
	}
	return ref, nil
}

// offline returns the error for a network access refused in offline mode.
func (r *Resolver) offline(what string) error {
	if r.opts.Offline {
		return fmt.Errorf("%w: %s needs the network", ErrOffline, what)
	}
	return nil
}

// sha256Digest returns "sha256:" and the hex sha256 of b.
func sha256Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// readLimited reads all of r under capread's cap, so a hostile source
// cannot make bale buffer without bound; the error names what was read.
func readLimited(r io.Reader, max int64, what string) ([]byte, error) {
	b, err := capread.ReadAll(r, max)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return b, nil
}

// ErrMoved is matched (errors.Is) by the error for a digest the spec pins
// that its source no longer has: a tag moved, a chart was republished under
// its version, a local image or chart changed. Planning never re-pins it
// silently; bale pin --update does, on request.
var ErrMoved = errors.New("the source no longer has the pinned digest")

// movedError is a pinned digest that the source (what: "source", "chart")
// no longer has.
type movedError struct{ what, pinned, has string }

func (e *movedError) Error() string {
	return fmt.Sprintf("spec pins %s but the %s has %s", e.pinned, e.what, e.has)
}

func (e *movedError) Is(target error) bool { return target == ErrMoved }

// Error is the failure to pin one spec input. Its Source is what the spec
// named (a reference, repository URL or local path as written), so a
// caller can say where without repeating the resolver's words.
type Error struct {
	// Kind is the input's kind: image, chart, file, key, signature or
	// bundle.
	Kind string
	// Name is the input's name in the spec.
	Name string
	// Source is what the spec named, as written.
	Source string
	// Err is what went wrong.
	Err error
}

func (e *Error) Error() string {
	return fmt.Sprintf("resolve %s %s (%s): %v", e.Kind, e.Name, e.Source, e.Err)
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// inputErr wraps err as the failure to pin input kind/name from what.
func inputErr(kind, name, what string, err error) error {
	return &Error{Kind: kind, Name: name, Source: what, Err: err}
}
