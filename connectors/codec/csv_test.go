package codec_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

func TestCSV(t *testing.T) {
	const decl = `
schema:
  time: ts
  key: asset
  fields: {power: float64, speed: float64, note: string, n: int64, ok: bool}
mapping: {ts: Date/Time, speed: "Wind Speed (m/s)"}
`
	tests := []struct {
		name     string
		header   string
		comma    byte
		layout   string
		key      string
		payloads []string
		want     []enginetest.Row
		errs     []string
	}{
		{
			name:   "go layout, quoting, nulls",
			header: "\ufeffDate/Time, asset ,power,Wind Speed (m/s),note,n,ok,extra",
			layout: "02 01 2006 15:04",
			payloads: []string{
				`14 11 2023 22:13,T1,380.0477905,5.31133604,"a, ""b""",7,true,x`,
				`14 11 2023 22:23,T1,,5.5,,,,`,
				`14 11 2023 22:33,T1, 1e3 ,-0,"",-2,0,`,
			},
			want: []enginetest.Row{
				{int64(1699999980000), "T1", 380.0477905, 5.31133604, `a, "b"`, int64(7), true},
				{int64(1699999980000 + 600_000), "T1", nil, 5.5, nil, nil, nil},
				{int64(1699999980000 + 1_200_000), "T1", 1000.0, 0.0, "", int64(-2), false},
			},
		},
		{
			name:     "unix ms, semicolons, key argument",
			header:   "Date/Time;power;Wind Speed (m/s);note;n;ok",
			comma:    ';',
			key:      "K",
			payloads: []string{`1700000000000;1,5;2;x;1;false`, `1700000000000;1.5;2;x;1;false`},
			want:     []enginetest.Row{{int64(ts), "K", 1.5, 2.0, "x", int64(1), false}},
			errs:     []string{`column "power": not a number: "1,5"`},
		},
		{
			name:   "errors",
			header: "Date/Time,asset,power,Wind Speed (m/s),note,n,ok",
			payloads: []string{
				`1700000000000,T1,1,2`,
				`1700000000000,T1,x,2,a,1,true`,
				`1700000000000,T1,1,2,a,1.5,true`,
				`1700000000000,T1,1,2,a,1,maybe`,
				`,T1,1,2,a,1,true`,
				`1700000000000,,1,2,a,1,true`,
				`1700000000000,T1,1,2,"a"b,1,true`,
				`1700000000000,T1,1,2,"a,1,true`,
				`yesterday,T1,1,2,a,1,true`,
				`1700000000000,T1,NaN,2,a,1,true`,
				`1700000000000,T1,1,-Inf,a,1,true`,
				`1700000000000,T1,+inf,2,a,1,true`,
			},
			errs: []string{
				"line has 4 fields, the header 7", `column "power": not a number: "x"`,
				`column "n": not a whole number: "1.5"`, `column "ok": expected true or false, got "maybe"`,
				"missing time", `missing key column "asset"`, `unexpected 'b' after a quoted field`,
				"unterminated quoted field", `column "Date/Time": expected a number (unix_ms), got "yesterday"`,
				`column "power": expected a finite number, got "NaN"`,
				`column "Wind Speed (m/s)": expected a finite number, got "-Inf"`,
				`column "power": expected a finite number, got "+inf"`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tf, err := codec.ParseTimeFormat(tt.layout, "UTC")
			if err != nil {
				t.Fatal(err)
			}
			header, err := codec.ParseCSVHeader([]byte(tt.header), tt.comma)
			if err != nil {
				t.Fatal(err)
			}
			d, err := codec.NewCSV(mapping(t, decl), codec.CSVOptions{Header: header, Comma: tt.comma, Time: tf})
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

func TestCSVHeaderErrors(t *testing.T) {
	m := mapping(t, "schema:\n  key: asset\n  fields: {a: float64, b: float64}\nmapping: {b: a}\n")
	for _, tt := range []struct{ header, want string }{
		{"time,a,c", `column "a" feeds both "a" and "b"`},
		{"time,x,y", `column "a" (for "a") is not in the header (time, x, y)`},
	} {
		h, _ := codec.ParseCSVHeader([]byte(tt.header), ',')
		_, err := codec.NewCSV(m, codec.CSVOptions{Header: h})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("header %q: got %v, want %q", tt.header, err, tt.want)
		}
	}
	if _, err := codec.NewCSV(m, codec.CSVOptions{Header: []string{"time", "a"}, Comma: '"'}); err == nil {
		t.Error("a quote accepted as separator")
	}
}
