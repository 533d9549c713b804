package rowexpr_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/rowexpr"
	"github.com/sluice-edge/sluice/engine/spec"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var schema = engine.MustSchema([]engine.Field{
	{Name: "time", Type: engine.Timestamp},
	{Name: "asset_id", Type: engine.String},
	{Name: "temp", Type: engine.Float64},
	{Name: "count", Type: engine.Int64},
	{Name: "status", Type: engine.String},
	{Name: "running", Type: engine.Bool},
	{Name: "temp.max", Type: engine.Float64},
}, "time", "asset_id")

var vars = []rowexpr.Var{{Name: "attr", Type: rowexpr.MapVar}, {Name: "asset", Type: rowexpr.StringVar}}

const (
	attrVar  = 0
	assetVar = 1
)

func newEnv(t testing.TB) *rowexpr.Env {
	t.Helper()
	env, err := rowexpr.NewEnv(schema, vars...)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func record(t testing.TB, mem memory.Allocator, rows ...enginetest.Row) arrow.RecordBatch {
	t.Helper()
	return enginetest.Record(mem, schema, rows...)
}

func TestCompileErrors(t *testing.T) {
	env := newEnv(t)
	big := "temp" + strings.Repeat(" + temp", rowexpr.MaxNodes)
	cases := []struct {
		name, src string
		opts      []rowexpr.Option
		msg       string
		line, col int
	}{
		{"unknown name", `tmp > 3`, nil, "unknown name tmp (did you mean temp?)", 1, 1},
		{"unknown name later", `temp > 3 && staus == "run"`, nil, "unknown name staus (did you mean status?)", 1, 13},
		{"second line", "temp > 3 &&\n  cout > 1", nil, "unknown name cout (did you mean count?)", 2, 3},
		{"syntax", `temp > `, nil, "unexpected token EOF", 1, 7},
		{"type mismatch", `status > 3`, nil, "invalid operation: > (mismatched types string and int)", 1, 8},
		{"let", `let x = temp; x > 3`, nil, "let is not supported", 1, 5},
		{"toJSON", `toJSON(temp)`, nil, "unknown name toJSON", 1, 1},
		{"repeat", `repeat(status, 1000000)`, nil, "unknown name repeat", 1, 1},
		{"now", `now() > time`, nil, "unknown name now", 1, 1},
		{"too big", big, nil, "exceeds maximum allowed nodes", 1, 0},
		{"expect bool", `temp * 2`, []rowexpr.Option{rowexpr.Expect(engine.Bool)}, "expression yields float64, want bool", 1, 1},
		{"expect number", `status`, []rowexpr.Option{rowexpr.Expect(engine.Float64)}, "expression yields string, want float64", 1, 1},
		{"expect string from int", `count`, []rowexpr.Option{rowexpr.Expect(engine.String)}, "yields int64, want string", 1, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := env.Compile(c.src, c.opts...)
			var e *rowexpr.Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v (%T), want *rowexpr.Error", err, err)
			}
			if !strings.Contains(e.Msg, c.msg) {
				t.Errorf("message %q, want it to contain %q", e.Msg, c.msg)
			}
			if e.Line != c.line || c.col > 0 && e.Column != c.col {
				t.Errorf("at %d:%d, want %d:%d", e.Line, e.Column, c.line, c.col)
			}
		})
	}
}

func TestCompileAccepts(t *testing.T) {
	env := newEnv(t)
	cases := []struct {
		src     string
		typ     engine.Type
		dynamic bool
		native  bool
		cols    []string
	}{
		{`temp > 80 && status == "run"`, engine.Bool, false, true, []string{"temp", "status"}},
		{`status == "run" && temp > attr.max_temp`, engine.Bool, false, true, []string{"status", "temp"}},
		{`temp * 1.8 + 32`, engine.Float64, false, true, []string{"temp"}},
		{`count * 2`, engine.Int64, false, true, []string{"count"}},
		{`count / 2`, engine.Float64, false, true, []string{"count"}},
		{`$env["temp.max"] - temp`, engine.Float64, false, true, []string{"temp.max", "temp"}},
		{`attr.max_temp`, engine.Invalid, true, true, nil},
		{`asset + "/" + status`, engine.String, false, false, []string{"status"}},
		{`upper(status)`, engine.String, false, false, []string{"status"}},
		{`time`, engine.Timestamp, false, true, []string{"time"}},
		{`time > date("2024-01-01")`, engine.Bool, false, false, []string{"time"}},
		{`running ? temp : 0.0`, engine.Float64, false, true, []string{"running", "temp"}},
	}
	for _, c := range cases {
		e, err := env.Compile(c.src)
		if err != nil {
			t.Errorf("%s: %v", c.src, err)
			continue
		}
		if e.Type() != c.typ || e.Dynamic() != c.dynamic || e.Native() != c.native {
			t.Errorf("%s: type %s dynamic %v native %v, want %s %v %v", c.src, e.Type(), e.Dynamic(), e.Native(), c.typ, c.dynamic, c.native)
		}
		if got := e.Columns(); fmt.Sprint(got) != fmt.Sprint(c.cols) && !(len(got) == 0 && len(c.cols) == 0) {
			t.Errorf("%s: columns %v, want %v", c.src, got, c.cols)
		}
	}
	e, _ := env.Compile(`temp > attr.max_temp || count < attr["min_count"] && asset != ""`)
	if got := e.Keys("attr"); fmt.Sprint(got) != "[max_temp min_count]" {
		t.Errorf("keys %v", got)
	}
	if got := e.Vars(); fmt.Sprint(got) != "[asset attr]" && fmt.Sprint(got) != "[attr asset]" {
		t.Errorf("vars %v", got)
	}
}

