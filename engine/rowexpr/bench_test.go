package rowexpr_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

// BenchmarkEval evaluates one expression per row over a 1,024-row record.
func BenchmarkEval(b *testing.B) {
	env := newEnv(b)
	var rows []enginetest.Row
	for i := range 1024 {
		rows = append(rows, enginetest.Row{t0.Add(time.Duration(i) * time.Second), fmt.Sprintf("wt-%d", i%100), float64(50 + i%60), int64(i), "run", i%2 == 0, 1.0})
	}
	rec := record(b, memory.DefaultAllocator, rows...)
	defer rec.Release()
	attrs := map[string]any{"max_temp": 80.0}
	for _, c := range []struct{ name, src string }{
		{"native/compare", `temp > 80 && status == "run"`},
		{"native/attr", `temp > attr.max_temp`},
		{"native/arith", `temp * 1.8 + 32`},
		{"vm/compare", `upper(status) == "RUN" && temp > 80`},
		{"vm/arith", `temp * 1.8 + float(len(status))`},
	} {
		e, err := env.Compile(c.src)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			fr := env.NewFrame()
			if err := fr.Bind(rec); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				for i := range len(rows) {
					fr.Row(i)
					fr.SetMap(attrVar, attrs)
					var err error
					if e.Type() == engine.Bool {
						_, err = fr.Bool(e)
					} else {
						_, err = fr.Float64(e)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rows)), "ns/row")
			b.ReportMetric(0, "ns/op")
		})
	}
}
