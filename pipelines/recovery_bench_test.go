package pipelines_test

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/connectors/sim"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/checkpoint"
	"github.com/sluice-edge/sluice/engine/ingest"
	"github.com/sluice-edge/sluice/pipelines"
)

// recoveryYAML is the pipeline BenchmarkRecovery recovers: one-hour
// tumbling windows per meter over the ten points of a farm's readings. Its
// sim source only gives the schema: the benchmark replaces it with a live
// source (not replayable, so it runs behind an ingest log).
const recoveryYAML = `
name: recovery
checkpoint: {interval: 1h, ingest_fsync: none}
sources:
  meters: {type: sim, turbines: 1, rows: 1}
steps:
  hourly:
    type: window
    input: meters
    kind: tumbling
    size: 1h
    aggregates:
      wind_speed:     [avg, min, max]
      power:          [avg, min, max]
      rotor_rpm:      [avg, min, max]
      pitch_angle:    [avg, min, max]
      nacelle_temp:   [avg, min, max]
      gearbox_temp:   [avg, min, max]
      generator_temp: [avg, min, max]
      ambient_temp:   [avg, min, max]
      yaw_error:      [avg, min, max]
      vibration:      [avg, min, max]
sinks:
  out: {type: discard, input: hourly}
`

// Sizes of BenchmarkRecovery.
const (
	recoveryKeys     = 100_000
	recoveryLogBytes = 1 << 30
	recoveryBatch    = 1024
)

// liveMeters is a live source: as Run starts it emits its rows, then waits
// for the end of the run.
type liveMeters struct {
	farm  *sim.Farm
	rows  int
	runAt atomic.Int64 // UnixNano of the call of Run
}

func (s *liveMeters) Schema() *engine.Schema { return s.farm.Schema() }

func (s *liveMeters) Run(ctx context.Context, emit engine.Emit) error {
	s.runAt.Store(time.Now().UnixNano())
	for left := s.rows; left > 0; left -= recoveryBatch {
		rb := engine.NewRecordBuilder(memory.DefaultAllocator, s.farm.Schema())
		s.farm.Fill(rb, min(left, recoveryBatch))
		rec := rb.NewRecord()
		rb.Release()
		if err := emit(rec, nil); err != nil {
			return nil
		}
	}
	<-ctx.Done()
	return nil
}

// recoveryClock notes when the graph logs that it recovered its checkpoint.
type recoveryClock struct {
	slog.Handler
	at *atomic.Int64
}

func (h recoveryClock) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "checkpoint: recovered" {
		h.at.CompareAndSwap(0, time.Now().UnixNano())
	}
	return h.Handler.Handle(ctx, r)
}
func (h recoveryClock) Enabled(context.Context, slog.Level) bool { return true }
func (h recoveryClock) WithAttrs(a []slog.Attr) slog.Handler {
	return recoveryClock{h.Handler.WithAttrs(a), h.at}
}
func (h recoveryClock) WithGroup(g string) slog.Handler {
	return recoveryClock{h.Handler.WithGroup(g), h.at}
}

