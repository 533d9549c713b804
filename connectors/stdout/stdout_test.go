package stdout_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/connectors/stdout"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/spec"
)

var schema = engine.MustSchema([]engine.Field{
	{Name: "time", Type: engine.Timestamp},
	{Name: "asset", Type: engine.String},
	{Name: "ok", Type: engine.Bool},
}, "time", "asset")

func TestSink(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	ctx := context.Background()
	var out bytes.Buffer
	s := stdout.New(&out)
	for _, rows := range [][]enginetest.Row{
		{{int64(1700000000000), "T1", true}},
		{{int64(1700000000001), "T2", nil}, {nil, "T3", false}},
	} {
		if err := s.Write(ctx, engine.Batch{Rec: enginetest.Record(mem, schema, rows...)}); err != nil {
			t.Fatal(err)
		}
		// Each batch is flushed as it is written.
		if out.Len() == 0 || out.Bytes()[out.Len()-1] != '\n' {
			t.Errorf("batch not flushed: %q", out.String())
		}
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
	const want = `{"time":"2023-11-14T22:13:20.000Z","asset":"T1","ok":true}
{"time":"2023-11-14T22:13:20.001Z","asset":"T2"}
{"asset":"T3","ok":false}
`
	if out.String() != want {
		t.Errorf("got\n%s", out.String())
	}
	err := s.Write(ctx, engine.Batch{Rec: enginetest.Record(mem, schema, enginetest.Row{int64(0), "T", true})})
	if !errors.Is(err, stdout.ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
}

func TestRegistered(t *testing.T) {
	c, ok := engine.Lookup(spec.KindSink, "stdout")
	if !ok {
		t.Fatal("stdout sink not registered")
	}
	cfg, errs := c.Spec.Parse("site.yaml", nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	s, err := c.Sink(cfg, schema, engine.BuildContext{Counters: engine.NewCounters()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func Example() {
	mem := memory.NewGoAllocator()
	s := stdout.New(os.Stdout)
	rec := enginetest.Record(mem, schema, enginetest.Row{int64(1700000000000), "T1", true}, enginetest.Row{int64(1700000060000), "T2", nil})
	_ = s.Write(context.Background(), engine.Batch{Rec: rec})
	_ = s.Close(context.Background())
	// Output:
	// {"time":"2023-11-14T22:13:20.000Z","asset":"T1","ok":true}
	// {"time":"2023-11-14T22:14:20.000Z","asset":"T2"}
}
