package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/connectors/sim"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/spec"
)

// small is a run that takes a fraction of a second: 40 turbines over 10.5
// minutes of event time (the last window is a partial one), with enough
// fault episodes for every alert rule to have work.
var small = Options{Turbines: 40, Duration: 10*time.Minute + 30*time.Second, Faults: 5}

func TestRunAllScenariosAgree(t *testing.T) {
	r, err := Run(context.Background(), small)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Check(); err != nil {
		t.Fatal(err)
	}
	if !r.Agreement.WindowRows || !r.Agreement.Alerts {
		t.Fatalf("agreement: %+v", r.Agreement)
	}
	const perTurbine = 630
	if r.Workload.Rows != 40*perTurbine || r.Workload.PointValues != 40*perTurbine*10 || r.Workload.ExpectedWindows != 40*11 {
		t.Fatalf("workload: %+v", r.Workload)
	}
	if len(r.Results) != len(Scenarios) {
		t.Fatalf("%d results, want %d", len(r.Results), len(Scenarios))
	}
	first := r.Results[0]
	if first.Alerts() == 0 || first.AlertsCleared == 0 {
		t.Fatalf("the run raised %d and cleared %d alerts; the check needs both", first.AlertsRaised, first.AlertsCleared)
	}
	for i, res := range r.Results {
		if res.Scenario != Scenarios[i] {
			t.Errorf("result %d is %s, want %s", i, res.Scenario, Scenarios[i])
		}
		if res.Rows != r.Workload.Rows || res.PointValues != r.Workload.PointValues {
			t.Errorf("%s: %d rows, %d points", res.Scenario, res.Rows, res.PointValues)
		}
		if res.WindowRows != r.Workload.ExpectedWindows {
			t.Errorf("%s: %d window rows, want %d", res.Scenario, res.WindowRows, r.Workload.ExpectedWindows)
		}
		if res.AlertsRaised != first.AlertsRaised || res.AlertsCleared != first.AlertsCleared {
			t.Errorf("%s: %d raised, %d cleared; %s: %d, %d", res.Scenario, res.AlertsRaised, res.AlertsCleared,
				first.Scenario, first.AlertsRaised, first.AlertsCleared)
		}
		if res.LateRows != 0 || res.DecodeErrors != 0 {
			t.Errorf("%s: %d late rows, %d decode errors", res.Scenario, res.LateRows, res.DecodeErrors)
		}
		// Figures are present; their values are not checked.
		if res.WallSeconds <= 0 || res.RowsPerSec <= 0 || res.NsPerPoint <= 0 || res.Runs != 1 || len(res.AllWallSeconds) != 1 {
			t.Errorf("%s: missing figures: %+v", res.Scenario, res)
		}
		if res.GOMAXPROCS != runtime.GOMAXPROCS(0) {
			t.Errorf("%s: GOMAXPROCS %d", res.Scenario, res.GOMAXPROCS)
		}
		if (res.Scenario == Arrow) != (res.InputBytes == 0) {
			t.Errorf("%s: input bytes %d", res.Scenario, res.InputBytes)
		}
	}
	if len(r.Ratios) != 2 || r.Ratios[0].Scenario != Arrow || r.Ratios[1].Scenario != EnOS || r.Ratios[0].Throughput <= 0 {
		t.Errorf("ratios: %+v", r.Ratios)
	}
	checkJSON(t, r)
	checkTable(t, r)
}

func checkJSON(t *testing.T, r *Report) {
	t.Helper()
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	if !json.Valid(buf.Bytes()) {
		t.Fatalf("invalid JSON:\n%s", buf.String())
	}
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"format_version", "time", "machine", "workload", "results", "ratios", "agreement", "notes"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	results, _ := doc["results"].([]any)
	if len(results) != len(r.Results) {
		t.Fatalf("JSON has %d results", len(results))
	}
	res0, _ := results[0].(map[string]any)
	for _, k := range []string{"scenario", "rows_per_sec", "point_values_per_sec", "ns_per_point", "cpu_ns_per_point",
		"rows_per_core_sec", "allocs_per_point", "bytes_per_point", "cpu_seconds", "wall_seconds", "peak_rss_bytes",
		"peak_rss_reset", "gomaxprocs", "window_rows", "alerts_raised", "alerts_cleared"} {
		if _, ok := res0[k]; !ok {
			t.Errorf("JSON result lacks %q", k)
		}
	}
	machine, _ := doc["machine"].(map[string]any)
	for _, k := range []string{"go_version", "num_cpu", "gomaxprocs"} {
		if _, ok := machine[k]; !ok {
			t.Errorf("JSON machine lacks %q", k)
		}
	}
	var back Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Workload != r.Workload || len(back.Results) != len(r.Results) || back.Results[2].WindowRows != r.Results[2].WindowRows {
		t.Errorf("JSON does not read back: %+v", back)
	}
}

