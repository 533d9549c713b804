package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/connectors/nats"
	"github.com/sluice-edge/sluice/connectors/sim"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/forward"
	"github.com/sluice-edge/sluice/engine/outbound"
)

// Forward is the scenario of the forwarder: backfill drain rate of a
// backlog through a real forward.Sink into NATS JetStream, and the latency
// of live rows written while it drains. It is not part of the default set:
// ask for it with --scenario forward.
const Forward = "forward"

// Settings of the forward scenario.
const (
	// forwardMaxRows caps the backlog unless Rows is set, so that the
	// scenario runs in well under 30 s (the default workload, 1,000
	// turbines x 600 readings, is below it).
	forwardMaxRows = 1_000_000
	forwardBatch   = 1024
	// forwardLiveEvery is the period of live writes; each carries the
	// readings the farm sends in that period (turbines x period /
	// Interval rows, at least one).
	forwardLiveEvery = 10 * time.Millisecond
	// forwardTimeout bounds one drain.
	forwardTimeout = 2 * time.Minute
)

// ForwardResult holds the figures of the forward scenario.
type ForwardResult struct {
	// Rows is the backlog, in readings of Points values each.
	Rows        int64 `json:"backlog_rows"`
	PointValues int64 `json:"backlog_point_values"`
	BatchRows   int   `json:"batch_rows"`
	// LiveRowsPerBatch and LiveEverySeconds describe the live writes made
	// while the backlog drains.
	LiveRowsPerBatch int     `json:"live_rows_per_batch"`
	LiveEverySeconds float64 `json:"live_every_seconds"`
	Fsync            string  `json:"fsync"`
	// Runs holds one drain per encoding.
	Runs []ForwardRun `json:"runs"`
	// NATS says which server the forwarder published to.
	NATS string `json:"nats"`
}

// ForwardRun is one drain of the backlog through the forwarder.
type ForwardRun struct {
	Encoding string `json:"encoding"`
	// WallSeconds is from opening the sink on the backlog (the forwarder
	// starts, connects and provisions the stream) until every backlog row
	// is confirmed; CPUSeconds is the process CPU time meanwhile (the
	// embedded server included).
	WallSeconds  float64 `json:"wall_seconds"`
	CPUSeconds   float64 `json:"cpu_seconds"`
	RowsPerSec   float64 `json:"rows_per_sec"`
	PointsPerSec float64 `json:"point_values_per_sec"`
	// OpenSeconds is the part of WallSeconds spent in forward.New
	// (buffer recovery, lock, publisher dial).
	OpenSeconds float64 `json:"open_seconds"`
	// PeakDrainRate is the highest Metrics().DrainRate seen while
	// draining (backlog rows confirmed over the last second; 0 when the
	// drain took less than a second and the gauge was never set).
	PeakDrainRate float64 `json:"peak_drain_rows_per_sec"`
	// LiveBatches and LiveRows were written while the backlog drained;
	// PublishedLive and PublishedBacklog are the rows the broker
	// confirmed per lane by the end (live rows handed to the backlog lane
	// count there).
	LiveBatches      int64 `json:"live_batches"`
	LiveRows         int64 `json:"live_rows"`
	PublishedLive    int64 `json:"published_live_rows"`
	PublishedBacklog int64 `json:"published_backlog_rows"`
	PublishErrors    int64 `json:"publish_errors"`
	// LiveLatency is Metrics().LiveLatency: Write to broker confirmation
	// of live-lane rows. Quantiles are the upper bounds of the histogram
	// buckets holding them (0.5 ms doubling); +Inf is reported as -1.
	LiveLatency  forward.Histogram `json:"live_latency_seconds"`
	LiveP50      float64           `json:"live_p50_seconds"`
	LiveP99      float64           `json:"live_p99_seconds"`
	LiveMax      float64           `json:"live_max_seconds"`
	LiveMean     float64           `json:"live_mean_seconds"`
	PublishP50   float64           `json:"publish_p50_seconds"`
	PublishP99   float64           `json:"publish_p99_seconds"`
	PublishCalls int64             `json:"publish_calls"`
}

