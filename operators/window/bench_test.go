package window_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/connectors/sim"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/operators/window"
)

const benchFields = 10

var benchSchema = func() *engine.Schema {
	fs := []engine.Field{{Name: "time", Type: engine.Timestamp}, {Name: "asset", Type: engine.String}}
	for i := range benchFields {
		fs = append(fs, engine.Field{Name: fmt.Sprintf("p%d", i), Type: engine.Float64})
	}
	return engine.MustSchema(fs, "time", "asset")
}()

const benchAggs = `
aggregates:
  p0: [avg, min, max, stddev, p95]
  p1: [avg, min, max, stddev, p95]
  p2: [avg, min, max, stddev, p95]
  p3: [avg, min, max, stddev, p95]
  p4: [avg, min, max, stddev, p95]
  p5: [avg, min, max, stddev, p95]
  p6: [avg, min, max, stddev, p95]
  p7: [avg, min, max, stddev, p95]
  p8: [avg, min, max, stddev, p95]
  p9: [avg, min, max, stddev, p95]
`

// benchData is a cycle of 1,024-row records: every second of event time,
// each active key reports one row with benchFields values around its own
// level (±5%). After the cycle the timestamps are shifted by its length,
// so the operator sees a never-ending stream.
type benchData struct {
	recs  []arrow.RecordBatch
	shift int64
	rows  int
}

func newBenchData(nkeys, ticks int, active func(tick, key int) bool) *benchData {
	rng := rand.New(rand.NewPCG(1, 1))
	mem := memory.NewGoAllocator()
	level := make([]float64, nkeys*benchFields)
	for i := range level {
		level[i] = math.Exp(rng.Float64()*8) + 1
	}
	names := make([]string, nkeys)
	for k := range names {
		names[k] = fmt.Sprintf("wtg-%04d", k)
	}
	d := &benchData{shift: int64(ticks) * 1000}
	rb := engine.NewRecordBuilder(mem, benchSchema)
	defer rb.Release()
	flush := func() {
		if rec := rb.NewRecord(); rec != nil {
			d.recs = append(d.recs, rec)
		}
	}
	const t0 = 1_700_000_040_000
	order := make([]int, nkeys)
	for k := range order {
		order[k] = k
	}
	for tick := range ticks {
		// Devices report in a different order every second.
		rng.Shuffle(nkeys, func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, k := range order {
			if !active(tick, k) {
				continue
			}
			rb.Timestamp(0).Append(arrow.Timestamp(t0 + int64(tick)*1000 + int64(k%1000)))
			rb.String(1).Append(names[k])
			for f := range benchFields {
				rb.Float64(2 + f).Append(level[k*benchFields+f] * (1 + 0.05*rng.NormFloat64()))
			}
			rb.RowDone()
			d.rows++
			if rb.Rows() == 1024 {
				flush()
			}
		}
	}
	flush()
	return d
}

func (d *benchData) advance() {
	for _, rec := range d.recs {
		ts := rec.Column(0).(*array.Timestamp).TimestampValues()
		for i := range ts {
			ts[i] += arrow.Timestamp(d.shift)
		}
	}
}

func (d *benchData) release() {
	for _, r := range d.recs {
		r.Release()
	}
}

func benchWindow(b *testing.B, cfg string, d *benchData) {
	benchWindowOn(b, cfg+benchAggs, benchSchema, d)
}

func benchWindowOn(b *testing.B, cfg string, schema *engine.Schema, d *benchData) {
	defer d.release()
	c, err := parseCfg(b, cfg)
	if err != nil {
		b.Fatal(err)
	}
	op, err := window.New(c, schema, engine.BuildContext{Mem: memory.NewGoAllocator(), Batch: engine.DefaultBatchPolicy})
	if err != nil {
		b.Fatal(err)
	}
	defer op.Close()
	outRows := 0
	emit := func(port int, bt engine.Batch) error {
		outRows += int(bt.Rec.NumRows())
		bt.Release()
		return nil
	}
	feed := func(i int) {
		if i > 0 && i%len(d.recs) == 0 {
			d.advance()
		}
		rec := d.recs[i%len(d.recs)]
		rec.Retain()
		if err := op.Process(engine.Batch{Rec: rec}, emit); err != nil {
			b.Fatal(err)
		}
	}
	// Warm up over two cycles so that keys, slots and buffers exist.
	n := 0
	for ; n < 2*len(d.recs); n++ {
		feed(n)
	}
	rows := 0
	b.ReportAllocs()
	cpu0, cpuOK := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rec := d.recs[(n+i)%len(d.recs)]
		rows += int(rec.NumRows())
		feed(n + i)
	}
	b.StopTimer()
	if cpu1, ok := cpuTime(); ok && cpuOK {
		// CPU time of the whole process (garbage collection included):
		// steadier than wall time on a busy machine.
		b.ReportMetric(float64((cpu1-cpu0).Nanoseconds())/float64(rows), "cpu-ns/row")
	}
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(rows), "ns/row")
	b.ReportMetric(float64(rows)/sec, "rows/s")
	b.ReportMetric(float64(rows*benchFields)/sec, "values/s")
	if outRows == 0 {
		b.Fatal("no windows emitted")
	}
}

