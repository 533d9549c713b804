package codec_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

func TestJSON(t *testing.T) {
	const decl = `
schema:
  time: ts
  key: asset
  fields: {power: float64, speed: float64, status: string, n: int64, ok: bool}
mapping: {asset: device.id, speed: wind.speed, n: values.1}
`
	tests := []struct {
		name     string
		layout   string
		key      string
		payloads []string
		want     []enginetest.Row
		errs     []string
	}{
		{
			name: "paths, arrays and unmapped fields",
			payloads: []string{
				`{"ts":1700000000000,"device":{"id":"T1","x":[1]},"power":12.5,"wind":{"speed":7},"values":[9,10,11],"other":{"a":"b"}}`,
				`{"device":{"id":"T2"},"ts":1700000000001,"status":"run","ok":false}`,
			},
			want: []enginetest.Row{
				{int64(ts), "T1", 12.5, 7.0, nil, int64(10), nil},
				{int64(ts + 1), "T2", nil, nil, "run", nil, false},
			},
		},
		{
			name: "a scalar where an object is expected leaves nulls",
			payloads: []string{
				`{"ts":1700000000000,"device":{"id":"T1"},"wind":3,"values":7}`,
			},
			want: []enginetest.Row{{int64(ts), "T1", nil, nil, nil, nil, nil}},
		},
		{
			name:     "key argument",
			key:      "K",
			payloads: []string{`{"ts":1700000000000,"power":1}`},
			want:     []enginetest.Row{{int64(ts), "K", 1.0, nil, nil, nil, nil}},
		},
		{
			name:     "unix seconds",
			layout:   "unix_s",
			payloads: []string{`{"ts":1700000000.5,"device":{"id":"T1"}}`, `{"ts":"1700000001","device":{"id":"T1"}}`},
			want: []enginetest.Row{
				{int64(ts + 500), "T1", nil, nil, nil, nil, nil},
				{int64(ts + 1000), "T1", nil, nil, nil, nil, nil},
			},
		},
		{
			name:   "rfc3339",
			layout: "rfc3339",
			payloads: []string{
				`{"ts":"2023-11-14T22:13:20Z","device":{"id":"T1"}}`,
				`{"ts":"2023-11-15T00:13:20.25+02:00","device":{"id":"T1"}}`,
				`{"ts":1700000000000,"device":{"id":"T1"}}`,
			},
			want: []enginetest.Row{
				{int64(ts), "T1", nil, nil, nil, nil, nil},
				{int64(ts + 250), "T1", nil, nil, nil, nil, nil},
			},
			errs: []string{"", "", `"ts": expected a rfc3339 time string, got a number`},
		},
		{
			name:     "go layout",
			layout:   "2006-01-02 15:04:05",
			payloads: []string{`{"ts":"2023-11-14 22:13:20","device":{"id":"T1"}}`, `{"ts":"14.11.2023","device":{"id":"T1"}}`},
			want:     []enginetest.Row{{int64(ts), "T1", nil, nil, nil, nil, nil}},
			errs:     []string{"", `expected a time like "2006-01-02 15:04:05"`},
		},
		{
			name: "errors",
			payloads: []string{
				`{"device":{"id":"T1"}}`,
				`{"ts":1700000000000}`,
				`{"ts":1700000000000,"device":{"id":"T1"},"power":"high"}`,
				`{"ts":1700000000000,"device":{"id":"T1"},"values":[0,1.5]}`,
				`[1]`,
				`{"ts":1700000000000,"device":{"id":"T1"}}{}`,
			},
			errs: []string{
				"missing time", `missing key "device.id"`, `"power": float64 column got a string`,
				`"values.1": not a whole number`, "expected a JSON object", "data after the object",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tf, err := codec.ParseTimeFormat(tt.layout, "")
			if err != nil {
				t.Fatal(err)
			}
			d, err := codec.NewJSON(mapping(t, decl), codec.JSONOptions{Time: tf})
			if err != nil {
				t.Fatal(err)
			}
			rows, errs := decodeAll(t, d, tt.key, tt.payloads...)
			checkErrs(t, errs, tt.errs)
			if !reflect.DeepEqual(rows, tt.want) {
				t.Errorf("rows:\n got %v\nwant %v", rows, tt.want)
			}
		})
	}
}

