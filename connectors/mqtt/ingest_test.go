package mqtt

import (
	"context"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/ingest"
)

// TestIngestLogNoRowTwice runs the source behind its ingest log against
// Mosquitto (QoS 1, persistent session). The first run logs and emits ten
// messages, but the acknowledgements of the last five never reach the
// broker (the link to it stops carrying anything the client sends), and
// the run dies there. A checkpoint had covered the first five. The second
// run, with the same log and client id, replays the five logged after the
// checkpoint, drops the broker's redeliveries of them, and goes on: every
// message becomes exactly one row.
func TestIngestLogNoRowTwice(t *testing.T) {
	b := mosquitto(t)
	for _, version := range []string{"5", "3.1.1"} {
		t.Run("v"+version, func(t *testing.T) {
			sfx := suffix()
			topic, id := "ingest/"+sfx, "ingest-"+sfx
			t.Cleanup(func() { forgetSession(t, b.url, id) })
			dir := t.TempDir()
			bc := engine.BuildContext{Batch: engine.BatchPolicy{Size: 5, Linger: time.Millisecond}}
			pub := newPublisher(t, b.url, 5)
			link := newOneWayLink(t, mosquittoAddr)

			// First run, through the link.
			src1 := buildSource(t, seqSource("tcp://"+link.addr(), version, id, topic, "drain_timeout: 20ms\n"), bc)
			ing1, err := ingest.Wrap(src1, ingest.Options{Dir: dir, Log: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			c1 := newCollector()
			r1 := runLogged(t, src1, ing1, c1)
			for i := range 5 {
				pub.publish(topic, seqPayload(i))
			}
			c1.waitRows(t, 5)
			checkpoint := ing1.Position() // a checkpoint covers rows 0-4
			ing1.Committed(checkpoint)
			link.mute() // acknowledgements from here on are lost
			for i := 5; i < 10; i++ {
				pub.publish(topic, seqPayload(i))
			}
			c1.waitRows(t, 10)
			r1.stop(t) // the process dies: nothing it sends arrives
			link.down()
			if err := ing1.Close(); err != nil {
				t.Fatal(err)
			}
			if got := seqs(toAny(c1.snapshot()), 1); !slices.Equal(got, seqRange(0, 10)) {
				t.Fatalf("first run emitted %v", got)
			}

			// Second run, straight to the broker, from the checkpoint.
			src2 := buildSource(t, seqSource(b.url, version, id, topic, "drain_timeout: 20ms\n"), bc)
			ctr := engine.NewCounters()
			ing2, err := ingest.Wrap(src2, ingest.Options{Dir: dir, Log: testLogger(t), Counters: ctr})
			if err != nil {
				t.Fatal(err)
			}
			defer ing2.Close()
			if err := ing2.ResumeAt(checkpoint); err != nil {
				t.Fatal(err)
			}
			c2 := newCollector()
			r2 := runLogged(t, src2, ing2, c2)
			pub.publish(topic, seqPayload(1000)) // after the redeliveries
			got := seqs(c2.waitUntil(t, func(rows [][]any) bool { return slices.Contains(seqs(rows, 1), 1000) }), 1)
			r2.stop(t)
			if want := append(seqRange(5, 10), 1000); !slices.Equal(got, want) {
				t.Errorf("second run emitted %v, want %v (rows 5-9 replayed from the log, redeliveries dropped)", got, want)
			}
			if n := ctr.Counter("redeliveries").Load(); n < 5 {
				t.Errorf("%d redeliveries recognised, want at least the 5 unacknowledged messages", n)
			}
		})
	}
}

func seqRange(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// runLogged runs src wrapped by ing until stop; it returns once src has
// subscribed.
func runLogged(t *testing.T, src *Source, ing *ingest.Source, c *collector) *running {
	t.Helper()
	r := startRun(t, src, func(ctx context.Context) error { return ing.Run(ctx, c.emit) }, nil)
	t.Cleanup(func() { r.stop(t) })
	return r
}

// oneWayLink is a TCP proxy that can stop carrying what clients send
// (mute: the broker still sends, its acknowledgements are lost) and take
// every connection down.
type oneWayLink struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	muted bool
	dead  bool
	conns []net.Conn
	wg    sync.WaitGroup
}

func newOneWayLink(t *testing.T, target string) *oneWayLink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &oneWayLink{ln: ln, target: target}
	l.wg.Add(1)
	go l.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		l.down()
		l.wg.Wait()
	})
	return l
}

func (l *oneWayLink) addr() string { return l.ln.Addr().String() }

func (l *oneWayLink) serve() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", l.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		l.mu.Lock()
		if l.dead {
			l.mu.Unlock()
			_ = c.Close()
			_ = up.Close()
			continue
		}
		l.conns = append(l.conns, c, up)
		l.mu.Unlock()
		l.wg.Add(2)
		go func() { // broker to client
			defer l.wg.Done()
			_, _ = io.Copy(c, up)
			_ = c.Close()
		}()
		go func() { // client to broker, unless muted
			defer l.wg.Done()
			buf := make([]byte, 32<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					l.mu.Lock()
					muted := l.muted
					l.mu.Unlock()
					if !muted {
						if _, werr := up.Write(buf[:n]); werr != nil {
							break
						}
					}
				}
				if err != nil {
					break
				}
			}
			_ = up.Close()
		}()
	}
}

// mute stops carrying what clients send.
func (l *oneWayLink) mute() {
	l.mu.Lock()
	l.muted = true
	l.mu.Unlock()
}

// down closes every connection and refuses new ones.
func (l *oneWayLink) down() {
	l.mu.Lock()
	l.dead = true
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}