// runForward runs the forward scenario.
func runForward(ctx context.Context, opts Options, perTurbine int64) (*ForwardResult, error) {
	rows := perTurbine * int64(opts.Turbines)
	if opts.Rows == 0 && rows > forwardMaxRows {
		rows = forwardMaxRows
	}
	farm := newFarm(opts)
	s := farm.Schema()
	var recs []arrow.RecordBatch
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	for left := rows; left > 0; left -= forwardBatch {
		n := int(min(left, forwardBatch))
		rb := engine.NewRecordBuilder(memory.DefaultAllocator, s)
		farm.Fill(rb, n)
		recs = append(recs, rb.NewRecord())
		rb.Release()
	}
	liveRows := max(1, int(int64(opts.Turbines)*int64(forwardLiveEvery)/int64(Interval)))
	res := &ForwardResult{Rows: rows, PointValues: rows * sim.NumPoints, BatchRows: forwardBatch,
		LiveRowsPerBatch: liveRows, LiveEverySeconds: forwardLiveEvery.Seconds(), Fsync: buffer.FsyncNone.String()}

	tmp, err := os.MkdirTemp("", "sluice-bench-forward-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	res.NATS = url
	encs := []outbound.Encoding{outbound.Arrow, outbound.JSONBatch}
	streams := make([]string, len(encs))
	for i, enc := range encs {
		streams[i] = fmt.Sprintf("BENCHFWD_%d_%d", time.Now().UnixNano(), i)
		// Build the backlog through a sink while no server listens: every
		// row is accepted into the buffer and stays undelivered.
		opts.Log.Info("bench: building backlog", "encoding", enc, "rows", rows)
		if err := buildBacklog(ctx, opts, url, enc, streams[i], filepath.Join(tmp, "buf-"+string(enc)), s, recs); err != nil {
			return nil, fmt.Errorf("backlog %s: %w", enc, err)
		}
	}

	// Start the server, then drain each backlog through a fresh sink.
	srv, err := nats.StartServer(nats.ServerOptions{Listen: fmt.Sprintf("127.0.0.1:%d", port), StoreDir: filepath.Join(tmp, "nats")})
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	for i, enc := range encs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		opts.Log.Info("bench: draining backlog", "encoding", enc, "rows", rows)
		r, err := drainForward(ctx, opts, url, enc, streams[i], filepath.Join(tmp, "buf-"+string(enc)), s, farm, rows, liveRows)
		if err != nil {
			return nil, fmt.Errorf("drain %s: %w", enc, err)
		}
		res.Runs = append(res.Runs, r)
		os.RemoveAll(filepath.Join(tmp, "buf-"+string(enc)))
	}
	return res, nil
}

// freePort returns a TCP port nothing listens on (yet).
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// newForwardSink builds a forward.Sink publishing to NATS with the given
// encoding, in batch_rows of forwardBatch.
func newForwardSink(opts Options, url string, enc outbound.Encoding, stream, dir string, s *engine.Schema, drainTimeout time.Duration) (*forward.Sink, error) {
	src := fmt.Sprintf("url: %s\nsubject: benchfwd.%s\nstream: %s\nencoding: %s\nbatch_rows: %d\n", url, stream, stream, enc, forwardBatch)
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		return nil, err
	}
	cfg, errs := nats.Spec.Parse("bench", doc.Content[0])
	if len(errs) > 0 {
		return nil, errs
	}
	log := opts.Log.With("scenario", Forward, "encoding", string(enc))
	bc := engine.BuildContext{Pipeline: "bench", Name: "forward", Edge: "bench", Log: log, Counters: engine.NewCounters()}
	pub, err := nats.New(cfg, bc)
	if err != nil {
		return nil, err
	}
	return forward.New(pub, forward.Options{
		Schema: s, Edge: "bench", Stream: "turbines", Dir: dir,
		// fsync none: the scenario measures the forwarder and the broker,
		// not the disk (see the buffer scenario for spill rates).
		Buffer:   buffer.Options{Fsync: buffer.FsyncNone},
		Mode:     forward.LiveFirst,
		RetryMin: 5 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		DrainTimeout: drainTimeout,
		Log:          log, Counters: bc.Counters,
		Labels: map[string]string{"pipeline": "bench", "sink": "forward"},
	})
}

// buildBacklog appends recs through a sink whose broker is down and
// closes it: the rows stay in its buffer as backlog.
func buildBacklog(ctx context.Context, opts Options, url string, enc outbound.Encoding, stream, dir string, s *engine.Schema, recs []arrow.RecordBatch) error {
	sink, err := newForwardSink(opts, url, enc, stream, dir, s, -1)
	if err != nil {
		return err
	}
	for _, r := range recs {
		r.Retain()
		if err := sink.Write(ctx, engine.Batch{Rec: r}); err != nil {
			sink.Close(context.Background())
			return err
		}
	}
	if n := sink.Metrics().Published; n["live"]+n["backlog"] != 0 {
		sink.Close(context.Background())
		return fmt.Errorf("%d rows published with no server", n["live"]+n["backlog"])
	}
	return sink.Close(context.Background())
}

