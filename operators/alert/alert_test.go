package alert_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/spec"
	"github.com/sluice-edge/sluice/operators/alert"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// in looks like the output of a one-minute window step.
var in = engine.MustSchema([]engine.Field{
	{Name: "window_start", Type: engine.Timestamp},
	{Name: "window_end", Type: engine.Timestamp},
	{Name: "turbine", Type: engine.String},
	{Name: "count", Type: engine.Int64},
	{Name: "temp_max", Type: engine.Float64},
	{Name: "power_avg", Type: engine.Float64},
}, "window_start", "turbine")

var t0 = time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

func minute(m int) int64 { return t0 + int64(m)*60_000 }

// row is one window result: minute m, a turbine, its max temperature and
// average power.
func row(m int, turbine string, temp, power any) enginetest.Row {
	return enginetest.Row{minute(m), minute(m + 1), turbine, int64(60), temp, power}
}

const farm = `models:
  - id: turbine
    attributes:
      max_temp: {type: float64, default: 85}
      rated_kw: {type: float64, default: 2000}
  - id: transformer
    attributes:
      max_oil_temp: {type: float64, default: 95}
assets:
  - {id: WT-1, model: turbine, attributes: {max_temp: 90}}
  - {id: WT-2, model: turbine}
  - {id: TR-1, model: transformer}
`

// env is a pipeline directory with an assets file.
func env(t testing.TB) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "farm.yaml"), []byte(farm), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func parse(t testing.TB, src string) *spec.Config {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	cfg, errs := alert.Spec.Parse("p.yaml", &n, "type", "input")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return cfg
}

// alertRow is an alert row in a readable form.
type alertRow struct {
	time, occur, recover     string
	id, asset, rule, content string
	severity, typ, state     string
	value                    any
}

func (a alertRow) String() string {
	return fmt.Sprintf("%s %s %s %s occur=%s recover=%s value=%v %q", a.state, a.asset, a.rule, a.time, a.occur, a.recover, a.value, a.content)
}

func clock(v any) string {
	if v == nil {
		return "-"
	}
	return time.UnixMilli(v.(int64)).UTC().Format("15:04")
}

func alerts(rows []enginetest.Row) []alertRow {
	out := make([]alertRow, len(rows))
	for i, r := range rows {
		out[i] = alertRow{
			time: clock(r[0]), id: r[1].(string), asset: r[2].(string), rule: r[3].(string),
			severity: r[4].(string), typ: r[5].(string), content: r[6].(string), value: r[7],
			occur: clock(r[8]), recover: clock(r[9]), state: r[10].(string),
		}
	}
	return out
}

// run feeds rows in batches of size batch (all at once when 0) and returns
// the alert rows, the errors-port rows and the counters.
func run(t *testing.T, dir, config string, batch int, rows ...enginetest.Row) ([]alertRow, []enginetest.Row, map[string]int64) {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	counters := engine.NewCounters()
	op, err := alert.New(parse(t, config), in, engine.BuildContext{Pipeline: "site", Name: "alerts", Dir: dir, Mem: mem, Counters: counters})
	if err != nil {
		t.Fatal(err)
	}
	col := enginetest.NewCollector()
	if batch <= 0 {
		batch = len(rows)
	}
	for len(rows) > 0 {
		n := min(batch, len(rows))
		if err := op.Process(engine.Batch{Rec: enginetest.Record(mem, in, rows[:n]...)}, col.Emit); err != nil {
			t.Fatal(err)
		}
		rows = rows[n:]
	}
	if err := op.Flush(col.Emit); err != nil {
		t.Fatal(err)
	}
	if err := op.Close(); err != nil {
		t.Fatal(err)
	}
	return alerts(col.Port(0)), col.Port(alert.ErrorsPort), counters.Snapshot()
}

func states(as []alertRow) string {
	var b strings.Builder
	for _, a := range as {
		fmt.Fprintln(&b, a)
	}
	return b.String()
}