// runRecovery builds the recovery pipeline in dataDir around src and runs
// it until done returns true (polled every 100µs with the window step's
// rows_in), then stops it gracefully (taking the last checkpoint).
func runRecovery(tb testing.TB, dataDir string, src engine.Source, log *slog.Logger, done func(rowsIn int64) bool) (built time.Time, doneAt time.Time) {
	tb.Helper()
	defs, errs := pipelines.Parse("recovery.yaml", []byte(recoveryYAML), nil)
	if len(errs) > 0 {
		tb.Fatal(errs)
	}
	p, errs := pipelines.Build(defs[0], pipelines.Options{Log: log, DataDir: dataDir, Sources: map[string]engine.Source{"meters": src}})
	if len(errs) > 0 {
		tb.Fatal(errs)
	}
	built = time.Now()
	var rowsIn *atomic.Int64
	for _, b := range p.Components {
		if b.Def.Name == "hourly" {
			rowsIn = b.Counters.Counter("rows_in")
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() { runErr = pipelines.RunAll(ctx, []*pipelines.Pipeline{p}) })
	for !done(rowsIn.Load()) {
		time.Sleep(100 * time.Microsecond)
	}
	doneAt = time.Now()
	cancel()
	wg.Wait()
	if runErr != nil {
		tb.Fatal(runErr)
	}
	return built, doneAt
}

// dirBytes returns the bytes of the files under dir.
func dirBytes(tb testing.TB, dir string) int64 {
	tb.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			n += fi.Size()
		}
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// BenchmarkRecovery measures how long a pipeline takes to be live again
// after a crash that left a large ingest log behind its checkpoint:
// 100,000 open one-hour windows (one per meter) in the checkpoint, and
// about 1 GiB of input logged after it (the input of a run killed before
// its next checkpoint), either as the WAL files an input faster than the
// log's sealing leaves ("wal"), or sealed into Parquet segments
// ("sealed", many more rows in the same bytes). It reports, from the start
// of the recovering run (Build, then Run): build_ms (the ingest log
// opened), restored_ms (the checkpoint loaded and every state restored),
// live_started_ms (the live source runs: its input is logged and
// acknowledged beside the replay) and first_live_ms (the window step has
// processed the first live batch, behind the whole replay, in log order),
// with the replay's rate and the sizes of
// the log and of the checkpoint. Run it with -benchtime=1x: each iteration
// writes the gigabyte again. The log is read back from the page cache it
// was just written through.
func BenchmarkRecovery(b *testing.B) {
	if testing.Short() {
		b.Skip("writes a 1 GiB ingest log")
	}
	for _, sealed := range []bool{false, true} {
		name := "wal"
		if sealed {
			name = "sealed"
		}
		b.Run(name, func(b *testing.B) {
			for range b.N {
				benchRecovery(b, sealed)
			}
		})
	}
}

func benchRecovery(b *testing.B, sealed bool) {
	b.StopTimer()
	dataDir := b.TempDir()
	farm := sim.NewFarm(sim.Config{Turbines: recoveryKeys, Interval: time.Second, Seed: 1})
	quiet := slog.New(slog.DiscardHandler)

	// The first run: one reading per meter opens its window; a graceful
	// stop checkpoints the 100,000 open windows.
	first := &liveMeters{farm: farm, rows: recoveryKeys}
	runRecovery(b, dataDir, first, quiet, func(n int64) bool { return n >= recoveryKeys })
	ckpts, _ := filepath.Glob(filepath.Join(dataDir, "recovery", "checkpoints", "*"+checkpoint.Ext))
	if len(ckpts) == 0 {
		b.Fatal("the first run left no checkpoint")
	}
	fi, err := os.Stat(ckpts[len(ckpts)-1])
	if err != nil {
		b.Fatal(err)
	}
	ckptBytes := fi.Size()

	// The crashed run: its input went to the log after the checkpoint.
	logDir := ingest.Dir(dataDir, "recovery", "meters")
	buf, err := buffer.Open(logDir, buffer.Options{Schema: farm.Schema(), Fsync: buffer.FsyncNone, Log: quiet, ManualSeal: sealed})
	if err != nil {
		b.Fatal(err)
	}
	var logged int64
	for i := 0; ; i++ {
		if i%256 == 0 {
			if sealed {
				if err := buf.Roll(); err != nil {
					b.Fatal(err)
				}
				if err := buf.Seal(); err != nil {
					b.Fatal(err)
				}
			}
			if dirBytes(b, logDir) >= recoveryLogBytes {
				break
			}
		}
		rb := engine.NewRecordBuilder(memory.DefaultAllocator, farm.Schema())
		farm.Fill(rb, recoveryBatch)
		rec := rb.NewRecord()
		rb.Release()
		if _, err := buf.Append(rec); err != nil {
			b.Fatal(err)
		}
		rec.Release()
		logged += recoveryBatch
	}
	if err := buf.Close(); err != nil {
		b.Fatal(err)
	}
	logBytes := dirBytes(b, logDir)
	st := logStats(b, logDir)

	// The recovery, timed from its start to the first live batch through
	// the window step.
	var restoredAt atomic.Int64
	log := slog.New(recoveryClock{slog.DiscardHandler, &restoredAt})
	live := &liveMeters{farm: farm, rows: recoveryBatch}
	b.StartTimer()
	start := time.Now()
	built, liveAt := runRecovery(b, dataDir, live, log, func(n int64) bool { return n >= logged+recoveryBatch })
	b.StopTimer()
	ms := func(t time.Time) float64 { return float64(t.Sub(start).Microseconds()) / 1000 }
	restored := time.Unix(0, restoredAt.Load())
	started := time.Unix(0, live.runAt.Load())
	if !restored.After(start) || started.Before(restored) || !liveAt.After(restored) {
		b.Fatalf("the recovery was not observed: restored %v, live source started %v, first live batch %v after the start", restored.Sub(start), started.Sub(start), liveAt.Sub(start))
	}
	replay := liveAt.Sub(restored).Seconds()
	b.ReportMetric(ms(built), "build_ms")
	b.ReportMetric(ms(restored), "restored_ms")
	b.ReportMetric(ms(started), "live_started_ms")
	b.ReportMetric(ms(liveAt), "first_live_ms")
	b.ReportMetric(float64(logged)/replay, "replay_rows/s")
	b.ReportMetric(float64(logBytes)/replay/(1<<20), "replay_MiB/s")
	b.Logf("checkpoint: %d open windows, file %d bytes; ingest log after it: %d rows, %d bytes on disk (%d segment files: %d bytes, %d WAL files: %d bytes)",
		recoveryKeys, ckptBytes, logged, logBytes, st.segments, st.segmentBytes, st.wals, st.walBytes)
	b.Logf("from the start: built %.1f ms, checkpoint restored %.1f ms, live source started %.1f ms, log replayed and first live batch through the window %.1f ms (%.1f ms after the restore)",
		ms(built), ms(restored), ms(started), ms(liveAt), replay*1000)
}

type logFiles struct {
	segments, wals         int
	segmentBytes, walBytes int64
}

// logStats sorts the files of a log into Parquet segments and WAL files.
func logStats(tb testing.TB, dir string) logFiles {
	tb.Helper()
	var st logFiles
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch filepath.Ext(path) {
		case ".parquet":
			st.segments++
			st.segmentBytes += fi.Size()
		case ".wal":
			st.wals++
			st.walBytes += fi.Size()
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return st
}
