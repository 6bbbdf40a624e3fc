// Package executor runs a plan's steps and writes its artifacts.
//
// Execute takes a decoded plan and runs its steps in dependency order,
// independent steps concurrently. Every byte a step reads or writes passes
// through the content-addressed store (executor/cas), which checks digests
// and sizes on the way in and on the way out; every step's result (its
// outputs, by path and digest) is recorded in the store's action cache, so
// executing a plan whose steps are all cached runs nothing and only copies
// the artifacts into the output directory (or, when they are there and
// intact already, hashes them once).
//
// # Steps
//
// The actions, their inputs, params and outputs are the step contract of
// package plan: the table plan.Rule, whose outputs (plan.Outputs, package
// pack's paths) the planner lays out and Validate holds every plan to, so a
// plan the executor cannot honour fails whole, naming the step, before
// anything runs. The executor runs one function per row (actions).
//
// A release target is built by go-build steps (a Go binary from a snapshot
// of its pinned module tree, see package gobuild) and one release step
// (the offline kit, see package kit). The release step signs: its key is
// located at graph time and its identity (the sha256 of the encrypted
// key, and whether it is the development key) is part of the step's
// definition, so a cached kit is reused without decrypting the key, and
// another key never reuses it.
//
// # Cache keys
//
// A step's action cache key is derived from everything its action reads
// (see stepDef): the step's full definition, the inputs it names in full,
// its needs' keys, its target, the plan's build timestamp and builder
// section, this executor's identity (action rules, bale version, format
// versions), and for pack-index, the plan id. Actions reach the plan only
// through that definition, so a change to anything that decides a step's
// bytes changes its key, and a cache shared between plans that differ in
// any such way never hands one plan's bytes to another.
//
// Byte stability comes from the steps: they build every header, JSON
// document and archive from the plan alone (names, digests, the plan's
// build timestamp), never from the clock, the file system or map order, and
// stream through the pinned tar and gzip writers of archive.
package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"helm.sh/helm/v3/pkg/chart"

	"github.com/bale-build/bale/executor/cas"
	"github.com/bale-build/bale/kit"
	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/sign"
)

// Source is how the executor reads input bytes. source.Resolver
// implements it; tests use small in-memory or on-disk sources. The
// executor checks digests and sizes again as it stores what a Source
// returns, so a Source that returns wrong bytes fails the build, never
// changes it.
type Source interface {
	// OpenBlob opens any manifest, index, config or layer blob of image
	// input in, and returns its size.
	OpenBlob(ctx context.Context, in plan.Input, digest string) (io.ReadCloser, int64, error)
	// LoadChart loads chart input in.
	LoadChart(ctx context.Context, in plan.Input) (*chart.Chart, error)
	// OpenFile opens the bytes of a file or signature input and returns
	// their size.
	OpenFile(ctx context.Context, in plan.Input) (io.ReadCloser, int64, error)
}

// BlobFiler is implemented by a Source that can name a local file holding
// an image blob (an OCI layout's blobs/sha256/HEX). The executor then
// reflinks the file into its store where the file system can (no write),
// else copies it, hashing the bytes once either way (cas.Store.PutFile);
// the store never shares an inode with the source.
type BlobFiler interface {
	BlobFile(ctx context.Context, in plan.Input, digest string) (path string, ok bool)
}

// Options configures Execute.
type Options struct {
	// OutDir receives the artifacts; it is created if missing.
	OutDir string
	// Store is the content-addressed store and action cache.
	// Store is the content-addressed store and action cache: a *cas.Dir,
	// or any cas.Store (its optional capabilities are used where it has
	// them).
	Store cas.Store
	// Jobs bounds how many steps run at once; 0 or less means GOMAXPROCS.
	// It changes speed only, never bytes.
	Jobs int
	// Progress, if not nil, receives an event as each step starts, is
	// found cached, finishes or fails, and as each artifact is written.
	// Calls are serialised, so it need not lock.
	Progress func(Event)
	// Getenv reads the signing environment of a release (COSIGN_KEY,
	// COSIGN_PASSWORD, COSIGN_ALLOW_DEV_KEY, the variable an env:// key
	// reference names) and the go command's locations; nil means
	// os.Getenv.
	Getenv func(string) string
	// Warn, if not nil, is told what the user must know even when nothing
	// runs: a release signed with the spec's development key.
	Warn func(string)
	// TempDir, an existing directory, holds the build's temporary
	// directories (a Go build's source snapshot and binary, a release's
	// files before they are stored) and is the go command's TMPDIR, so
	// that a caller can remove what a killed build left; "" means
	// os.TempDir() and the TMPDIR Getenv gives.
	TempDir string
	// SigningKey, when set, is the key every release step signs with, in
	// place of the spec's signing.key: bale serve's --signing-key, opened
	// once when the server starts. A development key (Key.Dev) still
	// needs COSIGN_ALLOW_DEV_KEY=1.
	SigningKey *sign.Key
	// IgnoreSpecKey makes release steps ignore the spec's signing.key when
	// SigningKey is nil: they sign only with the spec's development key,
	// with COSIGN_ALLOW_DEV_KEY=1. bale serve sets it, so a key in the
	// server's own environment never signs what it was not given for.
	IgnoreSpecKey bool
}

