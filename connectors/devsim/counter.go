package devsim

import (
	"context"
	"sync/atomic"
)

// Counter is a plain paho subscriber that only counts the messages it
// receives: the baseline a source's ingest rate is compared with in the
// same run. Its connection is paho's own (unlike the simulator's).
type Counter struct {
	c      *conn
	n      atomic.Int64
	bytes  atomic.Int64
	signal chan struct{}
}

// NewCounter subscribes to filter (QoS 1 subscription; messages arrive at
// the QoS they were published with) and returns once subscribed.
func NewCounter(ctx context.Context, cfg Config, filter string) (*Counter, error) {
	if len(cfg.URLs) == 0 {
		cfg.URLs = []string{"tcp://127.0.0.1:1883"}
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "devsim-counter-" + randomHex()
	}
	k := &Counter{signal: make(chan struct{}, 1)}
	c, err := dial(ctx, &cfg, cfg.ClientID, []string{filter}, true, func(_ string, payload []byte) {
		k.n.Add(1)
		k.bytes.Add(int64(len(payload)))
		select {
		case k.signal <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return nil, err
	}
	k.c = c
	return k, nil
}

// Count returns the number of messages received.
func (k *Counter) Count() int64 { return k.n.Load() }

// Bytes returns the payload bytes received.
func (k *Counter) Bytes() int64 { return k.bytes.Load() }

// Wait blocks until n messages have been counted or ctx ends.
func (k *Counter) Wait(ctx context.Context, n int64) error {
	for k.n.Load() < n {
		select {
		case <-k.signal:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Close disconnects.
func (k *Counter) Close() { k.c.close() }
