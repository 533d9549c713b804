// Package stdout holds the "stdout" sink, which writes rows to standard
// output as JSON lines.
package stdout

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/spec"
)

// Spec declares the "stdout" sink.
var Spec = spec.Spec{
	Name:    "stdout",
	Summary: "Writes rows to standard output as JSON lines.",
	Description: "One JSON object per row, columns in schema order; null values are left out, timestamps are " +
		"RFC 3339 UTC with milliseconds. Output is buffered and flushed after every batch.",
	Example: "sinks:\n  console:\n    type: stdout\n    input: stats\n",
}

func init() {
	engine.RegisterSink(Spec, func(cfg *spec.Config, in *engine.Schema, bc engine.BuildContext) (engine.Sink, error) {
		s := New(os.Stdout)
		if bc.Counters != nil {
			s.rows = bc.Counters.Counter("rows")
		}
		return s, nil
	})
}

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("stdout: sink closed")

// Sink writes batches to a writer as JSON lines. It is safe for
// concurrent use.
type Sink struct {
	mu     sync.Mutex
	out    *codec.JSONLinesWriter
	closed bool
	rows   *atomic.Int64
}

// New returns a sink writing to w.
func New(w io.Writer) *Sink {
	return &Sink{out: codec.NewJSONLinesWriter(w), rows: new(atomic.Int64)}
}

// Write writes the rows of b and releases its record.
func (s *Sink) Write(_ context.Context, b engine.Batch) error {
	defer b.Release()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.out.Write(b.Rec); err != nil {
		return err
	}
	s.rows.Add(b.Rec.NumRows())
	return nil
}

// Close flushes the output. It is idempotent.
func (s *Sink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.out.Flush()
}
