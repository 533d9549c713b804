package file

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/spec"
)

// SinkSpec declares the "file" sink.
var SinkSpec = spec.Spec{
	Name:    "file",
	Summary: "Writes rows to a file as JSON lines.",
	Description: "One JSON object per row, columns in schema order; null values are left out, timestamps are " +
		"RFC 3339 UTC with milliseconds. The file and its parent directories are created when the first batch " +
		"arrives; every batch is written through to the file, which is synced to disk at Close.",
	Fields: []spec.Field{
		{Name: "path", Type: spec.String, Description: "File to write, relative to the pipeline file.", Example: "out/stats.jsonl"},
		{Name: "append", Type: spec.Bool, Default: false, Description: "Append to an existing file instead of replacing it.", Example: true},
	},
	Example: "sinks:\n  archive:\n    type: file\n    input: stats\n    path: out/stats.jsonl\n    append: true\n",
}

func init() { engine.RegisterSink(SinkSpec, newSink) }

// ErrClosed is returned by Sink.Write after Close.
var ErrClosed = errors.New("file: sink closed")

// Sink writes batches to a file as JSON lines. It is safe for concurrent
// use.
type Sink struct {
	path   string
	append bool
	rows   *atomic.Int64

	mu     sync.Mutex
	f      *os.File
	out    *codec.JSONLinesWriter
	closed bool
}

func newSink(cfg *spec.Config, _ *engine.Schema, bc engine.BuildContext) (engine.Sink, error) {
	path := cfg.String("path")
	if path == "" {
		return nil, cfg.Errorf("path", "path is empty")
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(bc.Dir, path)
	}
	s := NewSink(path, cfg.Bool("append"))
	if bc.Counters != nil {
		s.rows = bc.Counters.Counter("rows")
	}
	return s, nil
}

// NewSink returns a sink writing to path, appending to an existing file or
// replacing it.
func NewSink(path string, appendMode bool) *Sink {
	return &Sink{path: path, append: appendMode, rows: new(atomic.Int64)}
}

func (s *Sink) open() error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if s.append {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	f, err := os.OpenFile(s.path, flags, 0o644)
	if err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	s.f, s.out = f, codec.NewJSONLinesWriter(f)
	return nil
}

// Write writes the rows of b and releases its record.
func (s *Sink) Write(_ context.Context, b engine.Batch) error {
	defer b.Release()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.f == nil {
		if err := s.open(); err != nil {
			return err
		}
	}
	if err := s.out.Write(b.Rec); err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	s.rows.Add(b.Rec.NumRows())
	return nil
}

// Close flushes, syncs and closes the file. It is idempotent.
func (s *Sink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.f == nil {
		return nil
	}
	err := s.out.Flush()
	if serr := s.f.Sync(); err == nil {
		err = serr
	}
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	return nil
}
