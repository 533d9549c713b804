package mqtt

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// lightPayload is message i of TestLightClientKeepsMessages: sizes vary
// from a few bytes to beyond what shares a slab.
func lightPayload(i int) []byte {
	n := 1 + i*37%700
	if i%97 == 0 {
		n = slabSize/4 + 1 + i
	}
	return fmt.Appendf(nil, "%d:%s", i, bytes.Repeat([]byte{byte('a' + i%26)}, n))
}

// TestLightClientKeepsMessages: the light client decodes packets in place,
// into slabs shared by many packets; every message it handed out keeps its
// topic and payload while later packets arrive, on both protocol versions,
// and acknowledging them many at a time (one write each time) leaves
// nothing for the broker to deliver again on the same session.
func TestLightClientKeepsMessages(t *testing.T) {
	const n = 600
	for _, b := range brokers(t) {
		for _, v := range []int{4, 5} {
			t.Run(fmt.Sprintf("%s/v%d", b.name, v), func(t *testing.T) {
				sfx := suffix()
				topic := "light/" + sfx + "/"
				var (
					mu   sync.Mutex
					got  []message
					more = make(chan struct{}, 1)
				)
				id := "light-" + sfx
				newLight := func() client {
					cl, err := newClient(clientConfig{
						ClientOptions: ClientOptions{URLs: []string{b.url}, ClientID: id, Version: v},
						subs:          []subscription{{topic: topic + "#", qos: 1}},
						manualAck:     true,
						light:         true,
						onMessage: func(m message) {
							mu.Lock()
							got = append(got, m)
							mu.Unlock()
							select {
							case more <- struct{}{}:
							default:
							}
						},
					})
					if err != nil {
						t.Fatal(err)
					}
					ctx, cancel := context.WithTimeout(context.Background(), waitFor)
					defer cancel()
					if err := cl.start(ctx); err != nil {
						t.Fatal(err)
					}
					if err := cl.awaitConnection(ctx); err != nil {
						t.Fatal(err)
					}
					return cl
				}
				cl := newLight()
				defer func() { _ = cl.stop(context.Background()) }()
				t.Cleanup(func() { forgetSession(t, b.url, id) })

				pub := newPublisher(t, b.url, v)
				for i := range n {
					pub.publish(fmt.Sprintf("%s%d", topic, i), lightPayload(i))
				}
				// Acknowledge as they come, many at a time (a broker may
				// send no more than 20 before it is acknowledged), and
				// keep every message.
				deadline := time.After(waitFor)
				for acked := 0; acked < n; {
					mu.Lock()
					k := len(got)
					batch := got[acked:k:k]
					mu.Unlock()
					if len(batch) > 0 {
						batch[0].sub.ackMany(batch)
						acked = k
						continue
					}
					select {
					case <-more:
					case <-deadline:
						t.Fatalf("received %d of %d messages", k, n)
					}
				}
				mu.Lock()
				msgs := got[:n:n]
				got = nil
				mu.Unlock()
				for i, m := range msgs {
					if want := fmt.Sprintf("%s%d", topic, i); m.topic != want {
						t.Fatalf("message %d: topic %q, want %q", i, m.topic, want)
					}
					if want := lightPayload(i); !bytes.Equal(m.payload, want) {
						t.Fatalf("message %d: payload of %d bytes, want %d (%.20q)", i, len(m.payload), len(want), m.payload)
					}
					if m.qos != 1 || m.sub == nil {
						t.Fatalf("message %d: qos %d, light client %v", i, m.qos, m.sub != nil)
					}
				}
				ctx, cancel := context.WithTimeout(context.Background(), waitFor)
				defer cancel()
				if err := cl.sync(ctx); err != nil {
					t.Fatal(err)
				}
				if err := cl.stop(ctx); err != nil {
					t.Fatal(err)
				}

				// The same session again: a marker published after
				// reconnecting arrives, and nothing before it.
				cl = newLight()
				pub.publish(topic+"marker", []byte("marker"))
				for {
					mu.Lock()
					k := len(got)
					mu.Unlock()
					if k > 0 {
						break
					}
					select {
					case <-more:
					case <-deadline:
						t.Fatal("the marker did not arrive")
					}
				}
				mu.Lock()
				defer mu.Unlock()
				if got[0].topic != topic+"marker" {
					t.Fatalf("after acknowledging everything, the broker delivered %q again before the marker", got[0].topic)
				}
			})
		}
	}
}
