package engine_test

import (
	"context"
	"errors"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
)

// TestGraphKeepOpen: a sink marked KeepOpen stays open when the graph's
// sources end, and CloseKept closes it (once); a graph stopped, switched
// or failed closes it as any other sink. An unmarked sink always closes.
func TestGraphKeepOpen(t *testing.T) {
	for _, c := range []struct {
		name                  string
		n                     int // rows of the source; <0: until stopped
		stop, switching, fail bool
		kept                  bool // the marked sink is open when Run returns
	}{
		{name: "sources ended", n: 100, kept: true},
		{name: "stopped", n: -1, stop: true},
		{name: "switched", n: -1, stop: true, switching: true},
		{name: "failed", n: 100, fail: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			g := engine.NewGraph("t", nil)
			src := g.AddSource("s", &countSource{mem: mem, n: c.n, batch: 10}, nil)
			keep, other := &sumSink{}, &sumSink{}
			if c.fail {
				other.fail = errors.New("broken")
			}
			k := g.AddSink("keep", keep, nil)
			o := g.AddSink("other", other, nil)
			for _, to := range []*engine.Node{k, o} {
				if err := g.Connect(src, 0, to); err != nil {
					t.Fatal(err)
				}
			}
			g.KeepOpen(k)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- g.Run(ctx) }()
			if c.stop {
				if c.switching {
					g.Switching()
				}
				cancel()
			}
			err := <-done
			if (err != nil) != c.fail {
				t.Fatalf("Run: %v", err)
			}
			if other.closed != 1 {
				t.Fatalf("the unmarked sink closed %d times", other.closed)
			}
			if want := map[bool]int{true: 0, false: 1}[c.kept]; keep.closed != want {
				t.Fatalf("the marked sink closed %d times when Run returned, want %d", keep.closed, want)
			}
			if err := g.CloseKept(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := g.CloseKept(context.Background()); err != nil {
				t.Fatal(err)
			}
			if keep.closed != 1 {
				t.Fatalf("the marked sink closed %d times after CloseKept", keep.closed)
			}
			if !c.fail && !c.stop && keep.rows != 100 {
				t.Fatalf("the marked sink got %d rows", keep.rows)
			}
		})
	}
}
