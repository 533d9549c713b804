package codec_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"reflect"
	"strconv"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

// The fuzz schema: time, asset (key), a float64, b int64, s string, f
// bool and q, the quality of point a.
const fuzzDecl = `
schema:
  key: asset
  fields: {a: float64, b: int64, s: string, f: bool, q: float64}
mapping: {q: a.quality}
`

// FuzzEnOS checks that the EnOS decoder never panics, never leaves a
// builder with misaligned columns, accepts only valid JSON and agrees with
// a reference decoder built on encoding/json.
func FuzzEnOS(f *testing.F) {
	for _, s := range []string{
		`{"id":"1","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":{"a":1.02,"b":{"value":1,"quality":9}},"time":1700000000000}}`,
		`{"params":[{"dk":"T1","measurepoints":{"a":{"value":2,"quality":1},"s":"x","f":true},"time":1},{"measurepoints":{"b":3e2},"time":2.5}],"dk":"E"}`,
		`{"params":{"measurepoints":{"s":{"k":[1,"\u00e9"]},"zz":null},"time":-1}}`,
	} {
		f.Add([]byte(s))
	}
	mem := memory.NewGoAllocator()
	f.Fuzz(func(t *testing.T, payload []byte) {
		var unknown atomic.Int64
		d, err := codec.NewEnOS(mapping(t, fuzzDecl), codec.EnOSOptions{KeyField: "dk", Unknown: &unknown})
		if err != nil {
			t.Fatal(err)
		}
		rb := engine.NewRecordBuilder(mem, d.Schema())
		defer rb.Release()
		// A row before and after shows that a failed payload leaves
		// earlier rows alone.
		good := []byte(`{"params":{"dk":"G","measurepoints":{"a":1},"time":1}}`)
		if _, err := d.Decode(rb, good, ""); err != nil {
			t.Fatal(err)
		}
		n, err := d.Decode(rb, payload, "")
		checkAligned(t, rb)
		if err != nil && rb.Rows() != 1 {
			t.Fatalf("failed payload (%v) left %d rows", err, rb.Rows()-1)
		}
		if err == nil && rb.Rows() != 1+n {
			t.Fatalf("%d rows reported, %d appended", n, rb.Rows()-1)
		}
		// Decoding again (the point order is now remembered) gives the
		// same result.
		n2, err2 := d.Decode(rb, payload, "")
		checkAligned(t, rb)
		if (err == nil) != (err2 == nil) || n != n2 {
			t.Fatalf("second decode: %d, %v; first %d, %v", n2, err2, n, err)
		}
		if _, err := d.Decode(rb, good, ""); err != nil {
			t.Fatal(err)
		}
		rec := rb.NewRecord()
		defer rec.Release()
		rows := enginetest.Rows(rec)
		if err == nil && !json.Valid(payload) {
			t.Fatalf("accepted invalid JSON")
		}
		if err != nil {
			var ce *codec.Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not a *codec.Error", err)
			}
		}
		if !json.Valid(payload) || hasDuplicateKeys(payload) || depth(payload) > 100 {
			return
		}
		want, wantUnknown, rerr := refEnOS(payload, "dk")
		if (rerr == nil) != (err == nil) {
			t.Fatalf("decoder error %v, reference error %v", err, rerr)
		}
		if err != nil {
			return
		}
		got := rows[1 : 1+n]
		if !sameRows(got, want) {
			t.Fatalf("rows:\n got %v\nwant %v", got, want)
		}
		if unknown.Load() != 2*wantUnknown {
			t.Fatalf("unknown points: got %d, want %d", unknown.Load(), 2*wantUnknown)
		}
	})
}

func sameRows(a, b []enginetest.Row) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		for j := range a[i] {
			x, y := a[i][j], b[i][j]
			if fx, ok := x.(float64); ok {
				if fy, ok := y.(float64); ok && math.Float64bits(fx) == math.Float64bits(fy) {
					continue
				}
				return false
			}
			if !reflect.DeepEqual(x, y) {
				return false
			}
		}
	}
	return true
}

