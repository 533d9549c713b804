package sim_test

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/connectors/sim"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/spec"
)

// fillRows draws n rows from a fresh farm in batches of the given size.
func fillRows(t *testing.T, cfg sim.Config, n, batch int) []enginetest.Row {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	f := sim.NewFarm(cfg)
	rb := engine.NewRecordBuilder(mem, f.Schema())
	defer rb.Release()
	var out []enginetest.Row
	for n > 0 {
		k := min(n, batch)
		f.Fill(rb, k)
		rec := rb.NewRecord()
		if int(rec.NumRows()) != k {
			t.Fatalf("Fill(%d) appended %d rows", k, rec.NumRows())
		}
		out = append(out, enginetest.Rows(rec)...)
		rec.Release()
		n -= k
	}
	return out
}

func TestFarmDeterministic(t *testing.T) {
	cfg := sim.Config{Turbines: 7, Seed: 42, Faults: 5}
	want := fillRows(t, cfg, 700, 700)
	for _, batch := range []int{1, 3, 64, 1024} {
		if got := fillRows(t, cfg, 700, batch); !reflect.DeepEqual(got, want) {
			t.Errorf("batch %d: rows differ", batch)
		}
	}
	cfg.Seed = 43
	if got := fillRows(t, cfg, 700, 700); reflect.DeepEqual(got, want) {
		t.Error("seeds 42 and 43 give the same rows")
	}
}

func TestFarmRows(t *testing.T) {
	f := sim.NewFarm(sim.Config{Turbines: 3, Interval: 10 * time.Second, Start: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)})
	if got := f.Schema().String(); got != "time:timestamp(time), asset:string(key), wind_speed:float64, power:float64, rotor_rpm:float64, "+
		"pitch_angle:float64, nacelle_temp:float64, gearbox_temp:float64, generator_temp:float64, ambient_temp:float64, yaw_error:float64, vibration:float64" {
		t.Errorf("schema %s", got)
	}
	rows := fillRows(t, sim.Config{Turbines: 3, Interval: 10 * time.Second, Start: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)}, 7, 7)
	start := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	wantKeys := []struct {
		time  int64
		asset string
	}{{0, "T0001"}, {0, "T0002"}, {0, "T0003"}, {10_000, "T0001"}, {10_000, "T0002"}, {10_000, "T0003"}, {20_000, "T0001"}}
	for i, w := range wantKeys {
		if rows[i][0] != start+w.time || rows[i][1] != w.asset {
			t.Errorf("row %d: %v %v, want %v %v", i, rows[i][0], rows[i][1], start+w.time, w.asset)
		}
	}
	if f.Asset(2) != "T0003" || sim.NewFarm(sim.Config{Turbines: 12345}).Asset(0) != "T00001" {
		t.Error("asset names")
	}
}

