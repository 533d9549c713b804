package enginetest_test

import (
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

func TestRecordRoundTrip(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	s := engine.MustSchema([]engine.Field{
		{Name: "time", Type: engine.Timestamp}, {Name: "k", Type: engine.String},
		{Name: "f", Type: engine.Float64}, {Name: "i", Type: engine.Int64}, {Name: "b", Type: engine.Bool},
	}, "time", "k")
	for _, rows := range [][]enginetest.Row{
		nil,
		{{int64(1), "a", 1.5, int64(2), true}, {int64(2), nil, nil, nil, nil}},
	} {
		rec := enginetest.Record(mem, s, rows...)
		got := enginetest.Rows(rec)
		if len(got) != len(rows) {
			t.Fatalf("%d rows back, want %d", len(got), len(rows))
		}
		for r := range rows {
			for c := range rows[r] {
				if got[r][c] != rows[r][c] {
					t.Fatalf("row %d col %d: %v, want %v", r, c, got[r][c], rows[r][c])
				}
			}
		}
		rec.Release()
	}
}
