package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/position"
	"github.com/sluice-edge/sluice/engine/spec"
)

// Spec declares the "sim" source.
var Spec = spec.Spec{
	Name:    "sim",
	Summary: "Synthetic wind farm: turbine readings with a realistic power curve and fault episodes.",
	Description: "Each turbine reports `time`, `asset` (the key, `T0001`..`TNNNN`) and ten float64 points: " +
		"`wind_speed` (m/s), `power` (kW), `rotor_rpm`, `pitch_angle` (degrees), `nacelle_temp`, `gearbox_temp`, " +
		"`generator_temp`, `ambient_temp` (°C), `yaw_error` (degrees) and `vibration` (mm/s). Rows go round the " +
		"turbines, one event-time step (`interval`) per round. The same settings and seed give the same rows, " +
		"whatever the batch size.",
	Fields: []spec.Field{
		{Name: "turbines", Type: spec.Int, Default: 100, Description: "Number of turbines.", Example: 1000},
		{Name: "interval", Type: spec.Duration, Default: "1s", Description: "Event-time step between two readings of a turbine (at least 1ms).", Example: "10s"},
		{Name: "start", Type: spec.String, Default: "2024-01-01T00:00:00Z", Description: "Event time of the first reading (RFC 3339).", Example: "2025-06-01T00:00:00Z"},
		{Name: "seed", Type: spec.Int, Default: 1, Description: "Selects the farm: the same seed gives the same rows.", Example: 7},
		{Name: "rows", Type: spec.Int, Default: 0, Description: "Readings per turbine before the source ends; 0 runs until stopped.", Example: 3600},
		{Name: "rate", Type: spec.Float, Default: 0, Description: "Rows per second of wall-clock time (all turbines together), from 0.001 to 1e9; 0 is as fast as possible.", Example: 10000},
		{Name: "faults", Type: spec.Float, Default: 0.1, Description: "Fault episodes (gearbox overheating, high vibration, curtailment) per turbine per hour of event time; each lasts 5 to 30 minutes.", Example: 0.5},
		{Name: "resume", Type: spec.Bool, Default: true, Description: "Record how many rows the sinks have acknowledged (in `<data dir>/<pipeline>/<source>/position`) and, after a stop or a crash, go on from there instead of from the first row. The record is kept when every row was produced: the next run produces nothing (run with `--from-start` to produce the rows again).", Example: false},
	},
	Example: "sources:\n  turbines:\n    type: sim\n    turbines: 1000\n    interval: 1s\n    rows: 3600\n    rate: 100000\n",
}

func init() { engine.RegisterSource(Spec, newSource) }

// Rates a sim source may be configured with, in rows per second (0, as
// fast as possible, aside).
const (
	MinRate = 0.001
	MaxRate = 1e9
)

// Source streams the readings of a Farm.
type Source struct {
	// farm is nil in a source built for a dry run, which only has a
	// schema.
	farm   *Farm
	schema *engine.Schema
	total  int64 // rows to produce; 0 is unbounded
	rate   float64
	batch  engine.BatchPolicy
	mem    memory.Allocator
	rows   *atomic.Int64
	log    *slog.Logger
	// pos, when set, records the rows acknowledged (resume, in a pipeline
	// that takes no checkpoints).
	pos *position.Store

	// fp is the farm's fingerprint (see fingerprint); 0 in a dry run.
	fp uint64
	// resumed is set by ResumeAt, with the rows produced before.
	resumed  bool
	resumeAt int64
	// ckpt is the encoded position Position returns.
	ckpt atomic.Pointer[[]byte]
}

