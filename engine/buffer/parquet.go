package buffer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"
	"sync"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

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

// segLayout maps a stream schema to the columns of a segment file.
type segLayout struct {
	schema *parquet.Schema
	cols   []int // Parquet column index of each stream field
	seqCol int
	errCol int // -1 for data segments
	meta   string
}

func newSegLayout(s *engine.Schema, dead bool) (*segLayout, error) {
	g := parquet.Group{seqColumn: parquet.Encoded(parquet.Leaf(parquet.Int64Type), &parquet.DeltaBinaryPacked)}
	for _, f := range s.Fields {
		n, err := parquetNode(f.Type)
		if err != nil {
			return nil, err
		}
		g[f.Name] = n
	}
	if dead {
		g[errorColumn] = parquet.Optional(parquet.Encoded(parquet.String(), &parquet.RLEDictionary))
	}
	l := &segLayout{schema: parquet.NewSchema("sluice", g), cols: make([]int, len(s.Fields)), errCol: -1}
	for i, f := range s.Fields {
		lc, ok := l.schema.Lookup(f.Name)
		if !ok {
			return nil, fmt.Errorf("buffer: column %q missing from segment schema", f.Name)
		}
		l.cols[i] = lc.ColumnIndex
	}
	lc, _ := l.schema.Lookup(seqColumn)
	l.seqCol = lc.ColumnIndex
	if dead {
		lc, _ := l.schema.Lookup(errorColumn)
		l.errCol = lc.ColumnIndex
	}
	type jf struct {
		Name string `json:"name"`
		Type string `json:"type"`
	}
	js := struct {
		Fields []jf   `json:"fields"`
		Time   string `json:"time,omitempty"`
		Key    string `json:"key,omitempty"`
	}{Time: s.Time, Key: s.Key}
	for _, f := range s.Fields {
		js.Fields = append(js.Fields, jf{f.Name, f.Type.String()})
	}
	b, err := json.Marshal(js)
	if err != nil {
		return nil, err
	}
	l.meta = string(b)
	return l, nil
}

// zstdCodec is parquet-go's zstd codec with one encoder per buffer instead
// of a pool shared by the process: an encoder is expensive to build (about
// 1 ms and 1.6 MB), and a pool may drop it between pages.
type zstdCodec struct {
	mu     sync.Mutex
	enc    *zstd.Encoder
	closed bool
}

func (c *zstdCodec) String() string                            { return "ZSTD" }
func (c *zstdCodec) CompressionCodec() format.CompressionCodec { return format.Zstd }

func (c *zstdCodec) Encode(dst, src []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return dst[:0], ErrClosed
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

func (c *zstdCodec) Decode(dst, src []byte) ([]byte, error) { return parquet.Zstd.Decode(dst, src) }

func (c *zstdCodec) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.enc != nil {
		_ = c.enc.Close()
		c.enc = nil
	}
}

// crcWriter counts and checksums what passes through it.
type crcWriter struct {
	w   io.Writer
	n   int64
	crc uint32
}

func (c *crcWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.crc = crc32.Update(c.crc, castagnoli, p[:n])
	return n, err
}

// segWriter writes one segment file column by column.
type segWriter struct {
	l    *segLayout
	s    *engine.Schema
	w    *parquet.Writer
	cws  []*parquet.ColumnWriter
	vals []parquet.Value
}

const (
	segChunk = 1024
	// dictMaxBytes bounds each column's dictionary; past it the column
	// switches to PLAIN for the rest of the segment.
	dictMaxBytes = 256 << 10
)

func newSegWriter(out io.Writer, l *segLayout, s *engine.Schema, codec *zstdCodec, first, last uint64) *segWriter {
	w := parquet.NewWriter(out, l.schema,
		parquet.Compression(codec),
		parquet.WriteBufferSize(256<<10),
		parquet.DictionaryMaxBytes(dictMaxBytes),
		parquet.CreatedBy("sluice", "1", ""),
		parquet.KeyValueMetadata("sluice.format", "1"),
		parquet.KeyValueMetadata("sluice.schema", l.meta),
		parquet.KeyValueMetadata("sluice.first_seq", strconv.FormatUint(first, 10)),
		parquet.KeyValueMetadata("sluice.last_seq", strconv.FormatUint(last, 10)),
	)
	return &segWriter{l: l, s: s, w: w, cws: w.ColumnWriters(), vals: make([]parquet.Value, 0, segChunk)}
}

// write appends the rows of rec, the first of which has sequence first.
// errText fills the _error column of dead-letter segments.
func (sw *segWriter) write(rec arrow.RecordBatch, first uint64, errText string) error {
	n := int(rec.NumRows())
	for lo := 0; lo < n; lo += segChunk {
		hi := min(lo+segChunk, n)
		for i := range sw.s.Fields {
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

func (sw *segWriter) column(a arrow.Array, c, lo, hi int) error {
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

// close finishes the file.
func (sw *segWriter) close() error { return sw.w.Close() }

// readSegment decodes a whole segment into one record and checks that it
// holds exactly the sequences first..last in order.
func readSegment(data []byte, l *segLayout, s *engine.Schema, mem memory.Allocator, first, last uint64) (rec arrow.RecordBatch, err error) {
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
		return nil, fmt.Errorf("read segment: %w", err)
	}
	want := int64(last - first + 1)
	if f.NumRows() != want {
		return nil, fmt.Errorf("read segment: %d rows, name says %d", f.NumRows(), want)
	}
	cols := make([]int, len(s.Fields))
	for i, fd := range s.Fields {
		lc, ok := f.Schema().Lookup(fd.Name)
		if !ok {
			return nil, fmt.Errorf("read segment: no column %q", fd.Name)
		}
		want, _ := parquetNode(fd.Type)
		if lc.Node.Type().Kind() != want.Type().Kind() {
			return nil, fmt.Errorf("read segment: column %q is %s, want %s", fd.Name, lc.Node.Type(), want.Type())
		}
		cols[i] = lc.ColumnIndex
	}
	seq, ok := f.Schema().Lookup(seqColumn)
	if !ok {
		return nil, fmt.Errorf("read segment: no %s column", seqColumn)
	}
	rb := array.NewRecordBuilder(mem, s.Arrow())
	defer rb.Release()
	rb.Reserve(int(want))
	vals := make([]parquet.Value, segChunk)
	next := first
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
				return nil, err
			}
		}
		bad := false
		if err := readChunk(chunks[seq.ColumnIndex], vals, func(v parquet.Value) {
			if uint64(v.Int64()) != next {
				bad = true
			}
			next++
		}); err != nil {
			return nil, err
		}
		if bad {
			return nil, fmt.Errorf("read segment: %s does not run from %d to %d", seqColumn, first, last)
		}
	}
	rec = rb.NewRecordBatch()
	for i := range s.Fields {
		if rec.Column(i).Len() != int(want) {
			rec.Release()
			return nil, fmt.Errorf("read segment: column %q has %d values, want %d", s.Fields[i].Name, rec.Column(i).Len(), want)
		}
	}
	return rec, nil
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
