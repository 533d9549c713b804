package codec

import (
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/sluice-edge/sluice/engine"
)

// EnOSOptions configures an EnOS decoder.
type EnOSOptions struct {
	// KeyField names the field that carries the device key when Parse gets
	// no key. It is looked up in each params item first (as in sub-device
	// batch posts: "deviceKey") and then in the envelope.
	KeyField string
	// Unknown, when set, counts measure points that feed no column.
	Unknown *atomic.Int64
	// Now, when set, gives the time (ms) of params items that carry none;
	// without it such a payload is an error.
	Now func() int64
	// Time says how measure points that feed timestamp columns other than
	// the event time are written; the zero value reads milliseconds.
	Time TimeFormat
}

// EnOS decodes EnOS measure-point payloads:
//
//	{"id":"1","version":"1.0","method":"thing.measurepoint.post",
//	 "params":{"measurepoints":{"temp":1.02,"Power":{"value":1,"quality":9}},"time":1700000000000}}
//
// params may also be a list of such objects (a batch post or resume); each
// item is one row. Measure points feed the columns named by the mapping; a
// point may be a number, a string, a bool or {"value": v, "quality": q}.
// params.time (milliseconds) feeds the time column and the key column is
// the key given to Parse or the configured key field. Points that feed no
// column are counted and skipped; columns without a point are null. A point
// of the wrong type fails the whole payload.
type EnOS struct {
	stage
	names      map[string]int32
	pointNames []string
	plain      []bool // the point name can be matched byte for byte
	points     []pointDest
	pred       []int32 // point index seen at each position of the last payload
	opts       EnOSOptions
	unknown    int64
	missingKey string
}

type pointDest struct{ value, quality int }

var (
	litParams        = []byte("params")
	litMeasurepoints = []byte("measurepoints")
	litTime          = []byte("time")
	litValue         = []byte("value")
	litQuality       = []byte("quality")
)

// maxPred bounds the remembered order of measure points.
const maxPred = 256

// NewEnOS returns a decoder filling m.Schema. Every column but the time and
// key columns is fed by the measure point its mapping names; a source
// ending in ".quality" takes the quality of that point.
func NewEnOS(m *Mapping, opts EnOSOptions) (*EnOS, error) {
	switch opts.KeyField {
	case "params", "measurepoints", "time":
		return nil, fmt.Errorf("enos: key field %q is part of the measure-point shape", opts.KeyField)
	}
	d := &EnOS{names: map[string]int32{}, opts: opts, missingKey: "no device key"}
	if opts.KeyField != "" {
		d.missingKey = fmt.Sprintf("no device key (field %q)", opts.KeyField)
	}
	d.init(m, opts.Time, func(src string) string { return fmt.Sprintf("point %q", src) })
	for c, src := range m.Sources {
		if c == d.timeCol || c == d.keyCol {
			continue
		}
		point, quality := src, false
		if p, ok := strings.CutSuffix(src, ".quality"); ok && p != "" {
			point, quality = p, true
		}
		idx, ok := d.names[point]
		if !ok {
			idx = int32(len(d.points))
			d.names[point] = idx
			d.pointNames = append(d.pointNames, point)
			d.plain = append(d.plain, plainKey(point))
			d.points = append(d.points, pointDest{value: -1, quality: -1})
		}
		pd := &d.points[idx]
		dst := &pd.value
		if quality {
			dst = &pd.quality
		}
		if *dst >= 0 {
			return nil, fmt.Errorf("enos: %q feeds both %q and %q", src, m.Schema.Fields[*dst].Name, m.Schema.Fields[c].Name)
		}
		*dst = c
	}
	return d, nil
}

// Decode parses payload and appends its rows to rb; on error rb is
// unchanged.
func (d *EnOS) Decode(rb *engine.RecordBuilder, payload []byte, key string) (int, error) {
	if _, err := d.Parse(payload, key); err != nil {
		return 0, err
	}
	return d.Append(rb), nil
}

// Parse decodes one payload and stages its rows.
func (d *EnOS) Parse(payload []byte, key string) (int, error) {
	d.begin(key)
	d.unknown = 0
	if err := d.parse(payload); err != nil {
		d.rows = 0
		return 0, err
	}
	if d.unknown > 0 && d.opts.Unknown != nil {
		d.opts.Unknown.Add(d.unknown)
	}
	return d.rows, nil
}