func TestNewEnvErrors(t *testing.T) {
	if _, err := rowexpr.NewEnv(schema, rowexpr.Var{Name: "temp", Type: rowexpr.StringVar}); err == nil {
		t.Error("a variable with a column name was accepted")
	}
	if _, err := rowexpr.NewEnv(schema, rowexpr.Var{Name: "a", Type: rowexpr.StringVar}, rowexpr.Var{Name: "a", Type: rowexpr.MapVar}); err == nil {
		t.Error("a duplicate variable was accepted")
	}
}

func TestEvaluate(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	env := newEnv(t)
	rec := record(t, mem,
		enginetest.Row{t0, "wt-1", 85.5, int64(3), "run", true, 90.0},
		enginetest.Row{t0.Add(time.Minute), "wt-2", nil, int64(0), "stop", false, 10.0},
	)
	defer rec.Release()
	attrs := map[string]any{"max_temp": 80.0, "mode": "auto", "limit": int64(2)}
	cases := []struct {
		src  string
		row  int
		get  string // bool, float, int, string, time, any
		want any
		err  string
	}{
		{`temp > attr.max_temp && status == "run"`, 0, "bool", true, ""},
		{`temp > attr.max_temp`, 1, "bool", nil, "field temp is null"},
		{`count > attr.limit`, 0, "bool", true, ""},
		{`count > attr.nope`, 0, "bool", nil, "attr.nope is not set"},
		{`attr.mode > 3`, 0, "bool", nil, "attr.mode is string, not a number"},
		{`temp * 2`, 0, "float", 171.0, ""},
		{`count * 2`, 0, "int", int64(6), ""},
		{`count * 2`, 0, "float", 6.0, ""},
		{`temp`, 0, "int", nil, "85.5, not an integer"},
		{`$env["temp.max"] - 0.5`, 0, "float", 89.5, ""},
		{`count % count`, 1, "int", nil, "integer divide by zero"},
		{`asset + ":" + status`, 0, "string", "wt-1:run", ""},
		{`upper(status)`, 1, "string", "STOP", ""},
		{`status`, 0, "bool", nil, "not bool"},
		{`time`, 1, "time", t0.Add(time.Minute).UnixMilli(), ""},
		{`time > date("2024-05-01T12:00:30Z")`, 1, "bool", true, ""},
		{`attr.mode`, 0, "any", "auto", ""},
		{`count + 1`, 0, "any", int64(4), ""},
		{`len(status)`, 1, "any", int64(4), ""},
		{`running ? "on" : "off"`, 1, "string", "off", ""},
	}
	fr := env.NewFrame()
	if err := fr.Bind(rec); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		e, err := env.Compile(c.src)
		if err != nil {
			t.Errorf("%s: %v", c.src, err)
			continue
		}
		fr.Row(c.row)
		fr.SetMap(attrVar, attrs)
		fr.SetString(assetVar, rec.Column(1).ValueStr(c.row))
		var got any
		switch c.get {
		case "bool":
			got, err = fr.Bool(e)
		case "float":
			got, err = fr.Float64(e)
		case "int":
			got, err = fr.Int64(e)
		case "string":
			got, err = fr.String(e)
		case "time":
			got, err = fr.Time(e)
		default:
			got, err = fr.Eval(e)
		}
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s row %d: got %v, %v; want error %q", c.src, c.row, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s row %d: got %#v, %v; want %#v", c.src, c.row, got, err, c.want)
		}
	}
}

