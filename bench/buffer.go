package bench

import (
	"context"
	"fmt"
	"io"
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
	"github.com/sluice-edge/sluice/engine/outbound"
)

// Buffer is the scenario of the durable buffer: spill rate, segment size
// against JSON, and backfill drain rate into NATS JetStream. It is not
// part of the default set: ask for it with --scenario buffer.
const Buffer = "buffer"

// bufferMaxRows caps the readings of the buffer scenario unless Rows is
// set, so that it runs in well under a minute.
const bufferMaxRows = 300_000

// BufferResult holds the figures of the buffer scenario.
type BufferResult struct {
	Rows        int64 `json:"rows"`
	PointValues int64 `json:"point_values"`
	BatchRows   int   `json:"batch_rows"`
	// Spill is the append rate per fsync policy.
	Spill []SpillResult `json:"spill"`
	// SegmentBytes is the size of the Parquet segments holding the rows;
	// JSONBytes and JSONBatchBytes the payload bytes of the same rows as
	// json (one EnOS-like message per row) and json_batch messages.
	SegmentBytes   int64   `json:"segment_bytes"`
	JSONBytes      int64   `json:"json_bytes"`
	JSONBatchBytes int64   `json:"json_batch_bytes"`
	SegmentVsJSON  float64 `json:"segment_vs_json"`
	SealSeconds    float64 `json:"seal_seconds"`
	// Drain is the backfill rate into JetStream per encoding.
	Drain []DrainResult `json:"drain"`
	// NATS says which server the drain used.
	NATS string `json:"nats"`
}

// SpillResult is the append rate under one fsync policy.
type SpillResult struct {
	Fsync         string  `json:"fsync"`
	WallSeconds   float64 `json:"wall_seconds"`
	CPUSeconds    float64 `json:"cpu_seconds"`
	RowsPerSec    float64 `json:"rows_per_sec"`
	PointsPerSec  float64 `json:"point_values_per_sec"`
	PointsPerCore float64 `json:"point_values_per_core_sec"`
	WALBytes      int64   `json:"wal_bytes"`
}

// DrainResult is the rate of a backfill into JetStream, every message
// acknowledged, the cursor advanced after each publish.
type DrainResult struct {
	Encoding     string  `json:"encoding"`
	Messages     int64   `json:"messages"`
	PayloadBytes int64   `json:"payload_bytes"`
	WallSeconds  float64 `json:"wall_seconds"`
	CPUSeconds   float64 `json:"cpu_seconds"`
	RowsPerSec   float64 `json:"rows_per_sec"`
	PointsPerSec float64 `json:"point_values_per_sec"`
}

// runBuffer runs the buffer scenario.
func runBuffer(ctx context.Context, opts Options, perTurbine int64) (*BufferResult, error) {
	rows := perTurbine * int64(opts.Turbines)
	if opts.Rows == 0 && rows > bufferMaxRows {
		rows = bufferMaxRows
	}
	const batch = 1024
	farm := newFarm(opts)
	s := farm.Schema()
	var recs []arrow.RecordBatch
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	for left := rows; left > 0; left -= batch {
		n := int(min(left, batch))
		rb := engine.NewRecordBuilder(memory.DefaultAllocator, s)
		farm.Fill(rb, n)
		recs = append(recs, rb.NewRecord())
		rb.Release()
	}
	res := &BufferResult{Rows: rows, PointValues: rows * sim.NumPoints, BatchRows: batch}
	tmp, err := os.MkdirTemp("", "sluice-bench-buffer-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	// Spill.
	for _, policy := range []buffer.FsyncPolicy{buffer.FsyncAlways, buffer.FsyncNone} {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		dir := filepath.Join(tmp, "spill-"+policy.String())
		b, err := buffer.Open(dir, buffer.Options{Schema: s, Fsync: policy, ManualSeal: true, IdleSeal: -1})
		if err != nil {
			return nil, err
		}
		before := takeSample()
		for _, r := range recs {
			if _, err := b.Append(r); err != nil {
				b.Close()
				return nil, err
			}
		}
		after := takeSample()
		st := b.Status()
		if err := b.Close(); err != nil {
			return nil, err
		}
		sp := SpillResult{Fsync: policy.String(), WallSeconds: after.wall.Sub(before.wall).Seconds(),
			CPUSeconds: (after.user + after.sys - before.user - before.sys).Seconds(), WALBytes: st.WALBytes}
		sp.RowsPerSec = float64(rows) / max(sp.WallSeconds, 1e-9)
		sp.PointsPerSec = sp.RowsPerSec * sim.NumPoints
		if sp.CPUSeconds > 0 {
			sp.PointsPerCore = float64(res.PointValues) / sp.CPUSeconds
		}
		res.Spill = append(res.Spill, sp)
		os.RemoveAll(dir)
	}

	// Segments against JSON.
	if err := jsonSizes(res, recs, s); err != nil {
		return nil, err
	}

	// Drain into JetStream.
	url, stop, err := startNATS(filepath.Join(tmp, "nats"))
	if err != nil {
		return nil, err
	}
	defer stop()
	res.NATS = url
	for i, enc := range []outbound.Encoding{outbound.Arrow, outbound.JSONBatch} {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		dir := filepath.Join(tmp, "drain-"+string(enc))
		b, err := buffer.Open(dir, buffer.Options{Schema: s, Fsync: buffer.FsyncNone, ManualSeal: true, IdleSeal: -1})
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			if _, err := b.Append(r); err != nil {
				b.Close()
				return nil, err
			}
		}
		if i == 0 {
			// Seal once to measure the segments; the drain then reads
			// them as backlog.
			t0 := time.Now()
			if err := b.Roll(); err == nil {
				err = b.Seal()
			}
			if err != nil {
				b.Close()
				return nil, err
			}
			res.SealSeconds = time.Since(t0).Seconds()
			for _, g := range b.Segments() {
				res.SegmentBytes += g.Bytes
			}
			res.SegmentVsJSON = float64(res.SegmentBytes) / float64(max(res.JSONBytes, 1))
		} else if err := b.Roll(); err == nil {
			err = b.Seal()
		}
		d, err := drain(ctx, b, url, enc, fmt.Sprintf("BENCH_%d_%d", time.Now().UnixNano(), i), rows)
		b.Close()
		if err != nil {
			return nil, fmt.Errorf("drain %s: %w", enc, err)
		}
		res.Drain = append(res.Drain, d)
		os.RemoveAll(dir)
	}
	return res, nil
}