// Event kinds.
const (
	EventStart    = "start"    // a step began running
	EventCached   = "cached"   // a step's result came from the action cache
	EventDone     = "done"     // a step finished running
	EventFailed   = "failed"   // a step failed; Err says why
	EventArtifact = "artifact" // an artifact was written to OutDir
	EventRetry    = "retry"    // a corrupt store entry was found and dropped; the build runs again
	EventFetched  = "fetched"  // bytes of an image's blobs arrived; Subject is the image's name
	EventPacked   = "packed"   // bytes of a pack's entries were written; Subject is the pack
)

// Event reports progress.
type Event struct {
	// Kind is one of the Event* constants.
	Kind string
	// StepID and Action identify the step; empty for artifact events.
	StepID string
	Action string
	// Subject is what the event is about: the step's first output, or the
	// artifact's name.
	Subject string
	// Err is set for EventFailed and EventRetry.
	Err error
	// Bytes is the total size of the step's outputs, for EventDone and
	// EventCached; for EventFetched, the bytes that arrived since the last
	// such event for the same image; for EventPacked, the entry bytes
	// written since the last such event for the same pack.
	Bytes int64
	// Total is, for EventPacked, the pack's entry bytes in all.
	Total int64
}

// Result is what Execute built.
type Result struct {
	// Artifacts are the plan's artifacts, in target then artifact order.
	Artifacts []Artifact `json:"artifacts"`
	// StepsRun counts steps that ran; StepsCached, steps whose result came
	// from the action cache. They count the final attempt only (after a
	// corrupt store entry was found and the build started over), so they
	// sum to the plan's step count.
	StepsRun    int `json:"stepsRun"`
	StepsCached int `json:"stepsCached"`
	// Kits are the offline kits of the plan's release targets, in target
	// order.
	Kits []Kit `json:"kits,omitempty"`
}

// Kit is a release target's offline kit: its files are the target's
// artifacts in OutDir, beside the kit archive.
type Kit struct {
	// Target is the release target's name; Name is the kit's.
	Target string `json:"target"`
	Name   string `json:"name"`
	// Archive is the kit archive's path relative to OutDir.
	Archive string `json:"archive"`
	// SigningKey says how the signing key was given: KeyFile, KeyEnv,
	// KeyText, KeyDev or KeyGiven. A cached build reports it too: the key
	// is located, not decrypted.
	SigningKey string `json:"signingKey"`
	// Manifest is the kit's offline-kit.json, as built (or cached), so
	// callers need not read it back from OutDir.
	Manifest *kit.Manifest `json:"-"`
}

// Artifact is one file written to OutDir.
type Artifact struct {
	// Path is relative to OutDir.
	Path string `json:"path"`
	Size int64  `json:"size"`
	// SHA256 is the lowercase hex sha256 of the file.
	SHA256 string `json:"artifactSha256"`
	// RootHash is, for a bootstrap pack, the hex sha256 of its pack index.
	RootHash string `json:"rootHash,omitempty"`
}

// maxAttempts bounds how often Execute starts over after finding a corrupt
// store entry. Each attempt drops the entries it found corrupt, so a second
// attempt normally succeeds; a third failure means the store's disk keeps
// corrupting data, and going on would loop.
const maxAttempts = 3

