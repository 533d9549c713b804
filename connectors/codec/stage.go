package codec

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluice-edge/sluice/engine"
)

// Decoder is what every payload decoder offers. A decoder is not safe for
// concurrent use; give each goroutine its own.
type Decoder interface {
	// Schema is the schema of the rows the decoder produces.
	Schema() *engine.Schema
	// Parse decodes one payload and stages its rows, replacing any rows
	// staged before. key, when not empty, is the value of every row's key
	// column (for example the device key taken from an MQTT topic). On
	// error nothing is staged.
	Parse(payload []byte, key string) (rows int, err error)
	// Time returns the event time, in milliseconds, of staged row i.
	Time(i int) int64
	// Append appends the staged rows to rb, whose schema must be Schema,
	// and returns their number. The rows are no longer staged afterwards.
	Append(rb *engine.RecordBuilder) int
	// Decode is Parse followed by Append: on error rb is unchanged.
	Decode(rb *engine.RecordBuilder, payload []byte, key string) (rows int, err error)
}

var (
	_ Decoder = (*EnOS)(nil)
	_ Decoder = (*JSON)(nil)
	_ Decoder = (*CSV)(nil)
)

// Error is a payload that could not be decoded.
type Error struct {
	// Offset is the byte offset in the payload where the problem was
	// found, or -1 when the problem has no single place.
	Offset int
	// Reason says what is wrong.
	Reason string
}

// Error renders the reason, prefixed by the offset when it is known.
func (e *Error) Error() string {
	if e.Offset < 0 {
		return e.Reason
	}
	return "offset " + strconv.Itoa(e.Offset) + ": " + e.Reason
}

func errAt(off int, format string, args ...any) error {
	return &Error{Offset: off, Reason: fmt.Sprintf(format, args...)}
}

var (
	errNumRange   = errors.New("number out of range")
	errNotNumber  = errors.New("not a number")
	errNotInteger = errors.New("not a whole number")
)

// cell is one staged value.
type cell struct {
	s   []byte  // String columns
	f   float64 // Float64 columns
	i   int64   // Int64, Timestamp (ms) and Bool (0/1) columns
	set bool    // false means null
}

// stage holds the rows of one payload until they are appended. Every
// decoder embeds one.
type stage struct {
	schema  *engine.Schema
	types   []engine.Type
	labels  []string // how errors name each column's source
	tf      TimeFormat
	ncol    int
	timeCol int
	keyCol  int

	cells []cell
	rows  int
	arena []byte // unescaped strings of the current payload
	key   []byte // the key argument of the current payload
	scr   []byte // scratch for escaped keys and array indexes
}

func (s *stage) init(m *Mapping, tf TimeFormat, label func(src string) string) {
	s.schema = m.Schema
	s.tf = tf
	s.ncol = len(m.Schema.Fields)
	s.timeCol = m.Schema.TimeIndex()
	s.keyCol = m.Schema.KeyIndex()
	s.types = make([]engine.Type, s.ncol)
	s.labels = make([]string, s.ncol)
	for i, f := range m.Schema.Fields {
		s.types[i] = f.Type
		s.labels[i] = label(m.Sources[i])
	}
}

// Schema is the schema of the rows the decoder produces.
func (s *stage) Schema() *engine.Schema { return s.schema }

// begin starts a payload.
func (s *stage) begin(key string) {
	s.rows = 0
	s.arena = s.arena[:0]
	s.key = append(s.key[:0], key...)
}

// newRow stages an empty row and returns its index. Row slices taken
// before a call to newRow may be stale afterwards; index again.
func (s *stage) newRow() int {
	n := (s.rows + 1) * s.ncol
	if n > cap(s.cells) {
		c := make([]cell, n, 2*n)
		copy(c, s.cells)
		s.cells = c
	}
	s.cells = s.cells[:n]
	clear(s.cells[s.rows*s.ncol : n])
	s.rows++
	return s.rows - 1
}

func (s *stage) row(r int) []cell { return s.cells[r*s.ncol : (r+1)*s.ncol : (r+1)*s.ncol] }

// Time returns the event time, in milliseconds, of staged row i.
func (s *stage) Time(i int) int64 {
	if s.timeCol < 0 {
		return 0
	}
	return s.cells[i*s.ncol+s.timeCol].i
}

