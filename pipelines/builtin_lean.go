//go:build sluice_lean

package pipelines

import "errors"

// lean is true: built with -tags sluice_lean.
const lean = true

// leftOut is what the lean edge build leaves out: leanLeftOut.
var leftOut = leanLeftOut

// loadReleaseModel refuses: this build has no infer step to run models.
func loadReleaseModel(_, _, _, _ string) error {
	return errors.New("the infer step is not included in this build of sluice (a lean edge build, -tags sluice_lean); use the complete build (make build)")
}
