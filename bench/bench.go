// Package bench is the benchmark harness behind `sluice bench`. It runs the
// reference scenario of the design (a wind farm of simulated turbines, ten
// measure points each -> one-minute tumbling statistics per turbine ->
// three alert rules -> discard) in process, in several ways:
//
//   - "arrow": the sim source produces Arrow batches directly;
//   - "enos": EnOS JSON payloads, rendered before the clock starts into
//     one byte arena, are decoded by the EnOS decoder in an in-memory
//     source;
//   - "baseline": the same computation written per element on plain
//     go-streams flows, fed with the same payloads and decoding each with
//     encoding/json.
//
// Each scenario reports throughput, CPU time, allocations and peak RSS,
// and what it produced (window rows and alerts) so the scenarios can be
// checked to agree. Figures are reported beside the baseline of the same
// run, so that ratios survive a noisy machine. See docs/bench.md.
package bench

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/sluice-edge/sluice/connectors/sim"
)

// Scenario names.
const (
	Arrow    = "arrow"
	EnOS     = "enos"
	Baseline = "baseline"
)

// Scenarios lists every scenario, in the order they run.
var Scenarios = []string{Arrow, EnOS, Baseline}

var descriptions = map[string]string{
	Arrow:    "sim source -> Arrow batches -> window -> alert -> discard (pipeline YAML, in process)",
	EnOS:     "in-memory EnOS JSON payloads -> EnOS decoder -> window -> alert -> discard (pipeline YAML, in process)",
	Baseline: "same payloads -> go-streams per element: Map(encoding/json decode) -> sink (maps of per-window state, 3 alert checks)",
}

// Defaults of Options.
const (
	DefaultTurbines = 1000
	DefaultDuration = 10 * time.Minute
	// Interval is the event-time step between two readings of a turbine.
	Interval = time.Second
	// Points is the number of measure points per reading (fixed by the
	// simulator).
	Points = sim.NumPoints
	// DefaultFaults is the rate of fault episodes (per turbine per hour of
	// event time) of the simulated farm: enough for the alert rules to fire.
	DefaultFaults = 0.5
)

// Options configure a run. Zero values take the defaults.
type Options struct {
	// Turbines is the number of simulated turbines (default 1000).
	Turbines int
	// Duration is the event time the run covers (default 10m): every
	// turbine sends one reading per second of it. It is rounded up to
	// whole seconds.
	Duration time.Duration
	// Rows, when > 0, sets the number of readings (payloads) instead of
	// Duration. It is rounded up to a whole number of readings per turbine.
	Rows int64
	// Scenarios to run, among Scenarios (default all). Ratios need
	// "baseline".
	Scenarios []string
	// Repeat runs each scenario this many times (default 1) and reports
	// the run of median wall time, with the times of every run.
	Repeat int
	// MaxProcs, when > 0, sets GOMAXPROCS for the run (1 measures one
	// core) and restores it afterwards.
	MaxProcs int
	// Seed selects the simulated farm (default 1).
	Seed uint64
	// Faults is the rate of fault episodes per turbine per hour of event
	// time (default DefaultFaults; negative for none).
	Faults float64
	// CPUProfile, when set, is a file path: the measured part of each
	// scenario is profiled into it. With several scenarios, the scenario
	// name is inserted before the extension (cpu.arrow.pprof).
	CPUProfile string
	// CheckpointInterval is the checkpoint interval of the checkpoint
	// scenario (default DefaultCheckpointInterval).
	CheckpointInterval time.Duration
	// MQTT configures the mqtt scenario.
	MQTT MQTTOptions
	// Log receives progress messages and the pipelines' logs (default:
	// discarded).
	Log *slog.Logger
}

