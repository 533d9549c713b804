package pipelines_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.uber.org/goleak"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/spec"
	"github.com/sluice-edge/sluice/pipelines"
)

// Test-only components: "testsrc" emits `rows` rows; "testpick" checks that
// `field` exists in its input and passes batches through; "testcount"
// counts rows into a package variable.

var testSchema = engine.MustSchema([]engine.Field{
	{Name: "time", Type: engine.Timestamp},
	{Name: "asset", Type: engine.String},
	{Name: "power", Type: engine.Float64},
}, "time", "asset")

type testSrc struct {
	rows int
	mem  memory.Allocator
}

func (s *testSrc) Schema() *engine.Schema { return testSchema }
func (s *testSrc) Run(ctx context.Context, emit engine.Emit) error {
	for i := 0; i < s.rows; i++ {
		if err := emit(enginetest.Record(s.mem, testSchema, enginetest.Row{int64(i * 1000), "T1", float64(i)}), nil); err != nil {
			return err
		}
	}
	return nil
}

type passOp struct{ schema *engine.Schema }

func (o passOp) Outputs() []engine.Port {
	return []engine.Port{{Schema: o.schema}, {Name: "errors", Schema: o.schema}}
}
func (o passOp) Process(b engine.Batch, emit engine.PortEmit) error { return emit(0, b) }
func (o passOp) Flush(engine.PortEmit) error                        { return nil }
func (o passOp) Close() error                                       { return nil }

type countSink struct{ n *atomic.Int64 }

func (s countSink) Write(_ context.Context, b engine.Batch) error {
	s.n.Add(b.Rec.NumRows())
	b.Release()
	return nil
}
func (s countSink) Close(context.Context) error { return nil }

var counted atomic.Int64

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func init() {
	engine.RegisterSource(spec.Spec{Name: "testsrc", Fields: []spec.Field{
		{Name: "rows", Type: spec.Int, Default: 10},
	}}, func(cfg *spec.Config, bc engine.BuildContext) (engine.Source, error) {
		return &testSrc{rows: int(cfg.Int("rows")), mem: bc.Mem}, nil
	})
	engine.RegisterOperator(spec.Spec{Name: "testpick", Fields: []spec.Field{
		{Name: "field", Type: spec.String},
	}}, func(cfg *spec.Config, in *engine.Schema, bc engine.BuildContext) (engine.Operator, error) {
		if _, ok := in.Lookup(cfg.String("field")); !ok {
			return nil, cfg.Errorf("field", "field %q is not in the input schema (%s)", cfg.String("field"), in)
		}
		return passOp{schema: in}, nil
	})
	engine.RegisterSink(spec.Spec{Name: "testcount"}, func(*spec.Config, *engine.Schema, engine.BuildContext) (engine.Sink, error) {
		return countSink{n: &counted}, nil
	})
}

