package mqtt

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine"
)

// seqSource is the configuration of a source reading {"seq": n} JSON
// payloads with a persistent session.
func seqSource(url, version, clientID, topic string, extra string) string {
	return fmt.Sprintf(`
urls: [%s]
version: %q
client_id: %s
format: json
topics: [%q]
qos: 1
schema: {time: time, fields: {seq: int64}}
%s`, url, version, clientID, topic, extra)
}

func seqPayload(i int) []byte {
	return fmt.Appendf(nil, `{"time":1700000000000,"seq":%d}`, i)
}

func seqs(rows [][]any, col int) []int {
	out := make([]int, 0, len(rows))
	for _, r := range rows {
		out = append(out, int(r[col].(int64)))
	}
	return out
}

// forgetSession ends the session of a client id in the machine's
// Mosquitto, which outlives the test (embedded brokers do not).
func forgetSession(t testing.TB, url, clientID string) {
	if url != "tcp://"+mosquittoAddr {
		return
	}
	cl, err := newClient(clientConfig{ClientOptions: ClientOptions{URLs: []string{url}, ClientID: clientID, CleanSession: true}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cl.start(ctx); err == nil {
		_ = cl.awaitConnection(ctx)
	}
	_ = cl.stop(ctx)
}

// TestRedeliveryWithoutAck stops a source whose batches were only partly
// durable: the messages of the batches that were not acknowledged, and
// those published while it was away, come back to the next session of
// the same client id; the acknowledged ones do not.
func TestRedeliveryWithoutAck(t *testing.T) {
	for _, b := range brokers(t) {
		for _, version := range []string{"5", "3.1.1"} {
			t.Run(b.name+"/v"+version, func(t *testing.T) {
				sfx := suffix()
				topic, id := "redeliver/"+sfx, "src-"+sfx
				t.Cleanup(func() { forgetSession(t, b.url, id) })
				cfg := seqSource(b.url, version, id, topic, "drain_timeout: 20ms\n")
				bc := engine.BuildContext{Batch: engine.BatchPolicy{Size: 5, Linger: time.Millisecond}}
				pub := newPublisher(t, b.url, 5)

				// First session: emit 16 rows (Mosquitto sends an MQTT 3.1.1
				// client at most 20 unacknowledged messages), make the first
				// half of the batches durable, then stop.
				c1 := newCollector()
				c1.hold = true
				r1 := start(t, buildSource(t, cfg, bc), c1)
				for i := range 16 {
					pub.publish(topic, seqPayload(i))
				}
				c1.waitRows(t, 16)
				c1.mu.Lock()
				held := slices.Clone(c1.held)
				c1.mu.Unlock()
				sizes := c1.batchSizes()
				half := len(held) / 2
				acked := 0
				for i := range half {
					held[i].Done()
					acked += sizes[i]
				}
				r1.stop(t)

				// While it is away.
				for i := 16; i < 24; i++ {
					pub.publish(topic, seqPayload(i))
				}

				// Second session: the unacknowledged and the new ones.
				c2 := newCollector()
				r2 := start(t, buildSource(t, cfg, bc), c2)
				pub.publish(topic, seqPayload(1000)) // a sentinel after the backlog
				got := seqs(c2.waitUntil(t, func(rows [][]any) bool { return slices.Contains(seqs(rows, 1), 1000) }), 1)
				r2.stop(t)
				got = slices.DeleteFunc(got, func(s int) bool { return s == 1000 })
				slices.Sort(got)
				got = slices.Compact(got)
				var want []int
				for i := acked; i < 24; i++ {
					want = append(want, i)
				}
				if !slices.Equal(got, want) {
					t.Errorf("second session got %v, want %v (the first %d were acknowledged)", got, want, acked)
				}

				// Third session: nothing is left.
				c3 := newCollector()
				r3 := start(t, buildSource(t, cfg, bc), c3)
				pub.publish(topic, seqPayload(2000))
				rows := c3.waitUntil(t, func(rows [][]any) bool { return slices.Contains(seqs(rows, 1), 2000) })
				r3.stop(t)
				if got := seqs(rows, 1); !slices.Equal(got, []int{2000}) {
					t.Errorf("third session got %v, want only the sentinel", got)
				}
			})
		}
	}
}

// batchSizes returns the rows of each emitted batch.
func (c *collector) batchSizes() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sizes)
}

// waitUntil waits until done holds for the rows emitted so far.
func (c *collector) waitUntil(t testing.TB, done func([][]any) bool) [][]any {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		rows := toAny(c.snapshot())
		if done(rows) {
			return rows
		}
		select {
		case <-c.changed:
		case <-deadline:
			t.Fatalf("timed out; rows so far: %v", rows)
		}
	}
}

func toAny[R ~[]any](rows []R) [][]any {
	out := make([][]any, len(rows))
	for i, r := range rows {
		out[i] = r
	}
	return out
}
