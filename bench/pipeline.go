package bench

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/spec"
	// The built-in components, among them those of the reference pipeline.
	"github.com/sluice-edge/sluice/pipelines"
)

// ReferenceYAML is the pipeline of the reference scenario. Its variables
// (BENCH_TURBINES, BENCH_ROWS_PER_TURBINE, BENCH_SEED, BENCH_FAULTS,
// BENCH_BATCH) are set by the harness.
//
//go:embed reference.yaml
var ReferenceYAML []byte

// Names of the reference pipeline's components.
const (
	sourceName = "turbines"
	statsName  = "stats"
	alertsName = "alerts"
)

// referenceDef parses the reference pipeline for the given options; with
// a checkpoint interval, the pipeline takes checkpoints (see Checkpoint).
func referenceDef(opts Options, perTurbine int64, checkpoint time.Duration) (*pipelines.Def, error) {
	env := map[string]string{
		"BENCH_TURBINES":         strconv.Itoa(opts.Turbines),
		"BENCH_ROWS_PER_TURBINE": strconv.FormatInt(perTurbine, 10),
		"BENCH_SEED":             strconv.FormatUint(opts.Seed, 10),
		"BENCH_FAULTS":           strconv.FormatFloat(opts.Faults, 'g', -1, 64),
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	yaml := ReferenceYAML
	if checkpoint > 0 {
		yaml = append(append([]byte(nil), yaml...), checkpointYAML(checkpoint)...)
	}
	defs, errs := pipelines.Parse("bench/reference.yaml", yaml, lookup)
	if len(errs) > 0 {
		return nil, errs
	}
	if len(defs) != 1 {
		return nil, fmt.Errorf("reference pipeline: %d pipelines, want 1", len(defs))
	}
	return defs[0], nil
}

// benchPipeline is a built reference pipeline, ready to run once.
type benchPipeline struct {
	p       *pipelines.Pipeline
	src     *payloadSource // nil when the sim source runs
	dataDir string         // removed after the run
	log     *slog.Logger
	probe   *ckptProbe // set when the pipeline takes checkpoints
}

// buildPipeline builds the reference pipeline; with in, its source is
// replaced by a source decoding those payloads; with a checkpoint interval,
// it takes checkpoints.
func buildPipeline(opts Options, perTurbine int64, in *payloads, checkpoint time.Duration) (*benchPipeline, error) {
	def, err := referenceDef(opts, perTurbine, checkpoint)
	if err != nil {
		return nil, err
	}
	// Every run measures the whole input: a data directory of its own
	// (removed after the run) and sources that never resume.
	dataDir, err := os.MkdirTemp("", "sluice-bench-")
	if err != nil {
		return nil, err
	}
	bp := &benchPipeline{dataDir: dataDir, log: opts.Log}
	popts := pipelines.Options{Log: opts.Log, DataDir: dataDir, FromStart: true}
	if in != nil {
		bp.src = &payloadSource{schema: newFarm(opts).Schema(), in: in, batch: def.Batch.Normalize().Size, mem: popts.Mem}
		popts.Sources = map[string]engine.Source{sourceName: bp.src}
	}
	p, errs := pipelines.Build(def, popts)
	if len(errs) > 0 {
		_ = os.RemoveAll(dataDir)
		return nil, errs
	}
	bp.p = p
	if checkpoint > 0 {
		if err := bp.instrument(checkpoint); err != nil {
			_ = os.RemoveAll(dataDir)
			return nil, err
		}
	}
	return bp, nil
}

// component returns the built component of that name.
func (bp *benchPipeline) component(name string) *pipelines.Built {
	for _, b := range bp.p.Components {
		if b.Def.Name == name {
			return b
		}
	}
	return nil
}

func (bp *benchPipeline) run(ctx context.Context) (outputs, error) {
	defer os.RemoveAll(bp.dataDir)
	if err := pipelines.RunAll(ctx, []*pipelines.Pipeline{bp.p}); err != nil {
		return outputs{}, err
	}
	var out outputs
	out.rows = pipelines.SourceRows([]*pipelines.Pipeline{bp.p})
	if bp.src != nil {
		out.decodeErrors = bp.src.errs.Load()
	}
	stats, alerts := bp.component(statsName), bp.component(alertsName)
	if stats == nil || alerts == nil || stats.Def.Kind != spec.KindStep {
		return out, fmt.Errorf("reference pipeline lacks the %q and %q steps", statsName, alertsName)
	}
	out.windows = stats.Counters.Counter("windows_emitted").Load()
	out.late = stats.Counters.Counter("late_rows").Load() + stats.Counters.Counter("null_time_rows").Load()
	out.raised = alerts.Counters.Counter("raised").Load()
	out.cleared = alerts.Counters.Counter("cleared").Load()
	if bp.probe != nil {
		out.checkpoint = bp.probe.stats()
		if src := bp.component(sourceName); src != nil {
			out.checkpoint.IngestRowsLogged = src.Counters.Counter("ingest_rows_logged").Load()
		}
	}
	return out, nil
}