// drainForward opens a sink on the backlog in dir with the server up,
// writes live batches every forwardLiveEvery until the backlog is
// delivered, and reports the rate and the live latency.
func drainForward(ctx context.Context, opts Options, url string, enc outbound.Encoding, stream, dir string, s *engine.Schema, farm *sim.Farm, rows int64, liveRows int) (ForwardRun, error) {
	r := ForwardRun{Encoding: string(enc)}
	before := takeSample()
	sink, err := newForwardSink(opts, url, enc, stream, dir, s, 10*time.Second)
	if err != nil {
		return r, err
	}
	r.OpenSeconds = time.Since(before.wall).Seconds()
	defer sink.Close(context.Background())
	if got := sink.Buffer().Status().NextSeq - 1; got != uint64(rows) {
		return r, fmt.Errorf("backlog holds %d rows, want %d", got, rows)
	}
	written := uint64(rows)
	deadline := time.Now().Add(forwardTimeout)
	tick := time.NewTicker(forwardLiveEvery)
	defer tick.Stop()
	poll := time.NewTicker(time.Millisecond)
	defer poll.Stop()
	var after sample
	polls := 0
	for draining := true; draining; {
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-tick.C:
			rb := engine.NewRecordBuilder(memory.DefaultAllocator, s)
			farm.Fill(rb, liveRows)
			rec := rb.NewRecord()
			rb.Release()
			if err := sink.Write(ctx, engine.Batch{Rec: rec}); err != nil {
				return r, err
			}
			written += uint64(liveRows)
			r.LiveBatches++
			r.LiveRows += int64(liveRows)
		case <-poll.C:
			if sink.Buffer().Cursor() >= uint64(rows) {
				after = takeSample()
				draining = false
			}
			if polls++; polls%100 == 0 {
				r.PeakDrainRate = max(r.PeakDrainRate, sink.Metrics().DrainRate)
			}
			if time.Now().After(deadline) {
				return r, fmt.Errorf("backlog not drained in %v (cursor %d of %d)", forwardTimeout, sink.Buffer().Cursor(), rows)
			}
		}
	}
	// Let the last live rows be confirmed before reading the metrics.
	for sink.Buffer().Cursor() < written {
		if time.Now().After(deadline) {
			return r, fmt.Errorf("live rows not delivered in %v", forwardTimeout)
		}
		time.Sleep(time.Millisecond)
	}
	m := sink.Metrics()
	r.WallSeconds = after.wall.Sub(before.wall).Seconds()
	r.CPUSeconds = (after.user + after.sys - before.user - before.sys).Seconds()
	r.RowsPerSec = float64(rows) / max(r.WallSeconds, 1e-9)
	r.PointsPerSec = r.RowsPerSec * sim.NumPoints
	r.PublishedLive, r.PublishedBacklog = m.Published["live"], m.Published["backlog"]
	for _, n := range m.PublishErrors {
		r.PublishErrors += n
	}
	r.LiveLatency = m.LiveLatency
	q := func(h forward.Histogram, p float64) float64 {
		v := h.Quantile(p)
		if math.IsInf(v, 1) {
			return -1
		}
		return v
	}
	r.LiveP50, r.LiveP99, r.LiveMax = q(m.LiveLatency, 0.5), q(m.LiveLatency, 0.99), q(m.LiveLatency, 1)
	if m.LiveLatency.Count > 0 {
		r.LiveMean = m.LiveLatency.Sum / float64(m.LiveLatency.Count)
	}
	r.PublishP50, r.PublishP99 = q(m.PublishSeconds, 0.5), q(m.PublishSeconds, 0.99)
	r.PublishCalls = m.PublishSeconds.Count
	if err := sink.Close(context.Background()); err != nil {
		return r, err
	}
	return r, nil
}

// writeTable writes the forward figures for people.
func (r *ForwardResult) writeTable(w io.Writer) error {
	fmt.Fprintf(w, "\nforward: backlog of %s readings (%s point values) drained by forward.Sink into JetStream (%s), batch_rows %d, fsync %s;\n",
		group(r.Rows), group(r.PointValues), r.NATS, r.BatchRows, r.Fsync)
	fmt.Fprintf(w, "live writes of %d rows every %v meanwhile (live_first)\n", r.LiveRowsPerBatch, time.Duration(r.LiveEverySeconds*float64(time.Second)))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "encoding\trows/s\tpoints/s\tpeak-drain-rate\twall-s\topen-s\tcpu-s\tlive-written\tlive-confirmed\tlive-p50\tlive-p99\tlive-max\tlive-mean\tpublish-p50\tpublish-p99\tpublish-errors\t")
	for _, d := range r.Runs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.2f\t%.3f\t%.2f\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t\n", d.Encoding,
			group(int64(d.RowsPerSec)), group(int64(d.PointsPerSec)), rate(d.PeakDrainRate), d.WallSeconds, d.OpenSeconds, d.CPUSeconds,
			d.LiveBatches, d.LiveLatency.Count, secs(d.LiveP50, "<="), secs(d.LiveP99, "<="), secs(d.LiveMax, "<="), secs(d.LiveMean, ""),
			secs(d.PublishP50, "<="), secs(d.PublishP99, "<="), d.PublishErrors)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "live quantiles are histogram bucket upper bounds (0.5 ms doubling); wall time runs from opening the sink on the backlog to the last backlog row confirmed;")
	fmt.Fprintln(w, "peak-drain-rate is the sink's DrainRate gauge (rows over the last full second: \"-\" when the drain took under a second)")
	return nil
}

// rate renders a rate, "-" when it was never measured.
func rate(v float64) string {
	if v <= 0 {
		return "-"
	}
	return group(int64(v))
}

// secs renders seconds as a duration, with a prefix; -1 is above the
// histogram's range.
func secs(v float64, prefix string) string {
	if v < 0 {
		return ">16s"
	}
	return prefix + time.Duration(v*float64(time.Second)).Round(10*time.Microsecond).String()
}