// TestHoldFor30m: a rule with for: 30m raises exactly once, 30 minutes of
// event time after the condition started to hold, and clears exactly once;
// the output does not depend on how the rows are batched.
func TestHoldFor30m(t *testing.T) {
	var rows []enginetest.Row
	for m := range 120 {
		temp := 70.0
		if m >= 10 && m <= 70 {
			temp = 95
		}
		rows = append(rows, row(m, "WT-1", temp, 1000.0), row(m, "WT-2", 60.0, 1000.0))
	}
	config := `rules:
  - name: hot
    expr: temp_max > 90
    for: 30m
    severity: major
    type: temperature
    content: "{{.asset}} at {{.temp_max}} since {{.time.Format \"15:04\"}}"`
	want := "raised WT-1 hot 00:40 occur=00:10 recover=- value=95 \"WT-1 at 95 since 00:40\"\n" +
		"cleared WT-1 hot 01:11 occur=00:10 recover=01:11 value=70 \"WT-1 at 70 since 01:11\"\n"
	var first []alertRow
	for _, batch := range []int{0, 1, 7, 64} {
		got, errs, counters := run(t, "", config, batch, rows...)
		if s := states(got); s != want {
			t.Fatalf("batch %d:\n got %s\nwant %s", batch, s, want)
		}
		if len(errs) != 0 || counters["raised"] != 1 || counters["cleared"] != 1 || counters["error_rows"] != 0 {
			t.Errorf("batch %d: errors %v, counters %v", batch, errs, counters)
		}
		if got[0].id != got[1].id || len(got[0].id) != 32 {
			t.Errorf("ids %q, %q: want one 32-digit id for raise and clear", got[0].id, got[1].id)
		}
		if got[0].severity != "major" || got[0].typ != "temperature" {
			t.Errorf("severity %q type %q", got[0].severity, got[0].typ)
		}
		if first == nil {
			first = got
		} else if got[0].id != first[0].id {
			t.Errorf("batch %d: id %s, first run %s", batch, got[0].id, first[0].id)
		}
	}
}

func TestHoldInterrupted(t *testing.T) {
	var rows []enginetest.Row
	for m := range 100 {
		temp := 70.0
		if m >= 10 && m < 30 || m >= 31 && m <= 65 {
			temp = 95
		}
		rows = append(rows, row(m, "WT-1", temp, 1000.0))
	}
	got, _, _ := run(t, "", "rules: [{name: hot, expr: temp_max > 90, for: 30m}]", 0, rows...)
	want := "raised WT-1 hot 01:01 occur=00:31 recover=- value=95 \"hot on WT-1\"\n" +
		"cleared WT-1 hot 01:06 occur=00:31 recover=01:06 value=70 \"hot on WT-1\"\n"
	if s := states(got); s != want {
		t.Errorf("got\n%swant\n%s", s, want)
	}
}

func TestHysteresis(t *testing.T) {
	temps := []float64{70, 81, 78, 76, 74, 78, 82, 90, 60}
	var rows []enginetest.Row
	for m, temp := range temps {
		rows = append(rows, row(m, "WT-1", temp, 1000.0))
	}
	config := `rules:
  - {name: hot, expr: temp_max > 80, clear: temp_max < 75, severity: critical}`
	got, _, counters := run(t, "", config, 2, rows...)
	want := "raised WT-1 hot 00:01 occur=00:01 recover=- value=81 \"hot on WT-1\"\n" +
		"cleared WT-1 hot 00:04 occur=00:01 recover=00:04 value=74 \"hot on WT-1\"\n" +
		"raised WT-1 hot 00:06 occur=00:06 recover=- value=82 \"hot on WT-1\"\n" +
		"cleared WT-1 hot 00:08 occur=00:06 recover=00:08 value=60 \"hot on WT-1\"\n"
	if s := states(got); s != want {
		t.Errorf("got\n%swant\n%s", s, want)
	}
	if got[0].id == got[2].id {
		t.Error("two alerts share an id")
	}
	if counters["raised"] != 2 || counters["cleared"] != 2 {
		t.Errorf("counters %v", counters)
	}
}

