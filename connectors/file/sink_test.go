package file_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/connectors/file"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/spec"
)

var sinkSchema = engine.MustSchema([]engine.Field{
	{Name: "time", Type: engine.Timestamp},
	{Name: "asset", Type: engine.String},
	{Name: "power", Type: engine.Float64},
}, "time", "asset")

func buildSink(t *testing.T, dir, src string, counters *engine.Counters) engine.Sink {
	t.Helper()
	c, ok := engine.Lookup(spec.KindSink, "file")
	if !ok {
		t.Fatal("file sink not registered")
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	cfg, errs := c.Spec.Parse("site.yaml", &n, "type", "input")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	s, err := c.Sink(cfg, sinkSchema, engine.BuildContext{Dir: dir, Counters: counters})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestFileSink(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	dir := t.TempDir()
	ctx := context.Background()
	write := func(s engine.Sink, rows ...enginetest.Row) error {
		return s.Write(ctx, engine.Batch{Rec: enginetest.Record(mem, sinkSchema, rows...)})
	}
	counters := engine.NewCounters()
	s := buildSink(t, dir, "type: file\ninput: x\npath: out/deep/rows.jsonl\n", counters)
	if err := write(s, enginetest.Row{int64(0), "T1", 1.5}, enginetest.Row{int64(1000), nil, nil}); err != nil {
		t.Fatal(err)
	}
	if err := write(s, enginetest.Row{int64(2000), "T2", 2.0}); err != nil {
		t.Fatal(err)
	}
	// Every batch reaches the file before Close.
	path := filepath.Join(dir, "out/deep/rows.jsonl")
	const want = `{"time":"1970-01-01T00:00:00.000Z","asset":"T1","power":1.5}
{"time":"1970-01-01T00:00:01.000Z"}
{"time":"1970-01-01T00:00:02.000Z","asset":"T2","power":2}
`
	if b, _ := os.ReadFile(path); string(b) != want {
		t.Errorf("before Close:\n%s", b)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := write(s, enginetest.Row{int64(0), "T9", 9.0}); !errors.Is(err, file.ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
	if got := counters.Snapshot()["rows"]; got != 3 {
		t.Errorf("rows counter %d", got)
	}

	// append: true keeps what is there; the default replaces it.
	s = buildSink(t, dir, "path: out/deep/rows.jsonl\nappend: true\n", nil)
	if err := write(s, enginetest.Row{int64(3000), "T3", 3.0}); err != nil {
		t.Fatal(err)
	}
	_ = s.Close(ctx)
	appended := want + `{"time":"1970-01-01T00:00:03.000Z","asset":"T3","power":3}` + "\n"
	if b, _ := os.ReadFile(path); string(b) != appended {
		t.Errorf("after append:\n%s", b)
	}
	s = buildSink(t, dir, "path: out/deep/rows.jsonl\n", nil)
	if err := write(s, enginetest.Row{int64(4000), "T4", 4.0}); err != nil {
		t.Fatal(err)
	}
	_ = s.Close(ctx)
	if b, _ := os.ReadFile(path); string(b) != `{"time":"1970-01-01T00:00:04.000Z","asset":"T4","power":4}`+"\n" {
		t.Errorf("after replace:\n%s", b)
	}

	// A sink that cannot create its file fails on the first batch and
	// still releases it.
	if err := os.WriteFile(filepath.Join(dir, "blocker"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s = file.NewSink(filepath.Join(dir, "blocker", "rows.jsonl"), false)
	if err := write(s, enginetest.Row{int64(0), "T1", 1.0}); err == nil {
		t.Error("no error writing below a file")
	}
	if err := s.Close(ctx); err != nil {
		t.Errorf("Close of an unopened sink: %v", err)
	}
}
