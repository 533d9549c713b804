package engine

import "sync/atomic"

// Ack tracks whether every effect of one piece of input has been made
// durable (written by a sink) or deliberately dropped, so that the source can
// acknowledge that input to its sender (for example an MQTT PUBACK) only
// then. A source attaches an Ack to the batch it emits; the graph hands a
// share of it to every batch derived from that batch — fan-out copies and
// whatever an operator emits while processing it — and releases a share
// when a sink has written a batch, when an operator has finished processing
// one, or when a batch goes to a port nobody reads. When the last share is
// released the done callback runs, once.
//
// If a sink fails, the shares it holds are never released, so the input is
// never acknowledged and an at-least-once sender delivers it again.
//
// A nil *Ack is valid and does nothing.
type Ack struct {
	n    atomic.Int64
	done func()
}

// NewAck returns an Ack holding one share; done runs when every share has
// been released.
func NewAck(done func()) *Ack {
	a := &Ack{done: done}
	a.n.Store(1)
	return a
}

// Add takes k more shares.
func (a *Ack) Add(k int) {
	if a != nil && k > 0 {
		a.n.Add(int64(k))
	}
}

// Done releases one share, running the callback when it was the last.
func (a *Ack) Done() {
	if a == nil {
		return
	}
	switch n := a.n.Add(-1); {
	case n == 0:
		if a.done != nil {
			a.done()
		}
	case n < 0:
		panic("engine: Ack released more often than taken")
	}
}

// Pending reports how many shares are outstanding.
func (a *Ack) Pending() int64 {
	if a == nil {
		return 0
	}
	return a.n.Load()
}