// Append appends the staged rows to rb and returns their number. It fills
// one column at a time: each column's builder is looked up and grown once
// per payload, then takes its values without further checks. The loops
// of the fixed-width types are written out: one generic function for them
// calls the builders through its dictionary, and BenchmarkEnOSDecode took
// 6-20 % longer with it.
func (s *stage) Append(rb *engine.RecordBuilder) int {
	if len(rb.Columns) != s.ncol {
		panic(fmt.Sprintf("codec: builder has %d columns, decoder %d", len(rb.Columns), s.ncol))
	}
	n := s.rows
	if n == 0 {
		return 0
	}
	cells := s.cells[:n*s.ncol]
	for c, t := range s.types {
		switch t {
		case engine.Float64:
			fb := rb.Float64(c)
			fb.Reserve(n)
			for r := c; r < len(cells); r += s.ncol {
				if cl := &cells[r]; cl.set {
					fb.UnsafeAppend(cl.f)
				} else {
					fb.UnsafeAppendBoolToBitmap(false)
				}
			}
		case engine.Int64:
			ib := rb.Int64(c)
			ib.Reserve(n)
			for r := c; r < len(cells); r += s.ncol {
				if cl := &cells[r]; cl.set {
					ib.UnsafeAppend(cl.i)
				} else {
					ib.UnsafeAppendBoolToBitmap(false)
				}
			}
		case engine.Timestamp:
			tb := rb.Timestamp(c)
			tb.Reserve(n)
			for r := c; r < len(cells); r += s.ncol {
				if cl := &cells[r]; cl.set {
					tb.UnsafeAppend(arrow.Timestamp(cl.i))
				} else {
					tb.UnsafeAppendBoolToBitmap(false)
				}
			}
		case engine.String:
			sb := rb.String(c)
			for r := c; r < len(cells); r += s.ncol {
				if cl := &cells[r]; cl.set {
					sb.BinaryBuilder.Append(cl.s)
				} else {
					sb.AppendNull()
				}
			}
		case engine.Bool:
			bb := rb.Bool(c)
			bb.Reserve(n)
			for r := c; r < len(cells); r += s.ncol {
				if cl := &cells[r]; cl.set {
					bb.UnsafeAppend(cl.i != 0)
				} else {
					bb.UnsafeAppendBoolToBitmap(false)
				}
			}
		default:
			for r := c; r < len(cells); r += s.ncol {
				rb.Columns[c].AppendNull()
			}
		}
	}
	for range n {
		rb.RowDone()
	}
	s.rows = 0
	return n
}

// finish checks the staged rows: each needs a time, and a key when the
// schema has a key column. The key argument overrides staged keys.
func (s *stage) finish(missingKey string) error {
	for r := 0; r < s.rows; r++ {
		row := s.row(r)
		if s.timeCol >= 0 && !row[s.timeCol].set {
			return s.rowErr(r, "missing time")
		}
		if s.keyCol < 0 {
			continue
		}
		if len(s.key) > 0 {
			row[s.keyCol] = cell{s: s.key, set: true}
		} else if !row[s.keyCol].set || len(row[s.keyCol].s) == 0 {
			return s.rowErr(r, missingKey)
		}
	}
	return nil
}

func (s *stage) rowErr(r int, reason string) error {
	if s.rows > 1 {
		return &Error{Offset: -1, Reason: fmt.Sprintf("row %d: %s", r+1, reason)}
	}
	return &Error{Offset: -1, Reason: reason}
}

func (s *stage) colErr(off, col int, format string, args ...any) error {
	return &Error{Offset: off, Reason: s.labels[col] + ": " + fmt.Sprintf(format, args...)}
}

func (s *stage) wrongType(off, col int, got string) error {
	return s.colErr(off, col, "%s column got %s", s.types[col], got)
}

// unescaped returns the content of a scanned string body, unescaping it
// into the arena when needed.
func (s *stage) unescaped(body []byte, esc bool) []byte {
	if !esc {
		return body
	}
	start := len(s.arena)
	s.arena = unescape(s.arena, body)
	return s.arena[start:len(s.arena):len(s.arena)]
}

