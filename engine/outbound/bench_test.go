package outbound_test

import (
	"fmt"
	"testing"

	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

// BenchmarkEncode encodes runs of reference rows (a time, a turbine and
// ten floats) in every encoding, each run whole.
func BenchmarkEncode(b *testing.B) {
	for _, rows := range []int{1024, 8192} {
		rec := outboundtest.BenchRecord(rows)
		for _, enc := range []outbound.Encoding{outbound.JSON, outbound.JSONBatch, outbound.Arrow} {
			b.Run(fmt.Sprintf("%s/rows=%d", enc, rows), func(b *testing.B) {
				e := &outbound.Encoder{Encoding: enc, Edge: "site-a", Stream: "raw"}
				entry := outbound.Entry{Rec: rec, First: 1, Schema: outboundtest.BenchSchema}
				var size int
				b.ReportAllocs()
				for b.Loop() {
					msgs, err := e.Encode(entry)
					if err != nil {
						b.Fatal(err)
					}
					size = 0
					for _, m := range msgs {
						size += len(m.Payload)
					}
				}
				b.SetBytes(int64(size))
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(rows), "ns/row")
				b.ReportMetric(float64(size)/float64(rows), "B/row")
			})
		}
		rec.Release()
	}
}