// TestFarmPhysics checks the readings look like a wind farm.
func TestFarmPhysics(t *testing.T) {
	for _, faults := range []float64{0, 2} {
		f := sim.NewFarm(sim.Config{Turbines: 50, Seed: 1, Faults: faults})
		var r sim.Reading
		var sumPower, sumWind float64
		var n, faulty int
		count := map[sim.Fault]int{}
		gear := map[sim.Fault]float64{}
		vib := map[sim.Fault]float64{}
		for step := 0; step < 3600; step++ {
			for i := 0; i < f.Turbines(); i++ {
				f.Next(i, &r)
				v := r.Values
				n++
				sumPower += v[sim.Power]
				sumWind += v[sim.WindSpeed]
				if v[sim.Power] < 0 || v[sim.Power] > sim.RatedKW {
					t.Fatalf("power %v out of range", v[sim.Power])
				}
				if v[sim.WindSpeed] < sim.CutIn && v[sim.Power] != 0 {
					t.Fatalf("power %v below cut-in (wind %v)", v[sim.Power], v[sim.WindSpeed])
				}
				if v[sim.WindSpeed] < 0 || v[sim.Vibration] < 0 || v[sim.RotorRPM] < 0 || math.Abs(v[sim.YawError]) > 30 {
					t.Fatalf("implausible reading %v", v)
				}
				for _, x := range v {
					if x != math.Round(x*100)/100 {
						t.Fatalf("value %v not rounded to hundredths", x)
					}
				}
				if r.Fault != sim.NoFault {
					faulty++
				}
				count[r.Fault]++
				gear[r.Fault] += v[sim.GearboxTemp] - v[sim.AmbientTemp]
				vib[r.Fault] += v[sim.Vibration] / (0.6 + 1.8*v[sim.Power]/sim.RatedKW)
			}
		}
		meanWind, meanPower := sumWind/float64(n), sumPower/float64(n)
		if meanWind < 5 || meanWind > 10 || meanPower < 200 || meanPower > 1400 {
			t.Errorf("faults %v: mean wind %.1f m/s, mean power %.0f kW", faults, meanWind, meanPower)
		}
		if faults == 0 && faulty != 0 {
			t.Errorf("%d faulty readings with faults off", faulty)
		}
		if faults > 0 {
			share := float64(faulty) / float64(n)
			if share < 0.1 || share > 0.6 || count[sim.GearboxOverheat] == 0 || count[sim.HighVibration] == 0 || count[sim.Curtailment] == 0 {
				t.Errorf("fault share %.2f, counts %v", share, count)
			}
			if gear[sim.GearboxOverheat]/float64(count[sim.GearboxOverheat]) < gear[sim.NoFault]/float64(count[sim.NoFault])+5 {
				t.Error("gearbox overheating does not heat the gearbox")
			}
			if vib[sim.HighVibration]/float64(count[sim.HighVibration]) < 2*vib[sim.NoFault]/float64(count[sim.NoFault]) {
				t.Error("high vibration does not vibrate")
			}
		}
	}
}

