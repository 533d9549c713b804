package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// demoSpec exercises every field type, nesting form and declaration option.
func demoSpec() *Spec {
	return &Spec{
		Name:        "demo",
		Kind:        KindStep,
		Summary:     "Demo step for tests.",
		Description: "Reads *things* and writes them.",
		Fields: []Field{
			{Name: "path", Type: String, Description: "File to read.", Example: "/data/in.csv"},
			{Name: "mode", Type: String, Default: "append", Enum: []string{"append", "truncate"}, Description: "Write mode."},
			{Name: "batch_size", Type: Int, Default: 1024, Description: "Rows per batch."},
			{Name: "ratio", Type: Float, Default: 0.5},
			{Name: "enabled", Type: Bool, Default: true},
			{Name: "timeout", Type: Duration, Default: "30s", Description: "Read timeout."},
			{Name: "retention", Type: Duration, Default: 48 * time.Hour},
			{Name: "tags", Type: List, Elem: String, Optional: true, Example: []string{"a", "b"}},
			{Name: "ports", Type: List, Elem: Int, Optional: true},
			{Name: "values", Type: List, Optional: true},
			{Name: "columns", Type: List, Elem: Object, Optional: true, Children: []Field{
				{Name: "name", Type: String, Description: "Column name."},
				{Name: "type", Type: String, Default: "string", Enum: []string{"string", "int", "float"}},
			}},
			{Name: "tls", Type: Object, Optional: true, Children: []Field{
				{Name: "cert", Type: String},
				{Name: "verify", Type: Bool, Default: true},
			}},
			{Name: "labels", Type: Map, Elem: String, Optional: true},
			{Name: "routes", Type: Map, Elem: Object, Optional: true, Children: []Field{
				{Name: "url", Type: String},
				{Name: "retries", Type: Int, Default: 3},
			}},
			{Name: "extra", Type: Any, Optional: true, Advanced: true, Description: "Free form | anything."},
			{Name: "headers", Type: Map, Elem: String, Default: map[string]string{"b": "2", "a": "1"}},
		},
		Example: "type: demo\npath: /data/in.csv\n",
	}
}

func yamlNode(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	return &n
}

