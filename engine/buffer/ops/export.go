package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/disk"
	"github.com/sluice-edge/sluice/engine/outbound"
)

// Metadata keys of exported files, beside the segment keys (sluice.format,
// sluice.schema, sluice.first_seq, sluice.last_seq).
const (
	MetaEdge   = "sluice.edge"
	MetaStream = "sluice.stream"
	MetaExport = "sluice.export"
)

// StatusDir inspects dir (read only) and summarises it.
func StatusDir(dir string) (*Status, error) {
	in, err := buffer.Inspect(dir, buffer.InspectOptions{})
	if err != nil {
		return nil, err
	}
	return StatusOf(in, nowFunc()), nil
}

// ExportOptions select and label the rows to export.
type ExportOptions struct {
	// Edge and Stream name the rows' origin; they form the message IDs
	// on replay. By default they are the identity the buffer records
	// (buffer.Buffer.Identity), which the engine publishes under; set
	// them only for a buffer that records none.
	Edge, Stream string
	// FromSeq and ToSeq bound the sequences (0: unbounded).
	FromSeq, ToSeq uint64
	// Since and Until bound the event times, Since included and Until
	// excluded (zero: unbounded). Rows without an event time are kept
	// only when both are zero.
	Since, Until time.Time
	// RowsPerFile caps the rows of one file (default 1,048,576); files
	// end where a message ends, so a file may hold one message more.
	RowsPerFile int64
	SchemaOptions
	// Progress, when set, is called after each file with the rows
	// exported, the backlog rows the selection may cover at most, and the
	// bytes of the files written.
	Progress func(done, total, bytes int64)
	// Log receives the buffer's log (default: discarded).
	Log *slog.Logger
}

// ExportFile is one exported file.
type ExportFile struct {
	Name    string    `json:"name"`
	First   uint64    `json:"first_seq"`
	Last    uint64    `json:"last_seq"`
	Rows    int64     `json:"rows"`
	Bytes   int64     `json:"bytes"`
	MinTime time.Time `json:"min_time,omitzero"`
	MaxTime time.Time `json:"max_time,omitzero"`
}

// ExportReport lists what an export wrote; it is also written to the
// output directory as export-<edge>-<stream>-<first>-<last>.json.
type ExportReport struct {
	Dir     string       `json:"dir"`
	Edge    string       `json:"edge"`
	Stream  string       `json:"stream"`
	Schema  string       `json:"schema"`
	Cursor  uint64       `json:"cursor"`
	Rows    int64        `json:"rows"`
	Bytes   int64        `json:"bytes"`
	Files   []ExportFile `json:"files"`
	Skipped []string     `json:"corruption,omitempty"`
}