func (d *EnOS) parse(b []byte) error {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return errAt(i, "expected a JSON object")
	}
	i, done, err := objOpen(b, i)
	if err != nil {
		return err
	}
	var envKey []byte
	params := false
	for !done {
		var name []byte
		vi, ok := matchKey(b, i, "params")
		if ok {
			name = litParams
		} else {
			ks, ke, esc, v, err := objKey(b, i)
			if err != nil {
				return err
			}
			name, vi = d.keyName(b[ks:ke], esc), v
		}
		switch {
		case string(name) == "params":
			params = true
			d.rows = 0
			i, err = d.parseParams(b, vi)
		case d.opts.KeyField != "" && string(name) == d.opts.KeyField:
			envKey, i, err = d.keyValue(b, vi)
		default:
			i, err = skipValue(b, vi, 1)
		}
		if err != nil {
			return err
		}
		if i, done, err = objNext(b, i); err != nil {
			return err
		}
	}
	if i = skipWS(b, i); i != len(b) {
		return errAt(i, "data after the payload")
	}
	if !params {
		return errAt(-1, "no params")
	}
	if d.keyCol >= 0 && len(d.key) == 0 && envKey != nil {
		for r := 0; r < d.rows; r++ {
			if c := &d.row(r)[d.keyCol]; !c.set {
				*c = cell{s: envKey, set: true}
			}
		}
	}
	if d.opts.Now != nil && d.timeCol >= 0 {
		for r := 0; r < d.rows; r++ {
			if c := &d.row(r)[d.timeCol]; !c.set {
				*c = cell{i: d.opts.Now(), set: true}
			}
		}
	}
	return d.finish(d.missingKey)
}

// keyName returns a key, unescaped into scratch when needed.
func (d *EnOS) keyName(k []byte, esc bool) []byte {
	if !esc {
		return k
	}
	d.scr = unescape(d.scr[:0], k)
	return d.scr
}

// keyValue reads a device key: a non-empty string.
func (d *EnOS) keyValue(b []byte, i int) ([]byte, int, error) {
	if i >= len(b) || b[i] != '"' {
		end, err := skipValue(b, i, 1)
		if err != nil {
			return nil, end, err
		}
		return nil, i, errAt(i, "key field %q: expected a string", d.opts.KeyField)
	}
	end, esc, err := scanString(b, i)
	if err != nil {
		return nil, end, err
	}
	k := d.unescaped(b[i+1:end-1], esc)
	if !utf8.Valid(k) {
		return nil, i, errAt(i, "key field %q: invalid UTF-8", d.opts.KeyField)
	}
	return k, end, nil
}

func (d *EnOS) parseParams(b []byte, i int) (int, error) {
	if i < len(b) && b[i] == '{' {
		return d.parseItem(b, i)
	}
	if i >= len(b) || b[i] != '[' {
		return i, errAt(i, "params: expected an object or a list")
	}
	i, done, err := arrOpen(b, i)
	for err == nil && !done {
		if i, err = d.parseItem(b, i); err != nil {
			break
		}
		i, done, err = arrNext(b, i)
	}
	return i, err
}

// parseItem stages one params object as one row.
func (d *EnOS) parseItem(b []byte, i int) (int, error) {
	if i >= len(b) || b[i] != '{' {
		return i, errAt(i, "params: expected an object")
	}
	r := d.newRow()
	i, done, err := objOpen(b, i)
	for err == nil && !done {
		var name []byte
		vi, ok := matchKey(b, i, "measurepoints")
		if ok {
			name = litMeasurepoints
		} else if vi, ok = matchKey(b, i, "time"); ok {
			name = litTime
		} else {
			ks, ke, esc, v, kerr := objKey(b, i)
			if kerr != nil {
				return v, kerr
			}
			name, vi = d.keyName(b[ks:ke], esc), v
		}
		switch {
		case string(name) == "measurepoints":
			i, err = d.parsePoints(b, vi, r)
		case string(name) == "time":
			i, err = d.parseTime(b, vi, r)
		case d.opts.KeyField != "" && string(name) == d.opts.KeyField:
			var k []byte
			k, i, err = d.keyValue(b, vi)
			if err == nil && d.keyCol >= 0 {
				d.row(r)[d.keyCol] = cell{s: k, set: true}
			}
		default:
			i, err = skipValue(b, vi, 1)
		}
		if err != nil {
			return i, err
		}
		i, done, err = objNext(b, i)
	}
	return i, err
}