func errStrings(es Errors) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Error()
	}
	return out
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		skip []string
		want []string
	}{
		{"unknown field with suggestion", "path: a\nbatch_sise: 3\n", nil,
			[]string{`p.yaml:2:1: unknown field "batch_sise" (did you mean "batch_size"?)`}},
		{"unknown field case", "Path: a\n", nil,
			[]string{`p.yaml:1:1: unknown field "Path" (did you mean "path"?)`, `p.yaml:1:1: missing required field "path"`}},
		{"unknown field suggests skipped key", "path: a\ntyp: x\n", []string{"type", "input"},
			[]string{`p.yaml:2:1: unknown field "typ" (did you mean "type"?)`}},
		{"unknown field lists known", "path: a\nzzz: 1\n", nil,
			[]string{`p.yaml:2:1: unknown field "zzz" (known fields: batch_size, columns, enabled, extra, headers, labels, mode, path, ports, ratio, retention, routes, tags, timeout, tls, values)`}},
		{"skipped keys are ignored", "type: demo\ninput: src\npath: a\n", []string{"type", "input"}, nil},
		{"string gets mapping", "path: {a: 1}\n", nil,
			[]string{`p.yaml:1:7: field "path": expected a string, got a mapping`}},
		{"string gets null", "path:\n", nil,
			[]string{`p.yaml:1:6: field "path": expected a string, got null`}},
		{"int gets word", "path: a\nbatch_size: ten\n", nil,
			[]string{`p.yaml:2:13: field "batch_size": expected an integer, got "ten"`}},
		{"int gets fraction", "path: a\nbatch_size: 1.5\n", nil,
			[]string{`p.yaml:2:13: field "batch_size": expected an integer, got "1.5"`}},
		{"int out of range", "path: a\nbatch_size: 99999999999999999999\n", nil,
			[]string{`p.yaml:2:13: field "batch_size": 99999999999999999999 is out of range for an integer`}},
		{"int gets list", "path: a\nbatch_size: [1]\n", nil,
			[]string{`p.yaml:2:13: field "batch_size": expected an integer, got a list`}},
		{"float gets word", "path: a\nratio: high\n", nil,
			[]string{`p.yaml:2:8: field "ratio": expected a number, got "high"`}},
		{"float rejects nan", "path: a\nratio: .nan\n", nil,
			[]string{`p.yaml:2:8: field "ratio": expected a number, got ".nan"`}},
		{"bool gets word", "path: a\nenabled: maybe\n", nil,
			[]string{`p.yaml:2:10: field "enabled": expected true or false, got "maybe"`}},
		{"duration without unit", "path: a\ntimeout: 30\n", nil,
			[]string{`p.yaml:2:10: field "timeout": expected a duration such as 500ms, 30s, 1m, 2h or 1d, got "30"`}},
		{"duration gets mapping", "path: a\ntimeout: {s: 1}\n", nil,
			[]string{`p.yaml:2:10: field "timeout": expected a duration such as 30s, got a mapping`}},
		{"missing required", "batch_size: 1\n", nil,
			[]string{`p.yaml:1:1: missing required field "path"`}},
		{"missing required in empty document", "", nil,
			[]string{`p.yaml:0:0: missing required field "path"`}},
		{"not a mapping", "- a\n", nil,
			[]string{`p.yaml:1:1: expected a mapping, got a list`}},
		{"enum violation", "path: a\nmode: replace\n", nil,
			[]string{`p.yaml:2:7: field "mode": "replace" is not one of append, truncate`}},
		{"duplicate key", "path: a\nmode: append\npath: b\n", nil,
			[]string{`p.yaml:3:1: field "path" set twice`}},
		{"nested object unknown field", "path: a\ntls:\n  cert: x\n  verfy: no\n", nil,
			[]string{`p.yaml:4:3: unknown field "verfy" (did you mean "verify"?)`}},
		{"nested object wrong type", "path: a\ntls:\n  cert: x\n  verify: sometimes\n", nil,
			[]string{`p.yaml:4:11: field "verify": expected true or false, got "sometimes"`}},
		{"nested object missing required", "path: a\ntls:\n  verify: no\n", nil,
			[]string{`p.yaml:3:3: missing required field "cert"`}},
		{"nested null object missing required", "path: a\ntls:\n", nil,
			[]string{`p.yaml:2:5: missing required field "cert"`}},
		{"nested object gets scalar", "path: a\ntls: yes\n", nil,
			[]string{`p.yaml:2:6: expected a mapping, got "yes"`}},
		{"nested duplicate key", "path: a\ntls: {cert: x, cert: y}\n", nil,
			[]string{`p.yaml:2:16: field "cert" set twice`}},
		{"list of objects", "path: a\ncolumns:\n  - name: id\n    type: integr\n  - type: int\n  - nme: x\n", nil,
			[]string{
				`p.yaml:4:11: field "type": "integr" is not one of string, int, float`,
				`p.yaml:5:5: missing required field "name"`,
				`p.yaml:6:5: unknown field "nme" (did you mean "name"?)`,
				`p.yaml:6:5: missing required field "name"`,
			}},
		{"list of objects gets scalar", "path: a\ncolumns: id\n", nil,
			[]string{`p.yaml:2:10: field "columns": expected a list, got "id"`}},
		{"list of objects item not mapping", "path: a\ncolumns:\n  - id\n", nil,
			[]string{`p.yaml:3:5: expected a mapping, got "id"`}},
		{"list item wrong type", "path: a\nports: [80, http, 443]\n", nil,
			[]string{`p.yaml:2:13: field "ports": expected an integer, got "http"`}},
		{"list gets mapping", "path: a\ntags: {a: 1}\n", nil,
			[]string{`p.yaml:2:7: field "tags": expected a list, got a mapping`}},
		{"list item nested list", "path: a\ntags:\n  - ok\n  - [x]\n", nil,
			[]string{`p.yaml:4:5: field "tags": expected a string, got a list`}},
		{"map gets list", "path: a\nlabels: [a]\n", nil,
			[]string{`p.yaml:2:9: field "labels": expected a mapping, got a list`}},
		{"map value wrong type", "path: a\nlabels:\n  a: x\n  b: [1]\n", nil,
			[]string{`p.yaml:4:6: field "labels": expected a string, got a list`}},
		{"map duplicate key", "path: a\nlabels:\n  a: x\n  a: y\n", nil,
			[]string{`p.yaml:4:3: field "labels": key "a" set twice`}},
		{"map of objects", "path: a\nroutes:\n  east:\n    url: http://e\n    retries: many\n  west:\n    retries: 1\n", nil,
			[]string{
				`p.yaml:5:14: field "retries": expected an integer, got "many"`,
				`p.yaml:7:5: missing required field "url"`,
			}},
		{"merge key of scalar", "path: a\n<<: 5\n", nil,
			[]string{`p.yaml:2:5: merge key: expected a mapping or a list of mappings, got "5"`}},
		{"several errors in file order", "batch_size: x\nratio: y\n", nil,
			[]string{
				`p.yaml:1:13: field "batch_size": expected an integer, got "x"`,
				`p.yaml:2:8: field "ratio": expected a number, got "y"`,
				`p.yaml:1:1: missing required field "path"`,
			}},
	}
	s := demoSpec()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := s.Parse("p.yaml", yamlNode(t, tt.src), tt.skip...)
			if got := errStrings(errs); !slices.Equal(got, tt.want) {
				t.Errorf("errors:\n got %q\nwant %q", got, tt.want)
			}
			if (errs.Err() == nil) != (len(tt.want) == 0) {
				t.Errorf("Err() = %v", errs.Err())
			}
		})
	}
}

func mustParse(t *testing.T, s *Spec, src string) *Config {
	t.Helper()
	c, errs := s.Parse("p.yaml", yamlNode(t, src))
	if len(errs) > 0 {
		t.Fatalf("unexpected errors:\n%v", errs)
	}
	return c
}

