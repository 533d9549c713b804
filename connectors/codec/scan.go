package codec

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// This file holds a small validating JSON scanner over a byte slice. The
// decoders walk objects with objOpen/objKey/objNext and skip what they do
// not need with skipValue; nothing here allocates except errors.

// maxDepth bounds the nesting of skipped values.
const maxDepth = 128

// skipWS returns the index of the first byte from b[i] on that is not
// JSON whitespace. Every byte above ' ' is not whitespace: the common case
// returns at once, inlined.
func skipWS(b []byte, i int) int {
	if i < len(b) && b[i] > ' ' {
		return i
	}
	return skipWSLoop(b, i)
}

func skipWSLoop(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\n', '\r', '\t':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString scans the string that starts at b[i] == '"'. It returns the
// index after the closing quote and whether the string holds escapes.
func scanString(b []byte, i int) (int, bool, error) {
	// Short plain strings (keys, device keys, method names) are scanned
	// eight bytes at a time in one pass for the first byte that is a
	// quote, a backslash or a control character. When that is the closing
	// quote, the string is done; anything else (and longer strings) takes
	// the searches below, so errors are reported as they always were.
	for j := i + 1; j+8 <= len(b) && j <= i+shortString; j += 8 {
		if m := specialBytes(binary.LittleEndian.Uint64(b[j:])); m != 0 {
			if k := j + bits.TrailingZeros64(m)>>3; b[k] == '"' {
				return k + 1, false, nil
			}
			break
		}
	}
	q := bytes.IndexByte(b[i+1:], '"')
	if q < 0 {
		return len(b), false, errAt(i, "unterminated string")
	}
	body := b[i+1 : i+1+q]
	if bytes.IndexByte(body, '\\') >= 0 {
		return scanEscaped(b, i)
	}
	if hasControl(body) {
		return scanEscaped(b, i)
	}
	return i + 2 + q, false, nil
}

// shortString is about how many bytes scanString checks a word at a time
// before it searches the rest of a string.
const shortString = 24

// specialBytes flags (bit 7 of the byte) the bytes of w, eight bytes of a
// string in little-endian order, that are a quote, a backslash or below
// 0x20. Only the lowest flag is exact: a byte above a flagged byte may be
// flagged wrongly (the borrow of the zero-byte test), never one below, so
// the lowest flag is always the first such byte.
func specialBytes(w uint64) uint64 {
	const ones = 0x0101010101010101
	q, bs := w^(ones*'"'), w^(ones*'\\')
	return ((q-ones)&^q | (bs-ones)&^bs | (w-ones*0x20)&^w) & (ones * 0x80)
}

// hasControl reports whether s holds a byte below 0x20.
func hasControl(s []byte) bool {
	var acc uint64
	for len(s) >= 8 {
		acc |= hasLessByte(binary.LittleEndian.Uint64(s), 0x20)
		s = s[8:]
	}
	for _, c := range s {
		if c < 0x20 {
			return true
		}
	}
	return acc != 0
}

// scanEscaped is scanString for strings with escapes or errors.
func scanEscaped(b []byte, i int) (int, bool, error) {
	start := i
	i++
	esc := false
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return i + 1, esc, nil
		case c == '\\':
			esc = true
			i++
			if i >= len(b) {
				return i, esc, errAt(start, "unterminated string")
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if i+5 > len(b) || !isHex4(b[i+1:i+5]) {
					return i, esc, errAt(i-1, "bad \\u escape in string")
				}
				i += 5
			default:
				return i, esc, errAt(i-1, "bad escape in string")
			}
		case c < 0x20:
			return i, esc, errAt(i, "control character in string")
		default:
			i++
		}
	}
	return i, esc, errAt(start, "unterminated string")
}

// hasLessByte is non-zero when one of the bytes of x is below n (n <= 128).
func hasLessByte(x uint64, n uint64) uint64 {
	return (x - 0x0101010101010101*n) & ^x & 0x8080808080808080
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		default:
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}

