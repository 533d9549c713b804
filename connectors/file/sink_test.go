package file_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

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

// TestFileSinkFullDisk fills the disk under a file sink: the write holds
// back (it used to fail and end the pipeline, leaving a cut last line),
// the file keeps whole lines only, and the rows are written once space
// returns.
func TestFileSinkFullDisk(t *testing.T) {
	dir := enginetest.Tmpfs(t, 256<<10)
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	counters := engine.NewCounters()
	s := buildSink(t, dir, "type: file\ninput: x\npath: rows.jsonl\n", counters)
	defer s.Close(context.Background())
	batch := func(k int) engine.Batch {
		rows := make([]enginetest.Row, 200)
		for i := range rows {
			rows[i] = enginetest.Row{int64(k*200+i) * 1000, "T1", float64(k*200 + i)}
		}
		return engine.Batch{Rec: enginetest.Record(mem, sinkSchema, rows...)}
	}
	if err := s.Write(context.Background(), batch(0)); err != nil {
		t.Fatal(err)
	}
	filler := enginetest.Fill(t, dir, 2<<10)
	// Cancelled before the deferred Close, so that a failing test does
	// not wait for ever on a write held back.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		var err error
		for k := 1; k < 4 && err == nil; k++ {
			err = s.Write(ctx, batch(k))
		}
		done <- err
	}()
	waitUntil(t, func() bool { return counters.Counter("disk_full_waits").Load() > 0 })
	select {
	case err := <-done:
		t.Fatalf("the write returned on a full disk: %v", err)
	default:
	}
	checkLines(t, filepath.Join(dir, "rows.jsonl"), -1)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkLines(t, filepath.Join(dir, "rows.jsonl"), 800)
}

// checkLines checks that every line of the file is a whole JSON object and
// that there are want of them (want < 0: any number).
func checkLines(t *testing.T, name string, want int) {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Fatalf("%s ends with a cut line: %q", name, data[max(0, len(data)-40):])
	}
	n := 0
	for _, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var v map[string]any
		if err := json.Unmarshal(line, &v); err != nil {
			t.Fatalf("line %d is not whole: %q", n+1, line)
		}
		n++
	}
	if want >= 0 && n != want {
		t.Fatalf("%d lines, want %d", n, want)
	}
}

func waitUntil(t *testing.T, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestFileSinkContinuesAResumedRun: a run whose source resumes an
// interrupted one (BuildContext.Resuming) continues the sink's file
// instead of replacing it — replacing lost the rows the first part wrote,
// which the resumed source does not produce again — and cuts a line the
// crash left partial.
func TestFileSinkContinuesAResumedRun(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	dir := t.TempDir()
	path := filepath.Join(dir, "rows.jsonl")
	if err := os.WriteFile(path, []byte("{\"asset\":\"T1\"}\n{\"asset\":\"T2\"}\n{\"ass"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, _ := engine.Lookup(spec.KindSink, "file")
	var n yaml.Node
	if err := yaml.Unmarshal([]byte("path: rows.jsonl\n"), &n); err != nil {
		t.Fatal(err)
	}
	cfg, errs := c.Spec.Parse("site.yaml", &n, "type", "input")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	s, err := c.Sink(cfg, sinkSchema, engine.BuildContext{Dir: dir, Resuming: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(context.Background(), engine.Batch{Rec: enginetest.Record(mem, sinkSchema, enginetest.Row{int64(0), "T3", 1.0})}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkLines(t, path, 3)
}
