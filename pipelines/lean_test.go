package pipelines

import (
	"slices"
	"testing"

	"github.com/sluice-edge/sluice/engine"
)

// TestLeanLeftOutIsRegisteredInFullBuild: every type the lean edge build
// leaves out is a registered component of the complete build (a renamed
// component cannot silently drop out of the lean build's list), and the
// complete build leaves nothing out. The lean build itself is checked by
// cmd/sluice's TestLeanBuild.
func TestLeanLeftOutIsRegisteredInFullBuild(t *testing.T) {
	if Lean() {
		t.Skip("a lean build: cmd/sluice's TestLeanBuild checks it")
	}
	for kind, names := range leanLeftOut {
		if !slices.IsSorted(names) {
			t.Errorf("leanLeftOut[%s] is not sorted: %v", kind, names)
		}
		for _, n := range names {
			if _, ok := engine.Lookup(kind, n); !ok {
				t.Errorf("%s type %q is left out of the lean build but is not registered in the complete build", kind, n)
			}
			if got := LeftOut(kind); len(got) != 0 {
				t.Errorf("the complete build leaves out %s types %v", kind, got)
			}
			if msg := notInThisBuild(kind, n); msg != "" {
				t.Errorf("the complete build says of %s %q: %s", kind, n, msg)
			}
		}
	}
}
