// Package strictjson decodes JSON documents that bale reads back as
// untrusted input — plans' neighbours, pack indexes, signatures, SBOMs,
// provenance, cache records — the one strict way: a byte cap checked
// before decoding, unknown fields refused, exactly one value.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Unmarshal decodes data into v. It refuses data longer than max bytes
// (before reading any of it), fields v does not have, and anything but
// white space after the one JSON value.
func Unmarshal(data []byte, max int, v any) error {
	if len(data) > max {
		return fmt.Errorf("%d bytes, more than the %d allowed", len(data), max)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}