func write(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(strings.TrimLeft(body, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidateReportsLocatedErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // "line:col: substring"
	}{
		{"valid", `
sources:
  src: {type: testsrc}
steps:
  pick: {type: testpick, input: src, field: power}
sinks:
  out: {type: testcount, inputs: [pick, pick.errors]}
`, nil},
		{"bad yaml", "sources:\n  src: {type: testsrc\n", []string{"1:1: invalid YAML: did not find expected ',' or '}'"}},
		{"bad yaml indentation", "sources:\n\tsrc: 1\n", []string{"2:1: invalid YAML: found character that cannot start any token"}},
		{"unknown field", `
sources:
  src: {type: testsrc, rowz: 3}
sinks:
  out: {type: testcount, input: src}
`, []string{`2:24: unknown field "rowz" (did you mean "rows"?)`}},
		{"wrong type", `
sources:
  src:
    type: testsrc
    rows: many
sinks:
  out: {type: testcount, input: src}
`, []string{`4:11: field "rows": expected an integer`}},
		{"unknown type", `
sources:
  src: {type: nosuch}
sinks:
  out: {type: testcount, input: src}
`, []string{`2:15: unknown source type "nosuch"`}},
		{"unknown stream", `
sources:
  src: {type: testsrc}
sinks:
  out: {type: testcount, input: srcc}
`, []string{`4:33: unknown stream "srcc"`}},
		{"unknown port", `
sources:
  src: {type: testsrc}
steps:
  pick: {type: testpick, input: src, field: power}
sinks:
  out: {type: testcount, input: pick.late}
`, []string{`6:33: "pick" has no output "late" (it has: errors)`}},
		{"cycle", `
sources:
  src: {type: testsrc}
steps:
  a: {type: testpick, inputs: [src, b], field: power}
  b: {type: testpick, input: a, field: power}
sinks:
  out: {type: testcount, input: b}
`, []string{`4:3: cycle: a -> b -> a`}},
		{"missing schema field", `
sources:
  src: {type: testsrc}
steps:
  pick: {type: testpick, input: src, field: temp}
sinks:
  out: {type: testcount, input: pick}
`, []string{`4:45: field "temp" is not in the input schema`}},
		{"missing input and sinks", `
sources:
  src: {type: testsrc}
steps:
  pick: {type: testpick, field: power}
`, []string{`1:1: pipeline "p" has no sinks`, `4:9: step "pick" has no `}},
		{"several errors at once", `
sources:
  src: {type: testsrc, rows: -x}
sinks:
  out: {type: testcount, input: nope, extra: 1}
`, []string{`2:30: field "rows"`, `4:39: unknown field "extra"`}},
		{"unset variable", `
sources:
  src: {type: testsrc, rows: "${SLUICE_TEST_UNSET_VAR}"}
sinks:
  out: {type: testcount, input: src}
`, []string{`2:30: environment variable SLUICE_TEST_UNSET_VAR is not set`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := write(t, "p.yaml", tt.yaml)
			_, errs := pipelines.Validate([]string{p}, func(string) (string, bool) { return "", false }, pipelines.Options{})
			if len(tt.want) == 0 {
				if len(errs) > 0 {
					t.Fatalf("unexpected errors:\n%v", errs)
				}
				return
			}
			got := errs.Error()
			for _, w := range tt.want {
				if !strings.Contains(got, p+":"+w) {
					t.Errorf("errors do not contain %q:\n%s", p+":"+w, got)
				}
			}
		})
	}
}

func TestInterpolation(t *testing.T) {
	env := map[string]string{"ROWS": "7", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	tests := []struct {
		in, want string
	}{
		{"${ROWS}", "7"},
		{"${ROWS:-3}", "7"},
		{"${NOPE:-3}", "3"},
		{"${EMPTY:-5}", "5"},
		{"x$${ROWS}y", "x${ROWS}y"},
		{"a${ROWS}b${NOPE:-c}", "a7bc"},
	}
	for _, tt := range tests {
		defs, errs := pipelines.Parse("f.yaml", []byte(fmt.Sprintf("description: %q\nsources: {s: {type: testsrc}}\nsinks: {o: {type: testcount, input: s}}\n", tt.in)), lookup)
		if len(errs) > 0 {
			t.Fatalf("%s: %v", tt.in, errs)
		}
		if got := defs[0].Description; got != tt.want {
			t.Errorf("%s -> %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRunAllAndMultiplePipelines(t *testing.T) {
	p := write(t, "multi.yaml", `
pipelines:
  - name: one
    batch: {size: 8, linger: 1ms}
    sources: {s: {type: testsrc, rows: "${N:-5}"}}
    sinks: {o: {type: testcount, input: s}}
  - name: two
    sources: {s: {type: testsrc, rows: 3}}
    steps: {p: {type: testpick, input: s, field: asset}}
    sinks: {o: {type: testcount, inputs: [p, s]}}
`)
	defs, errs := pipelines.Load([]string{p}, func(k string) (string, bool) { return "", false })
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(defs) != 2 || defs[0].Name != "one" || defs[0].Batch.Size != 8 {
		t.Fatalf("defs: %+v", defs)
	}
	ps, errs := pipelines.BuildAll(defs, pipelines.Options{DataDir: t.TempDir()})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	counted.Store(0)
	if err := pipelines.RunAll(context.Background(), ps); err != nil {
		t.Fatal(err)
	}
	if got := counted.Load(); got != 5+3+3 {
		t.Fatalf("counted %d rows, want 11", got)
	}
	if got := pipelines.SourceRows(ps); got != 8 {
		t.Fatalf("source rows %d, want 8", got)
	}
}

func TestDuplicatePipelineNames(t *testing.T) {
	a := write(t, "a.yaml", "name: x\nsources: {s: {type: testsrc}}\nsinks: {o: {type: testcount, input: s}}\n")
	b := write(t, "b.yaml", "name: x\nsources: {s: {type: testsrc}}\nsinks: {o: {type: testcount, input: s}}\n")
	_, errs := pipelines.Load([]string{a, b}, nil)
	if len(errs) != 1 || !strings.Contains(errs[0].Msg, `pipeline "x" is also defined`) {
		t.Fatalf("errors: %v", errs)
	}
}
