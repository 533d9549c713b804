package outbound_test

import (
	"fmt"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/outbound"
)

func ExampleEncode() {
	schema := engine.MustSchema([]engine.Field{
		{Name: "time", Type: engine.Timestamp},
		{Name: "turbine", Type: engine.String},
		{Name: "power", Type: engine.Float64},
	}, "time", "turbine")
	t := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	rec := enginetest.Record(memory.DefaultAllocator, schema,
		enginetest.Row{t, "WT01", 1523.4},
		enginetest.Row{t, "WT02", 1490.0},
	)
	defer rec.Release()

	entry := outbound.Entry{Rec: rec, First: 100, Schema: schema}
	rows, _ := outbound.Encode(outbound.JSON, "site-a", "stats", entry)
	for _, m := range rows {
		fmt.Println(m.UUID, string(m.Payload))
	}
	batch, _ := outbound.Encode(outbound.JSONBatch, "site-a", "stats", entry)
	fmt.Println(batch[0].UUID, batch[0].Metadata[outbound.MetaTimeMin], batch[0].Metadata[outbound.MetaBackfill])
	// Output:
	// site-a/stats/100 {"id":"site-a/stats/100","edge":"site-a","stream":"stats","seq":100,"assetId":"WT01","time":1714564800000,"measurepoints":{"power":1523.4},"backfill":false}
	// site-a/stats/101 {"id":"site-a/stats/101","edge":"site-a","stream":"stats","seq":101,"assetId":"WT02","time":1714564800000,"measurepoints":{"power":1490},"backfill":false}
	// site-a/stats/100-101 2024-05-01T12:00:00.000Z false
}
