package mqtt

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

// recordingSink keeps the rows it is given; with fail set it fails
// instead, once.
type recordingSink struct {
	mu   sync.Mutex
	rows []enginetest.Row
	fail bool
	got  chan struct{}
}

func (s *recordingSink) Write(_ context.Context, b engine.Batch) error {
	defer b.Release()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		s.fail = false
		return errors.New("disk full")
	}
	s.rows = append(s.rows, enginetest.Rows(b.Rec)...)
	select {
	case s.got <- struct{}{}:
	default:
	}
	return nil
}

func (s *recordingSink) Close(context.Context) error { return nil }

func (s *recordingSink) seqs() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return seqs(toAny(s.rows), 1)
}

// runGraph runs source -> sink in an engine graph until stop is called or
// the graph ends by itself (done).
func runGraph(t *testing.T, src *Source, sink *recordingSink) (stop func() error, done <-chan error) {
	t.Helper()
	g := engine.NewGraph("test", testLogger(t))
	from := g.AddSource("devices", src, nil)
	to := g.AddSink("store", sink, nil)
	if err := g.Connect(from, 0, to); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	var once sync.Once
	src.onReady = func() { once.Do(func() { close(ready) }) }
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan error, 1)
	go func() { ended <- g.Run(ctx) }()
	select {
	case <-ready:
	case err := <-ended:
		t.Fatalf("graph ended: %v", err)
	case <-time.After(waitFor):
		t.Fatal("the source did not subscribe")
	}
	t.Cleanup(cancel)
	return func() error { cancel(); return <-ended }, ended
}

// TestAcksThroughTheGraph runs the source in an engine graph: messages are
// acknowledged once the sink has written their rows; when the sink fails,
// the pipeline stops without acknowledging, and the next run of the same
// client id gets the messages again.
func TestAcksThroughTheGraph(t *testing.T) {
	for _, b := range brokers(t) {
		t.Run(b.name, func(t *testing.T) {
			sfx := suffix()
			topic, id := "graph/"+sfx, "src-"+sfx
			t.Cleanup(func() { forgetSession(t, b.url, id) })
			cfg := seqSource(b.url, "5", id, topic, "drain_timeout: 50ms\n")
			pub := newPublisher(t, b.url, 5)

			// A failing sink: nothing is acknowledged.
			counters := engine.NewCounters()
			src := buildSource(t, cfg, engine.BuildContext{Counters: counters, Batch: engine.BatchPolicy{Size: 100, Linger: time.Millisecond}})
			failing := &recordingSink{fail: true, got: make(chan struct{}, 1)}
			_, ended := runGraph(t, src, failing)
			pub.publish(topic, seqPayload(1))
			pub.publish(topic, seqPayload(2))
			// The failure stops the pipeline by itself.
			select {
			case err := <-ended:
				if err == nil {
					t.Fatal("the graph did not report the sink's failure")
				}
			case <-time.After(waitFor):
				t.Fatal("the sink's failure did not stop the graph")
			}
			if n := counters.Snapshot()["acked"]; n != 0 {
				t.Fatalf("%d messages acknowledged although the sink failed", n)
			}

			// A working sink gets them again, and acknowledges them.
			counters = engine.NewCounters()
			src = buildSource(t, cfg, engine.BuildContext{Counters: counters})
			sink := &recordingSink{got: make(chan struct{}, 1)}
			stop, _ := runGraph(t, src, sink)
			pub.publish(topic, seqPayload(3))
			deadline := time.After(waitFor)
			for !slices.Contains(sink.seqs(), 3) {
				select {
				case <-sink.got:
				case <-deadline:
					t.Fatalf("got %v", sink.seqs())
				}
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			got := sink.seqs()
			slices.Sort(got)
			if !slices.Equal(slices.Compact(got), []int{1, 2, 3}) {
				t.Errorf("second run wrote %v, want 1, 2 and 3", got)
			}
			if n := counters.Snapshot()["acked"]; n != int64(len(sink.seqs())) {
				t.Errorf("acked %d of %d messages", n, len(sink.seqs()))
			}
		})
	}
}
