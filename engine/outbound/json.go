package outbound

import (
	"encoding/base64"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// appendJSONValue appends a non-null value of col at row r. It reports
// false for values JSON cannot carry (NaN, ±Inf), which are omitted like
// nulls. Timestamps are milliseconds since the Unix epoch, like "time".
func appendJSONValue(dst []byte, col arrow.Array, r int) ([]byte, bool) {
	switch a := col.(type) {
	case *array.Float64:
		return appendJSONFloat(dst, a.Value(r), 64)
	case *array.Int64:
		return strconv.AppendInt(dst, a.Value(r), 10), true
	case *array.String:
		return appendJSONString(dst, a.Value(r)), true
	case *array.Boolean:
		return strconv.AppendBool(dst, a.Value(r)), true
	case *array.Timestamp:
		unit := a.DataType().(*arrow.TimestampType).Unit
		return strconv.AppendInt(dst, toMillis(int64(a.Value(r)), unit), 10), true
	case *array.Float32:
		return appendJSONFloat(dst, float64(a.Value(r)), 32)
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
	case *array.LargeString:
		return appendJSONString(dst, a.Value(r)), true
	case *array.Binary:
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, a.Value(r))
		return append(dst, '"'), true
	}
	return appendJSONString(dst, col.ValueStr(r)), true
}

// appendJSONFloat writes the shortest form that reads back to the same
// value (1523.4, 1e+06, 2.5e-05).
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

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string, escaped as by encoding/json
// without HTML escaping; invalid UTF-8 becomes U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
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