func newSource(cfg *spec.Config, bc engine.BuildContext) (engine.Source, error) {
	var errs spec.Errors
	n := cfg.Int("turbines")
	if n < 1 || n > 1_000_000 {
		errs = append(errs, cfg.Errorf("turbines", "turbines must be between 1 and 1000000, not %d", n))
	}
	interval := cfg.Duration("interval")
	if interval < time.Millisecond {
		errs = append(errs, cfg.Errorf("interval", "interval must be at least 1ms, not %v", interval))
	}
	start, err := time.Parse(time.RFC3339, cfg.String("start"))
	if err != nil {
		errs = append(errs, cfg.Errorf("start", "start must be an RFC 3339 time such as 2024-01-01T00:00:00Z, not %q", cfg.String("start")))
	}
	rows := cfg.Int("rows")
	if rows < 0 {
		errs = append(errs, cfg.Errorf("rows", "rows must not be negative"))
	}
	rate := cfg.Float("rate")
	if rate < 0 {
		errs = append(errs, cfg.Errorf("rate", "rate must not be negative"))
	} else if rate != 0 && !(rate >= MinRate && rate <= MaxRate) { // NaN fails too
		errs = append(errs, cfg.Errorf("rate", "rate must be 0 (as fast as possible) or between %g and %g rows per second, not %g", MinRate, MaxRate, rate))
	}
	faults := cfg.Float("faults")
	if faults < 0 {
		errs = append(errs, cfg.Errorf("faults", "faults must not be negative"))
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if rows > 0 && rows > math.MaxInt64/n {
		return nil, cfg.Errorf("rows", "rows x turbines is too large")
	}
	if bc.DryRun {
		// Checked; the per-turbine state of the farm is built only to run.
		return &Source{schema: farmSchema()}, nil
	}
	farm := NewFarm(Config{Turbines: int(n), Interval: interval, Start: start, Seed: uint64(cfg.Int("seed")), Faults: faults})
	src := NewSource(farm, rows*n, rate, bc)
	if cfg.Bool("resume") && !bc.Checkpoints {
		// A checkpointing pipeline resumes the source at the position
		// its checkpoint holds (ResumeAt), never from the position file.
		st, err := position.ForSource(bc)
		if err != nil {
			return nil, err
		}
		src.pos = st
	}
	return src, nil
}

// posJSON is the recorded position: rows produced and acknowledged.
type posJSON struct {
	Rows int64 `json:"rows"`
}

// NewSource returns a source that emits total rows of farm (0 for no end)
// at rate rows per second (0 for as fast as possible), in batches of
// bc.Batch.
func NewSource(farm *Farm, total int64, rate float64, bc engine.BuildContext) *Source {
	counters := bc.Counters
	if counters == nil {
		counters = engine.NewCounters()
	}
	log := bc.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Source{farm: farm, schema: farm.Schema(), total: total, rate: rate, batch: bc.Batch.Normalize(), mem: bc.Mem, rows: counters.Counter("rows"), log: log,
		fp: fingerprint(farm.Config())}
}

// Schema is the farm's schema.
func (s *Source) Schema() *engine.Schema { return s.schema }

// Resuming reports whether the source goes on from a recorded position:
// the position file's, or, in a checkpointing pipeline, one ResumeAt was
// given (past the first row).
func (s *Source) Resuming() bool { return s.pos.Recorded() || s.resumeAt > 0 }

// Run emits rows until the configured number is reached (returning nil)
// or ctx is cancelled.
func (s *Source) Run(ctx context.Context, emit engine.Emit) (err error) {
	if s.farm == nil {
		return errors.New("sim: the source was built for a dry run")
	}
	rb := engine.NewRecordBuilder(s.mem, s.farm.Schema())
	defer rb.Release()
	var produced int64
	var tr *position.Tracker
	if s.resumed {
		if s.total > 0 && s.resumeAt == s.total {
			s.log.Info("nothing left to produce: the checkpoint's position is after every row", "rows", s.resumeAt)
			return nil
		}
		if s.resumeAt > 0 {
			s.log.Info("resuming at the checkpoint's position", "rows", s.resumeAt)
			if err := s.farm.Skip(ctx, s.resumeAt); err != nil {
				return nil // stopped while catching up
			}
			produced = s.resumeAt
		}
	} else if s.pos != nil {
		if p, ok := s.pos.Load(); ok {
			var pj posJSON
			if err := json.Unmarshal(p, &pj); err != nil || pj.Rows < 0 || (s.total > 0 && pj.Rows > s.total) {
				return fmt.Errorf("sim: position %s: unreadable; run with --from-start to start over", s.pos.Path())
			}
			if s.total > 0 && pj.Rows == s.total {
				s.log.Info("nothing left to produce: an earlier run produced every row (run with --from-start to produce them again)",
					"rows", pj.Rows, "position", s.pos.Path())
				return nil
			}
			s.log.Info("resuming where the acknowledged rows end (run with --from-start to start over)",
				"rows", pj.Rows, "position", s.pos.Path())
			if err := s.farm.Skip(ctx, pj.Rows); err != nil {
				return nil // stopped while catching up
			}
			produced = pj.Rows
		}
	}
	if s.pos != nil {
		tr = position.NewTracker(s.pos, func(msg string, err error) { s.log.Warn(msg, "err", err) })
		defer tr.End()
	}
	flush := func() error {
		rec := rb.NewRecord()
		if rec == nil {
			return nil
		}
		n := rec.NumRows()
		var ack *engine.Ack
		if tr != nil {
			ack = tr.Emit(fmt.Appendf(nil, `{"rows":%d}`, produced))
		}
		// The position after the batch is in place before it is
		// emitted, and taken back when it was not.
		prev := s.ckpt.Load()
		pos := encodePos(s.fp, produced)
		s.ckpt.Store(&pos)
		if err := emit(rec, ack); err != nil {
			s.ckpt.Store(prev)
			return err
		}
		s.rows.Add(n)
		return nil
	}
	left := func() int64 {
		if s.total == 0 {
			return math.MaxInt64
		}
		return s.total - produced
	}
	if s.rate <= 0 {
		for left() > 0 {
			if ctx.Err() != nil {
				return nil
			}
			n := int(min(int64(s.batch.Size), left()))
			s.farm.Fill(rb, n)
			produced += int64(n)
			if err := flush(); err != nil {
				return stopped(ctx, err)
			}
		}
		return nil
	}

	// Paced: row k of this run is due at start + k/rate; pending rows
	// are flushed when a batch is full or the oldest has waited Linger.
	// Neither time nor row counts overflow, whatever the rate: a time
	// beyond time.Duration's range is the furthest it can hold.
	base := produced // rows of earlier runs (resume)
	start := time.Now()
	dueAt := func(k int64) time.Time {
		return start.Add(saturate(math.Ceil(float64(k) * 1e9 / s.rate)))
	}
	// dueBy is the number of rows due by now, at most limit: an estimate
	// corrected by a few steps (at most limit).
	dueBy := func(now time.Time, limit int64) int64 {
		c := limit
		if est := float64(now.Sub(start))*s.rate/1e9 + 1; est < float64(limit) {
			c = max(0, int64(est))
		}
		for c > 0 && dueAt(c-1).After(now) {
			c--
		}
		for c < limit && !dueAt(c).After(now) {
			c++
		}
		return c
	}
	var pendingSince time.Time
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if ctx.Err() != nil {
			return stopped(ctx, flush())
		}
		now := time.Now()
		done := produced - base
		if n := dueBy(now, done+min(left(), int64(s.batch.Size-rb.Rows()))) - done; n > 0 {
			if rb.Rows() == 0 {
				pendingSince = now
			}
			s.farm.Fill(rb, int(n))
			produced += n
		}
		if rb.Rows() > 0 && (rb.Rows() >= s.batch.Size || left() == 0 || now.Sub(pendingSince) >= s.batch.Linger) {
			if err := flush(); err != nil {
				return stopped(ctx, err)
			}
			continue
		}
		if left() == 0 {
			return nil
		}
		// Sleep until the next row is due or the pending rows must go.
		wake := dueAt(produced - base)
		if rb.Rows() > 0 {
			if w := pendingSince.Add(s.batch.Linger); w.Before(wake) {
				wake = w
			}
		}
		timer.Reset(wake.Sub(now))
		select {
		case <-ctx.Done():
			return stopped(ctx, flush())
		case <-timer.C:
		}
	}
}

// saturate converts nanoseconds to a Duration, holding values beyond its
// range at its bounds.
func saturate(ns float64) time.Duration {
	switch {
	case ns >= math.MaxInt64: // 2^63 as a float64: beyond the range
		return math.MaxInt64
	case ns <= 0 || math.IsNaN(ns):
		return 0
	}
	return time.Duration(ns)
}

// stopped turns an error seen while the pipeline stops into nil.
func stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}