// normalize fills defaults and checks the options.
func (o Options) normalize() (Options, error) {
	if o.Turbines == 0 {
		o.Turbines = DefaultTurbines
	}
	if o.Turbines < 1 || o.Turbines > 1_000_000 {
		return o, fmt.Errorf("bench: turbines must be between 1 and 1000000, not %d", o.Turbines)
	}
	if o.Rows < 0 {
		return o, fmt.Errorf("bench: rows must not be negative")
	}
	if o.Duration < 0 {
		return o, fmt.Errorf("bench: duration must not be negative")
	}
	if o.Duration == 0 {
		o.Duration = DefaultDuration
	}
	if len(o.Scenarios) == 0 {
		o.Scenarios = Scenarios
	}
	var seen []string
	for _, s := range o.Scenarios {
		s = strings.ToLower(strings.TrimSpace(s))
		if !slices.Contains(Scenarios, s) && s != Buffer && s != Forward && s != Checkpoint && s != Infer && s != MQTT {
			return o, fmt.Errorf("bench: unknown scenario %q (known: %s, %s, %s, %s, %s, %s)", s, strings.Join(Scenarios, ", "), Buffer, Forward, Checkpoint, Infer, MQTT)
		}
		if !slices.Contains(seen, s) {
			seen = append(seen, s)
		}
	}
	// Run in the canonical order whatever the order asked.
	var ordered []string
	for _, s := range append(slices.Clone(Scenarios), Checkpoint, Buffer, Forward, Infer, MQTT) {
		if slices.Contains(seen, s) {
			ordered = append(ordered, s)
		}
	}
	o.Scenarios = ordered
	if o.Repeat < 0 {
		return o, fmt.Errorf("bench: repeat must not be negative")
	}
	if o.Repeat == 0 {
		o.Repeat = 1
	}
	if o.MaxProcs < 0 {
		return o, fmt.Errorf("bench: maxprocs must not be negative")
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.CheckpointInterval < 0 {
		return o, fmt.Errorf("bench: checkpoint interval must not be negative")
	}
	if o.CheckpointInterval == 0 {
		o.CheckpointInterval = DefaultCheckpointInterval
	}
	switch {
	case o.Faults == 0:
		o.Faults = DefaultFaults
	case o.Faults < 0:
		o.Faults = 0
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// rowsPerTurbine is the number of readings each turbine sends.
func (o Options) rowsPerTurbine() int64 {
	if o.Rows > 0 {
		return (o.Rows + int64(o.Turbines) - 1) / int64(o.Turbines)
	}
	return int64((o.Duration + Interval - 1) / Interval)
}

// Run runs the scenarios one after the other and reports their figures.
// It fails when a scenario fails; scenarios that disagree on their results
// are reported (see Report.Check), not failed.
func Run(ctx context.Context, opts Options) (*Report, error) {
	opts, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	if opts.MaxProcs > 0 {
		prev := runtime.GOMAXPROCS(opts.MaxProcs)
		defer runtime.GOMAXPROCS(prev)
	}
	perTurbine := opts.rowsPerTurbine()
	rows := perTurbine * int64(opts.Turbines)
	if rows > 1<<31 {
		return nil, fmt.Errorf("bench: %d readings is too many for one run", rows)
	}
	r := newReport(opts, perTurbine)
	// The payloads are rendered once, after the arrow scenario (which does
	// not read them), and shared by the scenarios that do.
	var in *payloads
	defer func() {
		if in != nil {
			in.free()
		}
	}()
	for _, name := range opts.Scenarios {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if name == Buffer {
			opts.Log.Info("bench: running scenario", "scenario", name)
			if r.Buffer, err = runBuffer(ctx, opts, perTurbine); err != nil {
				return nil, fmt.Errorf("bench: scenario %s: %w", name, err)
			}
			continue
		}
		if name == Forward {
			opts.Log.Info("bench: running scenario", "scenario", name)
			if r.Forward, err = runForward(ctx, opts, perTurbine); err != nil {
				return nil, fmt.Errorf("bench: scenario %s: %w", name, err)
			}
			continue
		}
		if name == Infer {
			opts.Log.Info("bench: running scenario", "scenario", name)
			if r.Infer, err = runInfer(ctx, opts); err != nil {
				return nil, fmt.Errorf("bench: scenario %s: %w", name, err)
			}
			continue
		}
		if name == MQTT {
			opts.Log.Info("bench: running scenario", "scenario", name)
			if r.MQTT, err = runMQTT(ctx, opts); err != nil {
				return nil, fmt.Errorf("bench: scenario %s: %w", name, err)
			}
			continue
		}
		if name != Arrow && in == nil {
			opts.Log.Info("bench: rendering payloads", "readings", rows)
			in = renderPayloads(opts, perTurbine)
		}
		runs := []string{name}
		if name == Checkpoint {
			runs = []string{CheckpointOff, CheckpointOn}
		}
		for _, name := range runs {
			opts.Log.Info("bench: running scenario", "scenario", name, "readings", rows, "turbines", opts.Turbines, "repeat", opts.Repeat)
			res, err := runScenario(ctx, name, opts, perTurbine, in)
			if err != nil {
				return nil, fmt.Errorf("bench: scenario %s: %w", name, err)
			}
			opts.Log.Info("bench: scenario done", "scenario", name, "rows_per_s", int64(res.RowsPerSec), "wall_s", res.WallSeconds)
			r.Results = append(r.Results, res)
		}
	}
	r.finish()
	return r, nil
}

// prepare builds what one run of a scenario needs, outside the
// measurement, and returns the function to measure.
func prepare(name string, opts Options, perTurbine int64, in *payloads) (func(context.Context) (outputs, error), error) {
	switch name {
	case Arrow:
		p, err := buildPipeline(opts, perTurbine, nil, 0)
		if err != nil {
			return nil, err
		}
		return p.run, nil
	case EnOS, CheckpointOff:
		p, err := buildPipeline(opts, perTurbine, in, 0)
		if err != nil {
			return nil, err
		}
		return p.run, nil
	case CheckpointOn:
		p, err := buildPipeline(opts, perTurbine, in, opts.CheckpointInterval)
		if err != nil {
			return nil, err
		}
		return p.run, nil
	case Baseline:
		return newBaseline(in).run, nil
	}
	return nil, fmt.Errorf("unknown scenario %q", name)
}

// runScenario runs a scenario opts.Repeat times and returns the run of
// median wall time, with the spread of all runs.
func runScenario(ctx context.Context, name string, opts Options, perTurbine int64, in *payloads) (*Result, error) {
	prof, err := startProfile(opts, name)
	if err != nil {
		return nil, err
	}
	stopProfile := func() error {
		if prof == nil {
			return nil
		}
		pprof.StopCPUProfile()
		err := prof.Close()
		prof = nil
		return err
	}
	defer stopProfile()
	var runs []*Result
	for range opts.Repeat {
		run, err := prepare(name, opts, perTurbine, in)
		if err != nil {
			return nil, err
		}
		// Start from a collected heap so that peak RSS and allocations
		// belong to this run.
		runtime.GC()
		debug.FreeOSMemory()
		resetOK := resetPeakRSS()
		before := takeSample()
		out, err := run(ctx)
		after := takeSample()
		if err == nil {
			err = ctx.Err() // a cancelled run is not a measurement
		}
		if err != nil {
			return nil, err
		}
		res := newResult(name, before, after, out)
		res.PeakRSSReset = resetOK
		if in != nil {
			res.InputBytes = in.size()
		}
		runs = append(runs, res)
	}
	if err := stopProfile(); err != nil {
		return nil, err
	}
	res := median(runs)
	if opts.CPUProfile != "" {
		res.CPUProfile = profilePath(opts, name)
	}
	return res, nil
}

// median returns the run of median wall time, carrying the wall and CPU
// times of every run and the largest peak RSS.
func median(runs []*Result) *Result {
	sorted := slices.Clone(runs)
	slices.SortStableFunc(sorted, func(a, b *Result) int { return cmp.Compare(a.WallSeconds, b.WallSeconds) })
	m := sorted[(len(sorted)-1)/2]
	m.Runs = len(runs)
	for _, r := range runs {
		m.AllWallSeconds = append(m.AllWallSeconds, r.WallSeconds)
		m.AllCPUSeconds = append(m.AllCPUSeconds, r.CPUSeconds)
		m.PeakRSSBytes = max(m.PeakRSSBytes, r.PeakRSSBytes)
		m.PeakRSSReset = m.PeakRSSReset && r.PeakRSSReset
	}
	return m
}

// profilePath is the CPU profile file of a scenario.
func profilePath(opts Options, name string) string {
	if len(opts.Scenarios) == 1 && opts.Scenarios[0] == name {
		return opts.CPUProfile
	}
	ext := filepath.Ext(opts.CPUProfile)
	return strings.TrimSuffix(opts.CPUProfile, ext) + "." + name + ext
}

func startProfile(opts Options, name string) (*os.File, error) {
	if opts.CPUProfile == "" {
		return nil, nil
	}
	f, err := os.Create(profilePath(opts, name))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// outputs is what a scenario produced.
type outputs struct {
	rows         int64 // readings that entered the computation
	windows      int64 // window rows
	raised       int64
	cleared      int64
	late         int64
	decodeErrors int64
	checkpoint   *CheckpointStats // the checkpoints taken, when the pipeline took any
}
