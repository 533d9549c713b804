package codec_test

import (
	"errors"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

const enosSchema = `
schema:
  time: time
  key: asset
  fields: {temp: float64, power: float64, status: string, on: bool, count: int64}
`

const ts = 1700000000000

func TestEnOS(t *testing.T) {
	tests := []struct {
		name     string
		decl     string // schema YAML; enosSchema when empty
		opts     codec.EnOSOptions
		key      string
		payloads []string
		want     []enginetest.Row
		errs     []string // substring of each payload's error, "" for none
		unknown  int64
	}{
		{
			name: "single post",
			key:  "T1",
			payloads: []string{`{"id":"1","version":"1.0","method":"thing.measurepoint.post",` +
				`"params":{"measurepoints":{"temp":1.02,"power":{"value":1,"quality":9},"status":"run","on":true,"count":7},"time":1700000000000}}`},
			want: []enginetest.Row{{int64(ts), "T1", 1.02, 1.0, "run", true, int64(7)}},
		},
		{
			name:     "missing points are null, unknown points counted",
			key:      "T1",
			payloads: []string{`{"params":{"measurepoints":{"temp":-3.5,"humidity":40,"x":{"value":[1,2]}},"time":1700000000000}}`},
			want:     []enginetest.Row{{int64(ts), "T1", -3.5, nil, nil, nil, nil}},
			unknown:  2,
		},
		{
			name: "batch post",
			key:  "T1",
			payloads: []string{`{"method":"thing.measurepoint.resume","params":[` +
				`{"measurepoints":{"temp":1},"time":1700000000000},` +
				`{"measurepoints":{"temp":2},"time":1700000001000}]}`},
			want: []enginetest.Row{
				{int64(ts), "T1", 1.0, nil, nil, nil, nil},
				{int64(ts + 1000), "T1", 2.0, nil, nil, nil, nil},
			},
		},
		{
			// Rows are appended a column at a time: every column is null
			// in one row and set in another, none in the same rows.
			name: "batch post, values and nulls of every type",
			key:  "T1",
			payloads: []string{`{"params":[` +
				`{"measurepoints":{"temp":1.5,"status":"a","count":1},"time":1700000000000},` +
				`{"measurepoints":{"power":{"value":2,"quality":3},"on":false},"time":1700000001000},` +
				`{"measurepoints":{"temp":null,"status":"c","on":true,"count":-4},"time":1700000002000},` +
				`{"measurepoints":{},"time":1700000003000}]}`},
			want: []enginetest.Row{
				{int64(ts), "T1", 1.5, nil, "a", nil, int64(1)},
				{int64(ts + 1000), "T1", nil, 2.0, nil, false, nil},
				{int64(ts + 2000), "T1", nil, nil, "c", true, int64(-4)},
				{int64(ts + 3000), "T1", nil, nil, nil, nil, nil},
			},
		},
		{
			name:     "empty batch",
			key:      "T1",
			payloads: []string{`{"params":[]}`},
			errs:     []string{""},
		},
		{
			name: "key field in each item, then in the envelope",
			opts: codec.EnOSOptions{KeyField: "deviceKey"},
			payloads: []string{
				`{"params":[{"deviceKey":"A","measurepoints":{"temp":1},"time":1700000000000},` +
					`{"measurepoints":{"temp":2},"time":1700000000000}],"deviceKey":"B"}`,
				`{"params":{"measurepoints":{"temp":3},"time":1700000000000}}`,
			},
			want: []enginetest.Row{
				{int64(ts), "A", 1.0, nil, nil, nil, nil},
				{int64(ts), "B", 2.0, nil, nil, nil, nil},
			},
			errs: []string{"", `no device key (field "deviceKey")`},
		},
		{
			name: "key fields must be strings",
			opts: codec.EnOSOptions{KeyField: "deviceKey"},
			payloads: []string{
				`{"params":{"deviceKey":7,"measurepoints":{"temp":1},"time":1700000000000}}`,
				`{"deviceKey":null,"params":{"measurepoints":{"temp":1},"time":1700000000000}}`,
				`{"params":{"deviceKey":"` + "\xfe" + `","time":1700000000000}}`,
			},
			errs: []string{`key field "deviceKey": expected a string`, `key field "deviceKey": expected a string`, "invalid UTF-8"},
		},
		{
			name:     "the key argument wins over the key field",
			opts:     codec.EnOSOptions{KeyField: "deviceKey"},
			key:      "T9",
			payloads: []string{`{"params":{"deviceKey":"A","measurepoints":{"temp":1},"time":1700000000000}}`},
			want:     []enginetest.Row{{int64(ts), "T9", 1.0, nil, nil, nil, nil}},
		},
		{
			name:     "no key",
			payloads: []string{`{"params":{"measurepoints":{"temp":1},"time":1700000000000}}`},
			errs:     []string{"no device key"},
		},
		{
			name:     "no time",
			key:      "T1",
			payloads: []string{`{"params":{"measurepoints":{"temp":1}}}`, `{"params":{"measurepoints":{"temp":1},"time":null}}`},
			errs:     []string{"missing time", "missing time"},
		},
		{
			name:     "no time with a clock",
			key:      "T1",
			opts:     codec.EnOSOptions{Now: func() int64 { return 42 }},
			payloads: []string{`{"params":{"measurepoints":{"temp":1}}}`},
			want:     []enginetest.Row{{int64(42), "T1", 1.0, nil, nil, nil, nil}},
		},
		{
			name: "wrong types fail the payload and leave nothing behind",
			key:  "T1",
			payloads: []string{
				`{"params":[{"measurepoints":{"temp":1},"time":1700000000000},{"measurepoints":{"temp":"hot"},"time":1700000000000}]}`,
				`{"params":{"measurepoints":{"on":1},"time":1700000000000}}`,
				`{"params":{"measurepoints":{"count":1.5},"time":1700000000000}}`,
				`{"params":{"measurepoints":{"temp":{"quality":1}},"time":1700000000000}}`,
				`{"params":{"measurepoints":{"temp":[1]},"time":1700000000000}}`,
				`{"params":{"measurepoints":{"temp":1},"time":"1700000000000"}}`,
				`{"params":{"measurepoints":{"temp":1e999},"time":1700000000000}}`,
				`{"params":{"measurepoints":{"temp":1},"time":9223372036854775807}}`,
				`{"params":{"measurepoints":{"temp":1},"time":-9223372036854775808}}`,
				`{"params":{"measurepoints":{"temp":1},"time":1e18}}`,
				`{"params":{"measurepoints":{"temp":2},"time":1700000000000}}`,
			},
			want: []enginetest.Row{{int64(ts), "T1", 2.0, nil, nil, nil, nil}},
			errs: []string{
				`point "temp": float64 column got a string`,
				`point "on": bool column got a number`,
				`point "count": not a whole number`,
				`point "temp": float64 column got an object`,
				`point "temp": float64 column got an array`,
				`time: expected milliseconds`,
				`number out of range`,
				`time: 9223372036854775807 is out of range`,
				`time: -9223372036854775808 is out of range`,
				`time: 1000000000000000000 is out of range`,
				"",
			},
		},
		{
			name: "string columns take any value as text",
			key:  "T1",
			payloads: []string{
				`{"params":{"measurepoints":{"status":12.50},"time":1700000000000}}`,
				`{"params":{"measurepoints":{"status":false},"time":1700000000000}}`,
				`{"params":{"measurepoints":{"status":{"mode": [1, "a"]}},"time":1700000000000}}`,
				`{"params":{"measurepoints":{"status":{"value":"ok","quality":0}},"time":1700000000000}}`,
				`{"params":{"measurepoints":{"status":"tab\there \"q\" \u00e9\ud83d\ude00"},"time":1700000000000}}`,
			},
			want: []enginetest.Row{
				{int64(ts), "T1", nil, nil, "12.50", nil, nil},
				{int64(ts), "T1", nil, nil, "false", nil, nil},
				{int64(ts), "T1", nil, nil, `{"mode": [1, "a"]}`, nil, nil},
				{int64(ts), "T1", nil, nil, "ok", nil, nil},
				{int64(ts), "T1", nil, nil, "tab\there \"q\" é😀", nil, nil},
			},
		},
		{
			name: "numbers",
			key:  "T1",
			payloads: []string{
				`{"params":{"measurepoints":{"temp":-0.0001,"power":123456789012345678,"count":-9007199254740993},"time":1.7e12}}`,
				`{"params":{"measurepoints":{"temp":1E3,"power":0,"count":2e3},"time":1700000000000}}`,
			},
			want: []enginetest.Row{
				{int64(ts), "T1", -0.0001, 123456789012345678.0, nil, nil, int64(-9007199254740993)},
				{int64(ts), "T1", 1000.0, 0.0, nil, nil, int64(2000)},
			},
		},
		{
			name: "escaped names, odd spacing, other fields skipped",
			key:  "T1",
			payloads: []string{" \n{ \"id\" : 1 , \"extra\" : {\"a\":[true,null,{\"b\":\"}\"}]} ,\"params\" :\t{ \"time\" : 1700000000000 ," +
				` "measurepoints" : { "t\u0065mp" : { "quality" : 1 , "value" : 5 } } } } ` + "\n"},
			want: []enginetest.Row{{int64(ts), "T1", 5.0, nil, nil, nil, nil}},
		},
		{
			name: "the point order may change between payloads",
			key:  "T1",
			payloads: []string{
				`{"params":{"measurepoints":{"temp":1,"power":2,"status":"a"},"time":1700000000000}}`,
				`{"params":{"measurepoints":{"status":"b","temp":3,"x":0,"power":4},"time":1700000000000}}`,
				`{"params":{"measurepoints":{"power":5},"time":1700000000000}}`,
			},
			want: []enginetest.Row{
				{int64(ts), "T1", 1.0, 2.0, "a", nil, nil},
				{int64(ts), "T1", 3.0, 4.0, "b", nil, nil},
				{int64(ts), "T1", nil, 5.0, nil, nil, nil},
			},
			unknown: 1,
		},
		{
			name: "null points and measurepoints",
			key:  "T1",
			payloads: []string{
				`{"params":{"measurepoints":{"temp":null,"power":{"value":null}},"time":1700000000000}}`,
				`{"params":{"measurepoints":null,"time":1700000000000}}`,
			},
			want: []enginetest.Row{
				{int64(ts), "T1", nil, nil, nil, nil, nil},
				{int64(ts), "T1", nil, nil, nil, nil, nil},
			},
		},
		{
			name: "malformed",
			key:  "T1",
			payloads: []string{
				``, `null`, `[]`, `{`, `{"params":{}} x`, `{"params":{"measurepoints":{"temp":1,}}}`,
				`{"params":{"measurepoints":{"temp":01},"time":1}}`, `{"params":"x"}`, `{"id":1}`,
				`{"params":{"measurepoints":{"status":"a` + "\x01" + `"},"time":1}}`,
				`{"params":{"measurepoints":{"status":"` + "\xff" + `"},"time":1}}`,
				`{"params":{"measurepoints":{"temp":tru},"time":1}}`,
				`{"params":[{"time":1},2]}`,
			},
			errs: []string{
				"expected a JSON object", "expected a JSON object", "expected a JSON object", "expected a key",
				"data after the payload", "expected a key", "expected ',' or '}'", "params: expected an object or a list",
				"no params", "control character", "invalid UTF-8", "bad literal", "params: expected an object",
			},
		},
		{
			name: "renamed points and quality columns",
			decl: `
schema:
  key: asset
  fields: {power: float64, power_q: int64}
mapping: {power: Power, power_q: Power.quality}
`,
			key: "T1",
			payloads: []string{
				`{"params":{"measurepoints":{"Power":{"value":1.5,"quality":9},"power":7},"time":1700000000000}}`,
				`{"params":{"measurepoints":{"Power":2.5},"time":1700000000000}}`,
			},
			want: []enginetest.Row{
				{int64(ts), "T1", 1.5, int64(9)},
				{int64(ts), "T1", 2.5, nil},
			},
			unknown: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			decl := tt.decl
			if decl == "" {
				decl = enosSchema
			}
			var unknown atomic.Int64
			opts := tt.opts
			opts.Unknown = &unknown
			d, err := codec.NewEnOS(mapping(t, decl), opts)
			if err != nil {
				t.Fatal(err)
			}
			rows, errs := decodeAll(t, d, tt.key, tt.payloads...)
			for i, err := range errs {
				want := ""
				if i < len(tt.errs) {
					want = tt.errs[i]
				}
				switch {
				case want == "" && err != nil:
					t.Errorf("payload %d: unexpected error %v", i, err)
				case want != "" && err == nil:
					t.Errorf("payload %d: no error, want %q", i, want)
				case want != "" && !strings.Contains(err.Error(), want):
					t.Errorf("payload %d: error %q, want %q", i, err, want)
				}
				var ce *codec.Error
				if err != nil && !errors.As(err, &ce) {
					t.Errorf("payload %d: error %T is not a *codec.Error", i, err)
				}
			}
			if !reflect.DeepEqual(rows, tt.want) {
				t.Errorf("rows:\n got %v\nwant %v", rows, tt.want)
			}
			if got := unknown.Load(); got != tt.unknown {
				t.Errorf("unknown points: got %d, want %d", got, tt.unknown)
			}
		})
	}
}

