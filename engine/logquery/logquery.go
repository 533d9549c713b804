// Package logquery searches the engine's log files (engine/logfile: slog
// JSON records, one a line, in size-bounded rotating files) by level,
// time window, pipeline, component and a regular expression, and follows
// the current file for new records.
//
// A search is fast whatever the size of the log: files are visited newest
// first and a file whose time range (the times of its first and last
// records, read from its two ends) lies outside the window is not read; in
// a file that is read, the first record of the window is found by
// bisection on byte offsets (records are written in time order), and the
// scan stops past the window's end. Memory is bounded: lines are read
// through one buffer of logfile.MaxLineBytes, and only the newest Limit
// matches (at most MaxBytes of them) are kept.
//
// Every byte of a log file is treated as hostile: lines longer than
// logfile.MaxLineBytes, lines that are not records (no time and level at
// their head) and matching lines that are not JSON — such as the record cut
// short when the engine was killed in the middle of a write — are skipped
// and counted in Stats.
package logquery

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"time"

	"github.com/sluice-edge/sluice/engine/logfile"
)

// Defaults and bounds of a Query.
const (
	// DefaultLimit is the number of matches kept when Query.Limit is 0.
	DefaultLimit = 1000
	// MaxLimit bounds Query.Limit.
	MaxLimit = 100_000
	// DefaultMaxBytes bounds the bytes of the matches kept when
	// Query.MaxBytes is 0.
	DefaultMaxBytes = 16 << 20
	// Slack is how far out of time order records may be written (several
	// goroutines log at once): the window is widened by it when files are
	// skipped and bisected, never when records are matched.
	Slack = 2 * time.Second
	// probeBytes is how much is read at one end of a file or at a
	// bisection point to find a record's time.
	probeBytes = 64 << 10
)

// Query selects records. The zero Query selects the newest DefaultLimit
// records of level INFO or above (the zero slog.Level is INFO).
type Query struct {
	// Level is the lowest level selected.
	Level slog.Level
	// Since and Until bound the records' times (inclusive); zero: open.
	Since, Until time.Time
	// Pipeline and Component, when set, must equal the record's
	// "pipeline" and "component" attributes.
	Pipeline, Component string
	// Grep, when set, must match the record's JSON line.
	Grep *regexp.Regexp
	// Limit is the number of newest matches kept (default DefaultLimit,
	// at most MaxLimit).
	Limit int
	// MaxBytes bounds the bytes of the matches kept (default
	// DefaultMaxBytes).
	MaxBytes int64
}