func TestNullError(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	env := newEnv(t)
	rec := record(t, mem, enginetest.Row{t0, "wt-1", nil, int64(1), nil, true, 1.0})
	defer rec.Release()
	fr := env.NewFrame()
	if err := fr.Bind(rec); err != nil {
		t.Fatal(err)
	}
	fr.Row(0)
	for _, src := range []string{`temp > 1`, `upper(status) == "X"`, `count > 0 && temp > 1`} {
		e, err := env.Compile(src)
		if err != nil {
			t.Fatal(err)
		}
		_, err = fr.Bool(e)
		var ne *rowexpr.NullError
		if !errors.As(err, &ne) {
			t.Errorf("%s: got %v, want a NullError", src, err)
		}
	}
	// A column the expression does not read may be null.
	e, _ := env.Compile(`count > 0`)
	if ok, err := fr.Bool(e); !ok || err != nil {
		t.Errorf("count > 0: %v, %v", ok, err)
	}
}

func TestBindChecksSchema(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	other := engine.MustSchema([]engine.Field{{Name: "x", Type: engine.Float64}}, "", "")
	rec := enginetest.Record(mem, other, enginetest.Row{1.0})
	defer rec.Release()
	if err := newEnv(t).NewFrame().Bind(rec); err == nil {
		t.Error("a record of another schema was bound")
	}
}

