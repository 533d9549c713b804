package mqtt

import "sync/atomic"

// byteGate bounds the bytes of the messages queued between the
// connection's reader, which takes room for each message before queueing
// it, and the loop that decodes them, which gives the room back. One
// goroutine takes; any may give.
type byteGate struct {
	limit int64
	used  atomic.Int64
	freed chan struct{} // signalled when room is given back
}

func newByteGate(limit int64) *byteGate {
	return &byteGate{limit: limit, freed: make(chan struct{}, 1)}
}

// take waits until n bytes fit under the limit, or the gate is empty (a
// message larger than the limit is taken alone), and takes them; it
// returns false if stop closes first.
func (g *byteGate) take(n int64, stop <-chan struct{}) bool {
	for {
		u := g.used.Load()
		if u == 0 || u+n <= g.limit {
			if g.used.CompareAndSwap(u, u+n) {
				return true
			}
			continue
		}
		// A give between the load and here leaves its signal in freed.
		select {
		case <-g.freed:
		case <-stop:
			return false
		}
	}
}

// give returns n bytes taken.
func (g *byteGate) give(n int64) {
	g.used.Add(-n)
	select {
	case g.freed <- struct{}{}:
	default:
	}
}

// queuedBytes is what a message queued for the decoder holds: its topic
// and payload, which point into the buffers the light client read them
// into.
func queuedBytes(m message) int64 { return int64(len(m.topic) + len(m.payload)) }