// TestModelRule: a rule targeted at a model applies to that model's assets
// only, each with its own threshold from its attributes.
func TestModelRule(t *testing.T) {
	config := `assets: farm.yaml
rules:
  - name: hot
    model: turbine
    expr: temp_max > attr.max_temp
    value: temp_max - attr.max_temp
    content: "{{.asset}}: {{.temp_max}} > {{.attr.max_temp}}"
  - name: idle
    expr: power_avg < 10
`
	rows := []enginetest.Row{
		row(0, "WT-1", 88.0, 1000.0),  // limit 90: no
		row(0, "WT-2", 88.0, 1000.0),  // default limit 85: raise
		row(0, "TR-1", 200.0, 1000.0), // a transformer: the rule does not apply
		row(0, "X-9", 200.0, 5.0),     // not in the assets file: only idle applies
		row(1, "WT-1", 91.0, 1000.0),  // raise
		row(1, "WT-2", 84.0, 1000.0),  // clear
	}
	got, errs, _ := run(t, env(t), config, 0, rows...)
	want := "raised WT-2 hot 00:00 occur=00:00 recover=- value=3 \"WT-2: 88 > 85\"\n" +
		"raised X-9 idle 00:00 occur=00:00 recover=- value=5 \"idle on X-9\"\n" +
		"raised WT-1 hot 00:01 occur=00:01 recover=- value=1 \"WT-1: 91 > 90\"\n" +
		"cleared WT-2 hot 00:01 occur=00:00 recover=00:01 value=-1 \"WT-2: 84 > 85\"\n"
	if s := states(got); s != want {
		t.Errorf("got\n%swant\n%s", s, want)
	}
	if len(errs) != 0 {
		t.Errorf("errors: %v", errs)
	}
}

// TestBadRows: rows that cannot be evaluated go to the errors port with the
// reason; the other rows and rules go on.
func TestBadRows(t *testing.T) {
	config := `assets: farm.yaml
rules:
  - {name: hot, expr: temp_max > 90}
  - {name: over, expr: power_avg > attr.rated_kw}
`
	rows := []enginetest.Row{
		row(0, "WT-1", nil, 1000.0),
		{nil, minute(1), "WT-1", int64(1), 95.0, 1.0},
		{minute(0), minute(1), nil, int64(1), 95.0, 1.0},
		row(0, "X-1", 95.0, 3000.0),
		row(1, "WT-1", 95.0, 2500.0),
	}
	got, errs, counters := run(t, env(t), config, 0, rows...)
	want := "raised X-1 hot 00:00 occur=00:00 recover=- value=95 \"hot on X-1\"\n" +
		"raised WT-1 hot 00:01 occur=00:01 recover=- value=95 \"hot on WT-1\"\n" +
		"raised WT-1 over 00:01 occur=00:01 recover=- value=2500 \"over on WT-1\"\n"
	if s := states(got); s != want {
		t.Errorf("got\n%swant\n%s", s, want)
	}
	var reasons []string
	for _, r := range errs {
		reasons = append(reasons, r[len(r)-1].(string))
	}
	wantReasons := []string{
		"rule hot: field temp_max is null",
		"field window_start is null",
		"field turbine is null",
		"rule over: attr.rated_kw is not set",
	}
	if fmt.Sprint(reasons) != fmt.Sprint(wantReasons) {
		t.Errorf("reasons\n got %q\nwant %q", reasons, wantReasons)
	}
	if counters["error_rows"] != 4 {
		t.Errorf("counters %v", counters)
	}
}

