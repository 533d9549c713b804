package disk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"sync"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
	pqformat "github.com/parquet-go/parquet-go/format"

	"github.com/sluice-edge/sluice/engine"
)

// parquetNode returns the Parquet column of an engine type
// (docs/format/buffer.md 4).
func parquetNode(t engine.Type) (parquet.Node, error) {
	switch t {
	case engine.Timestamp:
		return parquet.Optional(parquet.Encoded(parquet.Timestamp(parquet.Millisecond), &parquet.DeltaBinaryPacked)), nil
	case engine.Float64:
		// Sensor values repeat (a reading has few significant digits):
		// a dictionary beats BYTE_STREAM_SPLIT and PLAIN by far on them,
		// and falls back to PLAIN past dictMaxBytes.
		return parquet.Optional(parquet.Encoded(parquet.Leaf(parquet.DoubleType), &parquet.RLEDictionary)), nil
	case engine.Int64:
		return parquet.Optional(parquet.Encoded(parquet.Leaf(parquet.Int64Type), &parquet.DeltaBinaryPacked)), nil
	case engine.String:
		return parquet.Optional(parquet.Encoded(parquet.String(), &parquet.RLEDictionary)), nil
	case engine.Bool:
		return parquet.Optional(parquet.Leaf(parquet.BooleanType)), nil
	}
	return nil, fmt.Errorf("buffer: no Parquet column for type %s", t)
}

// CheckSchema reports whether a stream schema can be stored: every type
// has a column and no field takes a name the segments add.
func CheckSchema(s *engine.Schema) error {
	for _, f := range s.Fields {
		if f.Name == SeqColumn || f.Name == MsgColumn || f.Name == ErrorColumn {
			return fmt.Errorf("field name %q is reserved", f.Name)
		}
		if _, err := parquetNode(f.Type); err != nil {
			return err
		}
	}
	return nil
}

// Layout maps a stream schema to the columns of a segment file.
type Layout struct {
	schema *parquet.Schema
	stream *engine.Schema
	cols   []int // Parquet column index of each stream field
	seqCol int
	msgCol int
	errCol int // -1 for data segments
	meta   string
}

// NewLayout returns the segment layout of s; dead adds the _error column
// of dead-letter segments.
func NewLayout(s *engine.Schema, dead bool) (*Layout, error) {
	if err := CheckSchema(s); err != nil {
		return nil, fmt.Errorf("buffer: %w", err)
	}
	delta := func() parquet.Node {
		return parquet.Encoded(parquet.Leaf(parquet.Int64Type), &parquet.DeltaBinaryPacked)
	}
	g := parquet.Group{SeqColumn: delta(), MsgColumn: delta()}
	for _, f := range s.Fields {
		n, _ := parquetNode(f.Type)
		g[f.Name] = n
	}
	if dead {
		g[ErrorColumn] = parquet.Optional(parquet.Encoded(parquet.String(), &parquet.RLEDictionary))
	}
	l := &Layout{schema: parquet.NewSchema("sluice", g), stream: s, cols: make([]int, len(s.Fields)), errCol: -1}
	for i, f := range s.Fields {
		lc, _ := l.schema.Lookup(f.Name)
		l.cols[i] = lc.ColumnIndex
	}
	lc, _ := l.schema.Lookup(SeqColumn)
	l.seqCol = lc.ColumnIndex
	lc, _ = l.schema.Lookup(MsgColumn)
	l.msgCol = lc.ColumnIndex
	if dead {
		lc, _ := l.schema.Lookup(ErrorColumn)
		l.errCol = lc.ColumnIndex
	}
	meta, err := SchemaJSON(s)
	if err != nil {
		return nil, err
	}
	l.meta = meta
	return l, nil
}

// Schema returns the stream schema of the layout.
func (l *Layout) Schema() *engine.Schema { return l.stream }

// Codec is parquet-go's zstd codec with one encoder per buffer instead of
// a pool shared by the process: an encoder is expensive to build (about
// 1 ms and 1.6 MB), and a pool may drop it between pages.
type Codec struct {
	mu     sync.Mutex
	enc    *zstd.Encoder
	closed bool
}

// ErrCodecClosed is returned by a closed codec.
var ErrCodecClosed = errors.New("buffer: codec closed")

func (c *Codec) String() string                              { return "ZSTD" }
func (c *Codec) CompressionCodec() pqformat.CompressionCodec { return pqformat.Zstd }

