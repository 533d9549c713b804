package file_test

import (
	"context"
	"path/filepath"
	"testing"

	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/connectors/file"
	"github.com/sluice-edge/sluice/connectors/sim"
	"github.com/sluice-edge/sluice/engine"
)

const benchLines = 100_000

// BenchmarkSourceEnOS replays a file of EnOS payloads from the simulated
// farm (1,000 turbines, device key in each payload).
func BenchmarkSourceEnOS(b *testing.B) {
	farm := sim.NewFarm(sim.Config{Turbines: 1000, Seed: 1})
	var buf []byte
	var r sim.Reading
	for i := range benchLines {
		farm.Next(i%1000, &r)
		buf = sim.AppendEnOS(buf, &r, farm.Asset(i%1000))
		buf = append(buf, '\n')
	}
	schema := "schema:\n  key: asset\n  fields: {"
	for i, p := range sim.Points {
		if i > 0 {
			schema += ", "
		}
		schema += p + ": float64"
	}
	schema += "}\n"
	benchSource(b, buf, "path: posts.jsonl\nformat: enos\nkey_field: deviceKey\n"+schema)
}

// BenchmarkSourceCSV replays the simulated farm as CSV.
func BenchmarkSourceCSV(b *testing.B) {
	farm := sim.NewFarm(sim.Config{Turbines: 1000, Seed: 1})
	rb := engine.NewRecordBuilder(memory.NewGoAllocator(), farm.Schema())
	defer rb.Release()
	farm.Fill(rb, benchLines)
	rec := rb.NewRecord()
	defer rec.Release()
	buf := []byte("time,asset")
	for _, p := range sim.Points {
		buf = append(buf, ","+p...)
	}
	buf = append(buf, '\n')
	times := rec.Column(0).(*array.Timestamp)
	for row := range benchLines {
		buf = strconv.AppendInt(buf, int64(times.Value(row)), 10)
		for c := 1; c < int(rec.NumCols()); c++ {
			buf = append(buf, ',')
			buf = append(buf, rec.Column(c).ValueStr(row)...)
		}
		buf = append(buf, '\n')
	}
	schema := "schema:\n  key: asset\n  fields: {"
	for i, p := range sim.Points {
		if i > 0 {
			schema += ", "
		}
		schema += p + ": float64"
	}
	schema += "}\n"
	benchSource(b, buf, "path: posts.jsonl\nformat: csv\n"+schema)
}

func benchSource(b *testing.B, content []byte, decl string) {
	e := newEnv(b, map[string]string{"posts.jsonl": string(content)})
	e.alloc = memory.NewGoAllocator()
	s, err := e.build(b, decl)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(content)))
	b.ReportAllocs()
	for b.Loop() {
		var rows int64
		err := s.Run(context.Background(), func(rec arrow.RecordBatch, _ *engine.Ack) error {
			rows += rec.NumRows()
			rec.Release()
			return nil
		})
		if err != nil || rows != benchLines {
			b.Fatalf("%d rows, %v", rows, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchLines, "ns/line")
	if bad := e.counters.Snapshot()["bad_lines"]; bad != 0 {
		b.Fatalf("%d bad lines: %s", bad, e.logs)
	}
}

// BenchmarkFileSink writes 1,024-row batches of farm readings as JSON lines.
func BenchmarkFileSink(b *testing.B) {
	farm := sim.NewFarm(sim.Config{Turbines: 1000, Seed: 1})
	rb := engine.NewRecordBuilder(memory.NewGoAllocator(), farm.Schema())
	defer rb.Release()
	farm.Fill(rb, 1024)
	rec := rb.NewRecord()
	defer rec.Release()
	b.SetBytes(int64(len(codec.AppendJSONLines(nil, rec))))
	s := file.NewSink(filepath.Join(b.TempDir(), "out.jsonl"), false)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		rec.Retain()
		if err := s.Write(ctx, engine.Batch{Rec: rec}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1024, "ns/row")
	if err := s.Close(ctx); err != nil {
		b.Fatal(err)
	}
}