// refEnOS decodes a valid JSON payload the slow, obvious way.
func refEnOS(payload []byte, keyField string) ([]enginetest.Row, int64, error) {
	var env map[string]json.RawMessage
	if err := json.Unmarshal(payload, &env); err != nil || env == nil {
		return nil, 0, errors.New("not an object")
	}
	params, ok := env["params"]
	if !ok {
		return nil, 0, errors.New("no params")
	}
	envKey, hasEnvKey := "", false
	if raw, ok := env[keyField]; ok {
		if err := json.Unmarshal(raw, &envKey); err != nil || raw[0] != '"' || !utf8.Valid(raw) {
			return nil, 0, errors.New("key not a string")
		}
		hasEnvKey = true
	}
	var items []json.RawMessage
	switch params[0] {
	case '{':
		items = []json.RawMessage{params}
	case '[':
		_ = json.Unmarshal(params, &items)
	default:
		return nil, 0, errors.New("bad params")
	}
	var rows []enginetest.Row
	var unknown int64
	for _, it := range items {
		var item map[string]json.RawMessage
		if it[0] != '{' {
			return nil, 0, errors.New("item not an object")
		}
		_ = json.Unmarshal(it, &item)
		row := make(enginetest.Row, 7)
		if raw, ok := item["time"]; ok && string(raw) != "null" {
			if raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
				return nil, 0, errors.New("bad time")
			}
			if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
				row[0] = n
			} else {
				f, err := strconv.ParseFloat(string(raw), 64)
				if err != nil || !(f > -9.2e18 && f < 9.2e18) {
					return nil, 0, errors.New("time range")
				}
				row[0] = int64(math.Floor(f))
			}
			if !engine.ValidEventTime(row[0].(int64)) {
				return nil, 0, errors.New("time range")
			}
		}
		if raw, ok := item[keyField]; ok {
			var k string
			if raw[0] != '"' || !utf8.Valid(raw) {
				return nil, 0, errors.New("key not a string")
			}
			_ = json.Unmarshal(raw, &k)
			row[1] = k
		}
		if raw, ok := item["measurepoints"]; ok && string(raw) != "null" {
			if raw[0] != '{' {
				return nil, 0, errors.New("measurepoints not an object")
			}
			var pts map[string]json.RawMessage
			_ = json.Unmarshal(raw, &pts)
			for name, v := range pts {
				var err error
				switch name {
				case "a":
					err = refPoint(row, 2, 6, v, refFloat)
				case "b":
					err = refPoint(row, 3, -1, v, refInt)
				case "s":
					err = refPoint(row, 4, -1, v, refString)
				case "f":
					err = refPoint(row, 5, -1, v, refBool)
				default:
					unknown++
				}
				if err != nil {
					return nil, 0, err
				}
			}
		}
		if row[0] == nil {
			return nil, 0, errors.New("missing time")
		}
		if row[1] == nil && hasEnvKey {
			row[1] = envKey
		}
		if row[1] == nil || row[1] == "" {
			return nil, 0, errors.New("missing key")
		}
		rows = append(rows, row)
	}
	return rows, unknown, nil
}

func refPoint(row enginetest.Row, col, qcol int, v json.RawMessage, conv func(json.RawMessage) (any, error)) error {
	if v[0] == '{' {
		var obj map[string]json.RawMessage
		_ = json.Unmarshal(v, &obj)
		if q, ok := obj["quality"]; ok && qcol >= 0 {
			val, err := refFloat(q)
			if err != nil {
				return err
			}
			row[qcol] = val
		}
		if inner, ok := obj["value"]; ok {
			val, err := conv(inner)
			row[col] = val
			return err
		}
	}
	val, err := conv(v)
	row[col] = val
	return err
}

func refFloat(v json.RawMessage) (any, error) {
	if string(v) == "null" {
		return nil, nil
	}
	if v[0] != '-' && (v[0] < '0' || v[0] > '9') {
		return nil, errors.New("not a number")
	}
	return strconv.ParseFloat(string(v), 64)
}

func refInt(v json.RawMessage) (any, error) {
	if string(v) == "null" {
		return nil, nil
	}
	if v[0] != '-' && (v[0] < '0' || v[0] > '9') {
		return nil, errors.New("not a number")
	}
	if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
		return n, nil
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || f != math.Trunc(f) || !(f >= -9223372036854775808 && f < 9223372036854775808) {
		return nil, errors.New("not an int")
	}
	return int64(f), nil
}

func refString(v json.RawMessage) (any, error) {
	if string(v) == "null" {
		return nil, nil
	}
	if !utf8.Valid(v) {
		return nil, errors.New("invalid UTF-8")
	}
	if v[0] == '"' {
		var s string
		err := json.Unmarshal(v, &s)
		return s, err
	}
	return string(v), nil
}

