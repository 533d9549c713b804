//go:build sluice_lean

package bench

import (
	"context"
	"errors"
)

// runInfer refuses: a lean edge build (-tags sluice_lean) does not include
// the infer step.
func runInfer(context.Context, Options) (*InferResult, error) {
	return nil, errors.New("bench: the infer scenario is not included in this build of sluice (a lean edge build, -tags sluice_lean); use the complete build (make build)")
}
