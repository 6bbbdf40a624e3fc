package executor

import (
	"maps"
	"slices"
	"testing"

	"github.com/bale-build/bale/plan"
)

// TestActionsCoverTheContract: the executor runs exactly the actions of
// the step contract, one function per row of plan.Rule.
func TestActionsCoverTheContract(t *testing.T) {
	t.Parallel()
	x := &execution{}
	got := slices.Sorted(maps.Keys(x.actions()))
	want := slices.Sorted(slices.Values(plan.Actions()))
	if !slices.Equal(got, want) {
		t.Fatalf("executor actions %v, the step contract has %v", got, want)
	}
	for _, a := range want {
		if _, ok := plan.Rule(a); !ok {
			t.Errorf("plan.Actions lists %s, which plan.Rule has no row for", a)
		}
		if x.actions()[a] == nil {
			t.Errorf("action %s has no function", a)
		}
	}
}
