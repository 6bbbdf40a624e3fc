package plan

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/bale-build/bale/internal/canonjson"
)

// FilterIndex returns the OCI index or Docker manifest list raw with only
// the manifests whose digests are in keep, in their original order. Every
// other field is kept. The top-level object is re-encoded with sorted keys
// and no indentation; nested values keep their bytes (compacted). So the
// result, and its digest, depend only on raw and keep.
// The planner pins the result's digest and the executor writes the same
// bytes; both call this one function.
func FilterIndex(raw []byte, keep map[string]bool) ([]byte, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, fmt.Errorf("filter index: %w", err)
	}
	var manifests []json.RawMessage
	if err := json.Unmarshal(top["manifests"], &manifests); err != nil {
		return nil, fmt.Errorf("filter index: manifests: %w", err)
	}
	kept := make([]json.RawMessage, 0, len(manifests))
	found := 0
	for _, m := range manifests {
		var d struct {
			Digest string `json:"digest"`
		}
		if err := json.Unmarshal(m, &d); err != nil {
			return nil, fmt.Errorf("filter index: manifest descriptor: %w", err)
		}
		if keep[d.Digest] {
			kept = append(kept, m)
			found++
		}
	}
	if found == 0 {
		return nil, fmt.Errorf("filter index: none of the chosen manifests is in the index")
	}
	b, err := json.Marshal(kept)
	if err != nil {
		return nil, fmt.Errorf("filter index: %w", err)
	}
	top["manifests"] = b
	out, err := canonjson.Compact(top)
	if err != nil {
		return nil, fmt.Errorf("filter index: %w", err)
	}
	return bytes.TrimSuffix(out, []byte("\n")), nil
}