func TestParseDefaults(t *testing.T) {
	c := mustParse(t, demoSpec(), "path: /x\n")
	if got := c.String("path"); got != "/x" {
		t.Errorf("path = %q", got)
	}
	if got := c.String("mode"); got != "append" {
		t.Errorf("mode = %q", got)
	}
	if got := c.Int("batch_size"); got != 1024 {
		t.Errorf("batch_size = %d", got)
	}
	if v, ok := c.Value("batch_size").(int64); !ok || v != 1024 {
		t.Errorf("batch_size value = %#v, want int64", c.Value("batch_size"))
	}
	if got := c.Float("ratio"); got != 0.5 {
		t.Errorf("ratio = %v", got)
	}
	if !c.Bool("enabled") {
		t.Error("enabled = false")
	}
	if got := c.Duration("timeout"); got != 30*time.Second {
		t.Errorf("timeout = %v", got)
	}
	if got := c.Duration("retention"); got != 48*time.Hour {
		t.Errorf("retention = %v", got)
	}
	if got := c.Entries("headers"); !reflect.DeepEqual(got, []MapEntry{{Key: "a", Value: "1"}, {Key: "b", Value: "2"}}) {
		t.Errorf("headers = %#v", got)
	}
	if c.Has("mode") || !c.Has("path") {
		t.Errorf("Has(mode) = %v, Has(path) = %v", c.Has("mode"), c.Has("path"))
	}
	if c.Value("tags") != nil || c.List("tags") != nil {
		t.Errorf("tags = %#v", c.Value("tags"))
	}
	// An absent object is nil, and a nil Config reads as empty.
	tls := c.Object("tls")
	if tls != nil {
		t.Fatalf("tls = %#v", tls)
	}
	if tls.String("cert") != "" || tls.Bool("verify") || tls.Has("cert") || tls.Pos("cert") != (Pos{}) || tls.Node() != nil {
		t.Error("nil Config getters are not zero")
	}
	if got := c.Pos("mode"); got != (Pos{File: "p.yaml", Line: 1, Col: 1}) {
		t.Errorf("Pos of defaulted field = %v", got)
	}
	if got := c.Pos("path"); got != (Pos{File: "p.yaml", Line: 1, Col: 7}) {
		t.Errorf("Pos(path) = %v", got)
	}
	if got := c.Errorf("path", "no such file %q", "/x").Error(); got != `p.yaml:1:7: no such file "/x"` {
		t.Errorf("Errorf = %q", got)
	}
	if c.File() != "p.yaml" || c.Node() == nil || c.Node().Kind != yaml.MappingNode {
		t.Errorf("File/Node = %q %v", c.File(), c.Node())
	}

	// Nested defaults.
	c = mustParse(t, demoSpec(), "path: a\ntls: {cert: c.pem}\ncolumns: [{name: id}]\nroutes: {east: {url: u}}\n")
	if tls := c.Object("tls"); tls.String("cert") != "c.pem" || !tls.Bool("verify") {
		t.Errorf("tls = %q %v", tls.String("cert"), tls.Bool("verify"))
	}
	if cols := c.Objects("columns"); len(cols) != 1 || cols[0].String("name") != "id" || cols[0].String("type") != "string" {
		t.Errorf("columns = %#v", cols)
	}
	routes := c.Entries("routes")
	if len(routes) != 1 || routes[0].Key != "east" || routes[0].Value.(*Config).Int("retries") != 3 {
		t.Errorf("routes = %#v", routes)
	}
	if routes[0].KeyPos != (Pos{File: "p.yaml", Line: 4, Col: 10}) || routes[0].ValuePos != (Pos{File: "p.yaml", Line: 4, Col: 16}) {
		t.Errorf("route positions = %v %v", routes[0].KeyPos, routes[0].ValuePos)
	}
}

func TestParseValues(t *testing.T) {
	s := &Spec{Name: "v", Fields: []Field{
		{Name: "i", Type: Int, Optional: true},
		{Name: "f", Type: Float, Optional: true},
		{Name: "b", Type: Bool, Optional: true},
		{Name: "d", Type: Duration, Optional: true},
		{Name: "s", Type: String, Optional: true},
		{Name: "strs", Type: List, Elem: String, Optional: true},
		{Name: "ints", Type: List, Elem: Int, Optional: true},
		{Name: "durs", Type: List, Elem: Duration, Optional: true},
		{Name: "anys", Type: List, Optional: true},
		{Name: "any", Type: Any, Optional: true},
		{Name: "m", Type: Map, Optional: true},
	}}
	tests := []struct {
		src   string
		field string
		want  any
	}{
		{"i: 42", "i", int64(42)},
		{"i: -7", "i", int64(-7)},
		{"i: 1_000", "i", int64(1000)},
		{"i: 0x1F", "i", int64(31)},
		{"i: 0o17", "i", int64(15)},
		{"i: 1e6", "i", int64(1000000)},
		{`i: "12"`, "i", int64(12)},
		{"f: 1.5", "f", 1.5},
		{"f: 3", "f", 3.0},
		{"f: -.inf", "f", math.Inf(-1)},
		{"b: true", "b", true},
		{"b: no", "b", false},
		{"b: On", "b", true},
		{"b: FALSE", "b", false},
		{"d: 1d", "d", 24 * time.Hour},
		{"d: 1m30s", "d", 90 * time.Second},
		{"d: 0", "d", time.Duration(0)},
		{"s: 123", "s", "123"},
		{"s: true", "s", "true"},
		{"s: ''", "s", ""},
		// A single scalar is a one-item list.
		{"strs: solo", "strs", []any{"solo"}},
		{"ints: 80", "ints", []any{int64(80)}},
		{"durs: 2h", "durs", []any{2 * time.Hour}},
		{"anys: 5", "anys", []any{5}},
		{"strs: [a, b]", "strs", []any{"a", "b"}},
		{"strs: []", "strs", []any{}},
		{"anys: [1, x, {k: v}]", "anys", []any{1, "x", map[string]any{"k": "v"}}},
		{"any: {a: [1, 2]}", "any", map[string]any{"a": []any{1, 2}}},
		{"m: {x: 1, y: [2]}", "m", []MapEntry{
			{Key: "x", Value: 1, KeyPos: Pos{"p.yaml", 1, 5}, ValuePos: Pos{"p.yaml", 1, 8}},
			{Key: "y", Value: []any{2}, KeyPos: Pos{"p.yaml", 1, 11}, ValuePos: Pos{"p.yaml", 1, 14}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			c := mustParse(t, s, tt.src)
			if got := c.Value(tt.field); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s = %#v, want %#v", tt.field, got, tt.want)
			}
		})
	}
	c := mustParse(t, s, "strs: one\nm: {k: v, n: 1}\n")
	if got := c.Strings("strs"); !slices.Equal(got, []string{"one"}) {
		t.Errorf("Strings = %q", got)
	}
	if got := c.StringMap("m"); !reflect.DeepEqual(got, map[string]string{"k": "v"}) {
		t.Errorf("StringMap = %v", got)
	}
}

