// Package file holds the "file" source, which replays CSV, JSON-lines and
// EnOS measure-point files, and the "file" sink, which writes rows as JSON
// lines.
package file

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer/disk"
	"github.com/sluice-edge/sluice/engine/position"
	"github.com/sluice-edge/sluice/engine/spec"
)

// SourceSpec declares the "file" source.
var SourceSpec = spec.Spec{
	Name:    "file",
	Summary: "Reads CSV, JSON-lines or EnOS measure-point files, as fast as possible or paced by event time.",
	Description: "Each line is one payload: a CSV record (`csv`), a JSON object (`jsonl`) or an EnOS measure-point " +
		"post (`enos`). A bad line is counted (`bad_lines`), logged with file:line and the reason (the first 10, " +
		"then a summary per file) and skipped; the rest keeps flowing. The source ends after the last line of the " +
		"last file. A named pipe is read as it is written (waiting for a writer); devices, sockets and directories " +
		"are refused.",
	Fields: append(append([]spec.Field{
		{Name: "path", Type: spec.String, Description: "File to read, relative to the pipeline file. A glob (`data/*.csv`) reads every match in name order.", Example: "data/turbine-*.csv"},
		{Name: "format", Type: spec.String, Enum: []string{"csv", "jsonl", "enos"}, Description: "`csv` (one record per line), `jsonl` (one JSON object per line) or `enos` (one EnOS measure-point payload per line).", Example: "csv"},
	}, codec.SchemaFields()...), append(codec.TimeFields(),
		spec.Field{Name: "key", Type: spec.String, Optional: true, Description: "A fixed value for the key column of every row (for example the one device a file comes from).", Example: "T0001"},
		spec.Field{Name: "key_field", Type: spec.String, Optional: true, Description: "`enos` only: the field of each params item, or of the envelope, that carries the device key.", Example: "deviceKey"},
		spec.Field{Name: "speed", Type: spec.Float, Default: 0, Description: "Replay speed by event time: 0 reads as fast as possible, 1 keeps the gaps between event times, 10 replays ten times faster.", Example: 60},
		spec.Field{Name: "header", Type: spec.Bool, Default: true, Description: "`csv` only: the first line of each file names the columns.", Example: false},
		spec.Field{Name: "columns", Type: spec.List, Elem: spec.String, Optional: true, Description: "`csv` only: the column names, for files without a header line (or to replace it).", Example: []string{"time", "asset", "power"}},
		spec.Field{Name: "delimiter", Type: spec.String, Default: ",", Description: "`csv` only: the field separator, one character (`tab` for a tab).", Example: ";"},
		spec.Field{Name: "max_line", Type: spec.Int, Default: 1 << 20, Advanced: true, Description: "Longest line in bytes. A longer line is a bad line, counted once it passes the limit and skipped to its end.", Example: 65536},
		spec.Field{Name: "resume", Type: spec.Bool, Default: true, Description: "Record how far the sinks have acknowledged the input (file and byte offset, in `<data dir>/<pipeline>/<source>/position`) and, after a stop or a crash, go on from there instead of from the first line. The record is kept when every file was read: the next run reads only lines appended since (run with `--from-start` to read the files again). A file whose first kilobyte changed since, or that shrank, is read from its start.", Example: false},
	)...),
	Example: `sources:
  scada:
    type: file
    path: data/wind-turbine-*.csv
    format: csv
    time_layout: "02 01 2006 15:04"
    key: T1
    speed: 600
    schema:
      time: time
      key: asset
      fields: {power: float64, wind_speed: float64}
    mapping: {time: Date/Time, power: ActivePower, wind_speed: "Wind Speed (m/s)"}
`,
}

func init() { engine.RegisterSource(SourceSpec, newSource) }

// maxLogged is how many bad lines a source logs one by one.
const maxLogged = 10

