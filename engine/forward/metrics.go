package forward

import (
	"math"
	"sort"
	"sync"
	"sync/atomic"
)

// Metrics is a snapshot of a sink's forwarding metrics.
type Metrics struct {
	// Labels are the sink's labels (pipeline and sink by default).
	Labels map[string]string `json:"labels,omitempty"`
	// BacklogRows and BacklogBytes describe the undelivered rows.
	BacklogRows  int64 `json:"backlog_rows"`
	BacklogBytes int64 `json:"backlog_bytes"`
	// Published counts rows confirmed by the broker, by lane ("live",
	// "backlog").
	Published map[string]int64 `json:"published_rows"`
	// PublishErrors counts failed publish calls by kind ("transient",
	// "permanent", "timeout").
	PublishErrors map[string]int64 `json:"publish_errors"`
	// DeadLetterRows counts rows moved to the dead-letter segment.
	DeadLetterRows int64 `json:"dead_letter_rows"`
	// Dropped counts undelivered rows deleted by the buffer, by reason
	// ("quota", "ttl"); DropAlerts the alerts raised for them.
	Dropped    map[string]int64 `json:"dropped_rows"`
	DropAlerts int64            `json:"drop_alerts"`
	// FullWaits counts writes that waited for space (backpressure).
	FullWaits int64 `json:"full_waits"`
	// DrainRate is the backlog rows confirmed per second over the last
	// second.
	DrainRate float64 `json:"drain_rows_per_second"`
	// LinkUp is false after a transient failure until a publish succeeds;
	// LiveLaneOpen is true while the live lane is open.
	LinkUp       bool `json:"link_up"`
	LiveLaneOpen bool `json:"live_lane_open"`
	// PublishSeconds is the duration of publish calls; LiveLatency the
	// time from Write to confirmation of live rows.
	PublishSeconds Histogram `json:"publish_seconds"`
	LiveLatency    Histogram `json:"live_latency_seconds"`
}

// Histogram is a snapshot of a histogram with exponential buckets: Counts[i]
// counts observations at or below Bounds[i] (and above Bounds[i-1]); the
// last count is above every bound.
type Histogram struct {
	Bounds []float64 `json:"bounds"`
	Counts []int64   `json:"counts"`
	Count  int64     `json:"count"`
	Sum    float64   `json:"sum"`
}

// Quantile estimates the q-quantile (0..1) as the upper bound of the
// bucket holding it (+Inf above the last bound, 0 when empty).
func (h Histogram) Quantile(q float64) float64 {
	if h.Count == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.Count)))
	var n int64
	for i, c := range h.Counts {
		n += c
		if n >= rank {
			if i < len(h.Bounds) {
				return h.Bounds[i]
			}
			return math.Inf(1)
		}
	}
	return math.Inf(1)
}

// metrics are the live counters behind Metrics.
type metrics struct {
	published    labelled
	pubErrors    labelled
	dropped      labelled
	deadRows     counter
	alertsRaised counter
	fullWaits    counter
	publishTime  *histogram
	liveLatency  *histogram
	drainRate    gauge
	linkUp       gauge
	laneOpen     gauge
}

func newMetrics() *metrics {
	m := &metrics{publishTime: newHistogram(), liveLatency: newHistogram()}
	m.linkUp.Set(1)
	return m
}

func (m *metrics) snapshot() Metrics {
	return Metrics{
		Published: m.published.snapshot(), PublishErrors: m.pubErrors.snapshot(),
		Dropped: m.dropped.snapshot(), DeadLetterRows: int64(m.deadRows.get()),
		DropAlerts: int64(m.alertsRaised.get()), FullWaits: int64(m.fullWaits.get()),
		DrainRate: m.drainRate.get(), LinkUp: m.linkUp.get() == 1, LiveLaneOpen: m.laneOpen.get() == 1,
		PublishSeconds: m.publishTime.snapshot(), LiveLatency: m.liveLatency.snapshot(),
	}
}

type counter struct{ bits atomic.Uint64 }

func (c *counter) Add(v float64) {
	for {
		old := c.bits.Load()
		if c.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}
func (c *counter) Inc()         { c.Add(1) }
func (c *counter) get() float64 { return math.Float64frombits(c.bits.Load()) }

type gauge struct{ bits atomic.Uint64 }

func (g *gauge) Set(v float64) { g.bits.Store(math.Float64bits(v)) }
func (g *gauge) get() float64  { return math.Float64frombits(g.bits.Load()) }

// labelled is a set of counters by one label value.
type labelled struct{ m sync.Map } // string -> *counter

func (l *labelled) WithLabelValues(v string) *counter {
	if c, ok := l.m.Load(v); ok {
		return c.(*counter)
	}
	c, _ := l.m.LoadOrStore(v, new(counter))
	return c.(*counter)
}

func (l *labelled) snapshot() map[string]int64 {
	out := map[string]int64{}
	l.m.Range(func(k, v any) bool {
		out[k.(string)] = int64(v.(*counter).get())
		return true
	})
	return out
}

// histogram buckets: 0.5 ms doubling up to about 16 s.
var histBounds = func() []float64 {
	b := make([]float64, 16)
	for i := range b {
		b[i] = 0.0005 * math.Pow(2, float64(i))
	}
	return b
}()

type histogram struct {
	counts []atomic.Int64
	count  atomic.Int64
	sum    counter
}

func newHistogram() *histogram { return &histogram{counts: make([]atomic.Int64, len(histBounds)+1)} }

func (h *histogram) Observe(v float64) {
	i := sort.SearchFloat64s(histBounds, v)
	h.counts[i].Add(1)
	h.count.Add(1)
	h.sum.Add(v)
}

func (h *histogram) snapshot() Histogram {
	out := Histogram{Bounds: histBounds, Counts: make([]int64, len(h.counts)), Count: h.count.Load(), Sum: h.sum.get()}
	for i := range h.counts {
		out.Counts[i] = h.counts[i].Load()
	}
	return out
}

// Metrics returns a snapshot of the sink's forwarding metrics.
func (s *Sink) Metrics() Metrics {
	out := s.m.snapshot()
	out.Labels = s.opts.Labels
	st := s.buf.Status()
	out.BacklogRows, out.BacklogBytes = st.BacklogRows, st.BacklogBytes
	return out
}