func TestParseMergeKeys(t *testing.T) {
	src := `defaults: &d
  batch_size: 10
  timeout: 5s
  mode: truncate
more: &m
  ratio: 0.25
  mode: append
step:
  path: x
  <<: [*d, *m]
  batch_size: 20
`
	root := Resolve(yamlNode(t, src))
	step := root.Content[5]
	c, errs := demoSpec().Parse("p.yaml", step)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if got := c.Int("batch_size"); got != 20 {
		t.Errorf("explicit key must win over merged: batch_size = %d", got)
	}
	if got := c.Duration("timeout"); got != 5*time.Second {
		t.Errorf("timeout = %v", got)
	}
	if got := c.String("mode"); got != "truncate" {
		t.Errorf("earlier merged mapping must win: mode = %q", got)
	}
	if got := c.Float("ratio"); got != 0.25 {
		t.Errorf("ratio = %v", got)
	}
	if got := c.Pos("timeout"); got.Line != 3 {
		t.Errorf("merged value must be located at the anchor: %v", got)
	}

	// Errors in merged values point into the anchored mapping.
	bad := "base: &b\n  batch_size: many\nstep:\n  <<: *b\n  path: x\n"
	root = Resolve(yamlNode(t, bad))
	_, errs = demoSpec().Parse("p.yaml", root.Content[3])
	if got := errStrings(errs); !slices.Equal(got, []string{`p.yaml:2:15: field "batch_size": expected an integer, got "many"`}) {
		t.Errorf("errors = %q", got)
	}
}

func TestParseDuration(t *testing.T) {
	good := map[string]time.Duration{
		"0":       0,
		"+0":      0,
		"-0":      0,
		"500ms":   500 * time.Millisecond,
		"30s":     30 * time.Second,
		"1m":      time.Minute,
		"2h":      2 * time.Hour,
		"1h30m":   90 * time.Minute,
		"1d":      24 * time.Hour,
		"1.5d":    36 * time.Hour,
		"1d12h":   36 * time.Hour,
		"12h1d":   36 * time.Hour,
		"2d3h4m":  51*time.Hour + 4*time.Minute,
		"-1d":     -24 * time.Hour,
		" 10s ":   10 * time.Second,
		"1µs":     time.Microsecond,
		"0d":      0,
		"1d1ns":   24*time.Hour + 1,
		"100000d": 100000 * 24 * time.Hour,
	}
	for in, want := range good {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "30", "d", "1x", "abc", "1d-2h", "1e3s", "1dd", "--1s", "1.2.3d", "200000d", "106751d23h47m16.854775808s"} {
		if d, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want error", in, d)
		}
	}
	re := regexp.MustCompile(DurationPattern)
	for in := range good {
		if in == " 10s " {
			continue
		}
		if !re.MatchString(in) {
			t.Errorf("DurationPattern rejects %q", in)
		}
	}
	for _, in := range []string{"30", "d", "1x", "abc", "1dd", "--1s"} {
		if re.MatchString(in) {
			t.Errorf("DurationPattern accepts %q", in)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                              "0s",
		30 * time.Second:               "30s",
		90 * time.Second:               "1m30s",
		time.Minute:                    "1m",
		2 * time.Hour:                  "2h",
		2*time.Hour + 30*time.Second:   "2h0m30s",
		90 * time.Minute:               "1h30m",
		48 * time.Hour:                 "2d",
		500 * time.Millisecond:         "500ms",
		25 * time.Hour:                 "25h",
		-24 * time.Hour:                "-1d",
		time.Duration(math.MaxInt64):   "2562047h47m16.854775807s",
		time.Hour + time.Nanosecond:    "1h0m0.000000001s",
		3*24*time.Hour + 5*time.Second: "72h0m5s",
	} {
		got := FormatDuration(d)
		if got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
		if back, err := ParseDuration(got); err != nil || back != d {
			t.Errorf("ParseDuration(FormatDuration(%v)) = %v, %v", d, back, err)
		}
	}
}

