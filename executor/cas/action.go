package cas

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/bale-build/bale/atomicfile"
	"github.com/bale-build/bale/internal/capread"
	"github.com/bale-build/bale/internal/strictjson"
)

// maxActionSize bounds an action cache entry read from disk, so a damaged
// or planted file cannot make GetAction allocate without limit. A result
// lists output paths and digests; a megabyte is tens of thousands of them.
const maxActionSize = 16 << 20

// ActionResult is what a step produced: its outputs, by path and digest.
type ActionResult struct {
	Outputs []Output `json:"outputs"`
}

// Output is one file a step produced, stored as a blob unless Derived.
type Output struct {
	// Path is the output's path as the step names it.
	Path string `json:"path"`
	// Digest is the sha256 of the output's content: the blob holding it,
	// unless Derived.
	Digest v1.Hash `json:"digest"`
	// Size is the content's length in bytes.
	Size int64 `json:"size"`
	// Derived marks an output the store does not hold: its step wrote it
	// where it was wanted and recorded only its digest and size, and it is
	// made again from the store's other entries when it is wanted again.
	// Keeping a large artifact such as a pack in the store as well would
	// cost a second write of every byte.
	Derived bool `json:"derived,omitempty"`
}

func (s *Dir) actionPath(stepID v1.Hash) string { return filepath.Join(s.ac, stepID.Hex) }

// check validates a result's outputs.
func (r *ActionResult) check() error {
	for _, o := range r.Outputs {
		if o.Path == "" {
			return errors.New("output with empty path")
		}
		if err := checkHash(o.Digest); err != nil {
			return fmt.Errorf("output %s: %w", o.Path, err)
		}
		if o.Size < 0 {
			return fmt.Errorf("output %s: negative size %d", o.Path, o.Size)
		}
	}
	return nil
}

// GetAction returns the cached result of step stepID. It reports a hit only
// if every output blob (every output not Derived) is still present with its
// recorded size, so a result
// never points at content that is gone (the content itself is verified when
// read; see Open). A missing entry is a miss with a nil error. An entry that
// cannot be decoded, has unknown fields or invalid outputs is deleted and
// reported as a miss with an error wrapping ErrCorrupt: a miss is always
// safe, a wrong hit is not.
func (s *Dir) GetAction(ctx context.Context, stepID v1.Hash) (*ActionResult, bool, error) {
	if err := checkHash(stepID); err != nil {
		return nil, false, fmt.Errorf("get action: %w", err)
	}
	path := s.actionPath(stepID)
	data, err := capread.ReadFile(path, maxActionSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil && !errors.Is(err, capread.ErrTooLarge) {
		return nil, false, fmt.Errorf("get action %s: %w", stepID, err)
	}
	var res *ActionResult
	if err == nil {
		res, err = decodeAction(data)
	}
	if err != nil {
		err = fmt.Errorf("get action %s: %w: %w", stepID, ErrCorrupt, err)
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = fmt.Errorf("%w (and removing it failed: %w)", err, rerr)
		}
		return nil, false, err
	}
	for _, o := range res.Outputs {
		if o.Derived {
			continue
		}
		if ok, n := s.Has(o.Digest); !ok || n != o.Size {
			return nil, false, nil
		}
	}
	// Record the use for Prune's least-recently-used order. Best effort:
	// a read-only cache still serves hits.
	now := time.Now()
	_ = os.Chtimes(path, now, now)
	return res, true, nil
}

// decodeAction decodes and validates an action cache entry strictly.
func decodeAction(data []byte) (*ActionResult, error) {
	var res ActionResult
	if err := strictjson.Unmarshal(data, maxActionSize, &res); err != nil {
		return nil, err
	}
	if err := res.check(); err != nil {
		return nil, err
	}
	return &res, nil
}

// PutAction records r as the result of step stepID, atomically replacing any
// earlier entry. The entry is indented JSON with a trailing newline, like
// every JSON file bale writes.
func (s *Dir) PutAction(ctx context.Context, stepID v1.Hash, r *ActionResult) error {
	if err := checkHash(stepID); err != nil {
		return fmt.Errorf("put action: %w", err)
	}
	if r == nil {
		return fmt.Errorf("put action %s: nil result", stepID)
	}
	if err := r.check(); err != nil {
		return fmt.Errorf("put action %s: %w", stepID, err)
	}
	out := *r
	if out.Outputs == nil {
		// "[]" rather than "null", so an empty result reads back the same.
		out.Outputs = []Output{}
	}
	data, err := json.MarshalIndent(&out, "", "  ")
	if err != nil {
		return fmt.Errorf("put action %s: %w", stepID, err)
	}
	data = append(data, '\n')
	if err := atomicfile.WriteFile(s.actionPath(stepID), data); err != nil {
		return fmt.Errorf("put action %s: %w", stepID, err)
	}
	return nil
}