func TestJSONMappingErrors(t *testing.T) {
	for _, tt := range []struct{ decl, want string }{
		{"schema:\n  fields: {a: float64, b: float64}\nmapping: {a: x, b: x.y}\n", `path "x.y" of column "b" runs through the value of column "a"`},
		{"schema:\n  fields: {a: float64, b: float64}\nmapping: {a: x.y, b: x}\n", `path "x" of column "b" is also read by another column`},
		{"schema:\n  fields: {a: float64}\nmapping: {a: x..y}\n", `empty segment`},
	} {
		_, err := codec.NewJSON(mapping(t, tt.decl), codec.JSONOptions{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("got %v, want %q", err, tt.want)
		}
	}
}

func checkErrs(t *testing.T, errs []error, want []string) {
	t.Helper()
	for i, err := range errs {
		w := ""
		if i < len(want) {
			w = want[i]
		}
		switch {
		case w == "" && err != nil:
			t.Errorf("payload %d: unexpected error %v", i, err)
		case w != "" && err == nil:
			t.Errorf("payload %d: no error, want %q", i, w)
		case w != "" && !strings.Contains(err.Error(), w):
			t.Errorf("payload %d: error %q, want %q", i, err, w)
		}
	}
}

func TestJSONTimeUnits(t *testing.T) {
	for _, tt := range []struct {
		layout, value string
		want          int64
		err           string
	}{
		{"unix_ms", `1700000000000.9`, 1700000000000, ""},
		{"unix_ms", `"-1"`, -1, ""},
		{"unix_s", `-1.5`, -1500, ""},
		{"unix_s", `9223372036854776`, 0, "time out of range"},
		{"unix_s", `1e300`, 0, "time out of range"},
		{"unix_ms", `9223372036854775807`, 0, "time out of range"},
		{"unix_ms", `-9223372036854775808`, 0, "time out of range"},
		{"unix_ms", `253402300800000`, 0, "time out of range"},
		{"unix_ms", `253402300799999`, 253402300799999, ""},
		{"rfc3339", `"9999-12-31T23:59:59.999Z"`, 253402300799999, ""},
		{"unix_s", `-62135596801`, 0, "time out of range"},
		{"unix_us", `-1`, -1, ""},
		{"unix_us", `1700000000000999`, 1700000000000, ""},
		{"unix_us", `1.7e15`, 1700000000000, ""},
		{"unix_ns", `1700000000000999999`, 1700000000000, ""},
		{"unix_ns", `-1e6`, -1, ""},
		{"unix_ms", `"12:00"`, 0, `expected a number (unix_ms), got "12:00"`},
		{"rfc3339", `"2023-11-14T22:13:20.123456Z"`, 1700000000123, ""},
		{"rfc3339", `"2023-11-14T22:13:20.123456789123Z"`, 1700000000123, ""},
		{"rfc3339", `"14/11/2023"`, 0, `expected an RFC 3339 time, got "14/11/2023"`},
	} {
		tf, err := codec.ParseTimeFormat(tt.layout, "")
		if err != nil {
			t.Fatal(err)
		}
		d, err := codec.NewJSON(mapping(t, "schema: {fields: {v: float64}}"), codec.JSONOptions{Time: tf})
		if err != nil {
			t.Fatal(err)
		}
		rows, errs := decodeAll(t, d, "", `{"time":`+tt.value+`}`)
		switch {
		case tt.err != "":
			if errs[0] == nil || !strings.Contains(errs[0].Error(), tt.err) {
				t.Errorf("%s %s: error %v, want %q", tt.layout, tt.value, errs[0], tt.err)
			}
		case errs[0] != nil:
			t.Errorf("%s %s: %v", tt.layout, tt.value, errs[0])
		case rows[0][0] != tt.want:
			t.Errorf("%s %s: %v, want %d", tt.layout, tt.value, rows[0][0], tt.want)
		}
	}
}