// BenchmarkWindowTumbling: 1,000 keys x 10 float fields, avg/min/max/
// stddev/p95 each, one-minute tumbling windows, 1,024-row records.
func BenchmarkWindowTumbling(b *testing.B) {
	benchWindow(b, "kind: tumbling\nsize: 1m\nlateness: 2s", newBenchData(1000, 128, func(int, int) bool { return true }))
}

// BenchmarkWindowHopping: as tumbling, one-minute windows every 10 s.
func BenchmarkWindowHopping(b *testing.B) {
	benchWindow(b, "kind: hopping\nsize: 1m\nstep: 10s\nlateness: 2s", newBenchData(1000, 128, func(int, int) bool { return true }))
}

// BenchmarkWindowSession: each key reports for 70 s out of every 100 s;
// sessions close after a 20 s gap.
func BenchmarkWindowSession(b *testing.B) {
	benchWindow(b, "kind: session\ngap: 20s\nlateness: 2s", newBenchData(1000, 100, func(tick, key int) bool { return (tick+key)%100 < 70 }))
}

// newFarmData is a cycle of 1,024-row records from the simulated wind farm
// of the reference scenario (docs/bench.md): turbines x ticks readings,
// one per turbine per second, rows going round the turbines.
func newFarmData(turbines, ticks int) (*benchData, *engine.Schema) {
	farm := sim.NewFarm(sim.Config{Turbines: turbines, Seed: 1, Faults: 0.5})
	rb := engine.NewRecordBuilder(memory.NewGoAllocator(), farm.Schema())
	defer rb.Release()
	d := &benchData{shift: int64(ticks) * 1000}
	for left := turbines * ticks; left > 0; left -= 1024 {
		farm.Fill(rb, min(left, 1024))
		d.rows += min(left, 1024)
		d.recs = append(d.recs, rb.NewRecord())
	}
	return d, farm.Schema()
}

// farmAggs are the statistics of the reference scenario.
var farmAggs = func() string {
	s := "aggregates:\n"
	for _, p := range sim.Points {
		s += "  " + p + ": [avg, min, max, stddev, p95]\n"
	}
	return s
}()

// BenchmarkWindowFarm: the window step of the reference scenario, 1,000
// simulated turbines x 10 points, one-minute tumbling windows.
func BenchmarkWindowFarm(b *testing.B) {
	d, schema := newFarmData(1000, 180)
	benchWindowOn(b, "kind: tumbling\nsize: 1m\n"+farmAggs, schema, d)
}

// BenchmarkWindowTumblingGlobal: one group, the cost of the aggregates
// alone (no key lookups).
func BenchmarkWindowTumblingGlobal(b *testing.B) {
	benchWindow(b, "kind: tumbling\nsize: 1m\nkey: none", newBenchData(1000, 128, func(int, int) bool { return true }))
}
