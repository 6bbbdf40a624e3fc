package demopack

import (
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// ValidatePushed fetches the image or index ref names from its registry
// and checks it with go-containerregistry's validate: every blob present
// and matching its digest and size, the config and manifests consistent.
// Tests of push use it on what they pushed.
func ValidatePushed(ref string, opts ...remote.Option) error {
	r, err := name.ParseReference(ref)
	if err != nil {
		return err
	}
	desc, err := remote.Get(r, opts...)
	if err != nil {
		return fmt.Errorf("get %s: %w", ref, err)
	}
	if desc.MediaType.IsIndex() {
		var idx v1.ImageIndex
		if idx, err = desc.ImageIndex(); err == nil {
			err = validate.Index(idx)
		}
	} else {
		var img v1.Image
		if img, err = desc.Image(); err == nil {
			err = validate.Image(img)
		}
	}
	if err != nil {
		return fmt.Errorf("validate %s: %w", ref, err)
	}
	return nil
}
