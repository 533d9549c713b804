package ops_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/ops"
)

// BenchmarkExport exports a backlog of 200,000 rows in messages of 256
// rows, half of it sealed into segments, and reports rows/s.
func BenchmarkExport(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "buf")
	buf, err := buffer.Open(dir, buffer.Options{Schema: schema, MessageRows: 256, Edge: "site", Stream: "p.cloud", ManualSeal: true, IdleSeal: -1})
	if err != nil {
		b.Fatal(err)
	}
	const rows, batch = 200_000, 1000
	for i := 0; i < rows; i += batch {
		rb := engine.NewRecordBuilder(memory.DefaultAllocator, schema)
		for j := range batch {
			rb.Timestamp(0).Append(arrow.Timestamp(1700000000000 + int64(i+j)*1000))
			rb.String(1).Append("T1")
			rb.Float64(2).Append(float64(i + j))
			rb.RowDone()
		}
		rec := rb.NewRecord()
		rb.Release()
		if _, err := buf.Append(rec); err != nil {
			b.Fatal(err)
		}
		rec.Release()
		if i == rows/2 {
			if err := buf.Roll(); err != nil {
				b.Fatal(err)
			}
			if err := buf.Seal(); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := buf.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		rep, err := ops.Export(context.Background(), dir, b.TempDir(), ops.ExportOptions{FromSeq: 3})
		if err != nil {
			b.Fatal(err)
		}
		if rep.Rows != rows {
			b.Fatalf("exported %d rows", rep.Rows)
		}
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
