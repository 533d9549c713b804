package transform_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/spec"
	"github.com/sluice-edge/sluice/operators/transform"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var in = engine.MustSchema([]engine.Field{
	{Name: "time", Type: engine.Timestamp},
	{Name: "turbine", Type: engine.String},
	{Name: "temp", Type: engine.Float64},
	{Name: "power", Type: engine.Float64},
	{Name: "status", Type: engine.String},
	{Name: "n", Type: engine.Int64},
}, "time", "turbine")

var t0 = time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

// parse parses a step configuration as the pipeline loader does.
func parse(t testing.TB, s spec.Spec, src string) *spec.Config {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	cfg, errs := s.Parse("p.yaml", &n, "type", "input")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return cfg
}

type build func(cfg *spec.Config, in *engine.Schema, bc engine.BuildContext) (engine.Operator, error)

func newFilter(cfg *spec.Config, in *engine.Schema, bc engine.BuildContext) (engine.Operator, error) {
	return transform.NewFilter(cfg, in, bc)
}

func newMap(cfg *spec.Config, in *engine.Schema, bc engine.BuildContext) (engine.Operator, error) {
	return transform.NewMap(cfg, in, bc)
}

// run feeds batches to a fresh operator and returns what it emitted per
// port and its counters; it checks that nothing leaks.
func run(t *testing.T, s spec.Spec, nf build, config string, batches ...[]enginetest.Row) (map[int][]enginetest.Row, map[string]int64, engine.Operator) {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	counters := engine.NewCounters()
	op, err := nf(parse(t, s, config), in, engine.BuildContext{Mem: mem, Counters: counters})
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	col := enginetest.NewCollector()
	ports := op.Outputs()
	emit := func(port int, b engine.Batch) error {
		if !b.Rec.Schema().Equal(ports[port].Schema.Arrow()) {
			t.Errorf("port %d: schema %s, declared %s", port, b.Rec.Schema(), ports[port].Schema.Arrow())
		}
		return col.Emit(port, b)
	}
	for _, rows := range batches {
		if err := op.Process(engine.Batch{Rec: enginetest.Record(mem, in, rows...)}, emit); err != nil {
			t.Fatal(err)
		}
	}
	if err := op.Flush(emit); err != nil {
		t.Fatal(err)
	}
	if err := op.Close(); err != nil {
		t.Fatal(err)
	}
	return map[int][]enginetest.Row{0: col.Port(0), 1: col.Port(1)}, counters.Snapshot(), op
}

func row(i int, turbine string, temp, power any, status any, n any) enginetest.Row {
	return enginetest.Row{t0 + int64(i)*1000, turbine, temp, power, status, n}
}

func TestFilter(t *testing.T) {
	batch1 := []enginetest.Row{
		row(0, "wt-1", 85.0, 1500.0, "run", int64(1)),
		row(1, "wt-2", 70.0, 1200.0, "run", int64(2)),
		row(2, "wt-3", nil, 900.0, "run", int64(3)),
		row(3, "wt-4", 95.0, 0.0, "stop", int64(4)),
	}
	batch2 := []enginetest.Row{
		row(4, "wt-1", 90.0, 1600.0, "run", int64(5)),
	}
	cases := []struct {
		name     string
		expr     string
		batches  [][]enginetest.Row
		kept     []string // turbines, in order
		errors   []string // reasons, in order
		filtered int64
	}{
		{"hot and running", `temp > 80 && status == "run"`, [][]enginetest.Row{batch1, batch2},
			[]string{"wt-1", "wt-1"}, []string{"field temp is null"}, 2},
		{"all pass", `power >= 0`, [][]enginetest.Row{batch1, batch2},
			[]string{"wt-1", "wt-2", "wt-3", "wt-4", "wt-1"}, nil, 0},
		{"none pass", `power < 0`, [][]enginetest.Row{batch1}, nil, nil, 4},
		{"runtime error", `n % (n - 2) == 0`, [][]enginetest.Row{batch1},
			[]string{"wt-1", "wt-3", "wt-4"}, []string{"integer divide by zero"}, 0},
		{"vm expression", `upper(status) == "RUN" && n > 1`, [][]enginetest.Row{batch1, batch2},
			[]string{"wt-2", "wt-3", "wt-1"}, nil, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, counters, _ := run(t, transform.FilterSpec, newFilter, "type: filter\ninput: x\nexpr: '"+c.expr+"'\n", c.batches...)
			var kept []string
			for _, r := range out[0] {
				kept = append(kept, r[1].(string))
			}
			if fmt.Sprint(kept) != fmt.Sprint(c.kept) {
				t.Errorf("kept %v, want %v", kept, c.kept)
			}
			var reasons []string
			for _, r := range out[1] {
				reasons = append(reasons, r[len(r)-1].(string))
			}
			if fmt.Sprint(reasons) != fmt.Sprint(c.errors) {
				t.Errorf("errors %q, want %q", reasons, c.errors)
			}
			if counters["error_rows"] != int64(len(c.errors)) || counters["filtered_rows"] != c.filtered {
				t.Errorf("counters %v", counters)
			}
		})
	}
}

