package mqtt

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/sluice-edge/sluice/engine"
)

// ackQueue acknowledges QoS 1 messages to the broker in the order they
// arrived, each once the batch holding its rows is done (durable in every
// sink, or deliberately dropped). Messages that produced no rows (bad
// input) belong to the batch being built when they arrived.
type ackQueue struct {
	mu      sync.Mutex
	msgs    []message // unacknowledged, in arrival order, from head
	head    int
	open    int // messages since the last cut
	batches []*ackBatch
	notify  chan struct{}
	acked   *atomic.Int64
}

type ackBatch struct {
	n    int
	done bool
}

func newAckQueue(acked *atomic.Int64) *ackQueue {
	return &ackQueue{notify: make(chan struct{}, 1), acked: acked}
}

// push records a received message; QoS 0 messages need no acknowledgement.
func (q *ackQueue) push(m message) {
	if m.qos == 0 {
		return
	}
	q.mu.Lock()
	q.msgs = append(q.msgs, m.forAck())
	q.open++
	q.mu.Unlock()
}

// cut closes the batch of the messages pushed since the last cut. When the
// batch is emitted (rows), the returned Ack acknowledges its messages once
// done; otherwise they are acknowledged as soon as every earlier batch is,
// and cut returns nil.
func (q *ackQueue) cut(rows bool) *engine.Ack {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.open == 0 {
		return nil
	}
	b := &ackBatch{n: q.open}
	q.open = 0
	q.batches = append(q.batches, b)
	if !rows {
		b.done = true
		q.release()
		return nil
	}
	return engine.NewAck(func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		b.done = true
		q.release()
	})
}

// release acknowledges the messages of the leading done batches; q.mu is
// held, so acknowledgements go out in arrival order.
func (q *ackQueue) release() {
	n := 0
	for len(q.batches) > 0 && q.batches[0].done {
		k := q.batches[0].n
		if sub := q.msgs[q.head].sub; sub != nil {
			// One write for the whole batch.
			sub.ackMany(q.msgs[q.head : q.head+k])
		} else {
			for i := q.head; i < q.head+k; i++ {
				q.msgs[i].ack()
			}
		}
		clear(q.msgs[q.head : q.head+k])
		q.head += k
		n += k
		q.batches[0] = nil
		q.batches = q.batches[1:]
	}
	if n == 0 {
		return
	}
	q.acked.Add(int64(n))
	if q.head == len(q.msgs) {
		q.msgs, q.head = q.msgs[:0], 0
	} else if q.head > 4096 && q.head > len(q.msgs)/2 {
		q.msgs = append(q.msgs[:0], q.msgs[q.head:]...)
		q.head = 0
	}
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// outstanding returns the number of messages not yet acknowledged.
func (q *ackQueue) outstanding() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.msgs) - q.head
}

// wait blocks until every message pushed is acknowledged or ctx ends, and
// reports whether every message was.
func (q *ackQueue) wait(ctx context.Context) bool {
	for {
		if q.outstanding() == 0 {
			return true
		}
		select {
		case <-q.notify:
		case <-ctx.Done():
			return q.outstanding() == 0
		}
	}
}
