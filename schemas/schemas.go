// Package schemas embeds bale's CUE schemas, so bale checks specs the same
// way from any directory, with no files beside the binary.
package schemas

import _ "embed"

// Source is the text of bale.cue, the one CUE package every spec is checked
// against. It is read-only by convention: go:embed needs a variable.
//
//go:embed bale.cue
var Source string

// Filename is the name positions inside the schema are reported under.
const Filename = "bale-schema/bale.cue"