func checkTable(t *testing.T, r *Report) {
	t.Helper()
	var buf bytes.Buffer
	if err := r.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	header := -1
	for i, l := range lines {
		if strings.Contains(l, "scenario") && strings.Contains(l, "rows/s") {
			header = i
			break
		}
	}
	if header < 0 || header+len(r.Results) >= len(lines) {
		t.Fatalf("no table header:\n%s", out)
	}
	cols := len(strings.Fields(lines[header]))
	for i, res := range r.Results {
		f := strings.Fields(lines[header+1+i])
		if len(f) == 0 || f[0] != res.Scenario {
			t.Errorf("table line %d is not %s:\n%s", i, res.Scenario, out)
		}
		if len(f) != cols {
			t.Errorf("table line %q has %d fields, header %d", lines[header+1+i], len(f), cols)
		}
	}
	for _, want := range []string{"40 turbines x 10 points", "arrow/baseline", "enos/baseline", "agreement: every scenario produced 440 window rows"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// TestAlertsAndWindowsMatchBaseline compares the alert records and window
// statistics of the pipeline scenarios (arrow, enos, and enos with
// checkpoints) with those of the baseline, one by one, rather than only
// their numbers.
func TestAlertsAndWindowsMatchBaseline(t *testing.T) {
	opts, err := small.normalize()
	if err != nil {
		t.Fatal(err)
	}
	perTurbine := opts.rowsPerTurbine()
	in := renderPayloads(opts, perTurbine)
	defer in.free()

	b := newBaseline(in)
	b.keep = true
	if _, err := b.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, a := range b.sink.alerts {
		want = append(want, fmt.Sprintf("%s %s %s %d %d", a.asset, a.rule, a.state, a.time, a.occur))
	}
	slices.Sort(want)
	if len(want) == 0 {
		t.Fatal("the baseline raised no alerts")
	}

	for _, c := range []struct {
		name       string
		payloads   *payloads
		checkpoint time.Duration
	}{
		{Arrow, nil, 0},
		{EnOS, in, 0},
		// Through the ingest log, checkpointed every 10ms.
		{CheckpointOn, in, 10 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			windows, alerts := runCollecting(t, opts, perTurbine, c.payloads, c.checkpoint)
			if got := alertRecords(alerts); !slices.Equal(got, want) {
				t.Errorf("alerts differ from the baseline:\n got %q\nwant %q", got, want)
			}
			compareWindows(t, windows, b.sink.results)
		})
	}
}

// alertRecords renders alert rows as the baseline's alerts are rendered
// (asset, rule, state, time, occur time), sorted.
func alertRecords(alerts []enginetest.Row) []string {
	var got []string
	for _, r := range alerts {
		// time, id, asset, rule, severity, type, content, value, occur_time, recover_time, state
		got = append(got, fmt.Sprintf("%s %s %s %d %d", r[2], r[3], r[10], r[0], r[8]))
	}
	slices.Sort(got)
	return got
}

// compareWindows checks window rows (window_start, window_end, asset,
// count, then avg, min, max, stddev, p95 of every point) against the
// baseline's results.
func compareWindows(t *testing.T, rows []enginetest.Row, results []*windowResult) {
	t.Helper()
	if len(rows) != len(results) {
		t.Fatalf("%d window rows, baseline %d", len(rows), len(results))
	}
	byKey := map[string]*windowResult{}
	for _, r := range results {
		byKey[fmt.Sprint(r.asset, r.start)] = r
	}
	bad := 0
	for _, row := range rows {
		w := byKey[fmt.Sprint(row[2], row[0])]
		if w == nil {
			t.Fatalf("window %v %v is not in the baseline", row[2], row[0])
		}
		if row[3].(int64) != w.count {
			t.Errorf("%s %d: count %v, baseline %d", w.asset, w.start, row[3], w.count)
		}
		for p := range sim.NumPoints {
			c := 4 + 5*p
			check := func(what string, got any, want, rel float64) {
				g, _ := got.(float64)
				if math.Abs(g-want) > rel*math.Abs(want)+1e-12 {
					if bad++; bad <= 10 {
						t.Errorf("%s %d %s %s: %v, baseline %v", w.asset, w.start, sim.Points[p], what, got, want)
					}
				}
			}
			check("avg", row[c], w.avg[p], 1e-12)
			check("min", row[c+1], w.min[p], 0)
			check("max", row[c+2], w.max[p], 0)
			check("stddev", row[c+3], w.std[p], 1e-9)
			// The window step estimates quantiles within 2^-8.
			check("p95", row[c+4], w.p95[p], 1.0/256)
		}
	}
}

// collected gathers the rows of the "benchcollect" sink, a test sink that
// replaces the discard sinks of the reference pipeline.
var collected = struct {
	sync.Mutex
	rows map[string][]enginetest.Row
}{rows: map[string][]enginetest.Row{}}

type collectSink struct{ name string }

func (s collectSink) Write(_ context.Context, b engine.Batch) error {
	defer b.Release()
	rows := enginetest.Rows(b.Rec)
	collected.Lock()
	collected.rows[s.name] = append(collected.rows[s.name], rows...)
	collected.Unlock()
	return nil
}

func (collectSink) Close(context.Context) error { return nil }

func init() {
	engine.RegisterSink(spec.Spec{Name: "benchcollect"}, func(_ *spec.Config, _ *engine.Schema, bc engine.BuildContext) (engine.Sink, error) {
		return collectSink{name: bc.Name}, nil
	})
}

// runCollecting runs the reference pipeline with collecting sinks and
// returns the window rows and the alert rows; with a checkpoint interval,
// the pipeline takes checkpoints.
func runCollecting(t *testing.T, opts Options, perTurbine int64, in *payloads, checkpoint time.Duration) (windows, alerts []enginetest.Row) {
	t.Helper()
	orig := ReferenceYAML
	defer func() { ReferenceYAML = orig }()
	ReferenceYAML = bytes.ReplaceAll(orig, []byte("type: discard"), []byte("type: benchcollect"))
	if bytes.Equal(ReferenceYAML, orig) {
		t.Fatal("the reference pipeline has no discard sinks")
	}
	collected.Lock()
	clear(collected.rows)
	collected.Unlock()
	p, err := buildPipeline(opts, perTurbine, in, checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	collected.Lock()
	defer collected.Unlock()
	return collected.rows["stats_out"], collected.rows["alerts_out"]
}

func TestOneCore(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	opts := small
	opts.MaxProcs = 1
	opts.Scenarios = []string{Baseline, Arrow} // run in the canonical order
	r, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOMAXPROCS(0) != before {
		t.Fatalf("GOMAXPROCS is %d after the run, was %d", runtime.GOMAXPROCS(0), before)
	}
	if r.Machine.GOMAXPROCS != 1 || len(r.Results) != 2 || r.Results[0].Scenario != Arrow || r.Results[0].GOMAXPROCS != 1 {
		t.Fatalf("report: %+v %+v", r.Machine, r.Results)
	}
	if err := r.Check(); err != nil {
		t.Fatal(err)
	}
	if len(r.Ratios) != 1 || r.Ratios[0].Scenario != Arrow {
		t.Fatalf("ratios: %+v", r.Ratios)
	}
}

func TestRowsRepeatAndProfile(t *testing.T) {
	prof := filepath.Join(t.TempDir(), "cpu.pprof")
	r, err := Run(context.Background(), Options{Turbines: 7, Rows: 100, Scenarios: []string{"enos", "arrow"}, Repeat: 2, CPUProfile: prof})
	if err != nil {
		t.Fatal(err)
	}
	// 100 readings of 7 turbines: rounded up to 15 readings each.
	if r.Workload.ReadingsPerDevice != 15 || r.Workload.Rows != 105 || r.Workload.ExpectedWindows != 7 {
		t.Fatalf("workload: %+v", r.Workload)
	}
	if err := r.Check(); err != nil {
		t.Fatal(err)
	}
	if len(r.Ratios) != 0 {
		t.Errorf("ratios without a baseline: %+v", r.Ratios)
	}
	for _, res := range r.Results {
		if res.Runs != 2 || len(res.AllWallSeconds) != 2 || len(res.AllCPUSeconds) != 2 {
			t.Errorf("%s: runs %d, %v", res.Scenario, res.Runs, res.AllWallSeconds)
		}
		want := filepath.Join(filepath.Dir(prof), "cpu."+res.Scenario+".pprof")
		if res.CPUProfile != want {
			t.Errorf("%s: profile %q, want %q", res.Scenario, res.CPUProfile, want)
		}
		if st, err := os.Stat(want); err != nil || st.Size() == 0 {
			t.Errorf("%s: profile not written: %v", res.Scenario, err)
		}
	}
	var buf bytes.Buffer
	if err := r.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "median of 2 runs") {
		t.Errorf("table does not show the runs:\n%s", buf.String())
	}
}

func TestOptionsErrors(t *testing.T) {
	for _, o := range []Options{
		{Scenarios: []string{"nope"}},
		{Turbines: -1},
		{Rows: -1},
		{Duration: -time.Second},
		{Repeat: -1},
		{MaxProcs: -1},
		{CheckpointInterval: -time.Second},
	} {
		if _, err := Run(context.Background(), o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, Options{Turbines: 2, Rows: 10}); err == nil {
		t.Error("a cancelled run reported no error")
	}
}

func TestBaselineDecode(t *testing.T) {
	payload := `{"id":"7","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":` +
		`{"wind_speed":7.43,"power":1234.56,"vibration":{"value":2.41,"quality":9},"unknown":1},"time":1700000000000}}`
	r := decodeReading(&baselineMsg{key: "T0001", payload: []byte(payload)})
	if r == nil || r.asset != "T0001" || r.time != 1700000000000 || r.values[sim.WindSpeed] != 7.43 ||
		r.values[sim.Power] != 1234.56 || r.values[sim.Vibration] != 2.41 || !r.has[sim.Vibration] || r.has[sim.RotorRPM] {
		t.Fatalf("decoded %+v", r)
	}
	if decodeReading(&baselineMsg{payload: []byte(`{"params":`)}) != nil {
		t.Fatal("a truncated payload decoded")
	}
}

func TestRenderedPayloadsMatchFarm(t *testing.T) {
	opts, _ := Options{Turbines: 3}.normalize()
	p := renderPayloads(opts, 4)
	defer p.free()
	if p.n != 12 {
		t.Fatalf("%d payloads", p.n)
	}
	var keys []string
	var n int64
	p.each(func(payload []byte, key string) bool {
		keys = append(keys, key)
		n += int64(len(payload))
		if !json.Valid(payload) {
			t.Errorf("invalid payload %s", payload)
		}
		return true
	})
	if n != p.size() || strings.Join(keys[:4], ",") != "T0001,T0002,T0003,T0001" {
		t.Fatalf("keys %v, %d bytes of %d", keys, n, p.size())
	}
}

// benchScenario runs one scenario end to end per iteration (100 turbines,
// 10 minutes of event time: 60,000 readings, 600,000 point values) and
// reports ns and allocations per point value. Building the pipeline is
// not measured.
func benchScenario(b *testing.B, name string) {
	opts, err := Options{Turbines: 100, Duration: 10 * time.Minute}.normalize()
	if err != nil {
		b.Fatal(err)
	}
	perTurbine := opts.rowsPerTurbine()
	var in *payloads
	if name != Arrow {
		in = renderPayloads(opts, perTurbine)
		defer in.free()
	}
	points := float64(perTurbine * int64(opts.Turbines) * Points)
	b.ReportAllocs()
	var mallocs uint64
	var elapsed time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		run, err := prepare(name, opts, perTurbine, in)
		if err != nil {
			b.Fatal(err)
		}
		before := takeSample()
		b.StartTimer()
		out, err := run(context.Background())
		b.StopTimer()
		after := takeSample()
		if err != nil {
			b.Fatal(err)
		}
		if out.rows != perTurbine*int64(opts.Turbines) {
			b.Fatalf("%d rows", out.rows)
		}
		mallocs += after.mallocs - before.mallocs
		elapsed += after.wall.Sub(before.wall)
	}
	b.ReportMetric(float64(elapsed.Nanoseconds())/(points*float64(b.N)), "ns/point")
	b.ReportMetric(float64(mallocs)/(points*float64(b.N)), "allocs/point")
	b.ReportMetric(points*float64(b.N)/elapsed.Seconds(), "points/s")
}

func BenchmarkArrow(b *testing.B)    { benchScenario(b, Arrow) }
func BenchmarkEnOS(b *testing.B)     { benchScenario(b, EnOS) }
func BenchmarkBaseline(b *testing.B) { benchScenario(b, Baseline) }