func TestNoKey(t *testing.T) {
	s := engine.MustSchema([]engine.Field{{Name: "time", Type: engine.Timestamp}, {Name: "level", Type: engine.Float64}}, "time", "")
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	op, err := alert.New(parse(t, "rules: [{name: high, expr: level > 3}]"), s, engine.BuildContext{Mem: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	col := enginetest.NewCollector()
	if err := op.Process(engine.Batch{Rec: enginetest.Record(mem, s, enginetest.Row{t0, 5.0})}, col.Emit); err != nil {
		t.Fatal(err)
	}
	got := alerts(col.Port(0))
	if len(got) != 1 || got[0].asset != "" || got[0].state != engine.AlertRaised {
		t.Errorf("got %v", got)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := env(t)
	cases := []struct {
		name, config string
		want         []string
	}{
		{"bad expression", "rules:\n  - name: hot\n    expr: temp_max > 90 && powr < 3\n",
			[]string{`p.yaml:3:28: field "expr": unknown name powr`}},
		{"not bool", "rules:\n  - {name: hot, expr: temp_max * 2}\n",
			[]string{`p.yaml:2:23: field "expr": expression yields float64, want bool`}},
		{"bad clear and value", "rules:\n  - name: hot\n    expr: temp_max > 1\n    clear: temp_max <\n    value: turbine\n",
			[]string{`p.yaml:4:21: field "clear": unexpected token EOF`, `p.yaml:5:12: field "value": expression yields string, want float64`}},
		{"unknown model", "assets: farm.yaml\nrules:\n  - {name: hot, model: turbin, expr: temp_max > 1}\n",
			[]string{`p.yaml:3:24: rule "hot": unknown model "turbin" (did you mean turbine?)`}},
		{"model without assets", "rules:\n  - {name: hot, model: turbine, expr: temp_max > 1}\n",
			[]string{`p.yaml:2:24: rule "hot": model needs assets (the assets field, or the models of a release)`}},
		{"attr without assets", "rules:\n  - {name: hot, expr: temp_max > attr.max_temp}\n",
			[]string{`p.yaml:2:23: expr: reads attr but the step has no assets file`}},
		{"unknown attribute", "assets: farm.yaml\nrules:\n  - {name: hot, model: turbine, expr: temp_max > attr.max_tmp}\n",
			[]string{`p.yaml:3:39: expr: model "turbine" has no attribute "max_tmp" (did you mean max_temp?)`}},
		{"attribute of no model", "assets: farm.yaml\nrules:\n  - {name: hot, expr: temp_max > attr.limit}\n",
			[]string{`p.yaml:3:23: expr: no model has an attribute "limit"`}},
		{"content field", "rules:\n  - {name: hot, expr: temp_max > 1, content: \"{{.temp}}\"}\n",
			[]string{`p.yaml:2:46: content: unknown field .temp (did you mean temp_max?)`}},
		{"content syntax", "rules:\n  - {name: hot, expr: temp_max > 1, content: \"{{.temp_max\"}\n",
			[]string{`p.yaml:2:46: content: template: hot:1: unclosed action`}},
		{"duplicate rule", "rules:\n  - {name: hot, expr: temp_max > 1}\n  - {name: hot, expr: temp_max > 2}\n",
			[]string{`p.yaml:3:12: rule "hot" declared twice (also at p.yaml:2:12)`}},
		{"negative for", "rules:\n  - {name: hot, expr: temp_max > 1, for: -5m}\n",
			[]string{`p.yaml:2:42: for must not be negative, got -5m0s`}},
		{"key not a string", "key: count\nrules: [{name: hot, expr: temp_max > 1}]\n",
			[]string{`p.yaml:1:6: key: column "count" is int64, not string`}},
		{"missing assets file", "assets: nope.yaml\nrules: [{name: hot, expr: temp_max > 1}]\n",
			[]string{`p.yaml:1:9: assets: open ` + filepath.Join(dir, "nope.yaml") + `: no such file or directory`}},
		{"no rules", "rules: []\n", []string{`p.yaml:1:8: rules: declare at least one rule`}},
		{"bounds too small", "max_keys: 0\nmax_content: 255\nrules: [{name: hot, expr: temp_max > 1}]\n",
			[]string{`p.yaml:1:11: max_keys must be at least 1, got 0`, `p.yaml:2:14: max_content must be at least 256, got 255`}},
		{"bounds too large", "max_keys: 10000001\nmax_content: 1048577\nmax_key_bytes: 65537\nrules: [{name: hot, expr: temp_max > 1}]\n",
			[]string{`p.yaml:1:11: max_keys must be at most 10000000, got 10000001`, `p.yaml:2:14: max_content must be at most 1048576, got 1048577`,
				`p.yaml:3:16: max_key_bytes must be between 1 and 65536, got 65537`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := alert.New(parse(t, c.config), in, engine.BuildContext{Dir: dir})
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

func TestAssetsFileErrors(t *testing.T) {
	dir := t.TempDir()
	bad := "models: [{id: turbine}]\nassets: [{id: A, model: turbne}]\n"
	if err := os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := alert.New(parse(t, "assets: bad.yaml\nrules: [{name: r, expr: temp_max > 1}]"), in, engine.BuildContext{Dir: dir})
	want := filepath.Join(dir, "bad.yaml") + `:2:25: asset "A": unknown model "turbne" (did you mean "turbine"?)`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
}

func TestNoTimeField(t *testing.T) {
	s := engine.MustSchema([]engine.Field{{Name: "x", Type: engine.Float64}}, "", "")
	_, err := alert.New(parse(t, "rules: [{name: r, expr: x > 1}]"), s, engine.BuildContext{})
	if err == nil || !strings.Contains(err.Error(), "needs an input with a time field") {
		t.Errorf("got %v", err)
	}
}

func TestSuite(t *testing.T) {
	dir := env(t)
	enginetest.RunOperatorSuite(t, enginetest.OperatorCase{
		New: func(t testing.TB, mem memory.Allocator) engine.Operator {
			op, err := alert.New(parse(t, `assets: farm.yaml
rules:
  - {name: hot, model: turbine, expr: temp_max > attr.max_temp, for: 1m}
  - {name: idle, expr: power_avg < 10, clear: power_avg > 50}`), in, engine.BuildContext{Dir: dir, Mem: mem})
			if err != nil {
				t.Fatal(err)
			}
			return op
		},
		In: in,
		Input: [][]enginetest.Row{
			{row(0, "WT-1", 95.0, 5.0), row(0, "WT-2", nil, 1.0)},
			{row(1, "WT-1", 95.0, 60.0), row(2, "WT-1", 95.0, 60.0)},
			{row(3, "WT-1", 10.0, 60.0)},
		},
	})
}

func TestRegistered(t *testing.T) {
	c, ok := engine.Lookup(spec.KindStep, "alert")
	if !ok || c.Operator == nil {
		t.Fatal("alert is not registered")
	}
	if err := c.Spec.Check(); err != nil {
		t.Error(err)
	}
}

// TestNoAllocationPerRow checks that evaluating rows allocates nothing: a
// batch of 1,000 rows that changes no alert state allocates no more than a
// batch of 10.
func TestNoAllocationPerRow(t *testing.T) {
	dir := env(t)
	// The same rows again and again: evaluated as they come (in event-time
	// order they would be late after the first time; see
	// TestEventTimeNoAllocationPerRow).
	op, err := alert.New(parse(t, `assets: farm.yaml
order: arrival
rules:
  - {name: hot, model: turbine, expr: temp_max > attr.max_temp, clear: temp_max < attr.max_temp - 5, for: 5m}
  - {name: idle, expr: power_avg < 10 && count > 30}
  - {name: stale, expr: count < 10}`), in, engine.BuildContext{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	mk := func(n int) []enginetest.Row {
		var rows []enginetest.Row
		for i := range n {
			rows = append(rows, row(i, []string{"WT-1", "WT-2", "TR-1", "X"}[i%4], 50.0, 1000.0))
		}
		return rows
	}
	small, large := mk(10), mk(1000)
	discard := func(int, engine.Batch) error { return nil }
	measure := func(rows []enginetest.Row) float64 {
		rec := enginetest.Record(memory.DefaultAllocator, in, rows...)
		defer rec.Release()
		return testing.AllocsPerRun(20, func() {
			rec.Retain()
			if err := op.Process(engine.Batch{Rec: rec}, discard); err != nil {
				t.Fatal(err)
			}
		})
	}
	measure(large) // creates the asset states
	a, b := measure(small), measure(large)
	t.Logf("allocations per batch: %v for 10 rows, %v for 1,000 rows", a, b)
	if b > a {
		t.Errorf("%v allocations for 10 rows, %v for 1,000 rows", a, b)
	}
}

func TestContentTemplate(t *testing.T) {
	cases := []struct{ content, want string }{
		{`{{.asset}} {{.rule}} {{.severity}} {{.type}} {{.value}} {{.count}} {{.time.Format "15:04"}}`, "WT-1 hot warning heat 95 60 00:03"},
		{`{{with .attr}}{{.max_temp}}{{end}} {{$.temp_max}} {{len .}}`, "90 95 13"},
		{`{{if gt .temp_max 90.0}}very {{end}}hot: {{printf "%.1f" .power_avg}}`, "very hot: 1000.0"},
		{`{{.window_end.Format "15:04"}} {{.attr.nope}}`, "00:04 <no value>"},
	}
	for _, c := range cases {
		config := fmt.Sprintf("assets: farm.yaml\nrules: [{name: hot, type: heat, expr: temp_max > 90, content: %q}]", c.content)
		got, _, _ := run(t, env(t), config, 0, row(3, "WT-1", 95.0, 1000.0))
		if len(got) != 1 || got[0].content != c.want {
			t.Errorf("%s: got %v, want %q", c.content, got, c.want)
		}
	}
}
