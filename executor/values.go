package executor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"sigs.k8s.io/yaml"

	"github.com/bale-build/bale/internal/capread"
	"github.com/bale-build/bale/pack"
	"github.com/bale-build/bale/plan"
)

// maxValuesSize bounds a chart's values file: values files are a few
// kilobytes; a megabyte is far beyond any real one.
const maxValuesSize = 1 << 20

// doValues stores a chart's values file (values-airgap.yaml) unchanged,
// after checking it is what a values file must be: a YAML mapping of at
// most maxValuesSize bytes. Helm would refuse anything else on the far
// side of the gap, where it is too late to fix.
//
// Output: "PACK:charts/NAME-VERSION.values-airgap.yaml".
func (x *execution) doValues(ctx context.Context, n *node) (outputs, error) {
	in, err := x.input(n, plan.KindValues)
	if err != nil {
		return nil, err
	}
	name, version := n.step.Params[plan.ParamName], n.step.Params[plan.ParamVersion]
	what := fmt.Sprintf("values file %s of chart %s", in.Source.Path, name)
	if in.Size > maxValuesSize {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d a values file may have", what, in.Size, maxValuesSize)
	}
	rc, size, err := x.src.OpenFile(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", what, err)
	}
	defer rc.Close()
	if size >= 0 && size != in.Size {
		return nil, fmt.Errorf("%s is %d bytes, the plan says %d", what, size, in.Size)
	}
	data, err := capread.ReadAll(rc, maxValuesSize)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	h, err := hash(in.Digest)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	// Checked against the plan's digest before it is parsed or stored: a
	// file changed since planning fails here, naming both digests.
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != h.Hex || int64(len(data)) != in.Size {
		return nil, fmt.Errorf("%s: content is sha256:%x (%d bytes), the plan pins %s (%d bytes)", what, sum, len(data), h, in.Size)
	}
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: not a YAML mapping: %w", what, err)
	}
	if _, _, err := x.putBytes(ctx, data); err != nil {
		return nil, fmt.Errorf("store %s: %w", what, err)
	}
	out := outputs{}
	return out, out.add(n.entry(pack.ValuesPath(name, version)), h, int64(len(data)))
}
