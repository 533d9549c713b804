package codec

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/sluice-edge/sluice/engine"
)

// CSVOptions configures a CSV decoder.
type CSVOptions struct {
	// Header names the fields of every line, in order.
	Header []string
	// Comma separates fields; zero means ','.
	Comma byte
	// Time says how the time column and other timestamp columns are
	// written; the zero value reads milliseconds since the epoch.
	Time TimeFormat
}

// CSV decodes one CSV line per payload into one row. Each column is read
// from the header field its mapping names. Fields may be quoted ("a ""b""",
// RFC 4180) but a line holds one whole record. An empty unquoted field is
// null; values convert to the column's type (numbers, true/false,
// timestamps in the configured layout).
type CSV struct {
	stage
	comma      byte
	colOf      []int // header field -> schema column, or -1
	spans      []csvSpan
	missingKey string
}

type csvSpan struct {
	start, end int
	quoted     bool
	escaped    bool // holds "" pairs
}

// NewCSV returns a decoder filling m.Schema from lines with the given
// header. Every mapped column must be in the header, except the key
// column, which may come from the key given to Parse instead.
func NewCSV(m *Mapping, opts CSVOptions) (*CSV, error) {
	d := &CSV{comma: opts.Comma}
	if d.comma == 0 {
		d.comma = ','
	}
	if d.comma == '"' || d.comma == '\r' || d.comma == '\n' {
		return nil, fmt.Errorf("csv: %q cannot separate fields", d.comma)
	}
	d.init(m, opts.Time, func(src string) string { return fmt.Sprintf("column %q", src) })
	d.colOf = make([]int, len(opts.Header))
	for i := range d.colOf {
		d.colOf[i] = -1
	}
	for c, src := range m.Sources {
		h := slices.Index(opts.Header, src)
		switch {
		case h >= 0 && d.colOf[h] >= 0:
			return nil, fmt.Errorf("csv: column %q feeds both %q and %q", src, m.Schema.Fields[d.colOf[h]].Name, m.Schema.Fields[c].Name)
		case h >= 0:
			d.colOf[h] = c
		case c == d.keyCol:
			d.labels[c] = fmt.Sprintf("column %q (not in the header)", src)
		default:
			return nil, fmt.Errorf("csv: column %q (for %q) is not in the header (%s)", src, m.Schema.Fields[c].Name, strings.Join(opts.Header, ", "))
		}
	}
	if d.keyCol >= 0 {
		d.missingKey = "missing key " + d.labels[d.keyCol]
	}
	return d, nil
}

// Decode parses line and appends its row to rb; on error rb is unchanged.
func (d *CSV) Decode(rb *engine.RecordBuilder, line []byte, key string) (int, error) {
	if _, err := d.Parse(line, key); err != nil {
		return 0, err
	}
	return d.Append(rb), nil
}

// Parse decodes one line and stages its row.
func (d *CSV) Parse(line []byte, key string) (int, error) {
	d.begin(key)
	if err := d.parse(line); err != nil {
		d.rows = 0
		return 0, err
	}
	return d.rows, nil
}

func (d *CSV) parse(line []byte) error {
	var err error
	if d.spans, err = splitCSV(d.spans[:0], line, d.comma); err != nil {
		return err
	}
	if len(d.spans) != len(d.colOf) {
		return errAt(-1, "line has %d fields, the header %d", len(d.spans), len(d.colOf))
	}
	row := d.row(d.newRow())
	for f, sp := range d.spans {
		c := d.colOf[f]
		if c < 0 {
			continue
		}
		v := line[sp.start:sp.end]
		if sp.escaped {
			start := len(d.arena)
			d.arena = unquoteCSV(d.arena, v)
			v = d.arena[start:len(d.arena):len(d.arena)]
		}
		if err := d.setText(row, c, v, sp.quoted, sp.start); err != nil {
			return err
		}
	}
	return d.finish(d.missingKey)
}

// splitCSV appends the fields of one CSV line to dst.
func splitCSV(dst []csvSpan, line []byte, comma byte) ([]csvSpan, error) {
	i := 0
	for {
		if i < len(line) && line[i] == '"' {
			sp := csvSpan{start: i + 1, quoted: true}
			j := i + 1
			for {
				q := bytes.IndexByte(line[j:], '"')
				if q < 0 {
					return dst, errAt(i, "unterminated quoted field")
				}
				j += q
				if j+1 < len(line) && line[j+1] == '"' {
					sp.escaped = true
					j += 2
					continue
				}
				break
			}
			sp.end = j
			dst = append(dst, sp)
			i = j + 1
			if i < len(line) && line[i] != comma {
				return dst, errAt(i, "unexpected %q after a quoted field", line[i])
			}
		} else {
			j := bytes.IndexByte(line[i:], comma)
			if j < 0 {
				j = len(line) - i
			}
			dst = append(dst, csvSpan{start: i, end: i + j})
			i += j
		}
		if i >= len(line) {
			return dst, nil
		}
		i++ // the comma
	}
}

// unquoteCSV appends v with each "" pair reduced to one quote.
func unquoteCSV(dst, v []byte) []byte {
	for {
		q := bytes.Index(v, []byte(`""`))
		if q < 0 {
			return append(dst, v...)
		}
		dst = append(dst, v[:q+1]...)
		v = v[q+2:]
	}
}

// ParseCSVHeader splits a header line into field names, trimming spaces
// and a leading UTF-8 byte-order mark.
func ParseCSVHeader(line []byte, comma byte) ([]string, error) {
	if comma == 0 {
		comma = ','
	}
	line = bytes.TrimPrefix(line, []byte("\ufeff"))
	spans, err := splitCSV(nil, line, comma)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(spans))
	for i, sp := range spans {
		v := line[sp.start:sp.end]
		if sp.escaped {
			v = unquoteCSV(nil, v)
		}
		out[i] = strings.TrimSpace(string(v))
	}
	return out, nil
}
