package codec_test

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/connectors/codec"
)

func TestParseMapping(t *testing.T) {
	tests := []struct {
		name    string
		decl    string
		schema  string // Schema.String()
		sources string
	}{
		{
			name:    "time and key added first",
			decl:    "schema: {time: ts, key: asset, fields: {power: float64, status: string}}\nmapping: {power: Power}",
			schema:  "ts:timestamp(time), asset:string(key), power:float64, status:string",
			sources: "ts asset Power status",
		},
		{
			name:    "listed time and key keep their place",
			decl:    "schema: {key: id, fields: {v: int, id: string, time: timestamp, ok: boolean}}",
			schema:  "v:int64, id:string(key), time:timestamp(time), ok:bool",
			sources: "v id time ok",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mapping(t, tt.decl)
			if got := m.Schema.String(); got != tt.schema {
				t.Errorf("schema %q, want %q", got, tt.schema)
			}
			if got := strings.Join(m.Sources, " "); got != tt.sources {
				t.Errorf("sources %q, want %q", got, tt.sources)
			}
		})
	}
}

func TestParseMappingErrors(t *testing.T) {
	tests := []struct{ decl, want string }{
		{"schema: {fields: {a: decimal}}", `test.yaml:1:22: column "a": unknown type "decimal"`},
		{"schema: {fields: {time: float64}}", `test.yaml:1:25: the time column "time" must have type timestamp, not float64`},
		{"schema: {key: k, fields: {k: int64}}", `test.yaml:1:30: the key column "k" must have type string, not int64`},
		{"schema: {key: time, fields: {a: int64}}", `the key column "time" is also the time column`},
		{"schema: {fields: {}}", `declare at least one column`},
		{"schema: {fields: {a: int}}\nmapping: {b: x}", `test.yaml:2:11: mapping: "b" is not a column (columns: time, a)`},
		{"schema: {fields: {a: int}}\nmapping: {a: ''}", `mapping: column "a" has an empty source`},
	}
	for _, tt := range tests {
		_, err := codec.ParseMapping(parseConfig(t, tt.decl))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s:\n got %v\nwant %q", tt.decl, err, tt.want)
		}
	}
	var n yaml.Node
	_ = yaml.Unmarshal([]byte("mapping: {a: b}"), &n)
	if _, errs := schemaSpec.Parse("x.yaml", &n); len(errs) == 0 || !strings.Contains(errs.Error(), `missing required field "schema"`) {
		t.Errorf("schema not required: %v", errs)
	}
}

func TestParseTimeFormat(t *testing.T) {
	for _, tt := range []struct{ layout, zone, want, err string }{
		{"", "", "unix_ms", ""},
		{"UNIX_S", "", "unix_s", ""},
		{"rfc3339", "", "rfc3339", ""},
		{"02 01 2006 15:04", "UTC", "02 01 2006 15:04", ""},
		{"yyyy-mm-dd", "", "", "neither a Go layout"},
		{"unix_ms", "Mars/Olympus", "", "unknown time zone"},
	} {
		f, err := codec.ParseTimeFormat(tt.layout, tt.zone)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%q: error %v, want %q", tt.layout, err, tt.err)
		case tt.err == "" && err != nil:
			t.Errorf("%q: %v", tt.layout, err)
		case tt.err == "" && f.String() != tt.want:
			t.Errorf("%q: String() = %q, want %q", tt.layout, f.String(), tt.want)
		}
	}
}
