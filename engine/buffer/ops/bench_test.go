package ops_test

import (
	"context"
	"path/filepath"
	"testing"

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
		appendRows(b, buf, i, batch)
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