func refBool(v json.RawMessage) (any, error) {
	switch string(v) {
	case "null":
		return nil, nil
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return nil, errors.New("not a bool")
}

// hasDuplicateKeys reports whether any object in a valid JSON text repeats
// a key (the reference decoder keeps only the last one).
func hasDuplicateKeys(p []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(p))
	type frame struct {
		obj  bool
		key  bool // next string token in an object is a key
		seen map[string]bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return false
		}
		if err != nil {
			return true
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.obj && top.key {
			if s, ok := tok.(string); ok {
				if top.seen[s] {
					return true
				}
				top.seen[s] = true
				top.key = false
				continue
			}
		}
		if top != nil && top.obj {
			top.key = true
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{obj: true, key: true, seen: map[string]bool{}})
		case json.Delim('['):
			stack = append(stack, &frame{})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			if len(stack) > 0 && stack[len(stack)-1].obj {
				stack[len(stack)-1].key = true
			}
		}
	}
}

// depth returns the nesting depth of a JSON text.
func depth(p []byte) int {
	d, maxD, inStr := 0, 0, false
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case inStr && c == '\\':
			i++
		case c == '"':
			inStr = !inStr
		case !inStr && (c == '{' || c == '['):
			d++
			maxD = max(maxD, d)
		case !inStr && (c == '}' || c == ']'):
			d--
		}
	}
	return maxD
}

// FuzzJSON checks that the JSON decoder never panics, keeps the builder
// aligned and accepts only valid JSON.
func FuzzJSON(f *testing.F) {
	f.Add([]byte(`{"ts":1700000000000,"dev":{"id":"T1"},"v":[1,2.5],"s":"x","ok":true}`))
	f.Add([]byte(`{"ts":"2023-11-14T22:13:20Z","dev":{"id":"\u00e9"},"v":{"1":3},"s":{"a":null}}`))
	mem := memory.NewGoAllocator()
	f.Fuzz(func(t *testing.T, payload []byte) {
		m := mapping(t, "schema: {time: ts, key: asset, fields: {v: float64, n: int64, s: string, ok: bool, at: timestamp}}\n"+
			"mapping: {asset: dev.id, v: v.1, n: v.0}\n")
		for _, layout := range []string{"unix_ms", "rfc3339"} {
			tf, _ := codec.ParseTimeFormat(layout, "")
			d, err := codec.NewJSON(m, codec.JSONOptions{Time: tf})
			if err != nil {
				t.Fatal(err)
			}
			rb := engine.NewRecordBuilder(mem, d.Schema())
			n, err := d.Decode(rb, payload, "")
			checkAligned(t, rb)
			if (err == nil && rb.Rows() != n) || (err != nil && rb.Rows() != 0) {
				t.Fatalf("%d rows reported, %d appended (%v)", n, rb.Rows(), err)
			}
			if err == nil && !json.Valid(payload) {
				t.Fatal("accepted invalid JSON")
			}
			rb.Release()
		}
	})
}

// FuzzCSV checks that the CSV decoder never panics and keeps the builder
// aligned.
func FuzzCSV(f *testing.F) {
	f.Add([]byte(`1700000000000,T1,1.5,"a ""q"", b",7,true`))
	f.Add([]byte(`2023-11-14T22:13:20Z,,NaN,,x,1`))
	mem := memory.NewGoAllocator()
	f.Fuzz(func(t *testing.T, line []byte) {
		m := mapping(t, "schema: {key: asset, fields: {v: float64, s: string, n: int64, ok: bool}}\n")
		for _, layout := range []string{"unix_ms", "rfc3339", "02 01 2006 15:04"} {
			tf, _ := codec.ParseTimeFormat(layout, "")
			d, err := codec.NewCSV(m, codec.CSVOptions{Header: []string{"time", "asset", "v", "s", "n", "ok"}, Time: tf})
			if err != nil {
				t.Fatal(err)
			}
			rb := engine.NewRecordBuilder(mem, d.Schema())
			n, err := d.Decode(rb, line, "")
			checkAligned(t, rb)
			if (err == nil && rb.Rows() != n) || (err != nil && rb.Rows() != 0) {
				t.Fatalf("%d rows reported, %d appended (%v)", n, rb.Rows(), err)
			}
			rb.Release()
		}
	})
}