// Execute runs the sealed plan sp, reading inputs from src, and writes
// the plan's artifacts to opts.OutDir. An artifact appears under its final
// name only when complete. On error, no artifact of the failed build is
// left under a final name it did not already have.
func Execute(ctx context.Context, sp *plan.Sealed, src Source, opts Options) (*Result, error) {
	x, err := newExecution(sp, src, opts)
	if err != nil {
		return nil, err
	}
	planID := sp.ID()
	if l, ok := x.store.(cas.Locker); ok {
		// Shared with other builds; pruning and verifying the store wait.
		unlock, err := l.Lock(ctx, false)
		if err != nil {
			return nil, fmt.Errorf("execute plan %s: %w", planID, err)
		}
		defer unlock()
		// Temporary files of builds killed earlier; a live build's are
		// locked and spared. Failing to sweep only costs disk space.
		_, _, _ = l.Sweep(cas.StaleAge)
	}
	res := &Result{}
	for attempt := 1; ; attempt++ {
		arts, err := x.attempt(ctx)
		res.StepsRun = int(x.run.Swap(0))
		res.StepsCached = int(x.cached.Swap(0))
		if err == nil {
			res.Artifacts = arts
			res.Kits, err = x.kits(ctx)
		}
		if err == nil {
			return res, nil
		}
		if !retryable(err) || attempt == maxAttempts || ctx.Err() != nil {
			return nil, fmt.Errorf("execute plan %s: %w", planID, err)
		}
		x.emit(Event{Kind: EventRetry, Err: err})
	}
}

// retryable reports whether err came from a store entry found corrupt or
// missing: the store has dropped it, so the step that made it misses the
// cache on the next attempt and runs again.
func retryable(err error) bool {
	return errors.Is(err, cas.ErrCorrupt) || errors.Is(err, errMissingBlob)
}

// errMissingBlob marks a blob a cached result names but the store no longer
// holds.
var errMissingBlob = errors.New("blob missing from the store")

// execution is one Execute call's state.
//
// It holds no plan: actions read the plan only through their node's def,
// whose hash is their cache key.
type execution struct {
	src     Source
	store   cas.Store
	outDir  string
	jobs    int
	nodes   []*node
	targets []*target

	progress   func(Event)
	progressMu sync.Mutex
	getenvFn   func(string) string
	warnFn     func(string)
	tempDir    string
	signingKey *sign.Key
	noSpecKey  bool

	// staged holds, by artifact name, the packs this attempt's pack steps
	// wrote to temporary files in outDir, for writeArtifacts to publish.
	stagedMu sync.Mutex
	staged   map[string]stagedPack

	run, cached atomic.Int64

	// actionTable runs each action (see actions).
	actionTable map[string]action
}

// node is one step and what the scheduler knows of it.
type node struct {
	// def is everything the step's action may read of the plan; step is
	// def.Step.
	def    *stepDef
	step   plan.Step
	target *target
	needs  []*node
	// key is the action cache key, def's hash.
	key v1.Hash
	// signer is a release step's located (not yet decrypted) key.
	signer *located
	// signKey is the release step's key being decrypted while the steps
	// it needs run, when its result is not cached (see decryptEarly).
	signKey *keyLoad

	// Set by the attempt that runs the node; read by dependents only
	// after done is closed.
	done   chan struct{}
	result *cas.ActionResult
	err    error
}

// target is a plan target this executor builds.
type target struct {
	t plan.Target
	// packName is the pack artifact ("NAME.tar"); entry outputs are
	// "NAME.tar:PATH".
	packName string
}

func newExecution(sp *plan.Sealed, src Source, opts Options) (*execution, error) {
	if sp == nil {
		return nil, errors.New("execute plan: nil plan")
	}
	p, planID := sp.Plan(), sp.ID()
	if src == nil {
		return nil, errors.New("execute plan: nil source")
	}
	if opts.Store == nil {
		return nil, errors.New("execute plan: no store")
	}
	if opts.OutDir == "" {
		return nil, errors.New("execute plan: no output directory")
	}
	// The plan was validated when it was sealed, and its id is of its
	// canonical bytes: everything below trusts both.
	jobs := opts.Jobs
	if jobs <= 0 {
		jobs = runtime.GOMAXPROCS(0)
	}
	x := &execution{
		src:        src,
		store:      opts.Store,
		outDir:     opts.OutDir,
		jobs:       jobs,
		progress:   opts.Progress,
		getenvFn:   opts.Getenv,
		warnFn:     opts.Warn,
		tempDir:    opts.TempDir,
		signingKey: opts.SigningKey,
		noSpecKey:  opts.IgnoreSpecKey,
	}
	if err := x.graph(p, planID); err != nil {
		return nil, err
	}
	return x, nil
}

