package engine_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

// runSumNamed runs source -> sumOp -> commitSink under the given component
// names with checkpoints into st, and returns what the graph logged.
func runSumNamed(t *testing.T, names [3]string, src *replaySource, d *durable, st engine.CheckpointStore) string {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	src.mem = mem
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src.stop = cancel
	log := &enginetest.LogBuffer{}
	g := engine.NewGraph("sum", slog.New(slog.NewTextHandler(log, nil)))
	s := g.AddSource(names[0], src, nil)
	o := g.AddOperator(names[1], &sumOp{mem: mem}, nil)
	k := g.AddSink(names[2], &commitSink{d: d}, nil)
	if err := g.Connect(s, 0, o); err != nil {
		t.Fatal(err)
	}
	if err := g.Connect(o, 0, k); err != nil {
		t.Fatal(err)
	}
	if err := g.Checkpoints(engine.CheckpointOptions{Store: st, Interval: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := g.Run(ctx); err != nil {
		t.Fatal(err)
	}
	return log.String()
}

// TestCheckpointRenamedComponentsAreReported stops a checkpointing graph
// with its state open and starts it again with a component renamed. The
// checkpoint then holds a state, position or mark under the old name that
// nothing takes, and the renamed component starts without it: a renamed
// step loses its open state, a renamed sink does not roll back what it
// wrote after the checkpoint (the replay writes it again), a renamed
// source reads its input again into restored state. Each is said in the
// log, naming both the new component and the orphaned entry.
func TestCheckpointRenamedComponentsAreReported(t *testing.T) {
	old := [3]string{"src", "sum", "out"}
	cases := []struct {
		name  string
		names [3]string
		want  []string
	}{
		{"step", [3]string{"src", "sum2", "out"}, []string{
			`msg="checkpoint: the checkpoint holds no state for the step (new or renamed?); it starts empty" step=sum2`,
			`msg="checkpoint: the checkpoint holds the state of a step that is not in the pipeline (removed or renamed?); it is dropped" step=sum`,
		}},
		{"sink", [3]string{"src", "sum", "out2"}, []string{
			`msg="checkpoint: the checkpoint holds no mark for the sink (new or renamed?); what it holds is kept as it is" sink=out2`,
			`msg="checkpoint: the checkpoint holds the mark of a sink that is not in the pipeline (removed or renamed?); what it wrote after the checkpoint is not rolled back and a renamed sink may write it again" sink=out`,
		}},
		{"source", [3]string{"src2", "sum", "out"}, []string{
			`msg="checkpoint: the source is new; it starts where it would without a checkpoint" source=src2`,
			`msg="checkpoint: the checkpoint holds the position of a source that is not in the pipeline (removed or renamed?); it is dropped" source=src`,
			// Its input comes again: the step must not count it twice.
			`msg="checkpoint: a source does not continue where the checkpoint left it, so its input comes again: every step starts empty`,
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, st := &durable{}, &memStore{}
			runSumNamed(t, old, &replaySource{n: 1000, batch: 10, stopAt: 505}, d, st)
			if st.cp == nil || st.cp.States["sum"] == nil {
				t.Fatalf("the stopped run left no state of its step: %+v", st.cp)
			}
			log := runSumNamed(t, tc.names, &replaySource{n: 1000, batch: 10}, d, st)
			for _, w := range tc.want {
				if !strings.Contains(log, w) {
					t.Errorf("log lacks %s\nlog:\n%s", w, log)
				}
			}
			// Unchanged names: nothing of the kind is reported.
			again := runSumNamed(t, tc.names, &replaySource{n: 1000, batch: 10, stopAt: 1}, d, st)
			if strings.Contains(again, "renamed") {
				t.Errorf("a start with the names of its checkpoint reports a rename:\n%s", again)
			}
		})
	}
}
