// Package discard provides the "discard" sink, which discards every row. It is
// the end of benchmark pipelines and of pipelines run only for their
// counters.
package discard

import (
	"context"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/spec"
)

// Spec declares the discard sink.
var Spec = spec.Spec{
	Name:    "discard",
	Summary: "Discards every row (counts them in rows_in).",
	Example: "sinks:\n  discard: {type: discard, input: stats}",
}

func init() {
	engine.RegisterSink(Spec, func(*spec.Config, *engine.Schema, engine.BuildContext) (engine.Sink, error) {
		return Sink{}, nil
	})
}

// Sink discards batches.
type Sink struct{}

// Write releases the batch.
func (Sink) Write(_ context.Context, b engine.Batch) error { b.Release(); return nil }

// Close does nothing.
func (Sink) Close(context.Context) error { return nil }
