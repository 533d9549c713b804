package file_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.yaml.in/yaml/v3"

	_ "github.com/sluice-edge/sluice/connectors/file"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/spec"
)

// env is what a test source runs with.
type env struct {
	dir       string
	mem       *memory.CheckedAllocator
	counters  *engine.Counters
	logs      *enginetest.LogBuffer
	batch     engine.BatchPolicy
	alloc     memory.Allocator // e.mem unless set
	fromStart bool             // runAcked builds with --from-start
}

func newEnv(t testing.TB, files map[string]string) *env {
	t.Helper()
	e := &env{dir: t.TempDir(), mem: memory.NewCheckedAllocator(memory.NewGoAllocator()), counters: engine.NewCounters(), logs: new(enginetest.LogBuffer)}
	t.Cleanup(func() { e.mem.AssertSize(t, 0) })
	for name, content := range files {
		p := filepath.Join(e.dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *env) build(t testing.TB, src string) (engine.Source, error) {
	t.Helper()
	c, ok := engine.Lookup(spec.KindSource, "file")
	if !ok {
		t.Fatal("file source not registered")
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	cfg, errs := c.Spec.Parse("site.yaml", &n, "type")
	if len(errs) > 0 {
		return nil, errs
	}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	var alloc memory.Allocator = e.mem
	if e.alloc != nil {
		alloc = e.alloc
	}
	return c.Source(cfg, engine.BuildContext{Name: "src", Dir: e.dir, Batch: e.batch, Mem: alloc, Log: log, Counters: e.counters})
}

// run builds and runs a source and returns its rows and batch sizes.
func (e *env) run(t *testing.T, src string) ([]enginetest.Row, []int64) {
	t.Helper()
	s, err := e.build(t, src)
	if err != nil {
		t.Fatal(err)
	}
	var rows []enginetest.Row
	var sizes []int64
	err = s.Run(context.Background(), func(rec arrow.RecordBatch, _ *engine.Ack) error {
		defer rec.Release()
		if !rec.Schema().Equal(s.Schema().Arrow()) {
			t.Errorf("record schema %v, declared %v", rec.Schema(), s.Schema().Arrow())
		}
		rows = append(rows, enginetest.Rows(rec)...)
		sizes = append(sizes, rec.NumRows())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rows, sizes
}

const scadaCSV = "\ufeffDate/Time,ActivePower,Wind Speed (m/s),Wind Direction (\xb0)\r\n" +
	"01 01 2018 00:00,380.0477905,5.31133604,259.9949036\r\n" +
	"01 01 2018 00:10,453.7691956,5.672166824,268.6411133\r\n" +
	"\r\n" +
	"01 01 2018 00:20,oops,5.216036797,272.5647888\r\n" +
	"01 01 2018 00:30,419.6459045,5.659674168,271.2580872"

const scadaDecl = `
type: file
format: csv
time_layout: "02 01 2006 15:04"
key: T1
schema: {key: asset, fields: {power: float64, wind_speed: float64}}
mapping: {time: Date/Time, power: ActivePower, wind_speed: "Wind Speed (m/s)"}
`

func TestSourceCSV(t *testing.T) {
	e := newEnv(t, map[string]string{
		"data/b.csv": scadaCSV,
		"data/a.csv": "Date/Time,ActivePower,Wind Speed (m/s)\n31 12 2017 23:50,1,2\n",
	})
	e.batch = engine.BatchPolicy{Size: 2}
	rows, sizes := e.run(t, scadaDecl+"path: data/*.csv\n")
	ms := func(s string) int64 {
		tm, _ := time.Parse("02 01 2006 15:04", s)
		return tm.UnixMilli()
	}
	want := []enginetest.Row{
		{ms("31 12 2017 23:50"), "T1", 1.0, 2.0},
		{ms("01 01 2018 00:00"), "T1", 380.0477905, 5.31133604},
		{ms("01 01 2018 00:10"), "T1", 453.7691956, 5.672166824},
		{ms("01 01 2018 00:30"), "T1", 419.6459045, 5.659674168},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("rows:\n got %v\nwant %v", rows, want)
	}
	if fmt.Sprint(sizes) != "[2 2]" {
		t.Errorf("batch sizes %v", sizes)
	}
	c := e.counters.Snapshot()
	if c["rows"] != 4 || c["bad_lines"] != 1 {
		t.Errorf("counters %v", c)
	}
	if want := `level=WARN msg="bad line" at=data/b.csv:5 reason="offset 17: column \"ActivePower\": not a number: \"oops\""`; !strings.Contains(e.logs.String(), want) {
		t.Errorf("log:\n%s\nwant %s", e.logs, want)
	}
}

func TestSourceCSVColumns(t *testing.T) {
	e := newEnv(t, map[string]string{
		"plain.csv":  "1700000000000;T1;1.5\n1700000001000;T2;2.5\n",
		"header.csv": "a;b;c\n1700000000000;T3;3.5\n",
	})
	decl := "format: csv\ndelimiter: ';'\ncolumns: [ts, id, p]\nschema: {key: asset, fields: {power: float64}}\nmapping: {time: ts, asset: id, power: p}\n"
	rows, _ := e.run(t, decl+"path: plain.csv\nheader: false\n")
	want := []enginetest.Row{{int64(1700000000000), "T1", 1.5}, {int64(1700000001000), "T2", 2.5}}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("no header: %v", rows)
	}
	rows, _ = e.run(t, decl+"path: header.csv\n")
	if want := []enginetest.Row{{int64(1700000000000), "T3", 3.5}}; !reflect.DeepEqual(rows, want) {
		t.Errorf("replaced header: %v", rows)
	}
}

func TestSourceJSONLines(t *testing.T) {
	e := newEnv(t, map[string]string{"events.jsonl": `{"ts":"2023-11-14T22:13:20Z","dev":{"id":"T1"},"v":1}
not json
{"ts":"2023-11-14T22:13:21.5Z","dev":{"id":"T2"},"v":2,"extra":[1,2]}
`})
	rows, _ := e.run(t, "path: events.jsonl\nformat: jsonl\ntime_layout: rfc3339\nschema: {key: asset, fields: {v: float64}}\nmapping: {time: ts, asset: dev.id}\n")
	want := []enginetest.Row{{int64(1700000000000), "T1", 1.0}, {int64(1700000001500), "T2", 2.0}}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("rows %v", rows)
	}
	if !strings.Contains(e.logs.String(), `at=events.jsonl:2 reason="offset 0: expected a JSON object"`) {
		t.Errorf("log: %s", e.logs)
	}
}

func TestSourceEnOS(t *testing.T) {
	e := newEnv(t, map[string]string{"posts.log": `{"params":{"deviceKey":"A","measurepoints":{"temp":1.5,"Power":{"value":7,"quality":9},"hum":3},"time":1700000000000}}
{"params":[{"deviceKey":"B","measurepoints":{"temp":2.5},"time":1700000001000},{"measurepoints":{"temp":3.5},"time":1700000002000}]}
{"deviceKey":"E","params":[{"deviceKey":"B","measurepoints":{"temp":2.5},"time":1700000001000},{"measurepoints":{"temp":3.5},"time":1700000002000}]}
`})
	rows, _ := e.run(t, "path: posts.log\nformat: enos\nkey_field: deviceKey\nschema: {key: asset, fields: {temp: float64, power: float64}}\nmapping: {power: Power}\n")
	want := []enginetest.Row{
		{int64(1700000000000), "A", 1.5, 7.0},
		{int64(1700000001000), "B", 2.5, nil},
		{int64(1700000002000), "E", 3.5, nil},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("rows %v", rows)
	}
	if c := e.counters.Snapshot(); c["bad_lines"] != 1 || c["unknown_points"] != 1 || c["rows"] != 3 {
		t.Errorf("counters %v", c)
	}
	if !strings.Contains(e.logs.String(), `at=posts.log:2 reason="row 2: no device key (field \"deviceKey\")"`) {
		t.Errorf("log: %s", e.logs)
	}
}

func TestSourceBadLines(t *testing.T) {
	var b strings.Builder
	b.WriteString("time,v\n")
	for i := range 30 {
		if i%2 == 0 {
			fmt.Fprintf(&b, "%d,x\n", i)
		} else {
			fmt.Fprintf(&b, "%d,%d\n", i, i)
		}
	}
	b.WriteString("31," + strings.Repeat("9", 200) + "\n32,32")
	e := newEnv(t, map[string]string{"f.csv": b.String()})
	rows, _ := e.run(t, "path: f.csv\nformat: csv\nmax_line: 100\nschema: {fields: {v: float64}}\n")
	if len(rows) != 16 || rows[15][1] != 32.0 {
		t.Errorf("%d rows, last %v", len(rows), rows[len(rows)-1])
	}
	if c := e.counters.Snapshot(); c["bad_lines"] != 16 {
		t.Errorf("counters %v", c)
	}
	logs := e.logs.String()
	if n := strings.Count(logs, `msg="bad line"`); n != 10 {
		t.Errorf("%d bad lines logged one by one:\n%s", n, logs)
	}
	if want := `msg="more bad lines" file=f.csv not_logged=6 bad_lines=16`; !strings.Contains(logs, want) {
		t.Errorf("log:\n%s\nwant %s", logs, want)
	}
	if want := `at=f.csv:32 reason="line longer than 100 bytes"`; strings.Contains(logs, want) {
		t.Errorf("the 11th bad line was logged")
	}
}

func TestSourceConfigErrors(t *testing.T) {
	e := newEnv(t, nil)
	const schema = "schema: {key: asset, fields: {v: float64}}\n"
	for _, tt := range []struct{ src, want string }{
		{"path: x\nformat: xml\n" + schema, `"xml" is not one of csv, jsonl, enos`},
		{"format: csv\n" + schema, `missing required field "path"`},
		{"path: x\nformat: jsonl\nkey_field: k\n" + schema, "site.yaml:3:12: key_field applies to format enos only"},
		{"path: x\nformat: jsonl\nheader: false\n" + schema, "header applies to format csv only"},
		{"path: x\nformat: csv\nheader: false\n" + schema, "without a header line, list the columns"},
		{"path: x\nformat: csv\ndelimiter: ab\n" + schema, "delimiter must be one character"},
		{"path: x\nformat: csv\nspeed: -1\n" + schema, "speed must not be negative"},
		{"path: x\nformat: enos\n" + schema, "EnOS payloads carry no key column: set key (a fixed value) or key_field"},
		{"path: x\nformat: enos\nkey: a\nschema: {fields: {v: float64}}\n", "the schema has no key column"},
		{"path: x\nformat: jsonl\nschema: {fields: {v: float64, w: float64}}\nmapping: {v: a, w: a.b}\n", `site.yaml:4:10: json: path "a.b" of column "w" runs through`},
		{"path: x\nformat: csv\ncolumns: [a]\n" + schema, `column "time" (for "time") is not in the header`},
		{"path: '[x'\nformat: csv\n" + schema, "bad glob"},
		{"path: x\nformat: csv\ntime_layout: nonsense\n" + schema, "site.yaml:3:14: time layout \"nonsense\" is neither"},
	} {
		_, err := e.build(t, tt.src)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s\n got %v\nwant %q", tt.src, err, tt.want)
		}
	}
}

func TestSourceRunErrors(t *testing.T) {
	e := newEnv(t, map[string]string{"bad.csv": "a,b\n1,2\n"})
	for _, tt := range []struct{ src, want string }{
		{"path: none/*.csv\nformat: csv\nschema: {fields: {v: float64}}\n", "site.yaml:1:7: no file matches"},
		{"path: bad.csv\nformat: csv\nschema: {fields: {v: float64}}\n", `bad.csv:1: header: csv: column "time" (for "time") is not in the header (a, b)`},
	} {
		s, err := e.build(t, tt.src)
		if err != nil {
			t.Fatal(err)
		}
		err = s.Run(context.Background(), func(rec arrow.RecordBatch, _ *engine.Ack) error { rec.Release(); return nil })
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("got %v, want %q", err, tt.want)
		}
	}
}

func TestSourceStops(t *testing.T) {
	var b strings.Builder
	b.WriteString("time,v\n")
	for i := range 10000 {
		fmt.Fprintf(&b, "%d,%d\n", i, i)
	}
	e := newEnv(t, map[string]string{"big.csv": b.String()})
	e.batch = engine.BatchPolicy{Size: 100}
	s, err := e.build(t, "path: big.csv\nformat: csv\nschema: {fields: {v: float64}}\n")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var rows int64
	err = s.Run(ctx, func(rec arrow.RecordBatch, _ *engine.Ack) error {
		defer rec.Release()
		if rows += rec.NumRows(); rows == 300 {
			cancel()
		}
		return nil
	})
	// Rows built before the cancellation was seen are flushed, not lost.
	if err != nil || rows < 300 || rows >= 10000 || rows != e.counters.Snapshot()["rows"] {
		t.Errorf("Run: %v after %d rows (counter %d)", err, rows, e.counters.Snapshot()["rows"])
	}
	// An emit that fails while the pipeline runs is an error.
	err = s.Run(context.Background(), func(rec arrow.RecordBatch, _ *engine.Ack) error {
		rec.Release()
		return fmt.Errorf("downstream failed")
	})
	if err == nil || err.Error() != "downstream failed" {
		t.Errorf("Run with a failing emit: %v", err)
	}
}

// TestSourcePaced replays on a fake clock: at speed 10, rows one event
// second apart leave 100ms apart, and a row never waits longer than the
// linger in a batch.
func TestSourcePaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b strings.Builder
		b.WriteString("time,v\n")
		for i := range 20 {
			fmt.Fprintf(&b, "%d,%d\n", 1700000000000+int64(i)*1000, i)
		}
		fmt.Fprintf(&b, "%d,99\n", 1700000000000-5000) // late rows are not delayed
		e := newEnv(t, map[string]string{"replay.csv": b.String()})
		const linger = 250 * time.Millisecond
		e.batch = engine.BatchPolicy{Size: 4, Linger: linger}
		s, err := e.build(t, "path: replay.csv\nformat: csv\nspeed: 10\nschema: {fields: {v: float64}}\n")
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var sizes []int64
		err = s.Run(context.Background(), func(rec arrow.RecordBatch, _ *engine.Ack) error {
			defer rec.Release()
			elapsed := time.Since(start)
			rows := enginetest.Rows(rec)
			for _, r := range rows {
				if r[1] == 99.0 {
					continue // the late row
				}
				due := time.Duration(r[0].(int64)-1700000000000) * time.Millisecond / 10
				if elapsed < due || elapsed > due+linger {
					t.Errorf("row at event %v left at %v", due, elapsed)
				}
			}
			sizes = append(sizes, rec.NumRows())
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 1900*time.Millisecond {
			t.Errorf("replay took %v, want 1.9s", d)
		}
		if fmt.Sprint(sizes) != "[3 3 3 3 3 3 3]" {
			t.Errorf("batch sizes %v", sizes)
		}
	})
}

