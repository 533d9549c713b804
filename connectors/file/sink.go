package file

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer/disk"
	"github.com/sluice-edge/sluice/engine/spec"
)

// SinkSpec declares the "file" sink.
var SinkSpec = spec.Spec{
	Name:    "file",
	Summary: "Writes rows to a file as JSON lines.",
	Description: "One JSON object per row, columns in schema order; null values are left out, timestamps are " +
		"RFC 3339 UTC with milliseconds. The file and its parent directories are created when the first batch " +
		"arrives; every batch is written through to the file, whole lines only, and the file is synced to disk at " +
		"Close. On a full disk the sink holds rows back (its input is not acknowledged) and retries until space returns.",
	Fields: []spec.Field{
		{Name: "path", Type: spec.String, Description: "File to write, relative to the pipeline file.", Example: "out/stats.jsonl"},
		{Name: "append", Type: spec.Bool, Default: false, Description: "Append to an existing file instead of replacing it. A run that continues an interrupted one (a source resumes from its recorded position) always appends.", Example: true},
	},
	Example: "sinks:\n  archive:\n    type: file\n    input: stats\n    path: out/stats.jsonl\n    append: true\n",
}

func init() { engine.RegisterSink(SinkSpec, newSink) }

// ErrClosed is returned by Sink.Write after Close.
var ErrClosed = errors.New("file: sink closed")

// Sink writes batches to a file as JSON lines. It is safe for concurrent
// use.
//
// A batch is written whole or not at all: when a write fails part way
// (a full disk), the file is cut back to its last whole line. On a full
// disk the sink holds the batch back (the pipeline's input is not
// acknowledged) and retries until space returns; other write errors end
// the pipeline.
type Sink struct {
	path   string
	append bool
	rows   *atomic.Int64
	waits  *atomic.Int64
	log    *slog.Logger

	mu        sync.Mutex
	f         *os.File
	size      int64 // bytes of whole lines in the file
	buf       []byte
	closed    bool
	continues bool // replacing, but the run resumes: append
}

func newSink(cfg *spec.Config, _ *engine.Schema, bc engine.BuildContext) (engine.Sink, error) {
	path := cfg.String("path")
	if path == "" {
		return nil, cfg.Errorf("path", "path is empty")
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(bc.Dir, path)
	}
	s := NewSink(path, cfg.Bool("append") || bc.Resuming)
	if bc.Resuming && !cfg.Bool("append") {
		// The run continues an interrupted one: replacing the file would
		// lose what its first part wrote.
		s.continues = true
	}
	if bc.Counters != nil {
		s.rows = bc.Counters.Counter("rows")
		s.waits = bc.Counters.Counter("disk_full_waits")
	}
	if bc.Log != nil {
		s.log = bc.Log
	}
	return s, nil
}

// NewSink returns a sink writing to path, appending to an existing file or
// replacing it.
func NewSink(path string, appendMode bool) *Sink {
	return &Sink{path: path, append: appendMode, rows: new(atomic.Int64), waits: new(atomic.Int64), log: slog.New(slog.DiscardHandler)}
}

func (s *Sink) open() error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if s.append {
		flags = os.O_CREATE | os.O_RDWR
	}
	f, err := os.OpenFile(s.path, flags, 0o644)
	if err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return fmt.Errorf("file sink: %w", err)
	}
	if s.append {
		// A line cut by a crash is cut off: the file holds whole lines.
		whole, err := wholeLines(f, size)
		if err != nil {
			f.Close()
			return fmt.Errorf("file sink: %w", err)
		}
		if whole < size {
			if err := f.Truncate(whole); err != nil {
				f.Close()
				return fmt.Errorf("file sink: %w", err)
			}
			s.log.Warn("file sink: cut a partial last line (the previous run was interrupted)", "path", s.path, "bytes", size-whole)
			size = whole
		}
		if s.continues {
			s.log.Info("file sink: the run resumes an interrupted one; continuing the file instead of replacing it", "path", s.path)
		}
	}
	s.f, s.size = f, size
	return nil
}

// wholeLines returns the size of the file up to and including its last
// line break.
func wholeLines(f *os.File, size int64) (int64, error) {
	buf := make([]byte, 4096)
	for end := size; end > 0; {
		n := min(int64(len(buf)), end)
		if _, err := f.ReadAt(buf[:n], end-n); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return end - n + int64(i) + 1, nil
		}
		end -= n
	}
	return 0, nil
}