func TestEnOSOptionErrors(t *testing.T) {
	for _, tt := range []struct {
		decl string
		opts codec.EnOSOptions
		want string
	}{
		{enosSchema, codec.EnOSOptions{KeyField: "params"}, "part of the measure-point shape"},
		{"schema:\n  fields: {a: float64, b: float64}\nmapping: {a: x, b: x}\n", codec.EnOSOptions{}, `"x" feeds both "a" and "b"`},
	} {
		_, err := codec.NewEnOS(mapping(t, tt.decl), tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("got %v, want %q", err, tt.want)
		}
	}
}

func TestEnOSParseThenAppend(t *testing.T) {
	d, err := codec.NewEnOS(mapping(t, enosSchema), codec.EnOSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	rb := engine.NewRecordBuilder(mem, d.Schema())
	defer rb.Release()
	n, err := d.Parse([]byte(`{"params":[{"measurepoints":{"temp":1},"time":5},{"measurepoints":{},"time":3}]}`), "K")
	if err != nil || n != 2 {
		t.Fatalf("Parse: %d, %v", n, err)
	}
	if d.Time(0) != 5 || d.Time(1) != 3 {
		t.Errorf("Time: %d %d", d.Time(0), d.Time(1))
	}
	if got := d.Append(rb); got != 2 || rb.Rows() != 2 {
		t.Errorf("Append: %d rows, builder %d", got, rb.Rows())
	}
	if got := d.Append(rb); got != 0 {
		t.Errorf("second Append: %d rows", got)
	}
	// A failed Parse drops what was staged.
	if _, err := d.Parse([]byte(`{"params":{"time":1}}`), "K"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Parse([]byte(`{`), "K"); err == nil {
		t.Fatal("no error")
	}
	if got := d.Append(rb); got != 0 || rb.Rows() != 2 {
		t.Errorf("Append after a failed Parse: %d rows", got)
	}
	checkAligned(t, rb)
	rb.NewRecord().Release()
}
