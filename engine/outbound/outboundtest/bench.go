package outboundtest

import (
	"fmt"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/outbound"
)

// BenchSchema is the row of the reference workload: a time, a turbine and
// ten float measure points.
var BenchSchema = func() *engine.Schema {
	fields := []engine.Field{{Name: "time", Type: engine.Timestamp}, {Name: "turbine", Type: engine.String}}
	for i := range 10 {
		fields = append(fields, engine.Field{Name: fmt.Sprintf("p%d", i), Type: engine.Float64})
	}
	return engine.MustSchema(fields, "time", "turbine")
}()

// BenchPoints is the number of measure points per BenchSchema row.
const BenchPoints = 10

// BenchRecord builds rows of BenchSchema: 1,000 turbines, one row each per
// second. The caller releases it.
func BenchRecord(rows int) arrow.RecordBatch {
	rb := engine.NewRecordBuilder(memory.DefaultAllocator, BenchSchema)
	defer rb.Release()
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	for r := range rows {
		rb.Timestamp(0).Append(arrow.Timestamp(t0 + int64(r/1000)*1000))
		rb.String(1).Append(fmt.Sprintf("WT%04d", r%1000))
		for i := range BenchPoints {
			rb.Float64(2 + i).Append(float64(r%977)*1.25 + float64(i)/3)
		}
		rb.RowDone()
	}
	return rb.NewRecord()
}

// BenchCase is one configuration of BenchPublish.
type BenchCase struct {
	Encoding  outbound.Encoding
	BatchRows int
}

// DefaultBenchCases are json_batch and arrow with 1,024 and 256 rows per
// message.
var DefaultBenchCases = []BenchCase{
	{outbound.JSONBatch, 1024}, {outbound.Arrow, 1024}, {outbound.JSONBatch, 256}, {outbound.Arrow, 256},
}

// BenchPublish encodes and publishes entries of 1,024 BenchSchema rows as
// a forwarder does — each op is one entry, its messages published in one
// call that returns once the broker has them all — and reports messages,
// rows and point values per second. newPub returns a publisher writing to
// a fresh destination and registers its cleanup.
func BenchPublish(b *testing.B, cases []BenchCase, newPub func(b *testing.B, c BenchCase) *outbound.Publisher) {
	const rows = 1024
	rec := BenchRecord(rows)
	defer rec.Release()
	for _, c := range cases {
		b.Run(fmt.Sprintf("%s/batch_rows=%d", c.Encoding, c.BatchRows), func(b *testing.B) {
			p := newPub(b, c)
			enc := p.Encoder("site", "raw")
			enc.BatchRows = c.BatchRows
			var first uint64 = 1
			var msgs, size int
			b.ReportAllocs()
			for b.Loop() {
				out, err := enc.Encode(outbound.Entry{Rec: rec, First: first, Schema: BenchSchema})
				if err != nil {
					b.Fatal(err)
				}
				if err := p.Publish(p.Topic, out...); err != nil {
					b.Fatal(err)
				}
				first += rows
				msgs += len(out)
				for _, m := range out {
					size += len(m.Payload)
				}
			}
			sec := b.Elapsed().Seconds()
			b.ReportMetric(float64(msgs)/sec, "msgs/s")
			b.ReportMetric(float64(b.N*rows)/sec, "rows/s")
			b.ReportMetric(float64(b.N*rows*BenchPoints)/sec, "points/s")
			b.ReportMetric(float64(size)/float64(b.N*rows), "B/row")
		})
	}
}