// Source replays files.
type Source struct {
	pattern  string // path joined with the pipeline directory
	dir      string
	pathPos  spec.Pos
	format   string
	mapping  *codec.Mapping
	tf       codec.TimeFormat
	key      string
	keyField string
	speed    float64
	header   bool
	columns  []string
	comma    byte
	maxLine  int
	batch    engine.BatchPolicy
	mem      memory.Allocator
	log      *slog.Logger
	pos      *position.Store // resume (without checkpoints)

	// checkpoints is set in a pipeline that takes checkpoints: the
	// position file is not used, and named pipes, which cannot be read
	// again, are refused.
	checkpoints bool
	// resume is the checkpoint position ResumeAt was given, if any.
	resume *filePos
	// ckpt is the encoded position Position returns.
	ckpt atomic.Pointer[[]byte]

	rows, bad, unknown *atomic.Int64
}

// filePos is the recorded position: the file being read and how far its
// acknowledged lines go. Head is the CRC32-C of the file's first kilobyte,
// to tell a replaced file.
// headBytes is how much of a file's beginning identifies it.
const headBytes = 1024

type filePos struct {
	File   string `json:"file"`
	Offset int64  `json:"offset"`
	Line   int    `json:"line"`
	// Head is the checksum of the file's first HeadLen bytes (at most
	// 1 KiB): a file whose beginning changed is another file.
	Head    uint32 `json:"head"`
	HeadLen int    `json:"head_len,omitempty"`
	// Before is the checksum of the BeforeLen bytes (at most 1 KiB) before
	// Offset, in checkpoint positions only.
	Before    uint32 `json:"-"`
	BeforeLen int    `json:"-"`
}