func TestFilterErrorRowKeepsInput(t *testing.T) {
	out, _, _ := run(t, transform.FilterSpec, newFilter, "expr: temp > 80\n",
		[]enginetest.Row{row(0, "wt-1", nil, 1.0, "run", int64(7)), row(1, "wt-2", 81.0, 2.0, "run", nil)})
	want := fmt.Sprint([]enginetest.Row{{t0, "wt-1", nil, 1.0, "run", int64(7), "field temp is null"}})
	if got := fmt.Sprint(out[1]); got != want {
		t.Errorf("errors port\n got %s\nwant %s", got, want)
	}
	if len(out[0]) != 1 || out[0][0][1] != "wt-2" {
		t.Errorf("main port %v", out[0])
	}
}

// TestFilterForwardsRecord checks that a batch whose rows all pass is
// forwarded as the same record.
func TestFilterForwardsRecord(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	f, err := transform.NewFilter(parse(t, transform.FilterSpec, "expr: power > 0"), in, engine.BuildContext{Mem: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rec := enginetest.Record(mem, in, row(0, "a", 1.0, 1.0, "x", int64(1)), row(1, "b", 1.0, 2.0, "x", int64(1)))
	var got engine.Batch
	err = f.Process(engine.Batch{Rec: rec, Source: 3}, func(port int, b engine.Batch) error { got = b; return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer got.Release()
	if got.Rec != rec || got.Source != 3 {
		t.Error("the record was not forwarded as is")
	}
}

func TestMap(t *testing.T) {
	batch := []enginetest.Row{
		row(0, "wt-1", 100.0, 1500.0, "run", int64(4)),
		row(1, "wt-2", nil, 1200.0, "run", int64(2)),
		row(2, "wt-3", 0.0, 900.0, "stop", int64(0)),
	}
	cases := []struct {
		name   string
		config string
		fields string // output schema
		rows   string
		errors []string
	}{
		{"append columns", "fields:\n  temp_f: temp * 1.8 + 32\n  hot: temp > 80\n  label: turbine + \":\" + status\n  n2: n * 2\n",
			"time:timestamp(time), turbine:string(key), temp:float64, power:float64, status:string, n:int64, temp_f:float64, hot:bool, label:string, n2:int64",
			fmt.Sprint([]enginetest.Row{
				{t0, "wt-1", 100.0, 1500.0, "run", int64(4), 212.0, true, "wt-1:run", int64(8)},
				{t0 + 2000, "wt-3", 0.0, 900.0, "stop", int64(0), 32.0, false, "wt-3:stop", int64(0)},
			}), []string{"temp_f: field temp is null"}},
		{"replace in place", "fields:\n  power: power / 1000\n  status: status == \"run\"\n",
			"time:timestamp(time), turbine:string(key), temp:float64, power:float64, status:bool, n:int64",
			fmt.Sprint([]enginetest.Row{
				{t0, "wt-1", 100.0, 1.5, true, int64(4)},
				{t0 + 1000, "wt-2", nil, 1.2, true, int64(2)},
				{t0 + 2000, "wt-3", 0.0, 0.9, false, int64(0)},
			}), nil},
		{"types", "fields:\n  ratio: 'n > 1 ? power / n : 0'\n  n: power\ntypes:\n  ratio: float64\n  n: int64\n",
			"time:timestamp(time), turbine:string(key), temp:float64, power:float64, status:string, n:int64, ratio:float64",
			fmt.Sprint([]enginetest.Row{
				{t0, "wt-1", 100.0, 1500.0, "run", int64(1500), 375.0},
				{t0 + 1000, "wt-2", nil, 1200.0, "run", int64(1200), 600.0},
				{t0 + 2000, "wt-3", 0.0, 900.0, "stop", int64(900), 0.0},
			}), nil},
		{"timestamp", "fields:\n  time: time\n  late: time\n",
			"time:timestamp(time), turbine:string(key), temp:float64, power:float64, status:string, n:int64, late:timestamp",
			fmt.Sprint([]enginetest.Row{
				{t0, "wt-1", 100.0, 1500.0, "run", int64(4), t0},
				{t0 + 1000, "wt-2", nil, 1200.0, "run", int64(2), t0 + 1000},
				{t0 + 2000, "wt-3", 0.0, 900.0, "stop", int64(0), t0 + 2000},
			}), nil},
		{"wrong dynamic type", "fields:\n  x: 'n > 3 ? status : n'\ntypes:\n  x: int64\n",
			"time:timestamp(time), turbine:string(key), temp:float64, power:float64, status:string, n:int64, x:int64",
			fmt.Sprint([]enginetest.Row{
				{t0 + 1000, "wt-2", nil, 1200.0, "run", int64(2), int64(2)},
				{t0 + 2000, "wt-3", 0.0, 900.0, "stop", int64(0), int64(0)},
			}), []string{"x: expression yields string, not an integer"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, counters, op := run(t, transform.MapSpec, newMap, c.config, batch)
			if got := op.Outputs()[0].Schema.String(); got != c.fields {
				t.Errorf("schema\n got %s\nwant %s", got, c.fields)
			}
			if got := fmt.Sprint(out[0]); got != c.rows {
				t.Errorf("rows\n got %s\nwant %s", got, c.rows)
			}
			var reasons []string
			for _, r := range out[1] {
				reasons = append(reasons, r[len(r)-1].(string))
			}
			if fmt.Sprint(reasons) != fmt.Sprint(c.errors) {
				t.Errorf("errors %q, want %q", reasons, c.errors)
			}
			if counters["error_rows"] != int64(len(c.errors)) {
				t.Errorf("counters %v", counters)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name   string
		s      spec.Spec
		nf     build
		config string
		want   []string
	}{
		{"filter unknown name", transform.FilterSpec, newFilter, "type: filter\ninput: x\nexpr: temp > 80 && staus == \"run\"\n",
			[]string{`p.yaml:3:20: field "expr": unknown name staus (did you mean status?)`}},
		{"filter not bool", transform.FilterSpec, newFilter, "expr: temp * 2\n",
			[]string{`p.yaml:1:7: field "expr": expression yields float64, want bool`}},
		{"filter syntax", transform.FilterSpec, newFilter, "expr: \"temp >\"\n",
			[]string{`p.yaml:1:13: field "expr": unexpected token EOF`}},
		{"map bad expressions", transform.MapSpec, newMap, "fields:\n  a: temp +\n  b: tmp * 2\n  c: temp\n",
			[]string{`p.yaml:2:11: field "fields": a: unexpected token EOF`, `p.yaml:3:6: field "fields": b: unknown name tmp (did you mean temp?)`}},
		{"map dynamic", transform.MapSpec, newMap, "fields:\n  x: 'n > 1 ? 1 : \"a\"'\n",
			[]string{`p.yaml:2:6: field "fields": x: the expression's type is only known at run time; declare it in types`}},
		{"map type mismatch", transform.MapSpec, newMap, "fields:\n  x: status\ntypes:\n  x: float64\n",
			[]string{`p.yaml:4:6: field "fields": x: the expression yields string, not float64`}},
		{"map unknown type key", transform.MapSpec, newMap, "fields:\n  x: temp\ntypes:\n  y: float64\n",
			[]string{`p.yaml:4:3: field "types": "y" is not a column of fields`}},
		{"map replaces time", transform.MapSpec, newMap, "fields:\n  time: n\n",
			[]string{`p.yaml:2:3: schema: time field "time" must have type timestamp, not int64`}},
		{"map not a column type", transform.MapSpec, newMap, "fields:\n  x: '[temp]'\n",
			[]string{`p.yaml:2:6: field "fields": x: the expression yields []interface {}, which is not a column type`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.nf(parse(t, c.s, c.config), in, engine.BuildContext{})
			if err == nil {
				t.Fatal("no error")
			}
			es := spec.Collect(spec.Pos{}, err)
			if len(es) != len(c.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(es), len(c.want), err)
			}
			for i, e := range es {
				if e.Error() != c.want[i] {
					t.Errorf("got  %s\nwant %s", e, c.want[i])
				}
			}
		})
	}
}

func TestSuite(t *testing.T) {
	input := [][]enginetest.Row{
		{row(0, "wt-1", 85.0, 1500.0, "run", int64(1)), row(1, "wt-2", nil, 10.0, "run", int64(2))},
		{row(2, "wt-1", 60.0, 1600.0, "stop", int64(3))},
	}
	for _, c := range []struct {
		name   string
		s      spec.Spec
		nf     build
		config string
	}{
		{"filter", transform.FilterSpec, newFilter, "expr: temp > 80"},
		{"map", transform.MapSpec, newMap, "fields: {temp_f: temp * 1.8 + 32, power: power / 1000, tag: upper(status)}"},
	} {
		t.Run(c.name, func(t *testing.T) {
			enginetest.RunOperatorSuite(t, enginetest.OperatorCase{
				New: func(t testing.TB, mem memory.Allocator) engine.Operator {
					op, err := c.nf(parse(t, c.s, c.config), in, engine.BuildContext{Mem: mem})
					if err != nil {
						t.Fatal(err)
					}
					return op
				},
				In:    in,
				Input: input,
			})
		})
	}
}

func TestRegistered(t *testing.T) {
	for _, name := range []string{"filter", "map"} {
		c, ok := engine.Lookup(spec.KindStep, name)
		if !ok || c.Operator == nil {
			t.Fatalf("%s is not registered", name)
		}
		if err := c.Spec.Check(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if !strings.Contains(c.Spec.Example, "type: "+name) {
			t.Errorf("%s: example does not show the step", name)
		}
	}
}