// check fills in the defaults and checks the bounds of q.
func (q *Query) check() error {
	if q.Limit == 0 {
		q.Limit = DefaultLimit
	}
	if q.MaxBytes == 0 {
		q.MaxBytes = DefaultMaxBytes
	}
	if q.Limit < 1 || q.Limit > MaxLimit {
		return fmt.Errorf("logquery: limit %d is not from 1 to %d", q.Limit, MaxLimit)
	}
	if q.MaxBytes < 1 {
		return fmt.Errorf("logquery: max bytes %d is below 1", q.MaxBytes)
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && q.Until.Before(q.Since) {
		return fmt.Errorf("logquery: until %s is before since %s", q.Until.Format(time.RFC3339), q.Since.Format(time.RFC3339))
	}
	return nil
}

// Entry is one matching record.
type Entry struct {
	Time  time.Time
	Level slog.Level
	// Line is the record's JSON, without its newline.
	Line []byte
}

// Stats count the work of a search and the lines it skipped.
type Stats struct {
	// Files is the number of log files; Skipped of them were not read
	// (their time range lies outside the window).
	Files   int `json:"files"`
	Skipped int `json:"files_skipped"`
	// Bytes and Lines are the bytes and lines read.
	Bytes int64 `json:"bytes"`
	Lines int64 `json:"lines"`
	// BadLines are lines that are not records; LongLines are lines longer
	// than logfile.MaxLineBytes.
	BadLines  int64 `json:"bad_lines"`
	LongLines int64 `json:"long_lines"`
}

func (s *Stats) add(o Stats) {
	s.Files += o.Files
	s.Skipped += o.Skipped
	s.Bytes += o.Bytes
	s.Lines += o.Lines
	s.BadLines += o.BadLines
	s.LongLines += o.LongLines
}

// Result is the answer of a search.
type Result struct {
	// Entries are the newest matches, oldest first.
	Entries []Entry
	// Truncated says that older matches were left out (Limit or
	// MaxBytes) or may exist in files not read once Limit was reached.
	Truncated bool
	Stats     Stats
}

// Search returns the newest records of the log files in dir that q
// selects. A missing directory holds no records.
func Search(ctx context.Context, dir string, q Query) (*Result, error) {
	return search(ctx, dir, q, nil, 0)
}

// search is Search; the file stop (when not nil) is read only up to
// stopAt bytes.
func search(ctx context.Context, dir string, q Query, stop os.FileInfo, stopAt int64) (*Result, error) {
	if err := q.check(); err != nil {
		return nil, err
	}
	files, err := logfile.Files(dir)
	if err != nil {
		return nil, err
	}
	if stop != nil {
		// Files written after stop are the follower's.
		for i, name := range files {
			if fi, err := os.Stat(name); err == nil && os.SameFile(fi, stop) {
				files = files[:i+1]
				break
			}
		}
	}
	res := &Result{}
	res.Stats.Files = len(files)
	var perFile [][]Entry             // newest file first
	probe := make([]byte, probeBytes) // reused by every file's probes
	count, size := 0, int64(0)
	for i := len(files) - 1; i >= 0; i-- {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if count >= q.Limit || size >= q.MaxBytes {
			res.Truncated = true
			break
		}
		fq := q
		fq.Limit, fq.MaxBytes = q.Limit-count, q.MaxBytes-size
		var ents []Entry
		var st Stats
		var over bool
		err := func() error {
			f, err := os.Open(files[i])
			if errors.Is(err, os.ErrNotExist) {
				return nil // removed by a rotation since listed
			}
			if err != nil {
				return fmt.Errorf("logquery: %w", err)
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return fmt.Errorf("logquery: %w", err)
			}
			end := fi.Size()
			if stop != nil && os.SameFile(fi, stop) {
				end = min(end, stopAt)
			}
			ents, st, over, err = searchFile(ctx, f, end, &fq, probe)
			return err
		}()
		if err != nil {
			return nil, err
		}
		res.Stats.add(st)
		if over {
			res.Truncated = true
		}
		for _, e := range ents {
			size += int64(len(e.Line))
		}
		count += len(ents)
		perFile = append(perFile, ents)
		if over {
			break
		}
	}
	for i := len(perFile) - 1; i >= 0; i-- {
		res.Entries = append(res.Entries, perFile[i]...)
	}
	return res, nil
}

// fileRange returns the times of the first and last records of f (its
// first end bytes), from the first and last probeBytes; ok is false when
// either end holds no record.
func fileRange(f *os.File, end int64, probe []byte) (first, last time.Time, ok bool) {
	buf := probe[:min(end, probeBytes)]
	n, _ := f.ReadAt(buf, 0)
	b := buf[:n]
	okFirst := false
	for len(b) > 0 {
		line, rest, found := bytes.Cut(b, []byte{'\n'})
		if !found {
			break
		}
		if t, _, ok := head(line); ok {
			first, okFirst = t, true
			break
		}
		b = rest
	}
	if !okFirst {
		return first, last, false
	}
	off := max(0, end-probeBytes)
	n, _ = f.ReadAt(buf[:end-off], off)
	b = buf[:n]
	if off > 0 {
		// The first bytes may be the end of a line begun before.
		_, b, _ = bytes.Cut(b, []byte{'\n'})
	}
	if len(b) > 0 && b[len(b)-1] == '\n' {
		b = b[:len(b)-1]
	}
	for len(b) > 0 {
		i := bytes.LastIndexByte(b, '\n')
		if t, _, ok := head(b[i+1:]); ok {
			return first, t, true
		}
		if i < 0 {
			break
		}
		b = b[:i]
	}
	return first, last, false
}

// timeAt returns the time of the first record starting after off (at
// off when off is 0) within probeBytes; ok is false when there is none.
func timeAt(f *os.File, off, end int64, buf []byte) (t time.Time, ok bool) {
	n, _ := f.ReadAt(buf[:min(int64(len(buf)), end-off)], off)
	b := buf[:n]
	if off > 0 {
		var found bool
		if _, b, found = bytes.Cut(b, []byte{'\n'}); !found {
			return t, false
		}
	}
	for len(b) > 0 {
		line, rest, found := bytes.Cut(b, []byte{'\n'})
		if !found {
			return t, false
		}
		if t, _, ok := head(line); ok {
			return t, true
		}
		b = rest
	}
	return t, false
}

// startOffset returns an offset at or before the first record of f at or
// after since (by bisection; records are in time order within Slack).
func startOffset(f *os.File, end int64, since time.Time, buf []byte) int64 {
	lo, hi := int64(0), end
	for hi-lo > probeBytes {
		mid := lo + (hi-lo)/2
		t, ok := timeAt(f, mid, end, buf)
		if ok && t.Before(since) {
			lo = mid
		} else {
			// At or after since, or unknown: the start is before mid
			// (starting earlier only reads more).
			hi = mid
		}
	}
	return lo
}

// searchFile returns the newest matches of q in the first end bytes of f
// (at most q.Limit, q.MaxBytes of them) and whether older ones were left
// out.
func searchFile(ctx context.Context, f *os.File, end int64, q *Query, probe []byte) (ents []Entry, st Stats, over bool, err error) {
	if end == 0 {
		return nil, st, false, nil
	}
	var from, to time.Time
	if !q.Since.IsZero() {
		from = q.Since.Add(-Slack)
	}
	if !q.Until.IsZero() {
		to = q.Until.Add(Slack)
	}
	if !from.IsZero() || !to.IsZero() {
		first, last, ok := fileRange(f, end, probe)
		if ok && (!from.IsZero() && last.Before(from) || !to.IsZero() && first.After(to)) {
			st.Skipped = 1
			return nil, st, false, nil
		}
	}
	var off int64
	if !from.IsZero() {
		off = startOffset(f, end, from, probe)
	}
	r := bufio.NewReaderSize(io.NewSectionReader(f, off, end-off), logfile.MaxLineBytes)
	if off > 0 {
		// The scan starts within a line: skip to the next.
		skipped, err := skipLine(r)
		st.Bytes += skipped
		if err != nil {
			return nil, st, false, nil
		}
	}
	var size int64
	long := false
	for n := 0; ; n++ {
		if n&4095 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, st, false, err
			}
		}
		line, err := r.ReadSlice('\n')
		st.Bytes += int64(len(line))
		if errors.Is(err, bufio.ErrBufferFull) {
			if !long {
				st.LongLines++
				st.Lines++
			}
			long = true
			continue
		}
		if long {
			// The end of a long line.
			long = false
			if err != nil {
				break
			}
			continue
		}
		if len(line) == 0 && err != nil {
			break
		}
		st.Lines++
		line = bytes.TrimSuffix(line, []byte{'\n'})
		t, lvl, ok := head(line)
		if !ok {
			st.BadLines++
			if err != nil {
				break
			}
			continue
		}
		if !to.IsZero() && t.After(to) {
			break
		}
		if match(line, t, lvl, q) {
			if !json.Valid(line) || !attrsMatch(line, q) {
				if !json.Valid(line) {
					st.BadLines++
				}
			} else {
				e := Entry{Time: t, Level: lvl, Line: bytes.Clone(line)}
				ents = append(ents, e)
				size += int64(len(line))
				for len(ents) > q.Limit || size > q.MaxBytes {
					size -= int64(len(ents[0].Line))
					ents = ents[1:]
					over = true
				}
			}
		}
		if err != nil {
			break
		}
	}
	return ents, st, over, nil
}