// TestAppendEnOS checks that EnOS payloads decode to the rows Fill gives.
func TestAppendEnOS(t *testing.T) {
	cfg := sim.Config{Turbines: 5, Seed: 9, Faults: 3}
	want := fillRows(t, cfg, 500, 500)

	f := sim.NewFarm(cfg)
	m, err := codec.NewMapping(f.Schema(), nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := codec.NewEnOS(m, codec.EnOSOptions{KeyField: "deviceKey"})
	if err != nil {
		t.Fatal(err)
	}
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	rb := engine.NewRecordBuilder(mem, f.Schema())
	defer rb.Release()
	var buf []byte
	var r sim.Reading
	for k := 0; k < 500; k++ {
		i := k % 5
		if k%2 == 0 {
			buf = f.AppendEnOS(buf[:0], i)
			_, err = d.Decode(rb, buf, f.Asset(i))
		} else {
			f.Next(i, &r)
			buf = sim.AppendEnOS(buf[:0], &r, f.Asset(i))
			_, err = d.Decode(rb, buf, "")
		}
		if err != nil {
			t.Fatalf("%s: %v", buf, err)
		}
	}
	rec := rb.NewRecord()
	defer rec.Release()
	if got := enginetest.Rows(rec); !reflect.DeepEqual(got, want) {
		t.Errorf("decoded rows differ from Fill:\n%v\n%v", got[:2], want[:2])
	}
	if n := len(buf); n < 250 || n > 400 {
		t.Errorf("payload of %d bytes: %s", n, buf)
	}
}

// build makes a sim source from YAML through the registry.
func build(t *testing.T, src string, bc engine.BuildContext) (engine.Source, error) {
	t.Helper()
	c, ok := engine.Lookup(spec.KindSource, "sim")
	if !ok {
		t.Fatal("sim is not registered")
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	cfg, errs := c.Spec.Parse("site.yaml", &n, "type")
	if len(errs) > 0 {
		return nil, errs
	}
	return c.Source(cfg, bc)
}

func TestSourceConfigErrors(t *testing.T) {
	for _, tt := range []struct{ src, want string }{
		{"turbines: 0", "site.yaml:1:11: turbines must be between 1 and 1000000, not 0"},
		{"interval: 500us", "interval must be at least 1ms"},
		{"start: yesterday", `site.yaml:1:8: start must be an RFC 3339 time such as 2024-01-01T00:00:00Z, not "yesterday"`},
		{"rows: -1\nrate: -2\nfaults: -1", "rows must not be negative\nsite.yaml:2:7: rate must not be negative\nsite.yaml:3:9: faults must not be negative"},
		{"turbine: 5", `unknown field "turbine" (did you mean "turbines"?)`},
	} {
		_, err := build(t, tt.src, engine.BuildContext{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q:\n got %v\nwant %q", tt.src, err, tt.want)
		}
	}
}

func TestSourceRun(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	counters := engine.NewCounters()
	src, err := build(t, "type: sim\nturbines: 5\nrows: 3\nseed: 4", engine.BuildContext{Mem: mem, Batch: engine.BatchPolicy{Size: 4}, Counters: counters})
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int64
	var rows []enginetest.Row
	err = src.Run(context.Background(), func(rec arrow.RecordBatch, _ *engine.Ack) error {
		defer rec.Release()
		if !rec.Schema().Equal(src.Schema().Arrow()) {
			t.Errorf("record schema %v", rec.Schema())
		}
		sizes = append(sizes, rec.NumRows())
		rows = append(rows, enginetest.Rows(rec)...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(sizes) != "[4 4 4 3]" {
		t.Errorf("batch sizes %v", sizes)
	}
	if want := fillRows(t, sim.Config{Turbines: 5, Seed: 4, Faults: 0.1}, 15, 15); !reflect.DeepEqual(rows, want) {
		t.Error("source rows differ from the farm's")
	}
	if got := counters.Snapshot()["rows"]; got != 15 {
		t.Errorf("rows counter %d", got)
	}
}

func TestSourceStops(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	src, err := build(t, "turbines: 10", engine.BuildContext{Mem: mem, Batch: engine.BatchPolicy{Size: 100}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var batches int
	err = src.Run(ctx, func(rec arrow.RecordBatch, _ *engine.Ack) error {
		rec.Release()
		if batches++; batches == 5 {
			cancel()
		}
		return nil
	})
	if err != nil || batches != 5 {
		t.Errorf("Run: %v after %d batches", err, batches)
	}
	// An emit that fails because the pipeline stops ends Run.
	ctx, cancel = context.WithCancel(context.Background())
	err = src.Run(ctx, func(rec arrow.RecordBatch, _ *engine.Ack) error {
		rec.Release()
		cancel()
		return context.Canceled
	})
	if err != nil {
		t.Errorf("Run after a refused emit: %v", err)
	}
}

// TestSourcePaced runs a paced source on a fake clock: rows leave when
// they are due, at most Linger late, and the run lasts as long as the rate
// says.
func TestSourcePaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		defer mem.AssertSize(t, 0)
		const linger = 50 * time.Millisecond
		src, err := build(t, "turbines: 10\nrows: 25\nrate: 100", engine.BuildContext{Mem: mem, Batch: engine.BatchPolicy{Size: 8, Linger: linger}})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var emitted atomic.Int64
		err = src.Run(context.Background(), func(rec arrow.RecordBatch, _ *engine.Ack) error {
			defer rec.Release()
			elapsed := time.Since(start)
			first := emitted.Load()
			last := first + rec.NumRows() - 1
			// Row k is due at k/100 s.
			if due := time.Duration(last) * 10 * time.Millisecond; elapsed < due {
				t.Errorf("rows %d..%d left at %v, before row %d was due (%v)", first, last, elapsed, last, due)
			}
			if due := time.Duration(first) * 10 * time.Millisecond; elapsed > due+linger {
				t.Errorf("row %d left at %v, due at %v", first, elapsed, due)
			}
			emitted.Add(rec.NumRows())
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if emitted.Load() != 250 {
			t.Errorf("%d rows", emitted.Load())
		}
		if d := time.Since(start); d != 2490*time.Millisecond {
			t.Errorf("run took %v, want 2.49s", d)
		}
	})
}

func BenchmarkFill(b *testing.B) {
	f := sim.NewFarm(sim.Config{Turbines: 1000, Faults: 0.1})
	rb := engine.NewRecordBuilder(memory.NewGoAllocator(), f.Schema())
	defer rb.Release()
	const batch = 1024
	b.ReportAllocs()
	for b.Loop() {
		f.Fill(rb, batch)
		rb.NewRecord().Release()
	}
	b.ReportMetric(float64(b.N)*batch/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/batch, "ns/row")
}

func BenchmarkAppendEnOS(b *testing.B) {
	f := sim.NewFarm(sim.Config{Turbines: 1000, Faults: 0.1})
	var buf []byte
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		buf = f.AppendEnOS(buf[:0], i)
		if i++; i == 1000 {
			i = 0
		}
	}
	b.SetBytes(int64(len(buf)))
}

func TestAppendEnOSNumbers(t *testing.T) {
	r := sim.Reading{Values: [sim.NumPoints]float64{0, -0.01, 1523.4, 2000, 0.05, -12.34, 1e20, 0.125, -0, 99.99}}
	got := string(sim.AppendEnOS(nil, &r, ""))
	want := `{"id":"0","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":{"wind_speed":0,"power":-0.01,` +
		`"rotor_rpm":1523.4,"pitch_angle":2000,"nacelle_temp":0.05,"gearbox_temp":-12.34,"generator_temp":100000000000000000000,` +
		`"ambient_temp":0.125,"yaw_error":0,"vibration":99.99},"time":0}}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// TestSourceResumes stops a sim source after some batches, of which only
// the first three were acknowledged by the sinks (the rest was in flight
// when the process died): the next run goes on right after the
// acknowledged rows, so that together the runs produce every row once.
// It used to start from the first row again. A run that produced every row
// keeps its position: a rerun produces nothing (it used to produce every
// row again), --from-start all of them.
func TestSourceResumes(t *testing.T) {
	for _, rate := range []string{"0", "200000"} {
		t.Run("rate "+rate, func(t *testing.T) { testSourceResumes(t, "turbines: 5\nrows: 20\nseed: 4\nrate: "+rate) })
	}
}

func testSourceResumes(t *testing.T, conf string) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	data := t.TempDir()
	bc := engine.BuildContext{Mem: mem, Batch: engine.BatchPolicy{Size: 7, Linger: time.Hour}, DataDir: data, Pipeline: "p", Name: "sim"}
	src, err := build(t, conf, bc)
	if err != nil {
		t.Fatal(err)
	}
	var rows []enginetest.Row
	ctx, cancel := context.WithCancel(context.Background())
	batches := 0
	_ = src.Run(ctx, func(rec arrow.RecordBatch, ack *engine.Ack) error {
		defer rec.Release()
		if batches++; batches <= 3 {
			rows = append(rows, enginetest.Rows(rec)...)
			ack.Done()
		}
		if batches == 5 {
			cancel() // two batches never acknowledged
		}
		return nil
	})
	if len(rows) != 21 {
		t.Fatalf("%d rows acknowledged, want 21", len(rows))
	}
	src, err = build(t, conf, bc)
	if err != nil {
		t.Fatal(err)
	}
	err = src.Run(context.Background(), func(rec arrow.RecordBatch, ack *engine.Ack) error {
		defer rec.Release()
		rows = append(rows, enginetest.Rows(rec)...)
		ack.Done()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := fillRows(t, sim.Config{Turbines: 5, Seed: 4, Faults: 0.1}, 100, 100); !reflect.DeepEqual(rows, want) {
		t.Fatalf("%d rows over two runs; they differ from one uninterrupted run of %d", len(rows), len(want))
	}
	rerun := func(bc engine.BuildContext) int64 {
		src, err := build(t, conf, bc)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		err = src.Run(context.Background(), func(rec arrow.RecordBatch, ack *engine.Ack) error {
			defer rec.Release()
			n += rec.NumRows()
			ack.Done()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := rerun(bc); n != 0 {
		t.Fatalf("a rerun produced %d rows again", n)
	}
	bc.FromStart = true
	if n := rerun(bc); n != 100 {
		t.Fatalf("--from-start produced %d rows, want 100", n)
	}
}
