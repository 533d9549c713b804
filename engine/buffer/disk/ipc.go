package disk

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// ipcEOS is the end-of-stream marker of the Arrow IPC stream format.
var ipcEOS = []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}

// SchemaMessage returns the IPC stream bytes of the schema message, the
// prefix of every WAL record payload of that schema.
func SchemaMessage(s *arrow.Schema) ([]byte, error) {
	p := ipc.GetSchemaPayload(s, memory.DefaultAllocator)
	defer p.Release()
	var w AppendWriter
	if _, err := p.WritePayload(&w); err != nil {
		return nil, err
	}
	return w.b, nil
}

// AppendWriter is an io.Writer appending to a byte slice.
type AppendWriter struct{ b []byte }

func (w *AppendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// RecordBufs pools the writers EncodeRecord fills.
var RecordBufs = sync.Pool{New: func() any { return new(AppendWriter) }}

// EncodeRecord returns a WAL record for rec: RecHeaderSize bytes reserved
// for the header (see PutRecHeader), then the IPC stream (schema message,
// one record batch, EOS). The bytes live in w until its next use.
func EncodeRecord(w *AppendWriter, schemaMsg []byte, rec arrow.RecordBatch) ([]byte, error) {
	w.b = append(w.b[:0], make([]byte, RecHeaderSize)...)
	w.b = append(w.b, schemaMsg...)
	p, err := ipc.GetRecordBatchPayload(rec, ipc.WithAllocator(memory.DefaultAllocator))
	if err != nil {
		return nil, fmt.Errorf("buffer: encode record: %w", err)
	}
	_, err = p.WritePayload(w)
	p.Release()
	if err != nil {
		return nil, fmt.Errorf("buffer: encode record: %w", err)
	}
	w.b = append(w.b, ipcEOS...)
	return w.b, nil
}

// DecodeRecord decodes the IPC stream of one record batch (a WAL record
// payload) and checks its schema.
func DecodeRecord(payload []byte, want *arrow.Schema, mem memory.Allocator) (rec arrow.RecordBatch, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("decode record: %v", p)
		}
	}()
	r, err := ipc.NewReader(bytes.NewReader(payload), ipc.WithAllocator(mem))
	if err != nil {
		return nil, fmt.Errorf("decode record: %w", err)
	}
	defer r.Release()
	if !r.Schema().Equal(want) {
		return nil, fmt.Errorf("decode record: schema %s differs from the buffer's", r.Schema())
	}
	if !r.Next() {
		if r.Err() != nil {
			return nil, fmt.Errorf("decode record: %w", r.Err())
		}
		return nil, fmt.Errorf("decode record: no record batch in payload")
	}
	rec = r.RecordBatch()
	rec.Retain()
	return rec, nil
}

// TimeRange returns the minimum and maximum non-null value of the
// timestamp column col of rec (col < 0: none).
func TimeRange(rec arrow.RecordBatch, col int) (lo, hi int64, ok bool) {
	if col < 0 {
		return 0, 0, false
	}
	a, isTS := rec.Column(col).(*array.Timestamp)
	if !isTS {
		return 0, 0, false
	}
	vals := a.TimestampValues()
	nulls := a.NullN() > 0
	for i, v := range vals {
		if nulls && a.IsNull(i) {
			continue
		}
		t := int64(v)
		if !ok {
			lo, hi, ok = t, t, true
			continue
		}
		lo = min(lo, t)
		hi = max(hi, t)
	}
	return lo, hi, ok
}

// RecordSchema returns the schema of a WAL record payload.
func RecordSchema(payload []byte) (s *arrow.Schema, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("decode schema: %v", p)
		}
	}()
	r, err := ipc.NewReader(bytes.NewReader(payload), ipc.WithAllocator(memory.DefaultAllocator))
	if err != nil {
		return nil, err
	}
	defer r.Release()
	return r.Schema(), nil
}
