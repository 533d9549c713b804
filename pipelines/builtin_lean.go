//go:build sluice_lean

package pipelines

import (
	"errors"

	"github.com/sluice-edge/sluice/engine/spec"
)

// lean is true: built with -tags sluice_lean.
const lean = true

// leftOut names the component types a lean edge build does not include
// (builtin_full.go imports them in the complete build), sorted per kind.
var leftOut = map[spec.Kind][]string{
	spec.KindStep: {"infer"},
	spec.KindSink: {"amqp", "kafka", "postgres", "redis"},
}

// loadReleaseModel refuses: this build has no infer step to run models.
func loadReleaseModel(_, _, _, _ string) error {
	return errors.New("the infer step is not included in this build of sluice (a lean edge build, -tags sluice_lean); use the complete build (make build)")
}
