// Package logfile keeps the engine's structured log (slog JSON, one record
// a line) in a size-bounded set of rotating files in a directory: the
// current file sluice.log and rotated files sluice-<UTC time>.log, whose
// names sort in the order they were written. When the current file would
// grow past MaxFileBytes it is renamed and a new one started; the oldest
// rotated files are removed so that at most MaxFiles files (the current
// one included) remain, which bounds the log to about
// MaxFiles × MaxFileBytes bytes on disk.
//
// Writer is an io.Writer for slog.NewJSONHandler (one record per Write);
// Tee and Late are slog handlers that send records to several handlers and
// to a handler attached after the loggers were made.
package logfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Defaults and bounds of Options.
const (
	// DefaultMaxFileBytes is the size at which the current file is rotated.
	DefaultMaxFileBytes = 10 << 20
	// DefaultMaxFiles is the number of files kept, the current one
	// included: with DefaultMaxFileBytes, about 100 MiB of log.
	DefaultMaxFiles = 10
	// MinFileBytes and MaxFileBytesLimit bound MaxFileBytes.
	MinFileBytes      = 64 << 10
	MaxFileBytesLimit = 1 << 30
	// MaxFilesLimit bounds MaxFiles.
	MaxFilesLimit = 1000
	// MaxLineBytes bounds one record: a longer one is replaced by a short
	// record saying so (a reader skips lines longer than this).
	MaxLineBytes = 64 << 10
)

// Dir is the directory of the log files under an engine's data
// directory.
func Dir(dataDir string) string { return filepath.Join(dataDir, "logs") }

// Current is the name of the file being written.
const Current = "sluice.log"

// rotatedLayout names a rotated file by the time it was rotated, UTC:
// lexical order is time order.
const rotatedLayout = "20060102T150405.000000000"

// Options configure a Writer.
type Options struct {
	// Dir is the directory of the log files, created (0700) if missing.
	Dir string
	// MaxFileBytes is the size at which the current file is rotated
	// (default DefaultMaxFileBytes).
	MaxFileBytes int64
	// MaxFiles is the number of files kept, the current one included
	// (default DefaultMaxFiles).
	MaxFiles int
	// Now returns the time used to name rotated files (default time.Now).
	Now func() time.Time
}