func TestCheck(t *testing.T) {
	if err := demoSpec().Check(); err != nil {
		t.Fatalf("demo spec: %v", err)
	}
	tests := []struct {
		name  string
		field Field
		want  string
	}{
		{"bad int default", Field{Name: "x", Type: Int, Default: "ten"}, `default "ten" is not an integer`},
		{"fractional int default", Field{Name: "x", Type: Int, Default: 1.5}, `is not an integer`},
		{"bad duration default", Field{Name: "x", Type: Duration, Default: "30"}, `expected a duration`},
		{"enum on int", Field{Name: "x", Type: Int, Optional: true, Enum: []string{"1"}}, `Enum is only for string fields`},
		{"default outside enum", Field{Name: "x", Type: String, Default: "c", Enum: []string{"a", "b"}}, `default "c" is not one of the enum values`},
		{"duplicate enum", Field{Name: "x", Type: String, Optional: true, Enum: []string{"a", "a"}}, `enum value "a" listed twice`},
		{"object without children", Field{Name: "x", Type: Object, Optional: true}, `object field has no Children`},
		{"object default", Field{Name: "x", Type: Object, Default: map[string]any{}, Children: []Field{{Name: "y", Type: Int, Default: 1}}}, `cannot have a default`},
		{"children on scalar", Field{Name: "x", Type: String, Optional: true, Children: []Field{{Name: "y", Type: Int}}}, `Children are only for object fields`},
		{"elem on scalar", Field{Name: "x", Type: String, Optional: true, Elem: Int}, `Elem is only for list and map fields`},
		{"nested list", Field{Name: "x", Type: List, Elem: List, Optional: true}, `item type list is not supported`},
		{"list of objects without children", Field{Name: "x", Type: List, Elem: Object, Optional: true}, `list of objects has no Children`},
		{"unknown type", Field{Name: "x", Optional: true}, `unknown type 0`},
		{"bad list default", Field{Name: "x", Type: List, Elem: Int, Default: []any{1, "two"}}, `item 1: default "two" is not an integer`},
		{"bad nested child", Field{Name: "x", Type: Object, Optional: true, Children: []Field{{Name: "y", Type: Bool, Default: "yes"}}}, `demo.x.y: default "yes" is not true or false`},
		{"no name", Field{Type: Int, Optional: true}, `field with no name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Spec{Name: "demo", Fields: []Field{tt.field}}
			err := s.Check()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Check() = %v, want %q", err, tt.want)
			}
		})
	}
	dup := &Spec{Name: "demo", Fields: []Field{{Name: "a", Type: Int, Optional: true}, {Name: "a", Type: Int, Optional: true}}}
	if err := dup.Check(); err == nil || !strings.Contains(err.Error(), "demo.a: field declared twice") {
		t.Errorf("duplicate field: %v", err)
	}
	// A component field named like a wiring key could never be written
	// (the mqtt sink once declared "inputs").
	for _, name := range ReservedFields {
		c := &Spec{Name: "demo", Kind: KindSink, Fields: []Field{{Name: name, Type: String, Optional: true}}}
		if err := c.Check(); err == nil || !strings.Contains(err.Error(), "reserved for the pipeline's wiring") {
			t.Errorf("field %q: %v", name, err)
		}
	}
	if err := (&Spec{}).Check(); err == nil || !strings.Contains(err.Error(), "no name") {
		t.Errorf("empty spec: %v", err)
	}
	if err := (&Spec{Name: "x", Example: "a: [b"}).Check(); err == nil || !strings.Contains(err.Error(), "example is not valid YAML") {
		t.Errorf("bad example: %v", err)
	}
}

func TestErrors(t *testing.T) {
	es := Errors{
		Errorf(Pos{"b.yaml", 1, 1}, "b"),
		Errorf(Pos{"a.yaml", 3, 2}, "a3"),
		Errorf(Pos{"a.yaml", 3, 1}, "a31"),
	}
	es.Sort()
	if got := es.Error(); got != "a.yaml:3:1: a31\na.yaml:3:2: a3\nb.yaml:1:1: b" {
		t.Errorf("sorted = %q", got)
	}
	if Errors(nil).Err() != nil {
		t.Error("empty Errors is not nil")
	}
	if got := (Pos{}).String(); got != "<input>:0:0" {
		t.Errorf("Pos{} = %q", got)
	}
	at := Pos{"p.yaml", 2, 3}
	if got := Collect(at, errors.New("boom")); len(got) != 1 || got[0].Error() != "p.yaml:2:3: boom" {
		t.Errorf("Collect plain = %v", got)
	}
	wrapped := fmt.Errorf("ctx: %w", Errorf(Pos{"q.yaml", 1, 1}, "inner"))
	if got := Collect(at, wrapped); len(got) != 1 || got[0].Pos.File != "q.yaml" {
		t.Errorf("Collect located = %v", got)
	}
	if got := Collect(at, es); len(got) != 3 {
		t.Errorf("Collect list = %v", got)
	}
	if Collect(at, nil) != nil {
		t.Error("Collect(nil) != nil")
	}
}

func TestJSONSchema(t *testing.T) {
	s := demoSpec()
	sch := s.JSONSchema()
	data, err := json.MarshalIndent(sch, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	again, _ := json.MarshalIndent(s.JSONSchema(), "", "  ")
	if !bytes.Equal(data, again) {
		t.Error("schema output is not deterministic")
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("schema is not valid JSON: %v", err)
	}
	if doc["$schema"] != SchemaDialect || doc["title"] != "demo" || doc["type"] != "object" || doc["additionalProperties"] != false {
		t.Errorf("top level: %v %v %v %v", doc["$schema"], doc["title"], doc["type"], doc["additionalProperties"])
	}
	if d, _ := doc["description"].(string); !strings.Contains(d, "Demo step") || !strings.Contains(d, "*things*") {
		t.Errorf("description = %q", d)
	}
	if got := doc["required"]; !reflect.DeepEqual(got, []any{"path"}) {
		t.Errorf("required = %v", got)
	}
	props := doc["properties"].(map[string]any)
	prop := func(path ...string) map[string]any {
		t.Helper()
		m := props
		var p map[string]any
		for i, name := range path {
			var ok bool
			p, ok = m[name].(map[string]any)
			if !ok {
				t.Fatalf("no property %v", path[:i+1])
			}
			if i+1 < len(path) {
				m = p["properties"].(map[string]any)
			}
		}
		return p
	}
	if p := prop("path"); !reflect.DeepEqual(p["type"], []any{"string", "number", "boolean"}) || p["description"] != "File to read." || !reflect.DeepEqual(p["examples"], []any{"/data/in.csv"}) {
		t.Errorf("path = %v", p)
	}
	mode := prop("mode")
	if mode["default"] != "append" {
		t.Errorf("mode default = %v", mode["default"])
	}
	if alts, _ := mode["anyOf"].([]any); len(alts) != 2 || !reflect.DeepEqual(alts[0], map[string]any{"enum": []any{"append", "truncate"}}) {
		t.Errorf("mode enum = %v", mode["anyOf"])
	}
	if p := prop("batch_size"); !reflect.DeepEqual(p["type"], []any{"integer", "string"}) || p["default"] != 1024.0 || p["pattern"] != InterpolationPattern {
		t.Errorf("batch_size = %v", p)
	}
	if p := prop("ratio"); !reflect.DeepEqual(p["type"], []any{"number", "string"}) || p["default"] != 0.5 {
		t.Errorf("ratio = %v", p)
	}
	if p := prop("timeout"); p["default"] != "30s" || !strings.Contains(fmt.Sprint(p["anyOf"]), DurationPattern) {
		t.Errorf("timeout = %v", p)
	}
	if p := prop("retention"); p["default"] != "2d" {
		t.Errorf("retention default = %v", p["default"])
	}
	if p := prop("tags"); !reflect.DeepEqual(p["examples"], []any{[]any{"a", "b"}}) {
		t.Errorf("tags = %v", p)
	}
	tls := prop("tls")
	if !reflect.DeepEqual(tls["required"], []any{"cert"}) || tls["additionalProperties"] != false || tls["type"] != "object" {
		t.Errorf("tls = %v", tls)
	}
	if p := prop("tls", "verify"); p["default"] != true {
		t.Errorf("tls.verify = %v", p)
	}
	cols := prop("columns")
	items := cols["items"].(map[string]any)
	if cols["type"] != "array" || !reflect.DeepEqual(items["required"], []any{"name"}) || items["additionalProperties"] != false {
		t.Errorf("columns = %v", cols)
	}
	routes := prop("routes")
	if routes["type"] != "object" || routes["additionalProperties"].(map[string]any)["additionalProperties"] != false {
		t.Errorf("routes = %v", routes)
	}
	if p := prop("headers"); !reflect.DeepEqual(p["default"], map[string]any{"a": "1", "b": "2"}) {
		t.Errorf("headers = %v", p)
	}
	if p := prop("extra"); len(p) != 1 || p["description"] == nil {
		t.Errorf("extra = %v", p)
	}
	for _, pat := range []string{InterpolationPattern, DurationPattern, boolWordsPattern} {
		if _, err := regexp.Compile(pat); err != nil {
			t.Errorf("pattern %q: %v", pat, err)
		}
	}
}

func TestComponentAndUnion(t *testing.T) {
	demo := demoSpec()
	other := &Spec{Name: "alpha", Kind: KindStep, Fields: []Field{{Name: "n", Type: Int, Default: 1}}}
	input := map[string]any{"type": "string", "description": "Upstream component."}
	c := Component(demo, map[string]any{"input": input, "inputs": map[string]any{"type": "array"}}, "input")
	if c["$schema"] != nil || c["type"] != "object" || c["additionalProperties"] != false {
		t.Errorf("component top level = %v", c)
	}
	props := c["properties"].(map[string]any)
	if props["type"].(map[string]any)["const"] != "demo" || !reflect.DeepEqual(props["input"], input) || props["inputs"] == nil {
		t.Errorf("properties: type=%v input=%v", props["type"], props["input"])
	}
	if got := c["required"]; !reflect.DeepEqual(got, []string{"type", "input", "path"}) {
		t.Errorf("required = %v", got)
	}
	if got := Component(other, nil)["required"]; !reflect.DeepEqual(got, []string{"type"}) {
		t.Errorf("required without fields = %v", got)
	}

	u := Union([]*Spec{demo, other}, nil)
	if _, err := json.Marshal(u); err != nil {
		t.Fatal(err)
	}
	branches := u["oneOf"].([]any)
	if len(branches) != 2 || branches[0].(map[string]any)["title"] != "alpha" {
		t.Errorf("oneOf = %v", branches)
	}
	if got := u["properties"].(map[string]any)["type"].(map[string]any)["enum"]; !reflect.DeepEqual(got, []any{"alpha", "demo"}) {
		t.Errorf("type enum = %v", got)
	}
	entry := func(src string) any {
		var v any
		if err := yaml.Unmarshal([]byte(src), &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	for src, ok := range map[string]bool{
		"type: demo\npath: x\n":                true,
		"type: alpha\nn: 2\n":                  true,
		"type: alpha\npath: x\n":               false, // path belongs to demo
		"type: demo\n":                         false, // missing path
		"type: gamma\n":                        false,
		"path: x\n":                            false,
		"type: demo\npath: x\nn: 1\n":          false,
		"type: alpha\nn: ${N:-3}\n":            true,
		"type: alpha\nn: 3 ${N:-3}\n":          true, // any string holding a reference
		"type: alpha\nn: three\n":              false,
		"type: demo\npath: x\nq: 1\n":          false,
		"type: demo\npath: [x]\n":              false,
		"type: demo\npath: 7\n":                true,
		"type: demo\npath: x\nmode: ${MODE}\n": true,
	} {
		if err := validate(u, entry(src)); (err == nil) != ok {
			t.Errorf("%q: valid = %v (%v), want %v", src, err == nil, err, ok)
		}
	}
	if got := Union(nil, nil); got["not"] == nil {
		t.Errorf("empty union = %v", got)
	}
}

// TestSchemaAgreesWithParse checks, on documents without ${VAR} references,
// that the JSON Schema accepts exactly what Parse accepts.
func TestSchemaAgreesWithParse(t *testing.T) {
	s := demoSpec()
	sch := s.JSONSchema()
	docs := []string{
		"path: a\n",
		"path: 12\n",
		"path: true\n",
		"path: a\nmode: truncate\n",
		"path: a\nmode: replace\n",
		"path: a\nbatch_size: 10\n",
		"path: a\nbatch_size: 1e3\n",
		"path: a\nbatch_size: 1.5\n",
		"path: a\nbatch_size: ten\n",
		"path: a\nratio: 2\n",
		"path: a\nratio: x\n",
		"path: a\nenabled: false\n",
		"path: a\nenabled: yes\n",
		"path: a\nenabled: Off\n",
		"path: a\nenabled: 1\n",
		"path: a\nenabled: maybe\n",
		"path: a\ntimeout: 10s\n",
		"path: a\ntimeout: 1d12h\n",
		"path: a\ntimeout: 0\n",
		"path: a\ntimeout: 30\n",
		"path: a\ntimeout: 3x\n",
		"path: a\ntags: one\n",
		"path: a\ntags: [one, 2]\n",
		"path: a\ntags: {a: b}\n",
		"path: a\ntags: [[x]]\n",
		"path: a\nports: 80\n",
		"path: a\nports: [80, 443]\n",
		"path: a\nports: [http]\n",
		"path: a\nvalues: 3\n",
		"path: a\nvalues: [1, {a: b}]\n",
		"path: a\nvalues: {a: b}\n",
		"path: a\ncolumns: [{name: id}, {name: v, type: float}]\n",
		"path: a\ncolumns: [{name: id, type: date}]\n",
		"path: a\ncolumns: [{type: int}]\n",
		"path: a\ncolumns: id\n",
		"path: a\ntls: {cert: x}\n",
		"path: a\ntls: {cert: x, verify: no}\n",
		"path: a\ntls: {verify: no}\n",
		"path: a\ntls:\n",
		"path: a\ntls: {cert: x, key: y}\n",
		"path: a\nlabels: {a: b, c: 1}\n",
		"path: a\nlabels: {a: [b]}\n",
		"path: a\nlabels: [a]\n",
		"path: a\nroutes: {e: {url: u}}\n",
		"path: a\nroutes: {e: {url: u, retries: x}}\n",
		"path: a\nroutes: {e: {retries: 1}}\n",
		"path: a\nextra: {anything: [1, 2]}\n",
		"path: a\nunknown: 1\n",
		"mode: append\n",
		"",
	}
	for _, src := range docs {
		_, errs := s.Parse("p.yaml", yamlNode(t, src))
		var v any
		if err := yaml.Unmarshal([]byte(src), &v); err != nil {
			t.Fatal(err)
		}
		serr := validate(sch, v)
		if (len(errs) == 0) != (serr == nil) {
			t.Errorf("%q: Parse errors %v, schema error %v", src, errs, serr)
		}
	}
}

func TestSchemaInterpolation(t *testing.T) {
	sch := demoSpec().JSONSchema()
	for _, src := range []string{
		"path: ${DIR}/in.csv\n",
		"path: a\nbatch_size: ${BATCH}\n",
		"path: a\nratio: ${RATIO:-0.5}\n",
		"path: a\nenabled: ${ON}\n",
		"path: a\ntimeout: ${TIMEOUT:-30s}\n",
		"path: a\nmode: ${MODE:-append}\n",
		"path: a\nports:\n  - ${PORT}\n",
		"path: a\ncolumns: [{name: id, type: '${T}'}]\n",
	} {
		var v any
		if err := yaml.Unmarshal([]byte(src), &v); err != nil {
			t.Fatal(err)
		}
		if err := validate(sch, v); err != nil {
			t.Errorf("%q: %v", src, err)
		}
	}
	re := regexp.MustCompile(InterpolationPattern)
	for in, want := range map[string]bool{"${A}": true, "x${A_1:-d e}y": true, "${A:-}": true, "${my.var}": true, "$A": false, "${A": false, "${}": false, "${ A}": false, "${A B}": false} {
		if re.MatchString(in) != want {
			t.Errorf("InterpolationPattern on %q = %v", in, !want)
		}
	}
}

// validate is a minimal JSON Schema validator covering the keywords the
// schemas here use.
func validate(sch map[string]any, v any) error {
	if ts, ok := sch["type"]; ok {
		var types []string
		switch ts := ts.(type) {
		case string:
			types = []string{ts}
		case []string:
			types = ts
		}
		if !slices.ContainsFunc(types, func(t string) bool { return hasType(t, v) }) {
			return fmt.Errorf("%#v is not %v", v, types)
		}
	}
	if c, ok := sch["const"]; ok && !jsonEqual(c, v) {
		return fmt.Errorf("%#v is not %#v", v, c)
	}
	if e, ok := sch["enum"]; ok && !slices.ContainsFunc(e.([]any), func(x any) bool { return jsonEqual(x, v) }) {
		return fmt.Errorf("%#v not in %v", v, e)
	}
	if p, ok := sch["pattern"].(string); ok {
		if s, isStr := v.(string); isStr && !regexp.MustCompile(p).MatchString(s) {
			return fmt.Errorf("%q does not match %s", s, p)
		}
	}
	if alts, ok := sch["anyOf"].([]any); ok {
		var errs []error
		for _, a := range alts {
			errs = append(errs, validate(a.(map[string]any), v))
		}
		if !slices.Contains(errs, nil) {
			return fmt.Errorf("anyOf: %v", errors.Join(errs...))
		}
	}
	if alts, ok := sch["oneOf"].([]any); ok {
		n := 0
		var errs []error
		for _, a := range alts {
			err := validate(a.(map[string]any), v)
			if err == nil {
				n++
			}
			errs = append(errs, err)
		}
		if n != 1 {
			return fmt.Errorf("oneOf: %d branches match: %v", n, errors.Join(errs...))
		}
	}
	if s, ok := sch["not"].(map[string]any); ok && validate(s, v) == nil {
		return errors.New("not")
	}
	switch v := v.(type) {
	case map[string]any:
		props, _ := sch["properties"].(map[string]any)
		for _, r := range toStrings(sch["required"]) {
			if _, ok := v[r]; !ok {
				return fmt.Errorf("missing %q", r)
			}
		}
		for k, val := range v {
			if p, ok := props[k]; ok {
				if err := validate(p.(map[string]any), val); err != nil {
					return fmt.Errorf("%s: %w", k, err)
				}
				continue
			}
			switch ap := sch["additionalProperties"].(type) {
			case bool:
				if !ap {
					return fmt.Errorf("unexpected property %q", k)
				}
			case map[string]any:
				if err := validate(ap, val); err != nil {
					return fmt.Errorf("%s: %w", k, err)
				}
			}
		}
	case []any:
		if items, ok := sch["items"].(map[string]any); ok {
			for i, item := range v {
				if err := validate(items, item); err != nil {
					return fmt.Errorf("[%d]: %w", i, err)
				}
			}
		}
	}
	return nil
}

func toStrings(v any) []string {
	switch v := v.(type) {
	case []string:
		return v
	case []any:
		out := make([]string, len(v))
		for i, x := range v {
			out[i], _ = x.(string)
		}
		return out
	}
	return nil
}

func number(v any) (float64, bool) {
	switch v := v.(type) {
	case int:
		return float64(v), true
	case int64:
		return float64(v), true
	case uint64:
		return float64(v), true
	case float64:
		return v, true
	}
	return 0, false
}

func hasType(t string, v any) bool {
	switch t {
	case "null":
		return v == nil
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "number":
		_, ok := number(v)
		return ok
	case "integer":
		f, ok := number(v)
		return ok && f == math.Trunc(f)
	case "array":
		_, ok := v.([]any)
		return ok
	case "object":
		_, ok := v.(map[string]any)
		return ok
	}
	return false
}

func jsonEqual(a, b any) bool {
	if x, ok := number(a); ok {
		y, ok := number(b)
		return ok && x == y
	}
	return reflect.DeepEqual(a, b)
}

func TestMarkdown(t *testing.T) {
	demo := demoSpec()
	src := &Spec{Name: "csv", Kind: KindSource, Summary: "Reads CSV files.", Fields: []Field{{Name: "path", Type: String}}}
	sink := &Spec{Name: "csv", Kind: KindSink, Summary: "Writes CSV files.", Example: "type: csv\nquery: |\n  ```\n"}
	var a, b bytes.Buffer
	if err := Markdown(&a, "Pipeline reference", []*Spec{sink, demo, src}); err != nil {
		t.Fatal(err)
	}
	if err := Markdown(&b, "Pipeline reference", []*Spec{src, sink, demo}); err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() {
		t.Error("output depends on the order of the specs")
	}
	out := a.String()
	for _, want := range []string{
		"# Pipeline reference\n\n",
		"- **Sources:** [`csv`](#csv-source)\n",
		"- **Steps:** [`demo`](#demo-step)\n",
		"- **Sinks:** [`csv`](#csv-sink)\n",
		"## Sources\n\n### `csv` source\n\nReads CSV files.\n\n",
		"### `demo` step\n\nDemo step for tests.\n\nReads *things* and writes them.\n\n",
		"| Field | Type | Default | Description |\n| --- | --- | --- | --- |\n",
		"| `path` | string | *required* | File to read. Example: `/data/in.csv`. |\n",
		"| `mode` | string | `append` | Write mode. One of: `append`, `truncate`. |\n",
		"| `batch_size` | int | `1024` | Rows per batch. |\n",
		"| `ratio` | float | `0.5` |  |\n",
		"| `timeout` | duration | `30s` | Read timeout. |\n",
		"| `retention` | duration | `2d` |  |\n",
		"| `tags` | list of string |  | Example: `[a, b]`. |\n",
		"| `values` | list of any |  |  |\n",
		"| `columns` | list of object |  |  |\n",
		"| `columns[].name` | string | *required* | Column name. |\n",
		"| `columns[].type` | string | `string` | One of: `string`, `int`, `float`. |\n",
		"| `tls.cert` | string | *required* |  |\n",
		"| `tls.verify` | bool | `true` |  |\n",
		"| `labels` | map of string |  |  |\n",
		"| `routes.*.retries` | int | `3` |  |\n",
		"| `headers` | map of string | `{a: 1, b: 2}` |  |\n",
		"| `extra` | any |  | *Advanced.* Free form \\| anything. |\n",
		"Example:\n\n```yaml\ntype: demo\npath: /data/in.csv\n```\n",
		"### `csv` sink\n\nWrites CSV files.\n\nThis component takes no fields.\n\n",
		"````yaml\ntype: csv\nquery: |\n  ```\n````\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	order := []string{"## Sources", "## Steps", "## Sinks"}
	for i := 1; i < len(order); i++ {
		if strings.Index(out, order[i-1]) > strings.Index(out, order[i]) {
			t.Errorf("%s after %s", order[i-1], order[i])
		}
	}
	if strings.Index(out, "| `extra`") < strings.Index(out, "| `headers`") {
		t.Error("advanced field not listed last")
	}
	if !strings.HasSuffix(out, "````\n") || strings.HasSuffix(out, "\n\n") {
		t.Errorf("output must end with a single newline: %q", out[len(out)-10:])
	}

	// A single component without a title: no heading, no index.
	var one bytes.Buffer
	if err := Markdown(&one, "", []*Spec{src}); err != nil {
		t.Fatal(err)
	}
	want := "## Sources\n\n### `csv` source\n\nReads CSV files.\n\n" +
		"| Field | Type | Default | Description |\n| --- | --- | --- | --- |\n" +
		"| `path` | string | *required* |  |\n"
	if one.String() != want {
		t.Errorf("single component:\n got %q\nwant %q", one.String(), want)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestMarkdownWriteError(t *testing.T) {
	if err := Markdown(failWriter{}, "x", []*Spec{demoSpec()}); err == nil || err.Error() != "disk full" {
		t.Errorf("err = %v", err)
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "abc", 3},
		{"power_limit", "power_limit", 0},
		{"power_limt", "power_limit", 1},
		{"powre_limit", "power_limit", 2},
		{"kitten", "sitting", 3},
		{"temp°C", "temp°F", 1}, // runes, not bytes
		{"ä", "a", 1},
	} {
		if got := EditDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("EditDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := EditDistance(tc.b, tc.a); got != tc.want {
			t.Errorf("EditDistance(%q, %q) = %d, want %d", tc.b, tc.a, got, tc.want)
		}
	}
}
