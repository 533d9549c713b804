// Package jsonenc appends JSON values to byte slices without allocating:
// strings escaped as encoding/json does (without HTML escaping), floats in
// their shortest round-trip form, event times as RFC 3339 UTC with
// milliseconds, and Arrow array values. Every JSON writer of the engine and
// its connectors uses it, so that the same row always has the same bytes.
package jsonenc

import (
	"encoding/base64"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

const hexDigits = "0123456789abcdef"

// AppendValue appends a non-null value; it reports false for values
// JSON cannot carry (NaN, ±Inf).
func AppendValue(dst []byte, col arrow.Array, r int) ([]byte, bool) {
	switch a := col.(type) {
	case *array.Float64:
		return AppendFloat(dst, a.Value(r), 64)
	case *array.Float32:
		return AppendFloat(dst, float64(a.Value(r)), 32)
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
		return AppendString(dst, a.Value(r)), true
	case *array.LargeString:
		return AppendString(dst, a.Value(r)), true
	case *array.Boolean:
		return strconv.AppendBool(dst, a.Value(r)), true
	case *array.Timestamp:
		unit := a.DataType().(*arrow.TimestampType).Unit
		return AppendTime(dst, ToMillis(int64(a.Value(r)), unit)), true
	case *array.Binary:
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, a.Value(r))
		return append(dst, '"'), true
	}
	return AppendString(dst, col.ValueStr(r)), true
}

// AppendFloat appends v in the shortest form that reads back to the same
// value; it reports false (and appends nothing) for NaN and ±Inf.
func AppendFloat(dst []byte, v float64, bits int) ([]byte, bool) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return dst, false
	}
	return strconv.AppendFloat(dst, v, 'g', -1, bits), true
}

// ToMillis converts a timestamp value of the given unit to milliseconds,
// rounding toward negative infinity; seconds beyond the int64 range of
// milliseconds saturate instead of wrapping around (so that a range check
// after it sees them out of range).
func ToMillis(v int64, unit arrow.TimeUnit) int64 {
	switch unit {
	case arrow.Second:
		if v > math.MaxInt64/1000 {
			return math.MaxInt64
		}
		if v < math.MinInt64/1000 {
			return math.MinInt64
		}
		return v * 1000
	case arrow.Microsecond:
		return FloorDiv(v, 1000)
	case arrow.Nanosecond:
		return FloorDiv(v, 1_000_000)
	}
	return v
}

// AppendTime appends ms since the epoch as a quoted RFC 3339 UTC time
// with milliseconds; years outside 0000-9999 fall back to the number.
func AppendTime(dst []byte, ms int64) []byte {
	if y := yearOf(ms); y < 0 || y > 9999 {
		return strconv.AppendInt(dst, ms, 10)
	}
	dst = append(dst, '"')
	dst = AppendRFC3339(dst, ms)
	return append(dst, '"')
}

func appendDigits(dst []byte, v int64, width int) []byte {
	var buf [4]byte
	for i := width - 1; i >= 0; i-- {
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	return append(dst, buf[:width]...)
}

// AppendString appends s as a JSON string, escaped as by encoding/json
// without HTML escaping; invalid UTF-8 becomes U+FFFD.
func AppendString(dst []byte, s string) []byte {
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

// FloorDiv divides rounding toward negative infinity.
func FloorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// CivilFromDays converts days since 1970-01-01 to a proleptic Gregorian
// date (year, month, day).
func CivilFromDays(z int64) (y, m, d int64) {
	z += 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	if mp < 10 {
		m = mp + 3
	} else {
		m = mp - 9
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}

// AppendRFC3339 appends ms since the epoch as "YYYY-MM-DDTHH:MM:SS.mmmZ"
// (unquoted). Years outside 0000-9999 fall back to the decimal
// milliseconds.
func AppendRFC3339(dst []byte, ms int64) []byte {
	days := FloorDiv(ms, 86_400_000)
	rem := ms - days*86_400_000
	y, m, d := CivilFromDays(days)
	if y < 0 || y > 9999 {
		return strconv.AppendInt(dst, ms, 10)
	}
	hh, rem := rem/3_600_000, rem%3_600_000
	mm, rem := rem/60_000, rem%60_000
	ss, frac := rem/1000, rem%1000
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
	return append(dst, 'Z')
}

// FormatTime formats ms since the epoch as AppendRFC3339 does.
func FormatTime(ms int64) string { return string(AppendRFC3339(nil, ms)) }

func yearOf(ms int64) int64 {
	y, _, _ := CivilFromDays(FloorDiv(ms, 86_400_000))
	return y
}

// AppendMillisValue is AppendValue with timestamps written as milliseconds
// since the epoch (a number) instead of RFC 3339 strings.
func AppendMillisValue(dst []byte, col arrow.Array, r int) ([]byte, bool) {
	if a, ok := col.(*array.Timestamp); ok {
		unit := a.DataType().(*arrow.TimestampType).Unit
		return strconv.AppendInt(dst, ToMillis(int64(a.Value(r)), unit), 10), true
	}
	return AppendValue(dst, col, r)
}
