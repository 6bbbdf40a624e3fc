package demopack

import (
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
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
		idx, err := desc.ImageIndex()
		if err == nil {
			err = validate.Index(idx)
		}
		if err != nil {
			return fmt.Errorf("validate %s: %w", ref, err)
		}
		return nil
	}
	img, err := desc.Image()
	if err == nil {
		err = validate.Image(img)
	}
	if err != nil {
		return fmt.Errorf("validate %s: %w", ref, err)
	}
	return nil
}
