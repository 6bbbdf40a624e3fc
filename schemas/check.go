package schemas

import (
	"fmt"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/cuecontext"
)

// Rules checks single values against the schema's scalar definitions
// (#Name, #RelPath, #Digest...), so code that takes a name from elsewhere
// than a spec (a registry's layer title, a file found on disk) holds it to
// the rule a spec's names are held to, without a copy of that rule.
type Rules struct {
	ctx    *cue.Context
	schema cue.Value
}

// Compile compiles Source for checking values; one Rules serves many
// checks, and is not safe for concurrent use.
func Compile() (*Rules, error) {
	ctx := cuecontext.New()
	v := ctx.CompileString(Source, cue.Filename(Filename))
	if err := v.Err(); err != nil {
		return nil, fmt.Errorf("compile bale's schema: %w", err)
	}
	return &Rules{ctx: ctx, schema: v}, nil
}

// Check reports whether s satisfies the definition def ("#RelPath"); the
// error is CUE's, naming the constraint s breaks.
func (r *Rules) Check(def, s string) error {
	d := r.schema.LookupPath(cue.ParsePath(def))
	if !d.Exists() {
		return fmt.Errorf("bale's schema has no definition %s", def)
	}
	return d.Unify(r.ctx.Encode(s)).Validate(cue.Concrete(true))
}
