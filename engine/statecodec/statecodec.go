// Package statecodec writes and reads the binary encoding of operator state
// (engine.State.Data): unsigned and zigzag varints, float64 bit patterns,
// and length-prefixed strings and byte strings.
//
// A Writer appends and never fails. A Reader treats its input as hostile:
// every read is bounds-checked, every declared length is checked against a
// limit and against the bytes that remain before anything is allocated, and
// the first problem is kept as a sticky error (later reads return zero
// values), so that a decoder can read a whole structure and check Err once.
// Errors wrap ErrCorrupt and name the byte offset.
package statecodec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// ErrCorrupt is wrapped by every error of a Reader.
var ErrCorrupt = errors.New("corrupt state")

// Writer appends values to a byte slice.
type Writer struct {
	b []byte
}

// NewWriter returns a Writer appending to buf (which may be nil).
func NewWriter(buf []byte) *Writer { return &Writer{b: buf} }

// Bytes returns the bytes written so far.
func (w *Writer) Bytes() []byte { return w.b }

// Len returns the number of bytes written so far.
func (w *Writer) Len() int { return len(w.b) }

// Byte appends one byte.
func (w *Writer) Byte(v byte) { w.b = append(w.b, v) }

// Bool appends a bool as one byte, 0 or 1.
func (w *Writer) Bool(v bool) {
	if v {
		w.b = append(w.b, 1)
	} else {
		w.b = append(w.b, 0)
	}
}

// Uvarint appends an unsigned varint.
func (w *Writer) Uvarint(v uint64) { w.b = binary.AppendUvarint(w.b, v) }

// Varint appends a zigzag signed varint.
func (w *Writer) Varint(v int64) { w.b = binary.AppendVarint(w.b, v) }

// Uint64 appends v as 8 little-endian bytes.
func (w *Writer) Uint64(v uint64) { w.b = binary.LittleEndian.AppendUint64(w.b, v) }

// Float64 appends the bit pattern of v as 8 little-endian bytes, so that
// every value, NaN payloads and the sign of zero included, comes back as it
// was.
func (w *Writer) Float64(v float64) { w.Uint64(math.Float64bits(v)) }

// String appends a length-prefixed string.
func (w *Writer) String(s string) {
	w.Uvarint(uint64(len(s)))
	w.b = append(w.b, s...)
}

// Blob appends a length-prefixed byte string.
func (w *Writer) Blob(p []byte) {
	w.Uvarint(uint64(len(p)))
	w.b = append(w.b, p...)
}

// Raw appends p as it is (a fixed-size field).
func (w *Writer) Raw(p []byte) { w.b = append(w.b, p...) }

// Reader reads values written by a Writer from hostile input.
type Reader struct {
	b   []byte
	off int
	err error
}

// NewReader returns a Reader over data.
func NewReader(data []byte) *Reader { return &Reader{b: data} }

// Err returns the first error met, or nil.
func (r *Reader) Err() error { return r.err }

// Offset returns the offset of the next byte to read.
func (r *Reader) Offset() int { return r.off }

// Remaining returns the number of bytes not read yet.
func (r *Reader) Remaining() int { return len(r.b) - r.off }

// Failf records an error at the current offset unless one is recorded
// already. Decoders use it for values that are well-formed but invalid.
func (r *Reader) Failf(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w at byte %d: %s", ErrCorrupt, r.off, fmt.Sprintf(format, args...))
	}
}

// Done returns the first error met, or an error when bytes remain unread.
func (r *Reader) Done() error {
	if r.err == nil && r.off != len(r.b) {
		r.Failf("%d bytes after the end of the state", len(r.b)-r.off)
	}
	return r.err
}

// Byte reads one byte.
func (r *Reader) Byte() byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.Failf("truncated")
		return 0
	}
	v := r.b[r.off]
	r.off++
	return v
}

// Bool reads a bool; a byte other than 0 or 1 is an error.
func (r *Reader) Bool() bool {
	switch v := r.Byte(); v {
	case 0:
		return false
	case 1:
		return true
	default:
		r.Failf("bool byte %d", v)
		return false
	}
}

// Uvarint reads an unsigned varint. A varint that overflows 64 bits, or
// one longer than needed (so that every value has one encoding), is an
// error.
func (r *Reader) Uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	switch {
	case n == 0:
		r.Failf("truncated")
		return 0
	case n < 0:
		r.Failf("varint overflows 64 bits")
		return 0
	case n != uvarintLen(v):
		r.Failf("varint of %d bytes for a value of %d", n, uvarintLen(v))
		return 0
	}
	r.off += n
	return v
}

// uvarintLen is the length of the shortest encoding of v.
func uvarintLen(v uint64) int { return max(1, (bits.Len64(v)+6)/7) }

// Varint reads a zigzag signed varint (see Uvarint).
func (r *Reader) Varint() int64 {
	u := r.Uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

// Uint reads an unsigned varint of at most limit; what names the value in
// the error.
func (r *Reader) Uint(limit uint64, what string) uint64 {
	v := r.Uvarint()
	if v > limit {
		r.Failf("%s %d, more than %d", what, v, limit)
		return 0
	}
	return v
}

// Int reads a signed varint within [lo, hi]; what names the value in the
// error.
func (r *Reader) Int(lo, hi int64, what string) int64 {
	v := r.Varint()
	if v < lo || v > hi {
		r.Failf("%s %d, outside [%d, %d]", what, v, lo, hi)
		return 0
	}
	return v
}

// Count reads the number of elements of a list: at most limit, and at most
// the number of elements of at least minBytes bytes each that the
// remaining input can hold, so that a caller may allocate for it.
func (r *Reader) Count(limit, minBytes int, what string) int {
	v := r.Uvarint()
	if r.err != nil {
		return 0
	}
	if v > uint64(limit) {
		r.Failf("%d %s, more than %d", v, what, limit)
		return 0
	}
	if minBytes > 0 && v > uint64(r.Remaining()/minBytes) {
		r.Failf("%d %s declared, the %d bytes left hold at most %d", v, what, r.Remaining(), r.Remaining()/minBytes)
		return 0
	}
	return int(v)
}

// Uint64 reads 8 little-endian bytes.
func (r *Reader) Uint64() uint64 {
	p := r.Raw(8)
	if p == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(p)
}

// Float64 reads a float64 bit pattern written by Writer.Float64.
func (r *Reader) Float64() float64 { return math.Float64frombits(r.Uint64()) }

// Raw returns the next n bytes (aliasing the input), or nil after an
// error.
func (r *Reader) Raw(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > r.Remaining() {
		r.Failf("truncated: %d bytes needed, %d left", n, r.Remaining())
		return nil
	}
	p := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return p
}

// String reads a length-prefixed string of at most limit bytes. The
// string is a copy.
func (r *Reader) String(limit int, what string) string {
	n := r.Count(limit, 1, what+" bytes")
	return string(r.Raw(n))
}

// Blob reads a length-prefixed byte string of at most limit bytes,
// aliasing the input.
func (r *Reader) Blob(limit int, what string) []byte {
	n := r.Count(limit, 1, what+" bytes")
	return r.Raw(n)
}
