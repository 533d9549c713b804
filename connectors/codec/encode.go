package codec

import (
	"bufio"
	"io"

	"github.com/sluice-edge/sluice/engine/jsonenc"

	"github.com/apache/arrow-go/v18/arrow"
)

// AppendJSONRow appends row `row` of rec as one JSON object, with the
// columns in schema order. It is the one JSON encoding of rows that sinks
// write, and it is deterministic:
//
//   - null values are omitted, and so are NaN and ±Inf, which JSON cannot
//     carry;
//   - floats are written in the shortest form that reads back to the same
//     value (strconv 'g', -1), for example 1523.4, 1e+06, 2.5e-05;
//   - timestamps are RFC 3339 in UTC with milliseconds
//     ("2024-01-01T00:00:00.000Z");
//   - strings are escaped as by encoding/json without HTML escaping;
//     invalid UTF-8 becomes U+FFFD;
//   - binary values are base64; other types are written as their text.
func AppendJSONRow(dst []byte, rec arrow.RecordBatch, row int) []byte {
	dst = append(dst, '{')
	first := true
	sc := rec.Schema()
	for c := 0; c < int(rec.NumCols()); c++ {
		col := rec.Column(c)
		if col.IsNull(row) {
			continue
		}
		mark := len(dst)
		if !first {
			dst = append(dst, ',')
		}
		dst = AppendJSONString(dst, sc.Field(c).Name)
		dst = append(dst, ':')
		var ok bool
		if dst, ok = jsonenc.AppendValue(dst, col, row); !ok {
			dst = dst[:mark]
			continue
		}
		first = false
	}
	return append(dst, '}')
}

// AppendJSONLines appends every row of rec as a JSON object followed by a
// newline.
func AppendJSONLines(dst []byte, rec arrow.RecordBatch) []byte {
	for r := 0; r < int(rec.NumRows()); r++ {
		dst = AppendJSONRow(dst, rec, r)
		dst = append(dst, '\n')
	}
	return dst
}

// AppendJSONString appends s as a JSON string, escaped as by encoding/json
// without HTML escaping; invalid UTF-8 becomes U+FFFD.
func AppendJSONString(dst []byte, s string) []byte { return jsonenc.AppendString(dst, s) }

// JSONLinesWriter writes records to an io.Writer as JSON lines (one
// AppendJSONRow object per line) through a buffer that it flushes after
// every record. It is not safe for concurrent use.
type JSONLinesWriter struct {
	bw *bufio.Writer
}

// NewJSONLinesWriter returns a writer with a 64 KiB buffer.
func NewJSONLinesWriter(w io.Writer) *JSONLinesWriter {
	return &JSONLinesWriter{bw: bufio.NewWriterSize(w, 64<<10)}
}

// Write writes every row of rec and flushes the buffer.
func (j *JSONLinesWriter) Write(rec arrow.RecordBatch) error {
	for r := 0; r < int(rec.NumRows()); r++ {
		buf := AppendJSONRow(j.bw.AvailableBuffer(), rec, r)
		buf = append(buf, '\n')
		if _, err := j.bw.Write(buf); err != nil {
			return err
		}
	}
	return j.bw.Flush()
}

// Flush writes out anything buffered.
func (j *JSONLinesWriter) Flush() error { return j.bw.Flush() }