func newSource(cfg *spec.Config, bc engine.BuildContext) (engine.Source, error) {
	var errs spec.Errors
	add := func(err error) {
		if err != nil {
			errs = append(errs, spec.Collect(cfg.Pos(""), err)...)
		}
	}
	m, err := codec.ParseMappingFor(cfg, bc)
	add(err)
	tf, err := codec.ParseTimeFormatConfig(cfg)
	add(err)
	s := &Source{
		format:   cfg.String("format"),
		pathPos:  cfg.Pos("path"),
		mapping:  m,
		tf:       tf,
		key:      cfg.String("key"),
		keyField: cfg.String("key_field"),
		speed:    cfg.Float("speed"),
		header:   cfg.Bool("header"),
		columns:  cfg.Strings("columns"),
		maxLine:  int(cfg.Int("max_line")),
		batch:    bc.Batch.Normalize(),
		mem:      bc.Mem,
		log:      bc.Log,
		dir:      bc.Dir,

		checkpoints: bc.Checkpoints,
	}
	path := cfg.String("path")
	if path == "" {
		add(cfg.Errorf("path", "path is empty"))
	}
	s.pattern = path
	if !filepath.IsAbs(path) {
		s.pattern = filepath.Join(bc.Dir, path)
	}
	if _, err := filepath.Match(s.pattern, ""); err != nil {
		add(cfg.Errorf("path", "bad glob %q: %v", path, err))
	}
	if s.speed < 0 {
		add(cfg.Errorf("speed", "speed must not be negative"))
	}
	if s.maxLine < 1 {
		add(cfg.Errorf("max_line", "max_line must be positive"))
	}
	switch d := cfg.String("delimiter"); {
	case d == "tab" || d == "\t":
		s.comma = '\t'
	case len(d) == 1 && d != `"` && d != "\n" && d != "\r":
		s.comma = d[0]
	default:
		add(cfg.Errorf("delimiter", "delimiter must be one character other than a quote or a line break, not %q", d))
	}
	csvOnly := []string{"header", "columns", "delimiter"}
	for _, f := range csvOnly {
		if s.format != "csv" && cfg.Has(f) {
			add(cfg.Errorf(f, "%s applies to format csv only", f))
		}
	}
	if s.format != "enos" && s.keyField != "" {
		add(cfg.Errorf("key_field", "key_field applies to format enos only; map the key column instead"))
	}
	if s.format == "csv" && !s.header && len(s.columns) == 0 {
		add(cfg.Errorf("header", "without a header line, list the columns"))
	}
	if s.key != "" && s.keyField != "" {
		add(cfg.Errorf("key", "set key or key_field, not both"))
	}
	if m != nil && m.Schema.Key == "" && (s.key != "" || s.keyField != "") {
		name := "key"
		if s.key == "" {
			name = "key_field"
		}
		add(cfg.Errorf(name, "the schema has no key column (set schema.key)"))
	}
	if m != nil && m.Schema.Key != "" && s.format == "enos" && s.key == "" && s.keyField == "" {
		add(cfg.Errorf("schema", "EnOS payloads carry no key column: set key (a fixed value) or key_field"))
	}
	if len(errs) > 0 {
		return nil, errs
	}
	// Build a decoder now so that mapping problems show at load time.
	if s.format != "csv" || len(s.columns) > 0 {
		if _, err := s.decoder(s.columns); err != nil {
			return nil, cfg.Errorf("mapping", "%v", err)
		}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	counters := bc.Counters
	if counters == nil {
		counters = engine.NewCounters()
	}
	s.rows = counters.Counter("rows")
	s.bad = counters.Counter("bad_lines")
	if s.format == "enos" {
		s.unknown = counters.Counter("unknown_points")
	}
	if cfg.Bool("resume") && !bc.Checkpoints {
		// A checkpointing pipeline resumes the source at the position
		// its checkpoint holds (ResumeAt), never from the position file.
		st, err := position.ForSource(bc)
		if err != nil {
			return nil, err
		}
		s.pos = st
	}
	return s, nil
}

// decoder returns a decoder for the source's format; header is the CSV
// header.
func (s *Source) decoder(header []string) (codec.Decoder, error) {
	switch s.format {
	case "csv":
		return codec.NewCSV(s.mapping, codec.CSVOptions{Header: header, Comma: s.comma, Time: s.tf})
	case "enos":
		return codec.NewEnOS(s.mapping, codec.EnOSOptions{KeyField: s.keyField, Unknown: s.unknown, Time: s.tf})
	}
	return codec.NewJSON(s.mapping, codec.JSONOptions{Time: s.tf})
}

// Schema is the declared schema.
func (s *Source) Schema() *engine.Schema { return s.mapping.Schema }

var _ engine.RangedSource = (*Source)(nil)

// Ranges returns the value ranges of the schema's model when the schema
// routes values out of range (schema.ranges route), or nil.
func (s *Source) Ranges() []engine.ValueRange {
	if s.mapping == nil {
		return nil
	}
	return s.mapping.Ranges
}

// Resuming reports whether the source goes on from a recorded position:
// the position file's, or, in a checkpointing pipeline, one ResumeAt was
// given (past the start).
func (s *Source) Resuming() bool {
	return s.pos.Recorded() || (s.resume != nil && s.resume.File != "")
}

// errStop ends a run early: the context was cancelled or emit failed.
var errStop = errors.New("stop")

// run is the state of one Run.
type run struct {
	*Source
	ctx      context.Context
	done     <-chan struct{}
	emit     engine.Emit
	rb       *engine.RecordBuilder
	emitErr  error
	logged   int // bad lines logged one by one
	unlogged int // bad lines of the current file not logged
	tr       *position.Tracker
	at       filePos // after the last line appended
	lineEnd  filePos // after the line being read
	emitted  int64   // rows handed on by this run
	strict   bool    // resuming at a checkpoint position: a changed file is an error

	// The file being read, to complete positions (seal).
	cur     *os.File
	curPath string
	curPipe bool
	sealed  bool // r.at holds the check of the bytes before it
	sealBuf []byte

	// Pacing.
	started      bool
	t0           int64     // event time of the first row
	w0           time.Time // wall time of the first row
	pendingSince time.Time
	timer        *time.Timer
}

// Run reads every matching file in name order and returns nil at the end,
// or when ctx is cancelled after flushing the rows built so far.
func (s *Source) Run(ctx context.Context, emit engine.Emit) error {
	files, err := filepath.Glob(s.pattern)
	if err != nil {
		return spec.Errorf(s.pathPos, "bad glob: %v", err)
	}
	if len(files) == 0 {
		return spec.Errorf(s.pathPos, "no file matches %s", s.pattern)
	}
	slices.Sort(files)
	r := &run{Source: s, ctx: ctx, done: ctx.Done(), emit: emit}
	r.rb = engine.NewRecordBuilder(s.mem, s.mapping.Schema)
	defer r.rb.Release()
	if s.speed > 0 {
		r.timer = time.NewTimer(time.Hour)
		defer r.timer.Stop()
	}
	var resume *filePos
	stopped := false
	if s.resume != nil {
		if s.resume.File != "" {
			fp := *s.resume
			resume, r.strict = &fp, true
			if !slices.Contains(files, fp.File) {
				return fmt.Errorf("file source: the checkpoint position is in %s, which %s no longer matches",
					s.nameOf(fp.File), s.pattern)
			}
			s.log.Info("resuming at the checkpoint's position", "file", s.nameOf(fp.File), "line", fp.Line, "offset", fp.Offset)
		}
	} else if s.pos != nil {
		if p, ok := s.pos.Load(); ok {
			var fp filePos
			if err := json.Unmarshal(p, &fp); err != nil || fp.File == "" || fp.Offset < 0 {
				return fmt.Errorf("file source: position %s is unreadable; run with --from-start to read from the start", s.pos.Path())
			}
			resume = &fp
			s.log.Info("resuming where the acknowledged input ends (run with --from-start to read from the start)",
				"file", fp.File, "line", fp.Line, "offset", fp.Offset, "position", s.pos.Path())
		}
	}
	if s.pos != nil {
		r.tr = position.NewTracker(s.pos, func(msg string, err error) { s.log.Warn(msg, "err", err) })
		defer r.tr.End()
	}
	for _, f := range files {
		var from *filePos
		if resume != nil {
			if f < resume.File {
				continue // read before the stop
			}
			if f == resume.File {
				from = resume
			}
		}
		if err := r.readFile(f, from); err != nil {
			if errors.Is(err, errStop) {
				stopped = true
				break
			}
			// The rows read so far are good: hand them on first.
			_ = r.flush()
			return err
		}
	}
	if err := r.flush(); err != nil && !errors.Is(err, errStop) {
		return err
	}
	if r.emitErr != nil && ctx.Err() == nil {
		return r.emitErr
	}
	if resume != nil && !stopped && r.emitted == 0 && ctx.Err() == nil && s.pos != nil && !r.strict {
		s.log.Info("nothing new to read: an earlier run read the input to its end (run with --from-start to read it again)",
			"position", s.pos.Path())
	}
	return nil
}

func (r *run) flush() error {
	rec := r.rb.NewRecord()
	if rec == nil {
		return nil
	}
	n := rec.NumRows()
	var ack *engine.Ack
	if r.tr != nil {
		p, _ := json.Marshal(r.at)
		ack = r.tr.Emit(p)
	}
	// The position after the batch is in place before it is emitted,
	// and taken back when it was not.
	r.seal()
	prev := r.ckpt.Load()
	pos := encodePos(r.nameOf(r.at.File), &r.at)
	r.ckpt.Store(&pos)
	if err := r.emit(rec, ack); err != nil {
		r.ckpt.Store(prev)
		r.emitErr = err
		return errStop
	}
	r.rows.Add(n)
	r.emitted += n
	return nil
}

func (r *run) stopped() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func (r *run) readFile(path string, from *filePos) error {
	name := path
	if rel, err := filepath.Rel(r.dir, path); err == nil && r.dir != "" && !strings.HasPrefix(rel, "..") {
		name = rel
	}
	f, pipe, err := r.open(path, name)
	if err != nil {
		return err
	}
	defer f.Close()
	r.cur, r.curPath, r.curPipe = f, path, pipe
	defer func() {
		r.seal() // while the file is open
		r.cur = nil
	}()
	// A read waiting on a pipe ends when the context is cancelled.
	stopReads := context.AfterFunc(r.ctx, func() { _ = f.SetReadDeadline(time.Now()) })
	defer stopReads()
	if pipe && from != nil {
		r.log.Warn("a named pipe has no position to go on from: reading what is written from now on", "file", name)
		from = nil
	}
	begin, size := fileHead(f)
	head, headLen := disk.CRC(begin), len(begin)
	if from != nil && r.strict {
		if err := sameFile(f, begin, size, from, name); err != nil {
			return err
		}
	}
	if from != nil && !r.strict && (!sameHead(begin, from) || size < from.Offset) {
		r.log.Warn("the file changed since the position was recorded: reading it from its start", "file", name)
		from = nil
	}
	br := bufio.NewReaderSize(f, 64<<10)

	var dec codec.Decoder
	if r.format != "csv" || len(r.columns) > 0 {
		if dec, err = r.decoder(r.columns); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	needHeader := r.format == "csv" && r.header
	r.unlogged = 0
	defer func() {
		if r.unlogged > 0 {
			r.log.Warn("more bad lines", "file", name, "not_logged", r.unlogged, "bad_lines", r.bad.Load())
		}
	}()
	var long []byte
	lineNo := 0
	var offset int64 // bytes consumed
	resumeAt := int64(-1)
	if from != nil && from.Offset > 0 {
		resumeAt = from.Offset
	}
	for {
		if resumeAt >= 0 && !needHeader {
			// Past the header (if any): go on where the position says.
			if _, err := f.Seek(resumeAt, io.SeekStart); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			br.Reset(f)
			offset, lineNo, resumeAt = from.Offset, from.Line, -1
		}
		line, rerr := br.ReadSlice('\n')
		n := int64(len(line))
		tooLong := false
		if rerr == bufio.ErrBufferFull {
			// A line longer than the read buffer: gather it, up to max_line
			// (and its line break). Past that it is a bad line, counted at
			// once, and skipped to its end however long it runs.
			long = append(long[:0], line...)
			for rerr == bufio.ErrBufferFull {
				if r.stopped() {
					return errStop
				}
				if !tooLong && len(long) > r.maxLine+2 {
					tooLong = true
					r.badLine(name, lineNo+1, fmt.Errorf("line longer than %d bytes", r.maxLine))
				}
				line, rerr = br.ReadSlice('\n')
				n += int64(len(line))
				if !tooLong {
					long = append(long, line...)
				}
			}
			line = long
		}
		if rerr != nil && rerr != io.EOF {
			if r.stopped() {
				return errStop
			}
			return fmt.Errorf("%s: %w", name, rerr)
		}
		if len(line) == 0 && rerr == io.EOF {
			return nil
		}
		lineNo++
		offset += n
		if lineNo&63 == 0 && r.stopped() {
			return errStop
		}
		line = bytes.TrimRight(line, "\r\n")
		if lineNo == 1 {
			line = bytes.TrimPrefix(line, []byte("\ufeff"))
		}
		r.lineEnd = filePos{File: path, Offset: offset, Line: lineNo, Head: head, HeadLen: headLen}
		switch {
		case tooLong:
		case len(line) > r.maxLine:
			r.badLine(name, lineNo, fmt.Errorf("line longer than %d bytes", r.maxLine))
		case len(bytes.TrimSpace(line)) == 0:
		case needHeader:
			needHeader = false
			if dec != nil {
				break // the configured columns replace the header
			}
			h, err := codec.ParseCSVHeader(line, r.comma)
			if err == nil {
				dec, err = r.decoder(h)
			}
			if err != nil {
				return fmt.Errorf("%s:%d: header: %w", name, lineNo, err)
			}
		default:
			if err := r.line(dec, line); err != nil {
				if errors.Is(err, errStop) {
					return err
				}
				r.badLine(name, lineNo, err)
			}
		}
		if rerr == io.EOF {
			return nil
		}
	}
}

// open opens a file to read: a regular file, or a named pipe, waiting
// for a writer until the run is stopped. Other files (devices, sockets,
// directories) are refused: reading them would never end or never start.
func (r *run) open(path, name string) (f *os.File, pipe bool, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", name, err)
	}
	switch m := fi.Mode(); {
	case m.IsRegular():
		// Not blocking, should the file have become a pipe since Stat.
		f, err = os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err == nil {
			if fi, err = f.Stat(); err != nil || !fi.Mode().IsRegular() {
				_ = f.Close()
				if err == nil {
					err = fmt.Errorf("changed into %s while opened", spec.FileKind(fi.Mode()))
				}
				return nil, false, fmt.Errorf("%s: %w", name, err)
			}
		}
	case m&fs.ModeNamedPipe != 0 && r.checkpoints:
		return nil, true, fmt.Errorf("%s: a named pipe cannot be read again, so a pipeline that takes checkpoints cannot read it with the file source", name)
	case m&fs.ModeNamedPipe != 0:
		pipe = true
		r.log.Info("waiting for a writer on the named pipe", "file", name)
		f, err = openPipe(r.ctx, path)
		if errors.Is(err, errStop) {
			return nil, true, err
		}
	default:
		return nil, false, fmt.Errorf("%s: not a regular file or a named pipe (%s): the file source reads files", name, spec.FileKind(m))
	}
	if err != nil {
		return nil, pipe, fmt.Errorf("%s: %w", name, err)
	}
	return f, pipe, nil
}

// openPipe opens a named pipe for reading. The open waits for a writer,
// so it runs aside; when ctx is done first, opening the writing end
// without blocking completes the pending open, whose file is closed.
func openPipe(ctx context.Context, path string) (*os.File, error) {
	type opened struct {
		f   *os.File
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		f, err := os.Open(path)
		ch <- opened{f, err}
	}()
	select {
	case o := <-ch:
		return o.f, o.err
	case <-ctx.Done():
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for range 500 { // until the open has started and is completed, at most 5s
		if w, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			_ = w.Close()
		}
		select {
		case o := <-ch:
			if o.f != nil {
				_ = o.f.Close()
			}
			return nil, errStop
		case <-tick.C:
		}
	}
	return nil, errStop // the pipe went away: the open is left waiting
}

// fileHead reads the beginning of f (at most headBytes) and the size of f.
func fileHead(f *os.File) (head []byte, size int64) {
	buf := make([]byte, headBytes)
	n, _ := f.ReadAt(buf, 0)
	if fi, err := f.Stat(); err == nil {
		size = fi.Size()
	}
	return buf[:n], size
}

// sameHead reports whether a file beginning with head is the file pos was
// recorded in: the same first pos.HeadLen bytes (lines appended since do
// not make it another file).
func sameHead(head []byte, pos *filePos) bool {
	want := pos.HeadLen
	switch {
	case want <= 0 || want > headBytes:
		want = min(len(head), headBytes) // recorded without its length: up to 1 KiB
	case len(head) < want:
		return false
	}
	return disk.CRC(head[:want]) == pos.Head
}

// line decodes one payload, waits for it when pacing, and appends it.
func (r *run) line(dec codec.Decoder, line []byte) error {
	n, err := dec.Parse(line, r.key)
	if err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	if r.speed > 0 {
		if err := r.pace(dec.Time(0)); err != nil {
			return err
		}
	}
	if r.rb.Rows() == 0 {
		if r.speed > 0 {
			r.pendingSince = time.Now()
		} else {
			// Replaying as fast as possible fills whole batches: size
			// the columns once instead of growing them row by row.
			r.rb.Reserve(r.batch.Size)
		}
	}
	dec.Append(r.rb)
	r.at, r.sealed = r.lineEnd, false // the batch now holds this line
	if r.rb.Rows() >= r.batch.Size {
		return r.flush()
	}
	return nil
}

// pace waits until event time t is due, flushing pending rows whose
// linger expires meanwhile.
func (r *run) pace(t int64) error {
	if !r.started {
		r.started, r.t0, r.w0 = true, t, time.Now()
	}
	due := r.w0.Add(time.Duration(float64(t-r.t0) * float64(time.Millisecond) / r.speed))
	for {
		now := time.Now()
		wake := due
		if r.rb.Rows() > 0 {
			flushAt := r.pendingSince.Add(r.batch.Linger)
			if !now.Before(flushAt) {
				if err := r.flush(); err != nil {
					return err
				}
				continue
			}
			if flushAt.Before(wake) {
				wake = flushAt
			}
		}
		if !now.Before(due) {
			return nil
		}
		r.timer.Reset(wake.Sub(now))
		select {
		case <-r.done:
			return errStop
		case <-r.timer.C:
		}
	}
}

func (r *run) badLine(name string, lineNo int, err error) {
	r.bad.Add(1)
	if r.logged < maxLogged {
		r.logged++
		r.log.Warn("bad line", "at", fmt.Sprintf("%s:%d", name, lineNo), "reason", err.Error())
		return
	}
	r.unlogged++
}