// setJSON stages the JSON value at b[i] into column col of row and returns
// the index after the value. Strings, numbers, booleans and null convert
// to the column's type; a string column also takes the text of numbers and
// booleans and the raw text of objects and arrays.
func (s *stage) setJSON(row []cell, col int, b []byte, i int) (int, error) {
	if i >= len(b) {
		return i, errAt(i, "unexpected end of input")
	}
	c := &row[col]
	t := s.types[col]
	switch ch := b[i]; {
	case ch == '"':
		end, esc, err := scanString(b, i)
		if err != nil {
			return end, err
		}
		switch t {
		case engine.String:
			v := s.unescaped(b[i+1:end-1], esc)
			if !utf8.Valid(v) {
				return i, s.colErr(i, col, "invalid UTF-8")
			}
			c.s, c.set = v, true
		case engine.Timestamp:
			ms, err := s.tf.fromText(s.unescaped(b[i+1:end-1], esc))
			if err != nil {
				return i, s.colErr(i, col, "%v", err)
			}
			c.i, c.set = ms, true
		default:
			return i, s.wrongType(i, col, "a string")
		}
		return end, nil
	case (ch == '-' || ch >= '0' && ch <= '9') && t == engine.Float64:
		f, end, err := scanFloat(b, i)
		if err != nil {
			if end, serr := scanNumber(b, i); serr != nil {
				return end, serr
			}
			return i, s.colErr(i, col, "%v", err)
		}
		c.f, c.set = f, true
		return end, nil
	case ch == '-' || ch >= '0' && ch <= '9':
		end, err := scanNumber(b, i)
		if err != nil {
			return end, err
		}
		num := b[i:end]
		switch t {
		case engine.Float64:
			f, err := parseFloat(num)
			if err != nil {
				return i, s.colErr(i, col, "%v", err)
			}
			c.f = f
		case engine.Int64:
			n, err := parseInt(num)
			if err != nil {
				return i, s.colErr(i, col, "%v: %s", err, num)
			}
			c.i = n
		case engine.Timestamp:
			if !s.tf.numeric() {
				return i, s.colErr(i, col, "expected a %s time string, got a number", s.tf)
			}
			ms, err := s.tf.fromNumber(num)
			if err != nil {
				return i, s.colErr(i, col, "%v", err)
			}
			c.i = ms
		case engine.String:
			c.s = num
		default:
			return i, s.wrongType(i, col, "a number")
		}
		c.set = true
		return end, nil
	case ch == 't' || ch == 'f':
		lit := "true"
		if ch == 'f' {
			lit = "false"
		}
		end, err := literal(b, i, lit)
		if err != nil {
			return end, err
		}
		switch t {
		case engine.Bool:
			c.i = 0
			if ch == 't' {
				c.i = 1
			}
		case engine.String:
			c.s = b[i:end]
		default:
			return i, s.wrongType(i, col, "a bool")
		}
		c.set = true
		return end, nil
	case ch == 'n':
		end, err := literal(b, i, "null")
		if err != nil {
			return end, err
		}
		*c = cell{}
		return end, nil
	case ch == '{' || ch == '[':
		end, err := skipValue(b, i, 1)
		if err != nil {
			return end, err
		}
		if t != engine.String {
			got := "an object"
			if ch == '[' {
				got = "an array"
			}
			return i, s.wrongType(i, col, got)
		}
		if !utf8.Valid(b[i:end]) {
			return i, s.colErr(i, col, "invalid UTF-8")
		}
		c.s, c.set = b[i:end], true
		return end, nil
	}
	return i, errAt(i, "unexpected character %q", b[i])
}

// setText stages a text field (CSV) into column col of row. An empty
// unquoted field is null.
func (s *stage) setText(row []cell, col int, v []byte, quoted bool, off int) error {
	c := &row[col]
	t := s.types[col]
	if t == engine.String {
		if len(v) == 0 && !quoted {
			return nil
		}
		if !utf8.Valid(v) {
			return s.colErr(off, col, "invalid UTF-8")
		}
		c.s, c.set = v, true
		return nil
	}
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return nil
	}
	switch t {
	case engine.Float64:
		f, err := parseFloat(v)
		if err != nil {
			return s.colErr(off, col, "%v: %q", err, v)
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			// Not a measurement: let the line be counted and reported
			// rather than turn every statistic of its window into NaN.
			return s.colErr(off, col, "expected a finite number, got %q", v)
		}
		c.f = f
	case engine.Int64:
		n, err := parseInt(v)
		if err != nil {
			return s.colErr(off, col, "%v: %q", err, v)
		}
		c.i = n
	case engine.Bool:
		b, err := strconv.ParseBool(string(v))
		if err != nil {
			return s.colErr(off, col, "expected true or false, got %q", v)
		}
		c.i = 0
		if b {
			c.i = 1
		}
	case engine.Timestamp:
		ms, err := s.tf.fromText(v)
		if err != nil {
			return s.colErr(off, col, "%v", err)
		}
		c.i = ms
	}
	c.set = true
	return nil
}
