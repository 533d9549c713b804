package pipelines

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-edge/sluice/engine/forward"
)

// Collector exposes the counters of every component of running pipelines
// and the forwarding metrics of their cloud sinks (backlog, drain rate,
// publish latency, errors, dead letters, drops) as Prometheus metrics. It
// reads snapshots at scrape time and costs nothing in between.
type Collector struct {
	ps func() []*Pipeline
}

// NewCollector returns a collector over the pipelines.
func NewCollector(ps []*Pipeline) *Collector {
	return &Collector{ps: func() []*Pipeline { return ps }}
}

// NewRuntimeCollector returns a collector over the pipelines a runtime
// runs at scrape time (across release switches).
func NewRuntimeCollector(rt *Runtime) *Collector { return &Collector{ps: rt.Pipelines} }

var (
	descCounter      = prometheus.NewDesc("sluice_component_total", "Counters of pipeline components (rows in and out, bad rows, late rows, alerts raised, ...).", []string{"pipeline", "component", "type", "counter"}, nil)
	descBacklogRows  = prometheus.NewDesc("sluice_sink_backlog_rows", "Rows accepted by a cloud sink and not yet confirmed by the broker.", []string{"pipeline", "sink"}, nil)
	descBacklogBytes = prometheus.NewDesc("sluice_sink_backlog_bytes", "Bytes on disk of the undelivered backlog of a cloud sink.", []string{"pipeline", "sink"}, nil)
	descPublished    = prometheus.NewDesc("sluice_sink_published_rows_total", "Rows confirmed by the broker, by lane (live, backlog).", []string{"pipeline", "sink", "lane"}, nil)
	descPubErrors    = prometheus.NewDesc("sluice_sink_publish_errors_total", "Failed publish calls by kind (transient, permanent, timeout).", []string{"pipeline", "sink", "kind"}, nil)
	descDeadLetter   = prometheus.NewDesc("sluice_sink_dead_letter_rows_total", "Rows moved to the dead-letter segment after permanent rejection.", []string{"pipeline", "sink"}, nil)
	descDropped      = prometheus.NewDesc("sluice_sink_dropped_rows_total", "Undelivered rows deleted by the buffer, by reason (quota, ttl).", []string{"pipeline", "sink", "reason"}, nil)
	descFullWaits    = prometheus.NewDesc("sluice_sink_full_waits_total", "Writes that waited for buffer space (backpressure).", []string{"pipeline", "sink"}, nil)
	descDrainRate    = prometheus.NewDesc("sluice_sink_drain_rows_per_second", "Backlog rows confirmed per second over the last second.", []string{"pipeline", "sink"}, nil)
	descLinkUp       = prometheus.NewDesc("sluice_sink_link_up", "1 while the broker link is up.", []string{"pipeline", "sink"}, nil)
	descPublishSec   = prometheus.NewDesc("sluice_sink_publish_seconds", "Duration of publish calls.", []string{"pipeline", "sink"}, nil)
	descCheckpoints  = prometheus.NewDesc("sluice_checkpoints_total", "Checkpoints a pipeline took and saved.", []string{"pipeline"}, nil)
	descCkptPause    = prometheus.NewDesc("sluice_checkpoint_pause_seconds", "How long the last checkpoint held the pipeline's sources.", []string{"pipeline"}, nil)
	descCkptPauseMax = prometheus.NewDesc("sluice_checkpoint_pause_max_seconds", "The longest a checkpoint held the pipeline's sources.", []string{"pipeline"}, nil)
	descCkptAge      = prometheus.NewDesc("sluice_checkpoint_age_seconds", "Time since the newest checkpoint was taken: what a crash now would replay.", []string{"pipeline"}, nil)
	descLiveLatency  = prometheus.NewDesc("sluice_sink_live_latency_seconds", "Time from a sink write to the broker's confirmation, for live rows.", []string{"pipeline", "sink"}, nil)
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.ps() {
		if st, ok := p.CheckpointStats(); ok {
			ch <- prometheus.MustNewConstMetric(descCheckpoints, prometheus.CounterValue, float64(st.Count), p.Def.Name)
			ch <- prometheus.MustNewConstMetric(descCkptPause, prometheus.GaugeValue, st.LastPause.Seconds(), p.Def.Name)
			ch <- prometheus.MustNewConstMetric(descCkptPauseMax, prometheus.GaugeValue, st.MaxPause.Seconds(), p.Def.Name)
			if !st.Last.IsZero() {
				ch <- prometheus.MustNewConstMetric(descCkptAge, prometheus.GaugeValue, time.Since(st.Last).Seconds(), p.Def.Name)
			}
		}
		for _, b := range p.Components {
			snap := b.Counters.Snapshot()
			for _, name := range b.Counters.Names() {
				ch <- prometheus.MustNewConstMetric(descCounter, prometheus.CounterValue, float64(snap[name]), p.Def.Name, b.Def.Name, b.Def.Type, name)
			}
			fs, ok := b.sink.(*forward.Sink)
			if !ok {
				continue
			}
			m := fs.Metrics()
			l := []string{p.Def.Name, b.Def.Name}
			ch <- prometheus.MustNewConstMetric(descBacklogRows, prometheus.GaugeValue, float64(m.BacklogRows), l...)
			ch <- prometheus.MustNewConstMetric(descBacklogBytes, prometheus.GaugeValue, float64(m.BacklogBytes), l...)
			for lane, n := range m.Published {
				ch <- prometheus.MustNewConstMetric(descPublished, prometheus.CounterValue, float64(n), append(l, lane)...)
			}
			for kind, n := range m.PublishErrors {
				ch <- prometheus.MustNewConstMetric(descPubErrors, prometheus.CounterValue, float64(n), append(l, kind)...)
			}
			for reason, n := range m.Dropped {
				ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(n), append(l, reason)...)
			}
			ch <- prometheus.MustNewConstMetric(descDeadLetter, prometheus.CounterValue, float64(m.DeadLetterRows), l...)
			ch <- prometheus.MustNewConstMetric(descFullWaits, prometheus.CounterValue, float64(m.FullWaits), l...)
			ch <- prometheus.MustNewConstMetric(descDrainRate, prometheus.GaugeValue, m.DrainRate, l...)
			up := 0.0
			if m.LinkUp {
				up = 1
			}
			ch <- prometheus.MustNewConstMetric(descLinkUp, prometheus.GaugeValue, up, l...)
			ch <- histogram(descPublishSec, m.PublishSeconds, l)
			ch <- histogram(descLiveLatency, m.LiveLatency, l)
		}
	}
}

// histogram converts a forwarding histogram (counts per bucket) to a
// Prometheus one (cumulative counts per upper bound).
func histogram(d *prometheus.Desc, h forward.Histogram, labels []string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds))
	var cum uint64
	for i, bound := range h.Bounds {
		if i < len(h.Counts) {
			cum += uint64(h.Counts[i])
		}
		buckets[bound] = cum
	}
	return prometheus.MustNewConstHistogram(d, uint64(h.Count), h.Sum, buckets, labels...)
}
