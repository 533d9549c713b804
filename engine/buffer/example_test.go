package buffer_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

// Example shows the life of rows in a sink's buffer: appended durably,
// read by the forwarder, acknowledged once the broker confirmed them.
func Example() {
	dir, err := os.MkdirTemp("", "sluice-buffer")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	schema := engine.MustSchema([]engine.Field{
		{Name: "time", Type: engine.Timestamp},
		{Name: "asset", Type: engine.String},
		{Name: "power", Type: engine.Float64},
	}, "time", "asset")
	b, err := buffer.Open(dir, buffer.Options{Schema: schema, MaxBytes: 1 << 30, Policy: buffer.DropOldest})
	if err != nil {
		panic(err)
	}
	defer b.Close()

	// The pipeline side: Append returns once the rows are on disk.
	t := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	rec := enginetest.Record(memory.DefaultAllocator, schema,
		enginetest.Row{t, "turbine-1", 1520.5},
		enginetest.Row{t, "turbine-2", 1498.0},
	)
	first, err := b.Append(rec)
	rec.Release()
	if err != nil {
		panic(err)
	}
	fmt.Println("first sequence:", first)

	// The forwarder side: publish, then Ack once the broker confirmed.
	e, err := b.Next(context.Background())
	if err != nil {
		panic(err)
	}
	for i := range int(e.Rec.NumRows()) {
		fmt.Printf("publish id=(edge, stream, %d)\n", e.First+uint64(i))
	}
	e.Rec.Release()
	if err := b.Ack(e.Last()); err != nil {
		panic(err)
	}
	st := b.Status()
	fmt.Println("cursor:", st.Cursor, "backlog rows:", st.BacklogRows)
	// Output:
	// first sequence: 1
	// publish id=(edge, stream, 1)
	// publish id=(edge, stream, 2)
	// cursor: 2 backlog rows: 0
}