func jsonSizes(res *BufferResult, recs []arrow.RecordBatch, s *engine.Schema) error {
	first := uint64(1)
	for _, r := range recs {
		for _, enc := range []outbound.Encoding{outbound.JSON, outbound.JSONBatch} {
			msgs, err := outbound.Encode(enc, "bench", "turbines", outbound.Entry{Rec: r, First: first, Schema: s})
			if err != nil {
				return err
			}
			for _, m := range msgs {
				if enc == outbound.JSON {
					res.JSONBytes += int64(len(m.Payload))
				} else {
					res.JSONBatchBytes += int64(len(m.Payload))
				}
			}
		}
		first += uint64(r.NumRows())
	}
	return nil
}

// startNATS starts an embedded JetStream server on a free port.
func startNATS(dir string) (string, func(), error) {
	srv, err := nats.StartServer(nats.ServerOptions{StoreDir: dir})
	if err != nil {
		return "", nil, err
	}
	return srv.URL(), func() { _ = srv.Close() }, nil
}

// drain forwards the whole backlog of b to JetStream as backfill.
func drain(ctx context.Context, b *buffer.Buffer, url string, enc outbound.Encoding, stream string, rows int64) (DrainResult, error) {
	src := fmt.Sprintf("url: %s\nsubject: bench.%s\nstream: %s\nencoding: %s\nbatch_rows: 1024\n", url, stream, stream, enc)
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		return DrainResult{}, err
	}
	cfg, errs := nats.Spec.Parse("bench", doc.Content[0])
	if len(errs) > 0 {
		return DrainResult{}, errs
	}
	pub, err := nats.New(cfg, engine.BuildContext{})
	if err != nil {
		return DrainResult{}, err
	}
	defer pub.Close()
	e := pub.Encoder("bench", "turbines")
	d := DrainResult{Encoding: string(enc)}
	poll, cancel := context.WithCancel(context.Background())
	cancel()
	// Warm up the connection and the stream (created on first publish).
	for range 50 {
		if err := pub.Publish(pub.Topic); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := takeSample()
	var done int64
	for done < rows {
		if err := ctx.Err(); err != nil {
			return d, err
		}
		en, err := b.Next(poll)
		if err != nil {
			return d, fmt.Errorf("after %d rows: %w", done, err)
		}
		msgs, err := e.Encode(outbound.Entry{Rec: en.Rec, First: en.First, Backfill: true, Schema: b.Schema()})
		en.Rec.Release()
		if err != nil {
			return d, err
		}
		if err := pub.Publish(pub.Topic, msgs...); err != nil {
			return d, err
		}
		if err := b.Ack(en.Last()); err != nil {
			return d, err
		}
		d.Messages += int64(len(msgs))
		for _, m := range msgs {
			d.PayloadBytes += int64(len(m.Payload))
		}
		done += int64(en.Last() - en.First + 1)
	}
	after := takeSample()
	d.WallSeconds = after.wall.Sub(before.wall).Seconds()
	d.CPUSeconds = (after.user + after.sys - before.user - before.sys).Seconds()
	d.RowsPerSec = float64(rows) / max(d.WallSeconds, 1e-9)
	d.PointsPerSec = d.RowsPerSec * sim.NumPoints
	return d, nil
}

// writeTable writes the buffer figures for people.
func (r *BufferResult) writeTable(w io.Writer) error {
	fmt.Fprintf(w, "\nbuffer: %s readings (%s point values) in Arrow batches of %d rows\n", group(r.Rows), group(r.PointValues), r.BatchRows)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "spill fsync\trows/s\tpoints/s\tpoints/s/core\twall-s\tWAL bytes\t")
	for _, s := range r.Spill {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.2f\t%s\t\n", s.Fsync, group(int64(s.RowsPerSec)), group(int64(s.PointsPerSec)), group(int64(s.PointsPerCore)), s.WallSeconds, group(s.WALBytes))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "segments %s bytes (sealed in %.2fs); json %s bytes, json_batch %s bytes; segments/json = 1/%.1f\n",
		group(r.SegmentBytes), r.SealSeconds, group(r.JSONBytes), group(r.JSONBatchBytes), 1/max(r.SegmentVsJSON, 1e-9))
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "drain to JetStream (%s)\trows/s\tpoints/s\tmessages\tpayload bytes\twall-s\t\n", r.NATS)
	for _, d := range r.Drain {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%.2f\t\n", d.Encoding, group(int64(d.RowsPerSec)), group(int64(d.PointsPerSec)), d.Messages, group(d.PayloadBytes), d.WallSeconds)
	}
	return tw.Flush()
}