// TestZeroAllocs checks that evaluating a row allocates nothing once the
// frame is warm, on the native evaluator and on the VM.
func TestZeroAllocs(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	env := newEnv(t)
	var rows []enginetest.Row
	for i := range 64 {
		rows = append(rows, enginetest.Row{t0.Add(time.Duration(i) * time.Second), fmt.Sprintf("wt-%d", i%4), float64(60 + i), int64(i), "run", i%2 == 0, 1.0})
	}
	rec := record(t, mem, rows...)
	defer rec.Release()
	attrs := map[string]any{"max_temp": 80.0}
	cases := []struct {
		src    string
		get    string
		native bool
	}{
		{`temp > 80 && status == "run"`, "bool", true},
		{`temp > attr.max_temp`, "bool", true},
		{`temp > attr.max_temp - 5 && running`, "bool", true},
		{`temp * 1.8 + 32`, "float", true},
		{`count * 2 + 1`, "int", true},
		{`status in ["run", "idle"]`, "bool", true},
		{`asset_id`, "string", true},
		{`upper(status) == "RUN"`, "bool", false},
		{`status == "run" && running`, "bool", true},
	}
	for _, c := range cases {
		e, err := env.Compile(c.src)
		if err != nil {
			t.Fatal(err)
		}
		if e.Native() != c.native {
			t.Errorf("%s: native %v", c.src, e.Native())
		}
		fr := env.NewFrame()
		if err := fr.Bind(rec); err != nil {
			t.Fatal(err)
		}
		row := 0
		eval := func() {
			fr.Row(row % len(rows))
			row++
			fr.SetMap(attrVar, attrs)
			fr.SetString(assetVar, "wt-1")
			var err error
			switch c.get {
			case "bool":
				_, err = fr.Bool(e)
			case "float":
				_, err = fr.Float64(e)
			case "int":
				_, err = fr.Int64(e)
			case "string":
				_, err = fr.String(e)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		eval()
		if n := testing.AllocsPerRun(200, eval); n != 0 && c.native {
			t.Errorf("%s: %v allocations per row", c.src, n)
		} else if n != 0 {
			t.Logf("%s (VM): %v allocations per row", c.src, n)
		}
	}
}

func TestErrorRows(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	rec := record(t, mem,
		enginetest.Row{t0, "wt-1", 1.0, int64(1), "a", true, nil},
		enginetest.Row{t0, "wt-2", nil, int64(2), nil, false, 2.0},
		enginetest.Row{t0, "wt-3", 3.0, nil, "c", nil, 3.0},
	)
	defer rec.Release()
	er := rowexpr.NewErrorRows(mem, schema)
	defer er.Release()
	if got := er.Schema().Fields[len(schema.Fields)]; got.Name != "error" || got.Type != engine.String {
		t.Fatalf("error column %v", got)
	}
	if er.Record(rec) != nil {
		t.Fatal("a record without bad rows")
	}
	er.Add(1, "x: ", errors.New("bad"))
	er.Add(1, "y: ", errors.New("ignored"))
	er.Add(2, "", &rowexpr.NullError{Field: "count"})
	out := er.Record(rec)
	defer out.Release()
	if !out.Schema().Equal(er.Schema().Arrow()) {
		t.Fatalf("schema %s", out.Schema())
	}
	got := fmt.Sprint(enginetest.Rows(out))
	want := fmt.Sprint([]enginetest.Row{
		{t0.UnixMilli(), "wt-2", nil, int64(2), nil, false, 2.0, "x: bad"},
		{t0.UnixMilli(), "wt-3", 3.0, nil, "c", nil, 3.0, "field count is null"},
	})
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if er.Len() != 0 {
		t.Error("Record did not reset")
	}
}

func TestErrorSchemaAvoidsClash(t *testing.T) {
	s := engine.MustSchema([]engine.Field{{Name: "error", Type: engine.String}}, "", "")
	es := rowexpr.ErrorSchema(s)
	if n := es.Fields[1].Name; n != "error_reason" {
		t.Errorf("got %q", n)
	}
}

var exprSpec = spec.Spec{Name: "test", Fields: []spec.Field{
	{Name: "expr", Type: spec.String, Description: "condition"},
	{Name: "fields", Type: spec.Map, Elem: spec.String, Optional: true, Description: "outputs"},
}}

func parse(t *testing.T, src string) *spec.Config {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	cfg, errs := exprSpec.Parse("p.yaml", &n)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return cfg
}

func TestLocate(t *testing.T) {
	env := newEnv(t)
	cases := []struct {
		name, yaml string
		want       string
	}{
		{"plain", "expr: temp > 3 && tmp < 2\n", `p.yaml:1:19: field "expr": unknown name tmp (did you mean temp?)`},
		{"double quoted", "expr: \"status == 'a' && tmp < 2\"\n", `p.yaml:1:25: field "expr": unknown name tmp (did you mean temp?)`},
		{"single quoted", "# rule\nexpr: 'tmp < 2'\n", `p.yaml:2:8: field "expr": unknown name tmp (did you mean temp?)`},
		{"block", "expr: |\n  temp > 3 &&\n  tmp < 2\n", `p.yaml:1:7: field "expr": unknown name tmp (did you mean temp?) (line 2, column 1 of the expression)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := parse(t, c.yaml)
			_, err := env.Compile(cfg.String("expr"))
			if err == nil {
				t.Fatal("compiled")
			}
			if got := rowexpr.LocateField(cfg, "expr", err).Error(); got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
	cfg := parse(t, "expr: x\nfields:\n  a: temp\n  b: temp +* 2\n")
	var bad string
	for _, e := range cfg.Entries("fields") {
		if e.Key == "b" {
			bad = e.Value.(string)
		}
	}
	_, err := env.Compile(bad)
	got := rowexpr.LocateEntry(cfg, "fields", "b", err)
	if got.Pos.Line != 4 || got.Pos.Col != 12 || !strings.HasPrefix(got.Msg, `field "fields": b: unexpected token Operator("*")`) {
		t.Errorf("got %v", got)
	}
	// A plain error is placed at the position given.
	pos := spec.Pos{File: "p.yaml", Line: 3, Col: 5}
	if got := rowexpr.Locate(pos, errors.New("boom")); got.Pos != pos || got.Msg != "boom" {
		t.Errorf("got %v", got)
	}
}

func Example() {
	s := engine.MustSchema([]engine.Field{
		{Name: "time", Type: engine.Timestamp},
		{Name: "asset", Type: engine.String},
		{Name: "temp", Type: engine.Float64},
	}, "time", "asset")
	env, err := rowexpr.NewEnv(s, rowexpr.Var{Name: "attr", Type: rowexpr.MapVar})
	if err != nil {
		panic(err)
	}
	hot, err := env.Compile("temp > attr.max_temp", rowexpr.Expect(engine.Bool))
	if err != nil {
		panic(err)
	}
	rec := enginetest.Record(memory.DefaultAllocator, s,
		enginetest.Row{int64(0), "wt-1", 91.5},
		enginetest.Row{int64(0), "wt-2", 72.0},
		enginetest.Row{int64(0), "wt-3", nil},
	)
	defer rec.Release()
	limits := map[string]map[string]any{"wt-1": {"max_temp": 90.0}, "wt-2": {"max_temp": 70}, "wt-3": {"max_temp": 80.0}}

	fr := env.NewFrame()
	if err := fr.Bind(rec); err != nil {
		panic(err)
	}
	assets := rec.Column(1)
	for i := range int(rec.NumRows()) {
		fr.Row(i)
		fr.SetMap(0, limits[assets.ValueStr(i)])
		ok, err := fr.Bool(hot)
		fmt.Println(assets.ValueStr(i), ok, err)
	}
	// Output:
	// wt-1 true <nil>
	// wt-2 true <nil>
	// wt-3 false field temp is null
}
