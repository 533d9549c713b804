package engine

import (
	"slices"
	"sync"
	"sync/atomic"
)

// Counters is a set of named monotonic counters of one component. Counter
// returns a stable pointer, so hot paths look a counter up once and then
// add without locking.
type Counters struct {
	mu sync.Mutex
	m  map[string]*atomic.Int64
}

// NewCounters returns an empty set.
func NewCounters() *Counters { return &Counters{m: map[string]*atomic.Int64{}} }

// Counter returns the named counter, creating it at zero.
func (c *Counters) Counter(name string) *atomic.Int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[name]
	if !ok {
		v = new(atomic.Int64)
		c.m[name] = v
	}
	return v
}

// Snapshot returns the current values.
func (c *Counters) Snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.m))
	for k, v := range c.m {
		out[k] = v.Load()
	}
	return out
}

// Names returns the counter names, sorted.
func (c *Counters) Names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.m))
	for k := range c.m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