// Encode implements parquet-go's compress.Codec.
func (c *Codec) Encode(dst, src []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return dst[:0], ErrCodecClosed
	}
	if c.enc == nil {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithZeroFrames(true), zstd.WithEncoderCRC(false))
		if err != nil {
			return dst[:0], err
		}
		c.enc = enc
	}
	return c.enc.EncodeAll(src, dst[:0]), nil
}

// Decode implements parquet-go's compress.Codec.
func (c *Codec) Decode(dst, src []byte) ([]byte, error) { return parquet.Zstd.Decode(dst, src) }

// Close releases the encoder; later Encode calls fail.
func (c *Codec) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.enc != nil {
		_ = c.enc.Close()
		c.enc = nil
	}
}

// CRCWriter counts and checksums what passes through it.
type CRCWriter struct {
	W   io.Writer
	N   int64
	CRC uint32
}

func (c *CRCWriter) Write(p []byte) (int, error) {
	n, err := c.W.Write(p)
	c.N += int64(n)
	c.CRC = UpdateCRC(c.CRC, p[:n])
	return n, err
}

// SegWriter writes one segment file column by column.
type SegWriter struct {
	l    *Layout
	w    *parquet.Writer
	cws  []*parquet.ColumnWriter
	vals []parquet.Value
	msgs []int64
}

const (
	segChunk = 1024
	// dictMaxBytes bounds each column's dictionary; past it the column
	// switches to PLAIN for the rest of the segment.
	dictMaxBytes = 256 << 10
)

// NewSegWriter starts a segment of rows first..last on out. meta is added
// to the key/value metadata.
func NewSegWriter(out io.Writer, l *Layout, codec *Codec, first, last uint64, meta map[string]string) *SegWriter {
	opts := []parquet.WriterOption{
		l.schema,
		parquet.Compression(codec),
		parquet.WriteBufferSize(256 << 10),
		parquet.DictionaryMaxBytes(dictMaxBytes),
		parquet.CreatedBy("sluice", strconv.Itoa(Version), ""),
		parquet.KeyValueMetadata("sluice.format", strconv.Itoa(Version)),
		parquet.KeyValueMetadata("sluice.schema", l.meta),
		parquet.KeyValueMetadata("sluice.first_seq", strconv.FormatUint(first, 10)),
		parquet.KeyValueMetadata("sluice.last_seq", strconv.FormatUint(last, 10)),
	}
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		opts = append(opts, parquet.KeyValueMetadata(k, meta[k]))
	}
	w := parquet.NewWriter(out, opts...)
	return &SegWriter{l: l, w: w, cws: w.ColumnWriters(), vals: make([]parquet.Value, 0, segChunk)}
}

// SetMeta sets a key/value metadata entry (before Close).
func (sw *SegWriter) SetMeta(k, v string) { sw.w.SetKeyValueMetadata(k, v) }

// Write appends the rows of rec, the first of which has sequence first.
// starts lists the sequences in the rows' range at which a message
// starts (the first row always starts one); errText fills the _error
// column of dead-letter segments.
func (sw *SegWriter) Write(rec arrow.RecordBatch, first uint64, starts []uint64, errText string) error {
	n := int(rec.NumRows())
	// _msg of every row: the latest start at or before it.
	sw.msgs = sw.msgs[:0]
	msg, k := first, 0
	for r := range n {
		seq := first + uint64(r)
		for k < len(starts) && starts[k] <= seq {
			msg = starts[k]
			k++
		}
		sw.msgs = append(sw.msgs, int64(msg))
	}
	for lo := 0; lo < n; lo += segChunk {
		hi := min(lo+segChunk, n)
		for i := range sw.l.stream.Fields {
			if err := sw.column(rec.Column(i), sw.l.cols[i], lo, hi); err != nil {
				return err
			}
		}
		c := sw.l.seqCol
		v := sw.vals[:0]
		for r := lo; r < hi; r++ {
			v = append(v, parquet.Int64Value(int64(first+uint64(r))).Level(0, 0, c))
		}
		if _, err := sw.cws[c].WriteRowValues(v); err != nil {
			return err
		}
		c = sw.l.msgCol
		v = v[:0]
		for r := lo; r < hi; r++ {
			v = append(v, parquet.Int64Value(sw.msgs[r]).Level(0, 0, c))
		}
		if _, err := sw.cws[c].WriteRowValues(v); err != nil {
			return err
		}
		if c = sw.l.errCol; c >= 0 {
			v = v[:0]
			for r := lo; r < hi; r++ {
				v = append(v, parquet.ByteArrayValue(unsafeBytes(errText)).Level(0, 1, c))
			}
			if _, err := sw.cws[c].WriteRowValues(v); err != nil {
				return err
			}
		}
	}
	return nil
}

func unsafeBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

func (sw *SegWriter) column(a arrow.Array, c, lo, hi int) error {
	v := sw.vals[:0]
	nulls := a.NullN() > 0
	null := parquet.NullValue().Level(0, 0, c)
	switch a := a.(type) {
	case *array.Float64:
		for r := lo; r < hi; r++ {
			if nulls && a.IsNull(r) {
				v = append(v, null)
			} else {
				v = append(v, parquet.DoubleValue(a.Value(r)).Level(0, 1, c))
			}
		}
	case *array.Int64:
		for r := lo; r < hi; r++ {
			if nulls && a.IsNull(r) {
				v = append(v, null)
			} else {
				v = append(v, parquet.Int64Value(a.Value(r)).Level(0, 1, c))
			}
		}
	case *array.Timestamp:
		for r := lo; r < hi; r++ {
			if nulls && a.IsNull(r) {
				v = append(v, null)
			} else {
				v = append(v, parquet.Int64Value(int64(a.Value(r))).Level(0, 1, c))
			}
		}
	case *array.String:
		for r := lo; r < hi; r++ {
			if nulls && a.IsNull(r) {
				v = append(v, null)
			} else {
				v = append(v, parquet.ByteArrayValue(unsafeBytes(a.Value(r))).Level(0, 1, c))
			}
		}
	case *array.Boolean:
		for r := lo; r < hi; r++ {
			if nulls && a.IsNull(r) {
				v = append(v, null)
			} else {
				v = append(v, parquet.BooleanValue(a.Value(r)).Level(0, 1, c))
			}
		}
	default:
		return fmt.Errorf("buffer: unsupported Arrow column type %s", a.DataType())
	}
	_, err := sw.cws[c].WriteRowValues(v)
	return err
}

// Close finishes the file.
func (sw *SegWriter) Close() error { return sw.w.Close() }

// ReadSegment decodes a whole segment into one record and checks that it
// holds exactly the sequences first..last in order. starts lists the
// sequences at which messages start (the first is always first); it is
// nil for a file without the _msg column (version 1). s is the stream
// schema; the added columns are found by name.
func ReadSegment(data []byte, s *engine.Schema, mem memory.Allocator, first, last uint64) (rec arrow.RecordBatch, starts []uint64, err error) {
	defer func() {
		if p := recover(); p != nil {
			if rec != nil {
				rec.Release()
				rec = nil
			}
			err = fmt.Errorf("read segment: %v", p)
		}
	}()
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, nil, fmt.Errorf("read segment: %w", err)
	}
	want := int64(last - first + 1)
	if f.NumRows() != want {
		return nil, nil, fmt.Errorf("read segment: %d rows, name says %d", f.NumRows(), want)
	}
	cols := make([]int, len(s.Fields))
	for i, fd := range s.Fields {
		lc, ok := f.Schema().Lookup(fd.Name)
		if !ok {
			return nil, nil, fmt.Errorf("read segment: no column %q", fd.Name)
		}
		want, _ := parquetNode(fd.Type)
		if lc.Node.Type().Kind() != want.Type().Kind() {
			return nil, nil, fmt.Errorf("read segment: column %q is %s, want %s", fd.Name, lc.Node.Type(), want.Type())
		}
		cols[i] = lc.ColumnIndex
	}
	seq, ok := f.Schema().Lookup(SeqColumn)
	if !ok {
		return nil, nil, fmt.Errorf("read segment: no %s column", SeqColumn)
	}
	msgCol, framed := f.Schema().Lookup(MsgColumn)
	rb := array.NewRecordBuilder(mem, s.Arrow())
	defer rb.Release()
	rb.Reserve(int(want))
	vals := make([]parquet.Value, segChunk)
	next := first
	if framed {
		starts = make([]uint64, 0, 8)
	}
	nextMsg, prevMsg := first, uint64(0)
	for _, rg := range f.RowGroups() {
		chunks := rg.ColumnChunks()
		for i := range s.Fields {
			b := rb.Field(i)
			if err := readChunk(chunks[cols[i]], vals, func(v parquet.Value) {
				if v.IsNull() {
					b.AppendNull()
					return
				}
				switch b := b.(type) {
				case *array.Float64Builder:
					b.Append(v.Double())
				case *array.Int64Builder:
					b.Append(v.Int64())
				case *array.TimestampBuilder:
					b.Append(arrow.Timestamp(v.Int64()))
				case *array.StringBuilder:
					b.BinaryBuilder.Append(v.ByteArray())
				case *array.BooleanBuilder:
					b.Append(v.Boolean())
				}
			}); err != nil {
				return nil, nil, err
			}
		}
		bad := false
		if err := readChunk(chunks[seq.ColumnIndex], vals, func(v parquet.Value) {
			if uint64(v.Int64()) != next {
				bad = true
			}
			next++
		}); err != nil {
			return nil, nil, err
		}
		if bad {
			return nil, nil, fmt.Errorf("read segment: %s does not run from %d to %d", SeqColumn, first, last)
		}
		if framed {
			// Every row's _msg is its own sequence (a message starts) or
			// the previous row's; the first row's may lie before first.
			if err := readChunk(chunks[msgCol.ColumnIndex], vals, func(v parquet.Value) {
				m, row := uint64(v.Int64()), nextMsg
				nextMsg++
				switch {
				case m == row:
					starts = append(starts, row)
				case row == first && m < first:
				case row > first && m == prevMsg:
				default:
					bad = true
				}
				prevMsg = m
			}); err != nil {
				return nil, nil, err
			}
			if bad {
				return nil, nil, fmt.Errorf("read segment: bad %s column", MsgColumn)
			}
		}
	}
	if framed && (len(starts) == 0 || starts[0] != first) {
		starts = append([]uint64{first}, starts...)
	}
	rec = rb.NewRecordBatch()
	for i := range s.Fields {
		if rec.Column(i).Len() != int(want) {
			rec.Release()
			return nil, nil, fmt.Errorf("read segment: column %q has %d values, want %d", s.Fields[i].Name, rec.Column(i).Len(), want)
		}
	}
	return rec, starts, nil
}

