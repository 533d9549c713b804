package mqtt

import (
	"slices"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

// TestReconnectAfterCut drops the source's connection twice while devices
// publish: the source reconnects, resumes its persistent session and
// loses nothing.
func TestReconnectAfterCut(t *testing.T) {
	for _, b := range brokers(t) {
		for _, version := range []string{"5", "3.1.1"} {
			t.Run(b.name+"/v"+version, func(t *testing.T) {
				sfx := suffix()
				topic, id := "reconnect/"+sfx, "src-"+sfx
				t.Cleanup(func() { forgetSession(t, b.url, id) })
				px := enginetest.NewProxy(t, b.url[len("tcp://"):])
				cfg := seqSource("tcp://"+px.Addr(), version, id, topic, "reconnect_min: 10ms\nreconnect_max: 50ms\n")
				counters := engine.NewCounters()
				src := buildSource(t, cfg, engine.BuildContext{Counters: counters, Log: testLogger(t)})
				c := newCollector()
				subscribed := make(chan struct{}, 8)
				r := startNotify(t, src, c, subscribed)
				pub := newPublisher(t, b.url, 5)
				next := 0
				for round := range 3 {
					for range 10 {
						pub.publish(topic, seqPayload(next))
						next++
					}
					want := next
					c.waitUntil(t, func(rows [][]any) bool { return distinct(seqs(rows, 1)) == want })
					select { // this connection's subscription
					case <-subscribed:
					case <-time.After(waitFor):
						t.Fatalf("round %d: the source did not subscribe", round)
					}
					if round < 2 {
						px.Cut()
					}
				}
				r.stop(t)
				got := distinct(seqs(toAny(c.snapshot()), 1))
				if got != next {
					t.Errorf("got %d distinct messages, want %d", got, next)
				}
				snap := counters.Snapshot()
				if snap["disconnects"] < 2 || snap["connects"] < 3 {
					t.Errorf("connects %d, disconnects %d; want at least 3 and 2", snap["connects"], snap["disconnects"])
				}
			})
		}
	}
}

func distinct(s []int) int {
	s = slices.Clone(s)
	slices.Sort(s)
	return len(slices.Compact(s))
}

// TestReconnectAfterBrokerRestart restarts the embedded broker, which
// forgets every session: the source connects again and subscribes again.
func TestReconnectAfterBrokerRestart(t *testing.T) {
	for _, version := range []string{"5", "3.1.1"} {
		t.Run("v"+version, func(t *testing.T) {
			b, err := StartBroker(BrokerOptions{Listen: "127.0.0.1:0"})
			if err != nil {
				t.Fatal(err)
			}
			addr := b.Addr()
			sfx := suffix()
			topic := "restart/" + sfx
			// A connection attempt may reach the old listener as it closes: give
			// up on it quickly.
			src := buildSource(t, seqSource(b.URL(), version, "src-"+sfx, topic, "reconnect_min: 10ms\nreconnect_max: 50ms\nconnect_timeout: 500ms\n"), engine.BuildContext{})
			c := newCollector()
			ready := make(chan struct{}, 4)
			r := startNotify(t, src, c, ready)
			<-ready

			pub := newPublisher(t, b.URL(), 5)
			pub.publish(topic, seqPayload(1))
			c.waitRows(t, 1)
			_ = b.Close()

			b2, err := StartBroker(BrokerOptions{Listen: addr})
			if err != nil {
				t.Fatalf("restarting the broker on %s: %v", addr, err)
			}
			t.Cleanup(func() { _ = b2.Close() })
			select {
			case <-ready:
			case <-time.After(waitFor):
				t.Fatal("the source did not subscribe again")
			}
			pub2 := newPublisher(t, b2.URL(), 5)
			pub2.publish(topic, seqPayload(2))
			rows := c.waitRows(t, 2)
			r.stop(t)
			if got := seqs(toAny(rows), 1); !slices.Equal(got, []int{1, 2}) {
				t.Errorf("got %v, want [1 2]", got)
			}
		})
	}
}