// Export writes the undelivered rows of the buffer in dir selected by opts
// to Parquet files in out, one consecutive run of sequences per file, each
// a plain zstd Parquet file with the segment columns (_seq and _msg
// included) and the metadata sluice.edge, sluice.stream, sluice.schema,
// sluice.first_seq and sluice.last_seq that Replay needs. Selection is by
// message: a message with any selected row is exported whole, so that a
// replay cuts the messages the forwarder cuts, with the same IDs. Files are
// published atomically (written as .tmp, synced, renamed). Export opens the
// buffer read-only: it changes nothing in dir (works on a full disk), takes
// the buffer's lock shared (it fails while an engine has the buffer open),
// and the rows stay in the buffer.
func Export(ctx context.Context, dir, out string, opts ExportOptions) (*ExportReport, error) {
	if opts.RowsPerFile <= 0 {
		opts.RowsPerFile = 1 << 20
	}
	in, err := buffer.Inspect(dir, buffer.InspectOptions{})
	if err != nil {
		return nil, err
	}
	s, err := resolveSchema(in, opts.SchemaOptions)
	if err != nil {
		return nil, err
	}
	if in.Meta != nil {
		if opts.Edge == "" {
			opts.Edge = in.Meta.Edge
		}
		if opts.Stream == "" {
			opts.Stream = in.Meta.Stream
		}
	}
	if err := outbound.CheckName(opts.Edge); err != nil {
		return nil, fmt.Errorf("export: edge: %w (the buffer records none: pass --edge)", err)
	}
	if err := outbound.CheckName(opts.Stream); err != nil {
		return nil, fmt.Errorf("export: stream: %w (the buffer records none: pass --stream)", err)
	}
	timeIdx := s.TimeIndex()
	byTime := !opts.Since.IsZero() || !opts.Until.IsZero()
	if byTime && timeIdx < 0 {
		return nil, fmt.Errorf("export: the stream has no event-time column to select by")
	}
	total := StatusOf(in, nowFunc()).BacklogRows
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rep := &ExportReport{Dir: dir, Edge: opts.Edge, Stream: opts.Stream, Schema: s.String()}
	b, err := buffer.Open(dir, buffer.Options{
		Schema: s, ReadOnly: true, ManualSeal: true, IdleSeal: -1, Log: log,
		OnCorruption: func(ce *buffer.CorruptionError) { rep.Skipped = append(rep.Skipped, ce.Error()) },
	})
	if err != nil {
		return nil, err
	}
	defer b.Close()
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	rep.Cursor = b.Cursor()
	schemaJSON, err := disk.SchemaJSON(s)
	if err != nil {
		return nil, err
	}
	fw := &fileWriter{out: out, opts: opts, meta: map[string]string{
		MetaEdge: opts.Edge, MetaStream: opts.Stream, MetaExport: "1", "sluice.schema": schemaJSON,
	}, s: s, timeIdx: timeIdx, rep: rep, total: total}
	defer fw.abort()
	// No seek to FromSeq: it may fall inside a message, which is exported
	// whole; entries before it are read and skipped by the selection.
	poll, cancel := context.WithCancel(context.Background())
	cancel()
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e, err := b.Next(poll)
		if errors.Is(err, context.Canceled) {
			break
		}
		if err != nil {
			return nil, err
		}
		err = fw.entry(e, byTime)
		e.Rec.Release()
		if err != nil {
			return nil, err
		}
		if opts.ToSeq != 0 && e.Last() >= opts.ToSeq {
			break
		}
	}
	if err := fw.finishFile(); err != nil {
		return nil, err
	}
	if opts.Progress != nil {
		opts.Progress(rep.Rows, rep.Rows, rep.Bytes)
	}
	if len(rep.Files) > 0 {
		data, _ := json.MarshalIndent(rep, "", "  ")
		name := fmt.Sprintf("export-%s-%s-%d-%d.json", opts.Edge, opts.Stream, rep.Files[0].First, rep.Files[len(rep.Files)-1].Last)
		if err := writeAtomic(filepath.Join(out, name), append(data, '\n')); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// fileWriter cuts the selected messages into files of consecutive
// sequences.
type fileWriter struct {
	out     string
	opts    ExportOptions
	meta    map[string]string
	s       *engine.Schema
	timeIdx int
	rep     *ExportReport
	total   int64

	f       *os.File
	tmp     string
	sw      *disk.SegmentWriter
	cur     ExportFile
	nextSeq uint64
}

// entry writes the selected messages of e.
func (fw *fileWriter) entry(e buffer.Entry, byTime bool) error {
	n := uint64(e.Rec.NumRows())
	starts := e.Starts
	if starts == nil {
		starts = []uint64{e.First} // no boundaries recorded: one run
	}
	var ts *array.Timestamp
	if fw.timeIdx >= 0 {
		ts, _ = e.Rec.Column(fw.timeIdx).(*array.Timestamp)
	}
	opts := fw.opts
	keep := func(seq uint64) bool {
		if seq < opts.FromSeq || (opts.ToSeq != 0 && seq > opts.ToSeq) {
			return false
		}
		i := int(seq - e.First)
		if ts == nil || ts.IsNull(i) {
			return !byTime
		}
		if byTime {
			t := time.UnixMilli(int64(ts.Value(i)))
			if (!opts.Since.IsZero() && t.Before(opts.Since)) || (!opts.Until.IsZero() && !t.Before(opts.Until)) {
				return false
			}
		}
		return true
	}
	// Consecutive selected messages (starts[from:k]) are written in one
	// piece: write flushes them.
	from := -1
	write := func(k int) error {
		if from < 0 {
			return nil
		}
		lo, hi := starts[from], e.First+n
		if k < len(starts) {
			hi = starts[k]
		}
		var ms []uint64
		if e.Starts != nil {
			ms = starts[from:k]
		}
		from = -1
		part := e.Rec.NewSlice(int64(lo-e.First), int64(hi-e.First))
		err := fw.sw.Write(part, lo, ms)
		if err == nil {
			fw.note(part)
		}
		part.Release()
		if err != nil {
			return err
		}
		fw.cur.Rows += int64(hi - lo)
		fw.cur.Last = hi - 1
		fw.nextSeq = hi
		return nil
	}
	for k, lo := range starts {
		hi := e.First + n // end of the message, exclusive
		if k+1 < len(starts) {
			hi = starts[k+1]
		}
		selected := false
		for seq := lo; seq < hi && !selected; seq++ {
			selected = keep(seq)
		}
		if !selected {
			if err := write(k); err != nil {
				return err
			}
			continue
		}
		pending := int64(0)
		if from >= 0 {
			pending = int64(lo - starts[from])
		}
		if fw.sw != nil && (lo != fw.nextSeq+uint64(pending) || fw.cur.Rows+pending >= fw.opts.RowsPerFile) {
			if err := write(k); err != nil {
				return err
			}
			if err := fw.finishFile(); err != nil {
				return err
			}
		}
		if fw.sw == nil {
			if err := fw.start(lo); err != nil {
				return err
			}
		}
		if from < 0 {
			from = k
		}
	}
	return write(len(starts))
}

func (fw *fileWriter) note(rec arrow.RecordBatch) {
	if fw.timeIdx < 0 {
		return
	}
	lo, hi, ok := disk.TimeRange(rec, fw.timeIdx)
	if !ok {
		return
	}
	if t := time.UnixMilli(lo).UTC(); fw.cur.MinTime.IsZero() || t.Before(fw.cur.MinTime) {
		fw.cur.MinTime = t
	}
	if t := time.UnixMilli(hi).UTC(); t.After(fw.cur.MaxTime) {
		fw.cur.MaxTime = t
	}
}

func (fw *fileWriter) start(first uint64) error {
	f, err := os.CreateTemp(fw.out, ".export-*.parquet.tmp")
	if err != nil {
		return err
	}
	sw, err := disk.NewSegmentWriter(f, fw.s, fw.meta)
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	fw.f, fw.tmp, fw.sw = f, f.Name(), sw
	fw.cur, fw.nextSeq = ExportFile{First: first}, first
	return nil
}

func (fw *fileWriter) finishFile() error {
	if fw.sw == nil {
		return nil
	}
	sw, f := fw.sw, fw.f
	fw.sw, fw.f = nil, nil
	if err := sw.Close(); err != nil {
		f.Close()
		os.Remove(fw.tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(fw.tmp)
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		os.Remove(fw.tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(fw.tmp)
		return err
	}
	fw.cur.Name = fmt.Sprintf("%s_%s_%020d-%020d.parquet", fw.opts.Edge, fw.opts.Stream, fw.cur.First, fw.cur.Last)
	fw.cur.Bytes = fi.Size()
	if err := os.Rename(fw.tmp, filepath.Join(fw.out, fw.cur.Name)); err != nil {
		os.Remove(fw.tmp)
		return err
	}
	if err := syncDir(fw.out); err != nil {
		return err
	}
	fw.rep.Files = append(fw.rep.Files, fw.cur)
	fw.rep.Rows += fw.cur.Rows
	fw.rep.Bytes += fw.cur.Bytes
	if fw.opts.Progress != nil {
		fw.opts.Progress(fw.rep.Rows, max(fw.total, fw.rep.Rows), fw.rep.Bytes)
	}
	return nil
}

// abort removes a file left unfinished by an error.
func (fw *fileWriter) abort() {
	if fw.sw != nil {
		fw.f.Close()
		os.Remove(fw.tmp)
		fw.sw = nil
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

func writeAtomic(name string, data []byte) error {
	tmp := name + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		return err
	}
	return syncDir(filepath.Dir(name))
}
