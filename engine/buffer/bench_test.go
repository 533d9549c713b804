package buffer_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
)

// benchSchema is the reference workload's shape: per turbine and
// timestamp, ten measure points.
var benchSchema = func() *engine.Schema {
	fs := []engine.Field{{Name: "time", Type: engine.Timestamp}, {Name: "asset", Type: engine.String}}
	for i := range 10 {
		fs = append(fs, engine.Field{Name: "p" + strconv.Itoa(i), Type: engine.Float64})
	}
	return engine.MustSchema(fs, "time", "asset")
}()

const benchRows = 1024

// windBatch builds 1,024 rows: 1,000 turbines reporting once per second,
// each point a slow random walk with two decimals, as sensors report (or,
// with noise, uniformly random full-precision doubles: the worst case).
func windBatch(mem memory.Allocator, r *rand.Rand, state []float64, row int64, noise bool) arrow.RecordBatch {
	rb := engine.NewRecordBuilder(mem, benchSchema)
	defer rb.Release()
	for k := row; k < row+benchRows; k++ {
		turbine := k % 1000
		rb.Timestamp(0).Append(arrow.Timestamp(t0 + k/1000*1000))
		rb.String(1).Append("turbine-" + strconv.FormatInt(turbine, 10))
		for p := range 10 {
			i := int(turbine)*10 + p
			if noise {
				rb.Float64(2 + p).Append(r.Float64() * 1000)
				continue
			}
			state[i] += r.NormFloat64() * 0.05
			rb.Float64(2 + p).Append(math.Round(state[i]*100) / 100)
		}
		rb.RowDone()
	}
	return rb.NewRecord()
}

func newWind() (*rand.Rand, []float64) {
	r := rand.New(rand.NewPCG(1, 2))
	state := make([]float64, 10_000)
	for i := range state {
		state[i] = 20 + float64(i%10)*100 + r.Float64()*10
	}
	return r, state
}

func benchBatches(n int) []arrow.RecordBatch { return benchData(n, false) }

func benchData(n int, noise bool) []arrow.RecordBatch {
	r, state := newWind()
	out := make([]arrow.RecordBatch, n)
	for i := range out {
		out[i] = windBatch(memory.DefaultAllocator, r, state, int64(i*benchRows), noise)
	}
	return out
}

func releaseAll(recs []arrow.RecordBatch) {
	for _, r := range recs {
		r.Release()
	}
}

func recBytes(rec arrow.RecordBatch) int64 {
	var n int64
	for _, c := range rec.Columns() {
		for _, b := range c.Data().Buffers() {
			if b != nil {
				n += int64(b.Len())
			}
		}
	}
	return n
}

// BenchmarkAppend measures WAL appends of 1,024-row batches of 10 float
// columns on the real file system, per fsync policy, from one goroutine and
// from 8 (group commit).
func BenchmarkAppend(b *testing.B) {
	recs := benchBatches(64)
	defer releaseAll(recs)
	for _, policy := range []buffer.FsyncPolicy{buffer.FsyncAlways, buffer.FsyncInterval, buffer.FsyncNone} {
		for _, par := range []int{1, 8} {
			b.Run(fmt.Sprintf("fsync=%s/appenders=%d", policy, par), func(b *testing.B) {
				buf, err := buffer.Open(b.TempDir(), buffer.Options{Schema: benchSchema, Fsync: policy, ManualSeal: true, Log: quiet})
				if err != nil {
					b.Fatal(err)
				}
				defer buf.Close()
				b.SetBytes(recBytes(recs[0]))
				b.ReportAllocs()
				b.ResetTimer()
				if par == 1 {
					for i := 0; b.Loop(); i++ {
						if _, err := buf.Append(recs[i%len(recs)]); err != nil {
							b.Fatal(err)
						}
					}
				} else {
					var next atomic.Int64
					b.SetParallelism(par / 2) // GOMAXPROCS is 2 here
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if _, err := buf.Append(recs[int(next.Add(1))%len(recs)]); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				b.ReportMetric(float64(b.N)*benchRows*10/b.Elapsed().Seconds(), "points/s")
			})
		}
	}
}

// BenchmarkSeal measures rewriting a full WAL file (160 batches, about
// 16 MiB) as a Parquet segment.
func BenchmarkSeal(b *testing.B) {
	recs := benchBatches(160)
	defer releaseAll(recs)
	buf, err := buffer.Open(b.TempDir(), buffer.Options{Schema: benchSchema, Fsync: buffer.FsyncNone, ManualSeal: true, Log: quiet, SegmentBytes: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer buf.Close()
	var walBytes, rows int64
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		before := buf.Status().WALBytes
		for _, r := range recs {
			if _, err := buf.Append(r); err != nil {
				b.Fatal(err)
			}
		}
		rows += int64(len(recs)) * benchRows
		if err := buf.Roll(); err != nil {
			b.Fatal(err)
		}
		walBytes += buf.Status().WALBytes - before
		b.StartTimer()
		if err := buf.Seal(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := buf.Ack(buf.Status().NextSeq - 1); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.SetBytes(walBytes / int64(b.N))
	b.ReportMetric(float64(rows)*10/b.Elapsed().Seconds(), "points/s")
}

// BenchmarkSegmentSize compares the bytes of a Parquet segment with the
// JSON of the same rows: EnOS measure-point payloads (the usual input) and
// one JSON object per row; for sensor-like values and for random doubles.
func BenchmarkSegmentSize(b *testing.B) {
	for _, data := range []string{"sensor", "random"} {
		b.Run("data="+data, func(b *testing.B) {
			recs := benchData(100, data == "random")
			defer releaseAll(recs)
			var enos, plain int64
			for _, rec := range recs {
				enos += enosJSON(rec)
				plain += rowJSON(rec)
			}
			var seg int64
			for b.Loop() {
				buf, err := buffer.Open(b.TempDir(), buffer.Options{Schema: benchSchema, Fsync: buffer.FsyncNone, ManualSeal: true, Log: quiet, SegmentBytes: 1 << 30})
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range recs {
					if _, err := buf.Append(r); err != nil {
						b.Fatal(err)
					}
				}
				buf.Roll()
				if err := buf.Seal(); err != nil {
					b.Fatal(err)
				}
				seg = 0
				for _, s := range buf.Segments() {
					seg += s.Bytes
				}
				buf.Close()
			}
			b.SetBytes(plain)
			b.ReportMetric(float64(seg)/float64(len(recs)*benchRows), "segment-B/row")
			b.ReportMetric(float64(enos)/float64(seg), "enos-json/segment")
			b.ReportMetric(float64(plain)/float64(seg), "row-json/segment")
		})
	}
}

// enosJSON returns the bytes of the EnOS measure-point payloads carrying
// rec's rows (one payload per row).
func enosJSON(rec arrow.RecordBatch) int64 {
	ts := rec.Column(0).(*array.Timestamp)
	var n int64
	for r := range int(rec.NumRows()) {
		mp := make(map[string]float64, 10)
		for p := range 10 {
			mp["p"+strconv.Itoa(p)] = rec.Column(2 + p).(*array.Float64).Value(r)
		}
		msg := map[string]any{"id": strconv.Itoa(r), "version": "1.0", "method": "thing.measurepoint.post",
			"params": map[string]any{"measurepoints": mp, "time": int64(ts.Value(r))}}
		data, _ := json.Marshal(msg)
		n += int64(len(data))
	}
	return n
}

// rowJSON returns the bytes of one JSON object per row.
func rowJSON(rec arrow.RecordBatch) int64 {
	var w bytes.Buffer
	_ = array.RecordToJSON(rec, &w)
	return int64(w.Len())
}