// unescape appends the unescaped content of a string body (without quotes)
// that scanString accepted. Bad surrogates become U+FFFD, as in
// encoding/json.
func unescape(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		if s[i] != '\\' {
			j := i + 1
			for j < len(s) && s[j] != '\\' {
				j++
			}
			dst = append(dst, s[i:j]...)
			i = j
			continue
		}
		i++
		switch c := s[i]; c {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(s[i+1 : i+5])
			i += 4
			if utf16.IsSurrogate(r) {
				r2 := rune(utf8.RuneError)
				if i+7 <= len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
					if d := utf16.DecodeRune(r, hex4(s[i+3:i+7])); d != utf8.RuneError {
						r2 = d
						i += 6
					}
				}
				r = r2
			}
			dst = utf8.AppendRune(dst, r)
		default: // '"', '\\', '/'
			dst = append(dst, c)
		}
		i++
	}
	return dst
}

// scanNumber validates the JSON number that starts at b[i] and returns the
// index after it.
func scanNumber(b []byte, i int) (int, error) {
	start := i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i++; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		}
	default:
		return i, errAt(start, "bad number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		}
		if i == d {
			return i, errAt(start, "bad number")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		}
		if i == d {
			return i, errAt(start, "bad number")
		}
	}
	return i, nil
}

// scanFloat validates and converts the JSON number at b[i] in one pass and
// returns it with the index after it.
func scanFloat(b []byte, i int) (float64, int, error) {
	start := i
	neg := false
	if i < len(b) && b[i] == '-' {
		neg = true
		i++
	}
	var mant uint64
	nd, frac := 0, 0
	switch {
	case i < len(b) && b[i] == '0':
		i++
		nd = 1
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		d := i
		i, mant = addDigits(b, i, mant)
		nd = i - d
	default:
		return 0, i, errAt(start, "bad number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		i, mant = addDigits(b, i, mant)
		if i == d {
			return 0, i, errAt(start, "bad number")
		}
		frac = i - d
		nd += frac
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		end, err := scanNumber(b, start)
		if err != nil {
			return 0, end, err
		}
		f, err := parseFloat(b[start:end])
		return f, end, err
	}
	if nd > 15 {
		f, err := parseFloat(b[start:i])
		return f, i, err
	}
	f := float64(mant) / pow10[frac]
	if neg {
		f = -f
	}
	return f, i, nil
}

// addDigits adds the decimal digits from b[i] on to mant and returns the
// index after them and the sum.
func addDigits(b []byte, i int, mant uint64) (int, uint64) {
	for ; i < len(b); i++ {
		c := b[i] - '0'
		if c > 9 {
			break
		}
		mant = mant*10 + uint64(c)
	}
	return i, mant
}

var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// parseFloat converts number text. Plain decimals with at most 15
// significant digits take an exact fast path; the rest go to strconv.
func parseFloat(b []byte) (float64, error) {
	i, neg := 0, false
	if len(b) > 0 && b[0] == '-' {
		i, neg = 1, true
	}
	var mant uint64
	nd, frac := 0, 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		mant = mant*10 + uint64(b[i]-'0')
		nd++
	}
	if i < len(b) && b[i] == '.' {
		for i++; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			mant = mant*10 + uint64(b[i]-'0')
			nd++
			frac++
		}
	}
	if i == len(b) && nd > 0 && nd <= 15 {
		f := float64(mant) / pow10[frac]
		if neg {
			f = -f
		}
		return f, nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return 0, errNumRange
		}
		return 0, errNotNumber
	}
	return f, nil
}