// runAcked runs a source with a data directory; only the first acked
// batches are acknowledged (acked < 0: all), and the run stops after
// stopAfter batches (0: never). It returns the rows of the acknowledged
// batches.
func (e *env) runAcked(t *testing.T, src, data string, acked, stopAfter int) []enginetest.Row {
	t.Helper()
	c, _ := engine.Lookup(spec.KindSource, "file")
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	cfg, errs := c.Spec.Parse("site.yaml", &n, "type")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	s, err := c.Source(cfg, engine.BuildContext{Pipeline: "p", Name: "src", Dir: e.dir, DataDir: data, Batch: e.batch, Mem: e.mem,
		Log: slog.New(slog.NewTextHandler(e.logs, nil)), Counters: e.counters, FromStart: e.fromStart})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var rows []enginetest.Row
	k := 0
	err = s.Run(ctx, func(rec arrow.RecordBatch, ack *engine.Ack) error {
		defer rec.Release()
		if k++; acked < 0 || k <= acked {
			rows = append(rows, enginetest.Rows(rec)...)
			ack.Done()
		}
		if k == stopAfter {
			cancel()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestSourceResumes stops a file source part way, with only the first
// batches acknowledged by the sinks: the next run goes on right after the
// acknowledged lines, across files and past a CSV header, so that the runs
// together read every line once. It used to start from the first line
// again. A complete run keeps its position: a rerun reads only lines
// appended since (it used to read everything again), --from-start all.
func TestSourceResumes(t *testing.T) {
	var a, b strings.Builder
	a.WriteString("time,asset,power\n")
	b.WriteString("time,asset,power\n")
	for i := range 50 {
		fmt.Fprintf(&a, "%d,T1,%d\n", i*1000, i)
		fmt.Fprintf(&b, "%d,T2,%d\n", (50+i)*1000, 50+i)
	}
	e := newEnv(t, map[string]string{"in/a.csv": a.String(), "in/b.csv": b.String()})
	e.batch = engine.BatchPolicy{Size: 8}
	conf := "path: in/*.csv\nformat: csv\nschema: {time: time, key: asset, fields: {power: float64}}\n"
	data := t.TempDir()
	all := e.runAcked(t, conf+"resume: false\n", data, -1, 0)
	if len(all) != 100 {
		t.Fatalf("%d rows in one run", len(all))
	}
	// Stop in the second file after 9 batches, 8 acknowledged.
	rows := e.runAcked(t, conf, data, 8, 9)
	rows = append(rows, e.runAcked(t, conf, data, -1, 0)...)
	if !reflect.DeepEqual(rows, all) {
		t.Fatalf("%d rows over two runs, differing from one run of %d", len(rows), len(all))
	}
	// A rerun finds nothing new, and says so.
	if rows := e.runAcked(t, conf, data, -1, 0); len(rows) != 0 {
		t.Fatalf("a rerun read %d rows again", len(rows))
	}
	if !strings.Contains(e.logs.String(), "nothing new to read") {
		t.Fatalf("the rerun did not say why it read nothing:\n%s", e.logs)
	}
	// Lines appended since are read, once.
	f, err := os.OpenFile(filepath.Join(e.dir, "in/b.csv"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "%d,T2,%d\n", 100*1000, 100)
	f.Close()
	if rows := e.runAcked(t, conf, data, -1, 0); len(rows) != 1 || rows[0][2] != 100.0 {
		t.Fatalf("after an append: %v", rows)
	}
	// --from-start reads everything again.
	e.fromStart = true
	if rows := e.runAcked(t, conf, data, -1, 0); len(rows) != 101 {
		t.Fatalf("--from-start read %d rows, want 101", len(rows))
	}
	// A file changed since the stop is read from its start.
	e.runAcked(t, conf, data, 2, 3)
	e.fromStart = false
	if err := os.WriteFile(filepath.Join(e.dir, "in/a.csv"), []byte("time,asset,power\n1,T9,9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rows = e.runAcked(t, conf, data, -1, 0)
	if len(rows) != 52 || rows[0][1] != "T9" || !strings.Contains(e.logs.String(), "file changed") {
		t.Fatalf("after a change: %d rows, first %v", len(rows), rows[0])
	}
}