// Check fills in the defaults of o and checks its bounds.
func (o *Options) Check() error {
	if o.Dir == "" {
		return errors.New("logfile: no directory")
	}
	if o.MaxFileBytes == 0 {
		o.MaxFileBytes = DefaultMaxFileBytes
	}
	if o.MaxFiles == 0 {
		o.MaxFiles = DefaultMaxFiles
	}
	if o.MaxFileBytes < MinFileBytes || o.MaxFileBytes > MaxFileBytesLimit {
		return fmt.Errorf("logfile: max file bytes %d is not from %d to %d", o.MaxFileBytes, MinFileBytes, MaxFileBytesLimit)
	}
	if o.MaxFiles < 2 || o.MaxFiles > MaxFilesLimit {
		return fmt.Errorf("logfile: max files %d is not from 2 to %d", o.MaxFiles, MaxFilesLimit)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// Writer appends records to the current file and rotates it. It is safe
// for concurrent use; each Write should be one whole record.
type Writer struct {
	opts Options

	mu      sync.Mutex
	f       *os.File
	size    int64
	last    time.Time // name of the last rotated file, kept increasing
	dropped int64
	err     error // the last write or rotation error, reported once
}

// Open opens (or creates) the current file of opts.Dir for appending. A
// current file whose last record was cut short (the engine was killed in
// the middle of a write) gets a newline first, so that the cut record
// stays one bad line of its own.
func Open(opts Options) (*Writer, error) {
	if err := opts.Check(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("logfile: %w", err)
	}
	w := &Writer{opts: opts}
	if err := w.open(); err != nil {
		return nil, err
	}
	if err := w.prune(); err != nil {
		w.f.Close()
		return nil, err
	}
	return w, nil
}

// open opens the current file and repairs a cut last record.
func (w *Writer) open() error {
	f, err := os.OpenFile(filepath.Join(w.opts.Dir, Current), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("logfile: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("logfile: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return fmt.Errorf("logfile: %s is not a regular file", f.Name())
	}
	w.f, w.size = f, st.Size()
	if w.size > 0 {
		var b [1]byte
		if _, err := f.ReadAt(b[:], w.size-1); err != nil {
			f.Close()
			return fmt.Errorf("logfile: %w", err)
		}
		if b[0] != '\n' {
			n, err := f.Write([]byte{'\n'})
			w.size += int64(n)
			if err != nil {
				f.Close()
				return fmt.Errorf("logfile: %w", err)
			}
		}
	}
	return nil
}

// Write appends p, one record, rotating the current file first when p
// would take it past MaxFileBytes. A record longer than MaxLineBytes is
// replaced by a short record saying how long it was. Write returns
// len(p) unless the file could not be written.
func (w *Writer) Write(p []byte) (int, error) {
	n := len(p)
	if n > MaxLineBytes {
		p = fmt.Appendf(nil, "{\"time\":%q,\"level\":\"WARN\",\"msg\":\"log record dropped: longer than %d bytes\",\"bytes\":%d}\n",
			w.opts.Now().UTC().Format(time.RFC3339Nano), MaxLineBytes, n)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if n > MaxLineBytes {
		w.dropped++
	}
	if w.f == nil {
		return 0, errors.New("logfile: closed")
	}
	if w.size > 0 && w.size+int64(len(p)) > w.opts.MaxFileBytes {
		if err := w.rotate(); err != nil {
			// Keep writing the current file: a full log beats none.
			w.err = err
		}
	}
	m, err := w.f.Write(p)
	w.size += int64(m)
	if err != nil {
		w.err = err
		return m, fmt.Errorf("logfile: %w", err)
	}
	return n, nil
}

// rotate renames the current file and opens a new one; w.mu is held.
func (w *Writer) rotate() error {
	t := w.opts.Now().UTC()
	if !t.After(w.last) {
		t = w.last.Add(time.Nanosecond)
	}
	name := filepath.Join(w.opts.Dir, "sluice-"+t.Format(rotatedLayout)+".log")
	if err := os.Rename(filepath.Join(w.opts.Dir, Current), name); err != nil {
		return fmt.Errorf("logfile: rotate: %w", err)
	}
	w.last = t
	old := w.f
	if err := w.open(); err != nil {
		// The old file (renamed) stays open and written.
		return err
	}
	old.Close()
	return w.prune()
}

// prune removes the oldest rotated files beyond MaxFiles; w.mu is held or
// w is not shared yet.
func (w *Writer) prune() error {
	files, err := Files(w.opts.Dir)
	if err != nil {
		return err
	}
	var firstErr error
	for len(files) > w.opts.MaxFiles {
		if filepath.Base(files[0]) == Current {
			break
		}
		if err := os.Remove(files[0]); err != nil && !errors.Is(err, os.ErrNotExist) && firstErr == nil {
			firstErr = fmt.Errorf("logfile: %w", err)
		}
		files = files[1:]
	}
	return firstErr
}

// Dropped returns the number of records too long to be written.
func (w *Writer) Dropped() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dropped
}

// Err returns the last write or rotation error, if any.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close closes the current file; later writes fail.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	if err != nil {
		return fmt.Errorf("logfile: %w", err)
	}
	return nil
}

var _ io.WriteCloser = (*Writer)(nil)

// Rotated says whether name (a base name) is a rotated log file.
func Rotated(name string) bool {
	ts, ok := strings.CutPrefix(name, "sluice-")
	if !ok {
		return false
	}
	ts, ok = strings.CutSuffix(ts, ".log")
	if !ok {
		return false
	}
	_, err := time.Parse(rotatedLayout, ts)
	return err == nil
}

// Files returns the log files of dir, oldest first: the rotated files in
// the order they were rotated, then the current file when it exists. A
// missing directory has none.
func Files(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("logfile: %w", err)
	}
	var rotated []string
	current := false
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		switch n := e.Name(); {
		case n == Current:
			current = true
		case Rotated(n):
			rotated = append(rotated, n)
		}
	}
	slices.Sort(rotated)
	out := make([]string, 0, len(rotated)+1)
	for _, n := range rotated {
		out = append(out, filepath.Join(dir, n))
	}
	if current {
		out = append(out, filepath.Join(dir, Current))
	}
	return out, nil
}
