package engine_test

import (
	"fmt"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

// TestAlertRecordAs: alert rows move between the two alert schemas by
// column name: a missing rule_set_version is null, an extra one is left
// out, a record already of the schema is returned as is; a schema that is
// not an alert schema is refused.
func TestAlertRecordAs(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	plain := enginetest.Record(mem, engine.AlertSchema,
		enginetest.Row{int64(1000), "id1", "a1", "hot", "major", "temp", "too hot", 91.5, int64(1000), nil, "raised"})
	defer plain.Release()
	versioned := enginetest.Record(mem, engine.VersionedAlertSchema,
		enginetest.Row{int64(1000), "id1", "a1", "hot", "major", "temp", "too hot", 91.5, int64(1000), nil, "raised", "turbine 3"})
	defer versioned.Release()
	cases := []struct {
		name     string
		from, to *engine.Schema
		want     string
		same     bool
	}{
		{name: "to versioned", from: engine.AlertSchema, to: engine.VersionedAlertSchema,
			want: "[1000 id1 a1 hot major temp too hot 91.5 1000 <nil> raised <nil>]"},
		{name: "to plain", from: engine.VersionedAlertSchema, to: engine.AlertSchema,
			want: "[1000 id1 a1 hot major temp too hot 91.5 1000 <nil> raised]"},
		{name: "same", from: engine.VersionedAlertSchema, to: engine.VersionedAlertSchema,
			want: "[1000 id1 a1 hot major temp too hot 91.5 1000 <nil> raised turbine 3]", same: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := plain
			if c.from == engine.VersionedAlertSchema {
				src = versioned
			}
			out, err := engine.AlertRecordAs(mem, src, c.to)
			if err != nil {
				t.Fatal(err)
			}
			defer out.Release()
			if !out.Schema().Equal(c.to.Arrow()) {
				t.Errorf("schema %s, want %s", out.Schema(), c.to.Arrow())
			}
			if got := fmt.Sprint(enginetest.Rows(out)[0]); got != c.want {
				t.Errorf("row %s, want %s", got, c.want)
			}
			if c.same != (out == src) {
				t.Errorf("same record returned: %v, want %v", out == src, c.same)
			}
		})
	}
	other := engine.MustSchema([]engine.Field{{Name: "time", Type: engine.Timestamp}}, "time", "")
	if out, err := engine.AlertRecordAs(mem, plain, other); err == nil {
		out.Release()
		t.Error("a record converted to a schema that is not an alert schema")
	}
	if engine.IsAlertSchema(other) || !engine.IsAlertSchema(engine.AlertSchema) || !engine.IsAlertSchema(engine.VersionedAlertSchema) {
		t.Error("IsAlertSchema")
	}
}
