package outbound

import (
	"bytes"
	"fmt"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Arrow schema metadata keys of arrow payloads. They make a payload
// self-describing when it is stored apart from the message metadata: the
// rows' identity is (sluice.edge, sluice.stream, _seq), and row i has
// sequence first_seq+i.
const (
	ArrowMetaEdge     = "sluice.edge"
	ArrowMetaStream   = "sluice.stream"
	ArrowMetaFirstSeq = "sluice.first_seq"
	ArrowMetaBackfill = "sluice.backfill"
	ArrowMetaTime     = "sluice.time"
	ArrowMetaKey      = "sluice.key"
)

// SeqColumn is the column arrow payloads add to the stream's: the row's
// sequence (int64), so that every row carries its identity.
const SeqColumn = "_seq"

// encodeArrow writes rows lo..hi of the entry as an Arrow IPC stream: the
// schema (with the sluice.* metadata), one record batch with the stream's
// columns and _seq, and the end-of-stream marker.
func (e *Encoder) encodeArrow(p *plan, en Entry, lo, hi int) ([]byte, error) {
	mem := e.Mem
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	rec := en.Rec
	if lo != 0 || hi != int(rec.NumRows()) {
		rec = rec.NewSlice(int64(lo), int64(hi))
		defer rec.Release()
	}
	keys := []string{ArrowMetaEdge, ArrowMetaStream, ArrowMetaFirstSeq, ArrowMetaBackfill, ArrowMetaTime, ArrowMetaKey}
	vals := []string{e.Edge, e.Stream, strconv.FormatUint(en.First+uint64(lo), 10), strconv.FormatBool(en.Backfill), p.timeName, p.keyName}
	md := arrow.NewMetadata(keys, vals)
	fields := append(p.arrow.Fields(), arrow.Field{Name: SeqColumn, Type: arrow.PrimitiveTypes.Int64})
	schema := arrow.NewSchema(fields, &md)
	sb := array.NewInt64Builder(mem)
	sb.Reserve(int(rec.NumRows()))
	first := int64(en.First) + int64(lo)
	for i := range rec.NumRows() {
		sb.UnsafeAppend(first + i)
	}
	seqs := sb.NewArray()
	sb.Release()
	defer seqs.Release()
	cols := append(append(make([]arrow.Array, 0, len(fields)), rec.Columns()...), seqs)
	out := array.NewRecordBatch(schema, cols, rec.NumRows())
	defer out.Release()

	var buf bytes.Buffer
	buf.Grow(arrowSizeHint(rec))
	w := ipc.NewWriter(&buf, ipc.WithSchema(schema), ipc.WithAllocator(mem))
	if err := w.Write(out); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("outbound: arrow encode: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("outbound: arrow encode: %w", err)
	}
	return buf.Bytes(), nil
}

// arrowSizeHint estimates the IPC size of rec: its column bytes, padding
// and the schema and batch headers.
func arrowSizeHint(rec arrow.RecordBatch) int {
	n := 512 + 160*int(rec.NumCols())
	rows := int(rec.NumRows())
	for _, c := range rec.Columns() {
		n += rows/8 + 16 // validity
		switch a := c.(type) {
		case *array.String:
			n += 4*rows + 8 + len(a.ValueBytes())
		case *array.Boolean:
			n += rows/8 + 8
		default:
			if fw, ok := c.DataType().(arrow.FixedWidthDataType); ok {
				n += rows*fw.BitWidth()/8 + 8
			}
		}
	}
	return n
}
