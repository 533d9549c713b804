package alert_test

import (
	"fmt"
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
			op, err := alert.New(parse(b, `assets: farm.yaml
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