func readChunk(cc parquet.ColumnChunk, vals []parquet.Value, fn func(parquet.Value)) error {
	pages := cc.Pages()
	defer pages.Close()
	for {
		p, err := pages.ReadPage()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read segment: %w", err)
		}
		r := p.Values()
		for {
			n, err := r.ReadValues(vals)
			for _, v := range vals[:n] {
				fn(v)
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				parquet.Release(p)
				return fmt.Errorf("read segment: %w", err)
			}
		}
		parquet.Release(p)
	}
}

// SchemaFromArrow builds the engine schema of an Arrow schema written by a
// buffer. The first timestamp column is taken as the event time; the key
// column is not recorded in Arrow schemas and is left empty.
func SchemaFromArrow(as *arrow.Schema) (*engine.Schema, error) {
	var fields []engine.Field
	timeName := ""
	for _, f := range as.Fields() {
		var t engine.Type
		for _, c := range []engine.Type{engine.Float64, engine.Int64, engine.String, engine.Bool, engine.Timestamp} {
			if arrow.TypeEqual(c.Arrow(), f.Type) {
				t = c
				break
			}
		}
		if t == engine.Invalid {
			return nil, fmt.Errorf("buffer: column %q has unsupported type %s", f.Name, f.Type)
		}
		if t == engine.Timestamp && timeName == "" {
			timeName = f.Name
		}
		fields = append(fields, engine.Field{Name: f.Name, Type: t})
	}
	return engine.NewSchema(fields, timeName, "")
}

type schemaJSON struct {
	Fields []fieldJSON `json:"fields"`
	Time   string      `json:"time,omitempty"`
	Key    string      `json:"key,omitempty"`
}

type fieldJSON struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// ParseSchemaJSON parses the sluice.schema metadata of a segment:
// {"fields":[{"name":..,"type":..}],"time":..,"key":..}.
func ParseSchemaJSON(s string) (*engine.Schema, error) {
	var js schemaJSON
	if err := json.Unmarshal([]byte(s), &js); err != nil {
		return nil, fmt.Errorf("buffer: schema metadata: %w", err)
	}
	fields := make([]engine.Field, len(js.Fields))
	for i, f := range js.Fields {
		t, err := engine.ParseType(f.Type)
		if err != nil {
			return nil, fmt.Errorf("buffer: schema metadata: field %q: %w", f.Name, err)
		}
		fields[i] = engine.Field{Name: f.Name, Type: t}
	}
	return engine.NewSchema(fields, js.Time, js.Key)
}

// SchemaJSON renders a schema as the sluice.schema metadata of segments.
func SchemaJSON(s *engine.Schema) (string, error) {
	js := schemaJSON{Time: s.Time, Key: s.Key}
	for _, f := range s.Fields {
		js.Fields = append(js.Fields, fieldJSON{f.Name, f.Type.String()})
	}
	b, err := json.Marshal(js)
	return string(b), err
}