// graph links steps to their needs and targets, checks each step's
// outputs, and derives each step's definition and cache key. Nothing of p
// is kept but what goes into the definitions.
func (x *execution) graph(p *plan.Plan, planID string) error {
	mtime, err := p.Time()
	if err != nil {
		return fmt.Errorf("execute plan: %w", err)
	}
	exe := newExecutorID()
	x.actionTable = x.actions()
	packs := map[string]*target{}     // "NAME.tar" -> target
	artifacts := map[string]*target{} // artifact name -> target
	for _, t := range p.Targets {
		tg := &target{t: t}
		switch t.Kind {
		case plan.TargetBootstrapPack:
			tg.packName = t.Name + ".tar"
			packs[tg.packName] = tg
		case plan.TargetRelease:
			// A go-build step writes an entry of a bundle artifact.
			for _, a := range t.Artifacts {
				packs[a] = tg
			}
		default:
			// Not buildable here: say so rather than build nothing and
			// succeed.
			return fmt.Errorf("execute plan: target %s has kind %q; this version of bale builds %q and %q targets", t.Name, t.Kind, plan.TargetBootstrapPack, plan.TargetRelease)
		}
		x.targets = append(x.targets, tg)
		for _, a := range t.Artifacts {
			if artifacts[a] != nil {
				return fmt.Errorf("execute plan: artifact %s is named by two targets", a)
			}
			artifacts[a] = tg
		}
	}
	byID := map[string]*node{}
	for i, s := range p.Steps {
		n := &node{step: s}
		at := fmt.Sprintf("execute step %d (%s %s)", i, s.Action, s.ID)
		if len(s.Outputs) == 0 {
			return fmt.Errorf("%s: no outputs", at)
		}
		if _, ok := x.actionTable[s.Action]; !ok {
			return fmt.Errorf("%s: unknown action %q (this executor knows %s)", at, s.Action, strings.Join(slices.Sorted(maps.Keys(x.actionTable)), ", "))
		}
		for _, o := range s.Outputs {
			var tg *target
			if art, _, ok := plan.CutEntry(o); ok {
				tg = packs[art]
				if tg == nil {
					return fmt.Errorf("%s: output %q is inside %s, which no target builds", at, o, art)
				}
			} else if tg = artifacts[o]; tg == nil {
				return fmt.Errorf("%s: output %q is not an artifact of any target", at, o)
			}
			if n.target != nil && n.target != tg {
				return fmt.Errorf("%s: outputs belong to two targets", at)
			}
			n.target = tg
		}
		def := &stepDef{
			Executor:        exe,
			Builder:         p.Builder,
			SourceDateEpoch: p.SourceDateEpoch,
			Target:          n.target.t,
			Step:            s,
			Inputs:          []plan.Input{},
			Needs:           []string{},
			mtime:           mtime,
		}
		for _, k := range s.Inputs {
			in, ok := p.Input(k)
			if !ok {
				return fmt.Errorf("%s: unknown input %s", at, k)
			}
			def.Inputs = append(def.Inputs, in)
		}
		for _, id := range s.Needs {
			d := byID[id]
			if d == nil {
				return fmt.Errorf("%s: needs unknown step %s", at, id)
			}
			n.needs = append(n.needs, d)
			def.Needs = append(def.Needs, d.key.Hex)
		}
		switch s.Action {
		case plan.ActionPackIndex:
			def.Plan = &planRef{ID: planID, SpecDigest: p.Spec.Digest}
		case plan.ActionRelease:
			// The kit records the plan and spec and is signed: the key's
			// identity is part of its definition.
			def.Plan = &planRef{ID: planID, SpecDigest: p.Spec.Digest}
			if def.Signer, n.signer, err = x.releaseSigner(context.Background(), def); err != nil {
				return fmt.Errorf("%s: %w", at, err)
			}
		}
		if n.key, err = def.key(); err != nil {
			return fmt.Errorf("%s: %w", at, err)
		}
		n.def = def
		byID[s.ID] = n
		x.nodes = append(x.nodes, n)
	}
	return nil
}

// emit reports an event, one at a time.
func (x *execution) emit(e Event) {
	if x.progress == nil {
		return
	}
	x.progressMu.Lock()
	defer x.progressMu.Unlock()
	x.progress(e)
}

