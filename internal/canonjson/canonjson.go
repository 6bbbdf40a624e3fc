// Package canonjson is bale's one JSON encoding for bytes that are hashed,
// signed or shipped: encoding/json's field order (struct order; sorted map
// keys), no HTML escaping (so "<" stays "<" and the bytes are a pure
// function of the value), and a trailing newline. Callers pass structs or
// maps, never anything whose order could vary.
package canonjson

import (
	"bytes"
	"encoding/json"
	"io"
)

// Marshal encodes v with two-space indentation and a trailing newline: the
// form of every JSON document bale writes for people to read (plans, pack
// indexes, kit manifests, SBOMs).
func Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	if err := NewEncoder(&b, true).Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Compact encodes v on one line with a trailing newline: the form of
// signature bundles, step ids and cache keys, whose bytes are hashed.
func Compact(v any) ([]byte, error) {
	var b bytes.Buffer
	if err := NewEncoder(&b, false).Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// NewEncoder returns an encoder writing to w in this package's form,
// indented by two spaces when indent is true. Each Encode writes one value
// and a newline.
func NewEncoder(w io.Writer, indent bool) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if indent {
		enc.SetIndent("", "  ")
	}
	return enc
}
