package logquery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/sluice-edge/sluice/engine/logfile"
)

// DefaultPoll is how often Follow looks for new records.
const DefaultPoll = 250 * time.Millisecond

// Follow passes to emit the records of dir that q selects: first those
// Search returns (q.Since, q.Limit and q.MaxBytes apply to them), then every
// new record written to the current file, across rotations, until ctx
// ends (it then returns nil) or emit fails; q's other filters, q.Until
// included, apply to the new records too. No record is passed twice or skipped between
// the search and the follow. poll is how often the file is looked at
// (DefaultPoll when 0).
func Follow(ctx context.Context, dir string, q Query, poll time.Duration, emit func(Entry) error) (Stats, error) {
	if poll <= 0 {
		poll = DefaultPoll
	}
	if err := q.check(); err != nil {
		return Stats{}, err
	}
	tl := &tail{dir: dir}
	if err := tl.openCurrent(true); err != nil {
		return Stats{}, err
	}
	defer tl.close()
	var stop os.FileInfo
	if tl.f != nil {
		stop = tl.fi
	}
	res, err := search(ctx, dir, q, stop, tl.off)
	if err != nil {
		return Stats{}, err
	}
	st := res.Stats
	for _, e := range res.Entries {
		if err := emit(e); err != nil {
			return st, err
		}
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		if err := tl.read(&q, &st, emit); err != nil {
			return st, err
		}
		select {
		case <-ctx.Done():
			return st, nil
		case <-t.C:
		}
	}
}

// tail reads the records appended to the current log file.
type tail struct {
	dir     string
	f       *os.File
	fi      os.FileInfo
	off     int64
	partial []byte // a line not yet ended
	long    bool   // skipping the rest of a long line
}

// openCurrent opens the current file, at its end when atEnd (else at its
// start); a missing file is opened later.
func (tl *tail) openCurrent(atEnd bool) error {
	f, err := os.Open(filepath.Join(tl.dir, logfile.Current))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("logquery: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("logquery: %w", err)
	}
	tl.f, tl.fi, tl.off, tl.partial, tl.long = f, fi, 0, nil, false
	if atEnd {
		tl.off = fi.Size()
	}
	return nil
}

func (tl *tail) close() {
	if tl.f != nil {
		tl.f.Close()
		tl.f = nil
	}
}

// read passes the new records of the current file to emit; when the file
// was rotated (maybe several times since the last look) it reads the rest
// of the old one, then the files after it, in order.
func (tl *tail) read(q *Query, st *Stats, emit func(Entry) error) error {
	for range logfile.MaxFilesLimit + 1 {
		if tl.f == nil {
			if err := tl.openCurrent(false); err != nil || tl.f == nil {
				return err
			}
		}
		if err := tl.drain(q, st, emit); err != nil {
			return err
		}
		cur, err := os.Stat(filepath.Join(tl.dir, logfile.Current))
		if err == nil && os.SameFile(cur, tl.fi) {
			if cur.Size() < tl.off {
				// Truncated by someone: read it again from its start.
				tl.off, tl.partial, tl.long = 0, nil, false
			}
			return nil
		}
		// Rotated: the old file is written no more once renamed; read
		// what it got since the last drain, then the file written after
		// it.
		if err := tl.drain(q, st, emit); err != nil {
			return err
		}
		if err := tl.next(); err != nil {
			return err
		}
	}
	return nil
}

// next opens the log file written after the open one (renamed by a
// rotation), at its start: the oldest file when the open one was removed.
func (tl *tail) next() error {
	for range 10 {
		files, err := logfile.Files(tl.dir)
		if err != nil {
			return err
		}
		k := -1
		for i, name := range files {
			if fi, err := os.Stat(name); err == nil && os.SameFile(fi, tl.fi) {
				k = i
				break
			}
		}
		if k == len(files)-1 {
			return nil // not rotated after all: the current file went away
		}
		f, err := os.Open(files[k+1])
		if errors.Is(err, os.ErrNotExist) {
			continue // rotated again meanwhile: look again
		}
		if err != nil {
			return fmt.Errorf("logquery: %w", err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("logquery: %w", err)
		}
		// The file opened must still be the one after the old one (it
		// may have been rotated between the listing and the opening).
		if again, err := os.Stat(files[k+1]); err != nil || !os.SameFile(again, fi) {
			f.Close()
			continue
		}
		tl.close()
		tl.f, tl.fi, tl.off, tl.partial, tl.long = f, fi, 0, nil, false
		return nil
	}
	return nil
}

// drain reads f from tl.off to its end.
func (tl *tail) drain(q *Query, st *Stats, emit func(Entry) error) error {
	buf := make([]byte, 64<<10)
	for {
		n, err := tl.f.ReadAt(buf, tl.off)
		tl.off += int64(n)
		st.Bytes += int64(n)
		b := buf[:n]
		for len(b) > 0 {
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				if !tl.long {
					tl.partial = append(tl.partial, b...)
					if len(tl.partial) > logfile.MaxLineBytes {
						tl.partial, tl.long = nil, true
						st.LongLines++
						st.Lines++
					}
				}
				break
			}
			piece := b[:i]
			b = b[i+1:]
			if tl.long {
				tl.long = false
				continue
			}
			line := piece
			if len(tl.partial) > 0 {
				line = append(tl.partial, piece...)
				tl.partial = nil
			}
			st.Lines++
			if len(line)+1 > logfile.MaxLineBytes {
				st.LongLines++
				continue
			}
			t, lvl, ok := head(line)
			if !ok {
				st.BadLines++
				continue
			}
			if !match(line, t, lvl, q) {
				continue
			}
			if !json.Valid(line) {
				st.BadLines++
				continue
			}
			if !attrsMatch(line, q) {
				continue
			}
			if err := emit(Entry{Time: t, Level: lvl, Line: bytes.Clone(line)}); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) || n == 0 {
			return nil
		}
		if err != nil {
			return fmt.Errorf("logquery: %w", err)
		}
	}
}
