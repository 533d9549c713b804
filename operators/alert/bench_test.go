package alert_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/operators/alert"
)

// BenchmarkAlert evaluates 3 rules (one model-targeted with per-asset
// thresholds and hysteresis) over window results of 1,000 turbines: one
// batch is one minute, 1,000 rows. ns/row is per input row; allocs/op are
// per batch and come from the alerts raised and cleared.
func BenchmarkAlert(b *testing.B) {
	const turbines = 1000
	dir := b.TempDir()
	var f strings.Builder
	f.WriteString("models:\n  - id: turbine\n    attributes:\n      max_temp: {type: float64, default: 85}\nassets:\n")
	for i := range turbines {
		fmt.Fprintf(&f, "  - {id: WT-%04d, model: turbine, attributes: {max_temp: %d}}\n", i, 80+i%10)
	}
	if err := os.WriteFile(filepath.Join(dir, "farm.yaml"), []byte(f.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		states bool // rows change alert states
	}{{"steady", false}, {"changing", true}} {
		b.Run(c.name, func(b *testing.B) {
			mem := memory.NewGoAllocator()
			// The same batches again and again: evaluated as they come
			// (see BenchmarkAlertOrder for the event-time order).
			op, err := alert.New(parse(b, `assets: farm.yaml
order: arrival
rules:
  - {name: hot, model: turbine, expr: temp_max > attr.max_temp, clear: temp_max < attr.max_temp - 5, for: 5m, severity: major}
  - {name: idle, expr: power_avg < 10 && count > 30, for: 10m}
  - {name: stale, expr: count < 10}`), in, engine.BuildContext{Dir: dir, Mem: mem})
			if err != nil {
				b.Fatal(err)
			}
			defer op.Close()
			const minutes = 64
			recs := make([]enginetest.Row, 0, turbines)
			var batches [minutes]engine.Batch
			for m := range minutes {
				recs = recs[:0]
				for i := range turbines {
					temp := 60.0
					if c.states && (i+m)%40 < 12 {
						temp = 95
					}
					recs = append(recs, row(m, fmt.Sprintf("WT-%04d", i), temp, 1000.0))
				}
				batches[m] = engine.Batch{Rec: enginetest.Record(mem, in, recs...)}
			}
			defer func() {
				for _, bt := range batches {
					bt.Release()
				}
			}()
			raised := 0
			sink := func(port int, bt engine.Batch) error {
				raised += int(bt.Rec.NumRows())
				bt.Release()
				return nil
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				bt := batches[i%minutes]
				bt.Rec.Retain()
				if err := op.Process(bt, sink); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*turbines), "ns/row")
			b.ReportMetric(float64(raised)/float64(b.N), "alerts/op")
		})
	}
}

// BenchmarkAlertOrder evaluates the rules of BenchmarkAlert (without the
// assets file) over 1,000 turbines in arrival and in event-time order,
// with the rows in order and shuffled within 5 minutes of lateness: one
// batch is 1,000 rows. Every 64 batches the step is rebuilt (not timed),
// so that event times only move forward. ns/row is per input row.
func BenchmarkAlertOrder(b *testing.B) {
	const turbines, minutes = 1000, 64
	const rules = `rules:
  - {name: hot, expr: temp_max > 90, clear: temp_max < 85, for: 5m, severity: major}
  - {name: idle, expr: power_avg < 10 && count > 30, for: 10m}
  - {name: stale, expr: count < 10}
`
	for _, c := range []struct {
		name, config string
		shuffled     bool
	}{
		{"arrival", "order: arrival\n", false},
		{"event_time", "lateness: 5m\n", false},
		{"event_time_shuffled", "lateness: 5m\n", true},
	} {
		b.Run(c.name, func(b *testing.B) {
			mem := memory.NewGoAllocator()
			var all []enginetest.Row
			for m := range minutes {
				for i := range turbines {
					temp := 60.0
					if (i+m)%40 < 12 {
						temp = 95
					}
					all = append(all, row(m, fmt.Sprintf("WT-%04d", i), temp, 1000.0))
				}
			}
			if c.shuffled {
				all = shuffleWithin(rand.New(rand.NewPCG(1, 2)), all, 5*60_000)
			}
			var batches []engine.Batch
			for len(all) > 0 {
				batches = append(batches, engine.Batch{Rec: enginetest.Record(mem, in, all[:turbines]...)})
				all = all[turbines:]
			}
			defer func() {
				for _, bt := range batches {
					bt.Release()
				}
			}()
			build := func() *alert.Operator {
				op, err := alert.New(parse(b, c.config+rules), in, engine.BuildContext{Mem: mem})
				if err != nil {
					b.Fatal(err)
				}
				return op
			}
			op := build()
			defer func() { op.Close() }()
			sink := func(port int, bt engine.Batch) error {
				bt.Release()
				return nil
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i > 0 && i%minutes == 0 {
					b.StopTimer()
					op.Close()
					op = build()
					b.StartTimer()
				}
				bt := batches[i%minutes]
				bt.Rec.Retain()
				if err := op.Process(bt, sink); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*turbines), "ns/row")
		})
	}
}
