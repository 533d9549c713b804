package codec

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/sluice-edge/sluice/engine"
)

// JSONOptions configures a JSON decoder.
type JSONOptions struct {
	// Time says how the time column and other timestamp columns are
	// written; the zero value reads milliseconds since the epoch.
	Time TimeFormat
}

// JSON decodes one JSON object per payload into one row. Each column is
// read from the dotted path its mapping names ("power", "data.wind.speed";
// a numeric segment also indexes an array: "values.0"). A missing path gives a
// null, except for the time column (and the key column when Parse gets no
// key), which every row needs.
type JSON struct {
	stage
	root       *pathNode
	missingKey string
}

// pathNode is one segment of the mapped paths.
type pathNode struct {
	col  int // column fed by the path ending here, or -1
	kids map[string]*pathNode
}

// NewJSON returns a decoder filling m.Schema.
func NewJSON(m *Mapping, opts JSONOptions) (*JSON, error) {
	d := &JSON{root: &pathNode{col: -1}}
	d.init(m, opts.Time, func(src string) string { return strconv.Quote(src) })
	for c, src := range m.Sources {
		n := d.root
		for _, seg := range strings.Split(src, ".") {
			if seg == "" {
				return nil, fmt.Errorf("json: column %q: path %q has an empty segment", m.Schema.Fields[c].Name, src)
			}
			if n.col >= 0 {
				return nil, fmt.Errorf("json: path %q of column %q runs through the value of column %q", src, m.Schema.Fields[c].Name, m.Schema.Fields[n.col].Name)
			}
			if n.kids == nil {
				n.kids = map[string]*pathNode{}
			}
			k := n.kids[seg]
			if k == nil {
				k = &pathNode{col: -1}
				n.kids[seg] = k
			}
			n = k
		}
		if n.col >= 0 || n.kids != nil {
			return nil, fmt.Errorf("json: path %q of column %q is also read by another column", src, m.Schema.Fields[c].Name)
		}
		n.col = c
	}
	if d.keyCol >= 0 {
		d.missingKey = "missing key " + d.labels[d.keyCol]
	}
	return d, nil
}

// Decode parses payload and appends its row to rb; on error rb is
// unchanged.
func (d *JSON) Decode(rb *engine.RecordBuilder, payload []byte, key string) (int, error) {
	if _, err := d.Parse(payload, key); err != nil {
		return 0, err
	}
	return d.Append(rb), nil
}

// Parse decodes one payload and stages its row.
func (d *JSON) Parse(payload []byte, key string) (int, error) {
	d.begin(key)
	if err := d.parse(payload); err != nil {
		d.rows = 0
		return 0, err
	}
	return d.rows, nil
}

func (d *JSON) parse(b []byte) error {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return errAt(i, "expected a JSON object")
	}
	r := d.newRow()
	i, err := d.walk(b, i, d.root, r, 0)
	if err != nil {
		return err
	}
	if i = skipWS(b, i); i != len(b) {
		return errAt(i, "data after the object")
	}
	return d.finish(d.missingKey)
}

// walk reads the object or array at b[i], following the mapped paths
// below n.
func (d *JSON) walk(b []byte, i int, n *pathNode, r, depth int) (int, error) {
	if depth >= maxDepth {
		return i, errAt(i, "nesting too deep")
	}
	if b[i] == '[' {
		return d.walkArray(b, i, n, r, depth)
	}
	i, done, err := objOpen(b, i)
	for err == nil && !done {
		ks, ke, esc, vi, kerr := objKey(b, i)
		if kerr != nil {
			return vi, kerr
		}
		name := b[ks:ke]
		if esc {
			d.scr = unescape(d.scr[:0], name)
			name = d.scr
		}
		i, err = d.value(b, vi, n.kids[string(name)], r, depth)
		if err != nil {
			return i, err
		}
		i, done, err = objNext(b, i)
	}
	return i, err
}

func (d *JSON) walkArray(b []byte, i int, n *pathNode, r, depth int) (int, error) {
	i, done, err := arrOpen(b, i)
	for k := 0; err == nil && !done; k++ {
		d.scr = strconv.AppendInt(d.scr[:0], int64(k), 10)
		if i, err = d.value(b, i, n.kids[string(d.scr)], r, depth); err != nil {
			return i, err
		}
		i, done, err = arrNext(b, i)
	}
	return i, err
}

// value handles the value at b[i] reached by path node n (nil when no
// column reads it).
func (d *JSON) value(b []byte, i int, n *pathNode, r, depth int) (int, error) {
	switch {
	case n == nil:
		return skipValue(b, i, depth+1)
	case n.col >= 0:
		return d.setJSON(d.row(r), n.col, b, i)
	case i < len(b) && (b[i] == '{' || b[i] == '['):
		return d.walk(b, i, n, r, depth+1)
	}
	// A scalar where the mapping expects an object: the paths below
	// stay null.
	return skipValue(b, i, depth+1)
}
