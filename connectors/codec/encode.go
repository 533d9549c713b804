package codec

import (
	"bufio"
	"encoding/base64"
	"io"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
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
		if dst, ok = appendJSONValue(dst, col, row); !ok {
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

// appendJSONValue appends a non-null value; it reports false for values
// JSON cannot carry (NaN, ±Inf).
func appendJSONValue(dst []byte, col arrow.Array, r int) ([]byte, bool) {
	switch a := col.(type) {
	case *array.Float64:
		return appendJSONFloat(dst, a.Value(r), 64)
	case *array.Float32:
		return appendJSONFloat(dst, float64(a.Value(r)), 32)
	case *array.Int64:
		return strconv.AppendInt(dst, a.Value(r), 10), true
	case *array.Int32:
		return strconv.AppendInt(dst, int64(a.Value(r)), 10), true
	case *array.Int16:
		return strconv.AppendInt(dst, int64(a.Value(r)), 10), true
	case *array.Int8:
		return strconv.AppendInt(dst, int64(a.Value(r)), 10), true
	case *array.Uint64:
		return strconv.AppendUint(dst, a.Value(r), 10), true
	case *array.Uint32:
		return strconv.AppendUint(dst, uint64(a.Value(r)), 10), true
	case *array.Uint16:
		return strconv.AppendUint(dst, uint64(a.Value(r)), 10), true
	case *array.Uint8:
		return strconv.AppendUint(dst, uint64(a.Value(r)), 10), true
	case *array.String:
		return AppendJSONString(dst, a.Value(r)), true
	case *array.LargeString:
		return AppendJSONString(dst, a.Value(r)), true
	case *array.Boolean:
		return strconv.AppendBool(dst, a.Value(r)), true
	case *array.Timestamp:
		unit := a.DataType().(*arrow.TimestampType).Unit
		return appendJSONTime(dst, toMillis(int64(a.Value(r)), unit)), true
	case *array.Binary:
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, a.Value(r))
		return append(dst, '"'), true
	}
	return AppendJSONString(dst, col.ValueStr(r)), true
}

func appendJSONFloat(dst []byte, v float64, bits int) ([]byte, bool) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return dst, false
	}
	return strconv.AppendFloat(dst, v, 'g', -1, bits), true
}

func toMillis(v int64, unit arrow.TimeUnit) int64 {
	switch unit {
	case arrow.Second:
		return v * 1000
	case arrow.Microsecond:
		return floorDiv(v, 1000)
	case arrow.Nanosecond:
		return floorDiv(v, 1_000_000)
	}
	return v
}

// appendJSONTime appends ms since the epoch as a quoted RFC 3339 UTC time
// with milliseconds.
func appendJSONTime(dst []byte, ms int64) []byte {
	days := floorDiv(ms, 86_400_000)
	rem := ms - days*86_400_000
	y, m, d := civilFromDays(days)
	if y < 0 || y > 9999 {
		// Outside what four year digits hold: fall back to the number.
		return strconv.AppendInt(dst, ms, 10)
	}
	hh, rem := rem/3_600_000, rem%3_600_000
	mm, rem := rem/60_000, rem%60_000
	ss, frac := rem/1000, rem%1000
	dst = append(dst, '"')
	dst = appendDigits(dst, y, 4)
	dst = append(dst, '-')
	dst = appendDigits(dst, m, 2)
	dst = append(dst, '-')
	dst = appendDigits(dst, d, 2)
	dst = append(dst, 'T')
	dst = appendDigits(dst, hh, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, mm, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, ss, 2)
	dst = append(dst, '.')
	dst = appendDigits(dst, frac, 3)
	return append(dst, 'Z', '"')
}

func appendDigits(dst []byte, v int64, width int) []byte {
	var buf [4]byte
	for i := width - 1; i >= 0; i-- {
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	return append(dst, buf[:width]...)
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string, escaped as by encoding/json
// without HTML escaping; invalid UTF-8 becomes U+FFFD.
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

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