// Write writes the rows of b and releases its record. On a full disk it
// waits and retries until the rows are written or ctx is done.
func (s *Sink) Write(ctx context.Context, b engine.Batch) error {
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
	s.buf = codec.AppendJSONLines(s.buf[:0], b.Rec)
	wait := time.Millisecond
	var since time.Time
	for {
		err := s.retry(since)
		if err == nil {
			if !since.IsZero() {
				s.log.Info("file sink: disk has room again", "path", s.path, "held_back_for", time.Since(since).Round(time.Millisecond).String())
			}
			break
		}
		if !disk.IsNoSpace(err) {
			return fmt.Errorf("file sink: %w", err)
		}
		if since.IsZero() {
			since = time.Now()
			s.waits.Add(1)
			s.log.Error("file sink: disk full; holding rows back until space returns", "path", s.path, "rows", b.Rec.NumRows(), "err", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("file sink: disk full: %w", ctx.Err())
		case <-t.C:
		}
		wait = min(wait*2, time.Second)
	}
	s.rows.Add(b.Rec.NumRows())
	return nil
}

// retry writes s.buf, or, while the disk is full (since is set), reports
// that it still is without writing when the file system says the rows
// would not fit: a write that fails half-way is cut back, but a reader
// could see the cut line meanwhile, so it is not tried again and again.
func (s *Sink) retry(since time.Time) error {
	if !since.IsZero() {
		if free, err := disk.FreeBytes(filepath.Dir(s.path)); err == nil && free < int64(len(s.buf))+4096 {
			return disk.ErrNoSpace
		}
	}
	return s.writeWhole(s.buf)
}

// writeWhole appends buf at the end of the whole lines; after a failed
// write the file is cut back so that it holds whole lines only.
func (s *Sink) writeWhole(buf []byte) error {
	n, err := s.f.WriteAt(buf, s.size)
	if err == nil {
		s.size += int64(n)
		return nil
	}
	if terr := s.f.Truncate(s.size); terr != nil {
		return errors.Join(err, fmt.Errorf("cut back to the last whole line: %w", terr))
	}
	return err
}

// Prepare makes the lines written so far durable and returns the mark of
// a checkpoint (see engine.Committer): the file's size, then its absolute
// path, so that a recovery whose path names another file leaves that file
// alone.
func (s *Sink) Prepare(context.Context) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.f == nil {
		if err := s.open(); err != nil {
			return nil, err
		}
	}
	if err := s.f.Sync(); err != nil {
		return nil, fmt.Errorf("file sink: %w", err)
	}
	return append(binary.BigEndian.AppendUint64(nil, uint64(s.size)), absPath(s.path)...), nil
}

// absPath returns path made absolute and clean, or path itself when the
// working directory is unknown.
func absPath(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return filepath.Clean(path)
}

// Commit does nothing: the file is local, its readers see every line as
// it is written.
func (s *Sink) Commit([]byte) error { return nil }

// Rollback cuts the file back to the size a checkpoint recorded: the lines
// after it were written after that checkpoint by a run that did not reach
// the next one, and the recovering run writes them again. A file shorter
// than the mark (replaced or cut by hand) is left as it is, and so is a
// file other than the one the mark names (the sink's path was changed
// since the checkpoint). A mark of the size alone, as checkpoints taken
// before marks named their file hold, is taken for this file.
func (s *Sink) Rollback(mark []byte) error {
	if len(mark) < 8 {
		return fmt.Errorf("file sink: a checkpoint mark of %d bytes, want at least 8", len(mark))
	}
	size := int64(binary.BigEndian.Uint64(mark))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if marked := string(mark[8:]); marked != "" && marked != absPath(s.path) {
		s.log.Warn("file sink: the checkpoint is of another file (the path changed since); this file is left as it is and continued, and the old file keeps the lines written after the checkpoint", "path", s.path, "checkpoint_path", marked)
		return nil
	}
	if s.f == nil {
		s.append = true
		if err := s.open(); err != nil {
			return err
		}
	}
	switch {
	case size == s.size:
	case size > s.size || size < 0:
		s.log.Warn("file sink: the file is shorter than the checkpoint recorded; continuing it as it is", "path", s.path, "bytes", s.size, "checkpoint_bytes", size)
	default:
		if err := s.f.Truncate(size); err != nil {
			return fmt.Errorf("file sink: roll back to the checkpoint: %w", err)
		}
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("file sink: roll back to the checkpoint: %w", err)
		}
		s.log.Info("file sink: cut the lines written after the checkpoint; the recovery writes them again", "path", s.path, "bytes", s.size-size)
		s.size = size
	}
	return nil
}

// Close syncs and closes the file. It is idempotent.
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
	err := s.f.Sync()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	return nil
}