// parseIntFast converts plain integer text of at most 18 digits.
func parseIntFast(b []byte) (int64, bool) {
	i, neg := 0, false
	if len(b) > 0 && b[0] == '-' {
		i, neg = 1, true
	}
	if i == len(b) || len(b)-i > 18 {
		return 0, false
	}
	var n int64
	for ; i < len(b); i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// parseWhole converts plain integer text in the int64 range.
func parseWhole(b []byte) (int64, bool) {
	if n, ok := parseIntFast(b); ok {
		return n, true
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	return n, err == nil
}

// parseInt converts number text to an int64; numbers with a fraction or an
// exponent must be whole and in range.
func parseInt(b []byte) (int64, error) {
	if n, ok := parseWhole(b); ok {
		return n, nil
	}
	f, err := parseFloat(b)
	if err != nil {
		return 0, err
	}
	if f != math.Trunc(f) {
		return 0, errNotInteger
	}
	if !(f >= -9223372036854775808 && f < 9223372036854775808) {
		return 0, errNumRange
	}
	return int64(f), nil
}

// skipValue validates and skips the value that starts at b[i].
func skipValue(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return i, errAt(i, "unexpected end of input")
	}
	switch c := b[i]; {
	case c == '"':
		end, _, err := scanString(b, i)
		return end, err
	case c == '{':
		if depth >= maxDepth {
			return i, errAt(i, "nesting too deep")
		}
		i, done, err := objOpen(b, i)
		for err == nil && !done {
			var vi int
			if _, _, _, vi, err = objKey(b, i); err != nil {
				break
			}
			if i, err = skipValue(b, vi, depth+1); err != nil {
				break
			}
			i, done, err = objNext(b, i)
		}
		return i, err
	case c == '[':
		if depth >= maxDepth {
			return i, errAt(i, "nesting too deep")
		}
		i, done, err := arrOpen(b, i)
		for err == nil && !done {
			if i, err = skipValue(b, i, depth+1); err != nil {
				break
			}
			i, done, err = arrNext(b, i)
		}
		return i, err
	case c == '-' || c >= '0' && c <= '9':
		return scanNumber(b, i)
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == 'n':
		return literal(b, i, "null")
	}
	return i, errAt(i, "unexpected character %q", b[i])
}

func literal(b []byte, i int, lit string) (int, error) {
	if len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
		return i + len(lit), nil
	}
	return i, errAt(i, "bad literal")
}

// objOpen consumes '{' at b[i] and the whitespace after it. done reports an
// empty object, whose '}' is consumed too.
func objOpen(b []byte, i int) (int, bool, error) {
	if i >= len(b) || b[i] != '{' {
		return i, false, errAt(i, "expected an object")
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, true, nil
	}
	return i, false, nil
}

// objKey reads `"key" :` at b[i]. The key is b[ks:ke] (without quotes,
// escaped when esc) and the value starts at vi.
func objKey(b []byte, i int) (ks, ke int, esc bool, vi int, err error) {
	if i >= len(b) || b[i] != '"' {
		return 0, 0, false, i, errAt(i, "expected a key")
	}
	end, esc, err := scanString(b, i)
	if err != nil {
		return 0, 0, false, end, err
	}
	j := skipWS(b, end)
	if j >= len(b) || b[j] != ':' {
		return 0, 0, false, j, errAt(j, "expected ':' after a key")
	}
	return i + 1, end - 1, esc, skipWS(b, j+1), nil
}

// matchKey reports whether b[i] starts the key `"lit"` followed by ':' and
// returns where its value starts. lit must need no escaping.
func matchKey(b []byte, i int, lit string) (int, bool) {
	j := i + 1 + len(lit)
	if j >= len(b) || b[i] != '"' || b[j] != '"' || string(b[i+1:j]) != lit {
		return 0, false
	}
	j = skipWS(b, j+1)
	if j >= len(b) || b[j] != ':' {
		return 0, false
	}
	return skipWS(b, j+1), true
}

// plainKey reports whether a name can be matched byte for byte in a JSON
// key: it has no quote, backslash or control character.
func plainKey(name string) bool {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c == '"' || c == '\\' || c < 0x20 {
			return false
		}
	}
	return true
}

// objNext consumes ',' (and whitespace) or the closing '}' after a value.
func objNext(b []byte, i int) (int, bool, error) {
	i = skipWS(b, i)
	if i < len(b) {
		switch b[i] {
		case ',':
			return skipWS(b, i+1), false, nil
		case '}':
			return i + 1, true, nil
		}
	}
	return i, false, errAt(i, "expected ',' or '}'")
}

// arrOpen consumes '[' at b[i] and the whitespace after it. done reports an
// empty array, whose ']' is consumed too.
func arrOpen(b []byte, i int) (int, bool, error) {
	if i >= len(b) || b[i] != '[' {
		return i, false, errAt(i, "expected an array")
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, true, nil
	}
	return i, false, nil
}

// arrNext consumes ',' (and whitespace) or the closing ']' after a value.
func arrNext(b []byte, i int) (int, bool, error) {
	i = skipWS(b, i)
	if i < len(b) {
		switch b[i] {
		case ',':
			return skipWS(b, i+1), false, nil
		case ']':
			return i + 1, true, nil
		}
	}
	return i, false, errAt(i, "expected ',' or ']'")
}