// skipLine reads r past the next newline.
func skipLine(r *bufio.Reader) (int64, error) {
	var n int64
	for {
		b, err := r.ReadSlice('\n')
		n += int64(len(b))
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return n, err
	}
}

// match checks the time, level and pattern of a record.
func match(line []byte, t time.Time, lvl slog.Level, q *Query) bool {
	if lvl < q.Level {
		return false
	}
	if !q.Since.IsZero() && t.Before(q.Since) || !q.Until.IsZero() && t.After(q.Until) {
		return false
	}
	return q.Grep == nil || q.Grep.Match(line)
}

// attrsMatch checks the pipeline and component of a record (a JSON line).
func attrsMatch(line []byte, q *Query) bool {
	if q.Pipeline == "" && q.Component == "" {
		return true
	}
	var a struct {
		Pipeline  string `json:"pipeline"`
		Component string `json:"component"`
	}
	if err := json.Unmarshal(line, &a); err != nil {
		return false
	}
	return (q.Pipeline == "" || a.Pipeline == q.Pipeline) && (q.Component == "" || a.Component == q.Component)
}

var (
	timeHead  = []byte(`{"time":"`)
	levelHead = []byte(`","level":"`)
)

// head reads the time and level at the head of a slog JSON record:
// {"time":"<RFC 3339>","level":"<LEVEL>", ...
func head(line []byte) (time.Time, slog.Level, bool) {
	rest, ok := bytes.CutPrefix(line, timeHead)
	if !ok {
		return time.Time{}, 0, false
	}
	i := bytes.IndexByte(rest[:min(len(rest), 48)], '"')
	if i < 0 {
		return time.Time{}, 0, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(rest[:i]))
	if err != nil {
		return time.Time{}, 0, false
	}
	rest, ok = bytes.CutPrefix(rest[i:], levelHead)
	if !ok {
		return time.Time{}, 0, false
	}
	j := bytes.IndexByte(rest[:min(len(rest), 16)], '"')
	if j < 0 {
		return time.Time{}, 0, false
	}
	lvl, ok := parseLevel(rest[:j])
	return t, lvl, ok
}

// parseLevel reads a slog level name: DEBUG, INFO, WARN, ERROR, with an
// optional +N or -N.
func parseLevel(b []byte) (slog.Level, bool) {
	switch string(b) {
	case "DEBUG":
		return slog.LevelDebug, true
	case "INFO":
		return slog.LevelInfo, true
	case "WARN":
		return slog.LevelWarn, true
	case "ERROR":
		return slog.LevelError, true
	}
	var l slog.Level
	if err := l.UnmarshalText(b); err != nil {
		return 0, false
	}
	return l, true
}
