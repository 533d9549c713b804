package pipelines_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/pipelines"
	"github.com/sluice-edge/sluice/pipelines/examples"
)

// captureStdout points os.Stdout at a file while f builds and runs a
// pipeline (the stdout sink binds os.Stdout when it is built) and returns
// what was written.
func captureStdout(t *testing.T, f func()) []byte {
	t.Helper()
	tmp, err := os.CreateTemp(t.TempDir(), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = tmp
	defer func() { os.Stdout = old }()
	f()
	out, err := os.ReadFile(tmp.Name())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func envOf(m map[string]string) pipelines.LookupEnv {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func runDefs(t *testing.T, defs []*pipelines.Def) []*pipelines.Pipeline {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	ps, errs := pipelines.BuildAll(defs, pipelines.Options{Mem: mem, DataDir: t.TempDir()})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if err := pipelines.RunAll(context.Background(), ps); err != nil {
		t.Fatal(err)
	}
	return ps
}

func counter(ps []*pipelines.Pipeline, component, name string) int64 {
	for _, p := range ps {
		for _, b := range p.Components {
			if b.Def.Name == component {
				return b.Counters.Counter(name).Load()
			}
		}
	}
	return -1
}

func readJSONLines(t *testing.T, data []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("bad JSON line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// Every example file validates.
func TestExamplesValidate(t *testing.T) {
	entries, err := fs.Glob(examples.FS, "*.yaml")
	if err != nil || len(entries) < 2 {
		t.Fatalf("examples: %v %v", entries, err)
	}
	_, errs := pipelines.Validate([]string{"examples"}, envOf(nil), pipelines.Options{})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
}

func TestWindFarmExampleRuns(t *testing.T) {
	dir := t.TempDir()
	stats := filepath.Join(dir, "stats.jsonl")
	env := envOf(map[string]string{"SIM_TURBINES": "20", "SIM_ROWS": "3600", "STATS_FILE": stats})
	defs, errs := pipelines.LoadFS(examples.FS, examples.WindFarm, dir, env)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	var ps []*pipelines.Pipeline
	out := captureStdout(t, func() { ps = runDefs(t, defs) })
	data, err := os.ReadFile(stats)
	if err != nil {
		t.Fatal(err)
	}
	// 20 turbines x 60 one-minute windows.
	if rows := readJSONLines(t, data); len(rows) != 20*60 {
		t.Fatalf("%d window rows, want %d", len(rows), 20*60)
	}
	alerts := readJSONLines(t, out)
	raised := counter(ps, "alerts", "raised")
	if raised == 0 || int64(len(alerts)) != raised+counter(ps, "alerts", "cleared") {
		t.Fatalf("%d alert lines on stdout, raised=%d", len(alerts), raised)
	}
	for _, a := range alerts {
		if a["id"] == "" || a["state"] == nil || a["asset"] == nil {
			t.Fatalf("incomplete alert %v", a)
		}
	}
}

type csvRow struct {
	t                  time.Time
	power, theoretical float64
	line               []string
}

func readCSV(t *testing.T, path string) (header []string, rows []csvRow) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs[1:] {
		ts, err := time.Parse("02 01 2006 15:04", r[0])
		if err != nil {
			t.Fatal(err)
		}
		p, _ := strconv.ParseFloat(r[1], 64)
		th, _ := strconv.ParseFloat(r[3], 64)
		rows = append(rows, csvRow{t: ts, power: p, theoretical: th, line: r})
	}
	return recs[0], rows
}

// The hourly averages of the CSV replay example equal an independent
// computation from the raw file.
func TestCSVReplayAveragesMatchIndependentComputation(t *testing.T) {
	out := t.TempDir()
	defs, errs := pipelines.Load([]string{"examples/csv-replay.yaml"}, envOf(map[string]string{"OUT_DIR": out}))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	captureStdout(t, func() { runDefs(t, defs) })
	data, err := os.ReadFile(filepath.Join(out, "csv-replay-hourly.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	got := readJSONLines(t, data)

	_, rows := readCSV(t, "examples/data/turbine-scada.csv")
	type acc struct{ sum, n, eff float64 }
	want := map[string]*acc{}
	for _, r := range rows {
		k := r.t.Truncate(time.Hour).Format("2006-01-02T15:04:05.000Z")
		a := want[k]
		if a == nil {
			a = &acc{}
			want[k] = a
		}
		a.sum += r.power
		a.n++
	}
	if len(got) != len(want) {
		t.Fatalf("%d hourly rows, want %d", len(got), len(want))
	}
	for _, g := range got {
		a := want[g["window_start"].(string)]
		if a == nil {
			t.Fatalf("unexpected window %v", g["window_start"])
		}
		avg := g["power_avg"].(float64)
		if math.Abs(avg-a.sum/a.n) > 1e-9 || g["count"].(float64) != a.n {
			t.Fatalf("window %v: avg %v count %v, want %v over %v rows", g["window_start"], avg, g["count"], a.sum/a.n, a.n)
		}
	}
}

// Shuffling the input within the allowed lateness and changing the batch
// size leaves the output byte for byte the same.
func TestShuffledReplayWithinLatenessIsByteIdentical(t *testing.T) {
	header, rows := readCSV(t, "examples/data/turbine-scada.csv")
	dir := t.TempDir()
	writeCSV := func(name string, rows []csvRow) string {
		var b strings.Builder
		w := csv.NewWriter(&b)
		_ = w.Write(header)
		for _, r := range rows {
			_ = w.Write(r.line)
		}
		w.Flush()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sorted := writeCSV("sorted.csv", rows)
	// Displace rows by at most 3 positions (30 minutes of event time, the
	// lateness below): a row never arrives after the watermark passed it.
	shuffled := append([]csvRow(nil), rows...)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i+3 < len(shuffled); i += 4 {
		rng.Shuffle(4, func(a, b int) { shuffled[i+a], shuffled[i+b] = shuffled[i+b], shuffled[i+a] })
	}
	shuf := writeCSV("shuffled.csv", shuffled)

	run := func(input string, batch int, out string) []byte {
		y := `
name: replay
batch: {size: ` + strconv.Itoa(batch) + `, linger: 1ms}
sources:
  scada:
    type: file
    path: ` + input + `
    format: csv
    time_layout: "02 01 2006 15:04"
    key: T1
    schema: {key: asset, fields: {power: float64, wind_speed: float64}}
    mapping: {time: Date/Time, power: ActivePower, wind_speed: "Wind Speed (m/s)"}
steps:
  hourly:
    type: window
    input: scada
    size: 1h
    lateness: 40m
    aggregates: {power: [count, sum, avg, min, max, stddev, first, last, p50, p95, p99], wind_speed: [avg]}
sinks:
  out: {type: file, input: hourly, path: ` + out + `}
  late: {type: file, input: hourly.late, path: ` + out + `.late}
`
		defs, errs := pipelines.Parse(filepath.Join(dir, "p.yaml"), []byte(y), envOf(nil))
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		ps := runDefs(t, defs)
		if late := counter(ps, "hourly", "late_rows"); late != 0 {
			t.Fatalf("%d late rows", late)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	want := run(sorted, 1024, filepath.Join(dir, "a.jsonl"))
	for i, c := range []struct {
		input string
		batch int
	}{{shuf, 1}, {shuf, 7}, {shuf, 1024}, {sorted, 3}} {
		got := run(c.input, c.batch, filepath.Join(dir, "out"+strconv.Itoa(i)+".jsonl"))
		if !bytes.Equal(got, want) {
			t.Fatalf("run %d (batch %d): output differs from the sorted run", i, c.batch)
		}
	}
	if len(want) == 0 {
		t.Fatal("no output")
	}
}