func (d *EnOS) parseTime(b []byte, i, r int) (int, error) {
	if i < len(b) && b[i] == 'n' {
		end, err := literal(b, i, "null")
		if err == nil && d.timeCol >= 0 {
			d.row(r)[d.timeCol] = cell{}
		}
		return end, err
	}
	if i >= len(b) || !(b[i] == '-' || b[i] >= '0' && b[i] <= '9') {
		end, err := skipValue(b, i, 1)
		if err != nil {
			return end, err
		}
		return i, errAt(i, "time: expected milliseconds since the epoch")
	}
	end, err := scanNumber(b, i)
	if err != nil {
		return end, err
	}
	ms, ok := parseWhole(b[i:end])
	if !ok {
		f, err := parseFloat(b[i:end])
		if err != nil || !(f > -9.2e18 && f < 9.2e18) {
			return i, errAt(i, "time: out of range")
		}
		ms = int64(math.Floor(f))
	}
	if !engine.ValidEventTime(ms) {
		return i, errAt(i, "time: %d is out of range (years 0001-9999 in milliseconds since the epoch)", ms)
	}
	if d.timeCol >= 0 {
		d.row(r)[d.timeCol] = cell{i: ms, set: true}
	}
	return end, nil
}

func (d *EnOS) parsePoints(b []byte, i, r int) (int, error) {
	if i < len(b) && b[i] == 'n' {
		return literal(b, i, "null")
	}
	if i >= len(b) || b[i] != '{' {
		return i, errAt(i, "measurepoints: expected an object")
	}
	row := d.row(r)
	i, done, err := objOpen(b, i)
	for k := 0; err == nil && !done; k++ {
		// Devices send their points in the same order every time: try
		// the point seen at this position in the last payload first.
		p, vi, ok := int32(-1), 0, false
		if k < len(d.pred) {
			if q := d.pred[k]; q >= 0 && d.plain[q] {
				if vi, ok = matchKey(b, i, d.pointNames[q]); ok {
					p = q
				}
			}
		}
		if !ok {
			ks, ke, esc, v, kerr := objKey(b, i)
			if kerr != nil {
				return v, kerr
			}
			p, vi = d.lookup(d.keyName(b[ks:ke], esc), k), v
		}
		if p < 0 {
			d.unknown++
			i, err = skipValue(b, vi, 1)
		} else if end, ok := d.plainNumber(b, vi, row, d.points[p]); ok {
			i = end
		} else {
			i, err = d.pointValue(b, vi, row, d.points[p])
		}
		if err != nil {
			return i, err
		}
		i, done, err = objNext(b, i)
	}
	return i, err
}

// plainNumber stages the point at b[i] when it is a plain number for a
// float64 column, the common case, as pointValue would, and returns the
// index after it and true. Anything else, errors included, is left to
// pointValue.
func (d *EnOS) plainNumber(b []byte, i int, row []cell, pd pointDest) (int, bool) {
	if pd.value < 0 || i >= len(b) || d.types[pd.value] != engine.Float64 {
		return i, false
	}
	if ch := b[i]; ch != '-' && (ch < '0' || ch > '9') {
		return i, false
	}
	f, end, err := scanFloat(b, i)
	if err != nil {
		return i, false
	}
	c := &row[pd.value]
	c.f, c.set = f, true
	return end, true
}

// lookup finds a measure point by name and remembers it as the point at
// position k.
func (d *EnOS) lookup(name []byte, k int) int32 {
	p, ok := d.names[string(name)]
	if !ok {
		p = -1
	}
	if k < len(d.pred) {
		d.pred[k] = p
	} else if k == len(d.pred) && k < maxPred {
		d.pred = append(d.pred, p)
	}
	return p
}

// pointValue stages a point written as a plain value or as
// {"value": v, "quality": q}.
func (d *EnOS) pointValue(b []byte, i int, row []cell, pd pointDest) (int, error) {
	if i >= len(b) || b[i] != '{' {
		if pd.value < 0 {
			return skipValue(b, i, 1)
		}
		return d.setJSON(row, pd.value, b, i)
	}
	start := i
	found := false
	i, done, err := objOpen(b, i)
	for err == nil && !done {
		var name []byte
		vi, ok := matchKey(b, i, "value")
		if ok {
			name = litValue
		} else if vi, ok = matchKey(b, i, "quality"); ok {
			name = litQuality
		} else {
			ks, ke, esc, v, kerr := objKey(b, i)
			if kerr != nil {
				return v, kerr
			}
			name, vi = d.keyName(b[ks:ke], esc), v
		}
		switch {
		case string(name) == "value" && pd.value >= 0:
			found = true
			i, err = d.setJSON(row, pd.value, b, vi)
		case string(name) == "value":
			found = true
			i, err = skipValue(b, vi, 1)
		case string(name) == "quality" && pd.quality >= 0:
			i, err = d.setJSON(row, pd.quality, b, vi)
		default:
			i, err = skipValue(b, vi, 1)
		}
		if err != nil {
			return i, err
		}
		i, done, err = objNext(b, i)
	}
	if err != nil || found || pd.value < 0 {
		return i, err
	}
	// An object without "value" is a structured point: a string column
	// takes its JSON text, other columns cannot.
	return d.setJSON(row, pd.value, b, start)
}