// SegmentSchema reads the stream schema from the metadata of a segment
// file (or of any Parquet file written in the segment layout).
func SegmentSchema(fsys FS, name string) (*engine.Schema, error) {
	if fsys == nil {
		fsys = OS
	}
	f, err := fsys.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	pf, err := parquet.OpenFile(f, size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return nil, fmt.Errorf("buffer: %s: %w", name, err)
	}
	meta, ok := pf.Lookup("sluice.schema")
	if !ok {
		return nil, fmt.Errorf("buffer: %s: no sluice.schema metadata", name)
	}
	return ParseSchemaJSON(meta)
}

// SegmentWriter writes rows in the segment layout of docs/format/buffer.md
// section 4 (zstd Parquet, one column per field plus _seq and _msg,
// sluice.* metadata) to any writer, for exports: the result is a plain
// Parquet file.
type SegmentWriter struct {
	sw    *SegWriter
	codec *Codec
	first uint64
	last  uint64
	rows  int64
}

// NewSegmentWriter starts a segment file on w. meta is added to the
// key/value metadata; sluice.first_seq and sluice.last_seq are set by
// Close from the rows written.
func NewSegmentWriter(w io.Writer, s *engine.Schema, meta map[string]string) (*SegmentWriter, error) {
	l, err := NewLayout(s, false)
	if err != nil {
		return nil, err
	}
	codec := new(Codec)
	return &SegmentWriter{sw: NewSegWriter(w, l, codec, 0, 0, meta), codec: codec}, nil
}

// Write appends the rows of rec; row i has sequence first+i and starts
// lists the sequences at which messages start (see SegWriter.Write).
// Sequences must increase from one call to the next.
func (w *SegmentWriter) Write(rec arrow.RecordBatch, first uint64, starts []uint64) error {
	n := rec.NumRows()
	if n == 0 {
		return nil
	}
	if w.rows > 0 && first <= w.last {
		return fmt.Errorf("buffer: segment writer: sequence %d does not follow %d", first, w.last)
	}
	if err := w.sw.Write(rec, first, starts, ""); err != nil {
		return err
	}
	if w.rows == 0 {
		w.first = first
	}
	w.last = first + uint64(n) - 1
	w.rows += n
	return nil
}

// Rows returns the rows written so far.
func (w *SegmentWriter) Rows() int64 { return w.rows }

// Close sets the sequence metadata and finishes the file.
func (w *SegmentWriter) Close() error {
	defer w.codec.Close()
	w.sw.SetMeta("sluice.first_seq", strconv.FormatUint(w.first, 10))
	w.sw.SetMeta("sluice.last_seq", strconv.FormatUint(w.last, 10))
	return w.sw.Close()
}

// SegmentFile is a Parquet file in the segment layout read back whole.
type SegmentFile struct {
	Schema *engine.Schema
	// Meta is the key/value metadata.
	Meta map[string]string
	// First is the sequence of the first row; rows are consecutive.
	First uint64
	// Rec holds the rows; the caller releases it. Nil for an empty file.
	Rec arrow.RecordBatch
	// Starts lists the sequences at which messages start; nil for files
	// written before message boundaries were recorded (version 1).
	Starts []uint64
}

// ReadSegmentFile decodes a Parquet file in the segment layout holding
// consecutive sequences (a segment or an export). The schema comes from
// the sluice.schema metadata and the range from sluice.first_seq and
// sluice.last_seq; the _seq column must match them.
func ReadSegmentFile(data []byte, mem memory.Allocator) (*SegmentFile, error) {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	pf, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("buffer: read segment file: %w", err)
	}
	meta := map[string]string{}
	for _, kv := range pf.Metadata().KeyValueMetadata {
		meta[kv.Key] = kv.Value
	}
	js, ok := meta["sluice.schema"]
	if !ok {
		return nil, errors.New("buffer: read segment file: no sluice.schema metadata")
	}
	s, err := ParseSchemaJSON(js)
	if err != nil {
		return nil, err
	}
	out := &SegmentFile{Schema: s, Meta: meta}
	if pf.NumRows() == 0 {
		return out, nil
	}
	first, err1 := strconv.ParseUint(meta["sluice.first_seq"], 10, 64)
	last, err2 := strconv.ParseUint(meta["sluice.last_seq"], 10, 64)
	if err1 != nil || err2 != nil || first == 0 || last < first {
		return nil, errors.New("buffer: read segment file: bad sluice.first_seq or sluice.last_seq metadata")
	}
	rec, starts, err := ReadSegment(data, s, mem, first, last)
	if err != nil {
		return nil, fmt.Errorf("buffer: %w", err)
	}
	out.First, out.Rec, out.Starts = first, rec, starts
	return out, nil
}