// attempt runs every step and writes the artifacts.
func (x *execution) attempt(ctx context.Context) ([]Artifact, error) {
	defer x.dropStaged()
	if err := x.runSteps(ctx); err != nil {
		return nil, err
	}
	// What this build put in the cache becomes durable (and stamped)
	// before its artifacts are published.
	if s, ok := x.store.(cas.Syncer); ok {
		if err := s.Sync(); err != nil {
			return nil, fmt.Errorf("make the cache durable: %w", err)
		}
	}
	return x.writeArtifacts(ctx)
}

// errUpstream marks a step skipped because a step it needs failed; the
// failing step's error is the one reported.
var errUpstream = errors.New("a needed step failed")

// runSteps runs every node once its needs are done, at most x.jobs at a
// time, and returns the first error.
func (x *execution) runSteps(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	for _, n := range x.nodes {
		n.done = make(chan struct{})
		n.result, n.err = nil, nil
	}
	sem := make(chan struct{}, x.jobs)
	var wg sync.WaitGroup
	for _, n := range x.nodes {
		wg.Add(1)
		n.signKey = nil
		if n.signer != nil {
			n.signKey = x.decryptEarly(ctx, n)
		}
		go func() {
			defer wg.Done()
			defer close(n.done)
			for _, d := range n.needs {
				select {
				case <-d.done:
				case <-ctx.Done():
					n.err = context.Cause(ctx)
					return
				}
				if d.err != nil {
					n.err = errUpstream
					return
				}
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				n.err = context.Cause(ctx)
				return
			}
			defer func() { <-sem }()
			if err := ctx.Err(); err != nil {
				n.err = context.Cause(ctx)
				return
			}
			if err := x.runNode(ctx, n); err != nil {
				n.err = err
				cancel(err)
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// runNode gets n's result from the action cache or runs it and records it.
func (x *execution) runNode(ctx context.Context, n *node) error {
	s := n.step
	subject := s.Outputs[0]
	res, hit, err := x.store.GetAction(ctx, n.key)
	if err != nil && !errors.Is(err, cas.ErrCorrupt) {
		return fmt.Errorf("step %s %s: %w", s.Action, subject, err)
	}
	// A corrupt cache entry has been deleted; it is a miss.
	if hit && sameOutputs(res, s.Outputs) {
		n.result = res
		x.cached.Add(1)
		x.emit(Event{Kind: EventCached, StepID: s.ID, Action: s.Action, Subject: subject, Bytes: outputBytes(res)})
		return nil
	}
	x.emit(Event{Kind: EventStart, StepID: s.ID, Action: s.Action, Subject: subject})
	x.run.Add(1)
	res, err = x.do(ctx, n)
	if err == nil {
		err = x.store.PutAction(ctx, n.key, res)
	}
	if err != nil {
		err = fmt.Errorf("step %s %s: %w", s.Action, subject, err)
		x.emit(Event{Kind: EventFailed, StepID: s.ID, Action: s.Action, Subject: subject, Err: err})
		return err
	}
	n.result = res
	x.emit(Event{Kind: EventDone, StepID: s.ID, Action: s.Action, Subject: subject, Bytes: outputBytes(res)})
	return nil
}

func outputBytes(res *cas.ActionResult) int64 {
	var n int64
	for _, o := range res.Outputs {
		n += o.Size
	}
	return n
}

// sameOutputs reports whether a cached result holds exactly the outputs a
// step declares, in order. Since the key covers the outputs it always does,
// unless the cache was written by another executor version.
func sameOutputs(res *cas.ActionResult, outputs []string) bool {
	if len(res.Outputs) != len(outputs) {
		return false
	}
	for i, o := range res.Outputs {
		if o.Path != outputs[i] {
			return false
		}
	}
	return true
}

// blobMissing wraps a store error for a blob a result names so that a blob
// found gone (deleted as corrupt by a concurrent reader, or removed by
// hand) makes Execute try again, as a corrupt one does.
func blobMissing(err error) error {
	if errors.Is(err, fs.ErrNotExist) && !errors.Is(err, errMissingBlob) {
		return fmt.Errorf("%w: %w", errMissingBlob, err)
	}
	return err
}

// holds reports whether the store holds blob h at size bytes, without
// reading it.
func (x *execution) holds(ctx context.Context, h v1.Hash, size int64) (bool, error) {
	n, ok, err := x.store.Stat(ctx, h)
	return ok && n == size, err
}
