package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer/ops"
	"github.com/sluice-edge/sluice/engine/eventtime"
	"github.com/sluice-edge/sluice/engine/spec"
	"github.com/sluice-edge/sluice/pipelines"
)

// runFlags are the flags shared by run and demo.
type runFlags struct {
	progress    string
	summary     time.Duration // period of the summary logged when no live line shows
	metricsAddr string
	metricsTok  string // file holding the metrics bearer token
	dataDir     string
	edge        string
	fromStart   bool
}

func (f *runFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.progress, "progress", "auto", "show rows and rows/s on stderr: auto (when stderr is a terminal), always or never")
	cmd.Flags().DurationVar(&f.summary, "summary-interval", time.Minute, "when stderr shows no live progress line, log rows and rows/s this often (0: never)")
	cmd.Flags().StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus metrics on this address at /metrics (\":9464\" binds 127.0.0.1; 0.0.0.0:9464 every interface)")
	cmd.Flags().StringVar(&f.metricsTok, "metrics-token-file", "", "file holding a bearer token the metrics endpoint requires (default: $"+metricsTokenEnv+", else none)")
	cmd.Flags().StringVar(&f.dataDir, "data-dir", "sluice-data", "directory of durable state (the buffers of cloud sinks)")
	cmd.Flags().StringVar(&f.edge, "edge", "", "identity of this engine in outgoing message IDs (default: the host name)")
	cmd.Flags().BoolVar(&f.fromStart, "from-start", false, "make resumable sources (file, sim) forget how far earlier runs read and read their input from its start; checkpointing pipelines also forget their checkpoints and ingest logs")
}

// check refuses flag values that are not what the flags take: a bad
// command line.
func (f *runFlags) check() error {
	if err := checkProgress(f.progress); err != nil {
		return err
	}
	if f.summary < 0 {
		return fmt.Errorf("--summary-interval: must not be negative, not %v", f.summary)
	}
	if f.metricsAddr != "" {
		if err := checkListenAddr(metricsListenAddr(f.metricsAddr)); err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
	}
	return nil
}

// checkProgress checks the value of a --progress flag.
func checkProgress(mode string) error {
	switch mode {
	case "auto", "always", "never":
		return nil
	}
	return fmt.Errorf("--progress: %q is not one of auto, always, never", mode)
}

func newRunCmd(g *globals) *cobra.Command {
	var (
		flags      runFlags
		configFile string
	)
	cmd := &cobra.Command{
		Use:   "run FILE|DIR... | run --config sluice.yaml [FILE|DIR...]",
		Short: "Run pipelines until their sources end or SIGINT/SIGTERM, or run as an edge agent",
		Long: `Run loads the pipeline files (a directory stands for its *.yaml and *.yml
files), checks them like validate, and runs every pipeline they define.

It returns when every finite source has ended and the pipelines have drained.
On SIGINT or SIGTERM it stops the sources, processes the batches in flight,
flushes open windows, closes the sinks and exits 0; a second signal exits at
once with code 130.

With --config sluice.yaml it runs as an edge agent (docs/coordination.md):
the release last applied (else the configuration's pipelines and FILEs), a
local API on 127.0.0.1 through which sluice import applies signed release
bundles and sluice status reads the state, and the bundles an offline import
staged. It runs until SIGINT or SIGTERM, whether or not its sources end; the
data directory and edge id come from the configuration. With a hub section it
also follows its desired release on the hub's NATS JetStream, applies the
bundle it names, and sends apply reports and heartbeats through durable
buffers (they wait there while the hub is unreachable).

Cloud sinks get a few seconds (forward.drain_timeout) to deliver what is
buffered; rows they could not deliver (the link is down) stay in their
buffers and are sent on the next run. run then prints one line per such sink
("12000 rows (1.1 MiB) left in the buffer of windfarm/cloud ...") and still
exits 0: the rows are safe on disk. Exit codes: 0 done, 1 a pipeline failed
or the configuration is invalid, 64 a bad command line, 130 a second signal
(2 only ever means the program crashed: Go exits 2 on a fatal error).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if configFile != "" {
				return nil
			}
			return cobra.MinimumNArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := g.logger()
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			if err := flags.check(); err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			if configFile != "" {
				for _, f := range []string{"data-dir", "edge"} {
					if cmd.Flags().Changed(f) {
						return &exitError{code: exitUsage, err: fmt.Errorf("--%s: with --config, set it in the configuration file", f)}
					}
				}
				return runAgent(cmd.Context(), g, log, configFile, args, flags)
			}
			defs, errs := pipelines.Load(args, os.LookupEnv)
			if len(errs) > 0 {
				return &exitError{code: exitFailed, err: errs}
			}
			return runDefs(cmd.Context(), g, log, defs, flags, nil)
		},
	}
	flags.register(cmd)
	cmd.Flags().StringVar(&configFile, "config", "", "edge configuration file (sluice.yaml): run as an edge agent that applies signed release bundles")
	return cmd
}

// driver runs beside the pipelines (for example a device simulator feeding
// them); it calls stop to end the run gracefully.
type driver func(ctx context.Context, ps []*pipelines.Pipeline, stop func()) error

// runDefs builds and runs defs; its callers have checked flags.
func runDefs(parent context.Context, g *globals, log *slog.Logger, defs []*pipelines.Def, flags runFlags, drive driver) error {
	defer g.openLogFile(log, flags.dataDir, defaultLogs())()
	sh := engine.NewShared()
	ps, errs := pipelines.BuildAll(defs, pipelines.Options{Log: log, DataDir: flags.dataDir, Edge: flags.edge, FromStart: flags.fromStart, Shared: sh})
	if len(errs) > 0 {
		return &exitError{code: exitFailed, err: errs}
	}
	if flags.metricsAddr != "" {
		token, err := metricsToken(flags.metricsTok)
		stop := func() {}
		if err == nil {
			stop, err = serveMetrics(flags.metricsAddr, token, pipelines.NewCollector(ps), log)
		}
		if err != nil {
			for _, p := range ps {
				p.Close()
			}
			return &exitError{code: exitFailed, err: err}
		}
		defer stop()
	}
	ctx, cancel := stopOnSignal(parent, log)
	defer cancel()
	// Health alerts about the run go through its alert sinks.
	stopHealth, _ := watchHealth(ctx, sh, func() []*pipelines.Pipeline { return ps }, defaultHealth(), log)
	defer stopHealth()

	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Def.Name
	}
	log.Info("running", "pipelines", names)
	outs := fileOutputs(ps)
	for _, o := range outs {
		log.Info("file sink writes", "pipeline", o.pipeline, "sink", o.sink, "path", o.path)
	}
	start := time.Now()
	stopProgress := startProgress(g, log, flags, ps, start)
	var driveErr error
	driveDone := make(chan struct{})
	if drive != nil {
		go func() {
			defer close(driveDone)
			driveErr = drive(ctx, ps, cancel)
			if driveErr != nil {
				cancel()
			}
		}()
	} else {
		close(driveDone)
	}
	err := pipelines.RunAll(ctx, ps)
	cancel()
	<-driveDone
	if err == nil && driveErr != nil && !errors.Is(driveErr, context.Canceled) {
		err = driveErr
	}
	stopProgress()
	elapsed := time.Since(start)
	rows := pipelines.SourceRows(ps)
	logSummary(log, ps)
	unusable := reportUnusable(log, ps)
	log.Info("finished", "rows", rows, "elapsed", elapsed.Round(time.Millisecond).String(),
		"rows_per_s", int64(float64(rows)/max(elapsed.Seconds(), 1e-9)))
	for _, o := range outs {
		log.Info("file sink wrote", "pipeline", o.pipeline, "sink", o.sink, "rows", o.counters.Counter("rows_in").Load(), "path", o.path)
	}
	// Rows a cloud sink could not deliver stay in its buffer: say so, so
	// that a finished run with a dead link is not mistaken for a complete
	// one. The exit code stays 0: the rows are safe on disk.
	for _, b := range pipelines.Backlogs(ps) {
		fmt.Fprintf(g.stderr, "%d rows (%s) left in the buffer of %s/%s (%s); they will be sent on the next run\n",
			b.Rows, ops.Bytes(b.Bytes), b.Pipeline, b.Sink, b.Dir)
	}
	if err != nil {
		return &exitError{code: exitFailed, err: err}
	}
	if unusable != nil {
		return &exitError{code: exitFailed, err: unusable}
	}
	return nil
}

// reportUnusable tells, at the end of a run, about the sources that
// rejected input: counters named bad_*, such as bad_lines (input the source
// could not read), and the rows the pipeline's event_time guard refused
// (eventtime.Counters). A source none of whose rows went on into the pipeline
// while some input was rejected is an ERROR and makes the run fail (exit 1):
// the run consumed its input and did nothing with it, which a script must
// not take for success. A source that rejected only part of its input is a
// WARN: the run did its work on the rest.
func reportUnusable(log *slog.Logger, ps []*pipelines.Pipeline) error {
	var failed []string
	for _, p := range ps {
		for _, b := range p.Components {
			if b.Def.Kind != spec.KindSource {
				continue
			}
			snap := b.Counters.Snapshot()
			var bad, refused int64
			attrs := []any{"pipeline", p.Def.Name, "source", b.Def.Name, "type", b.Def.Type}
			for _, name := range b.Counters.Names() {
				if snap[name] <= 0 {
					continue
				}
				switch {
				case strings.HasPrefix(name, "bad_"):
					bad += snap[name]
				case slices.Contains(eventtime.Counters, name):
					refused += snap[name]
				default:
					continue
				}
				attrs = append(attrs, name, snap[name])
			}
			if bad == 0 && refused == 0 {
				continue
			}
			// rows_out counts what the source produced, the rows the guard
			// refused included.
			rows := b.Counters.Counter("rows_out").Load()
			passed := max(0, rows-refused)
			attrs = append(attrs, "rows_out", rows)
			if refused > 0 {
				attrs = append(attrs, "rows_passed", passed)
			}
			if passed == 0 {
				log.Error("every input the source read was rejected: nothing was processed (the log above says why; for example numbers written as strings, or event times out of the event_time bounds)", attrs...)
				failed = append(failed, fmt.Sprintf("%s/%s", p.Def.Name, b.Def.Name))
				continue
			}
			log.Warn("the source rejected part of its input", attrs...)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return fmt.Errorf("every input of %s was rejected", strings.Join(failed, ", "))
}

func logSummary(log *slog.Logger, ps []*pipelines.Pipeline) {
	for _, p := range ps {
		for _, b := range p.Components {
			snap := b.Counters.Snapshot()
			attrs := []any{"pipeline", p.Def.Name, "component", b.Def.Name, "type", b.Def.Type}
			for _, name := range b.Counters.Names() {
				attrs = append(attrs, name, snap[name])
			}
			log.Info("component", attrs...)
		}
	}
}

// startProgress shows rows and rows/s on a live line of stderr once a
// second when stderr is a terminal (--progress auto) or always; when it
// shows none, it logs them every --summary-interval instead, so that a run
// under a service manager is not silent. It returns a function that stops
// it.
func startProgress(g *globals, log *slog.Logger, flags runFlags, ps []*pipelines.Pipeline, start time.Time) func() {
	live := showLive(g.stderr, flags.progress)
	every := time.Second
	if !live {
		if flags.summary <= 0 {
			return func() {}
		}
		every = flags.summary
	}
	line := g.errOut()
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(every)
		defer t.Stop()
		last, lastT := int64(0), start
		for {
			select {
			case <-done:
				if live {
					line.clear()
				}
				return
			case now := <-t.C:
				rows := pipelines.SourceRows(ps)
				rate := float64(rows-last) / now.Sub(lastT).Seconds()
				last, lastT = rows, now
				if live {
					line.show(fmt.Sprintf("rows %d  rows/s %.0f  elapsed %s", rows, rate, now.Sub(start).Round(time.Second)))
					continue
				}
				log.Info("progress", "rows", rows, "rows_per_s", int64(rate), "elapsed", now.Sub(start).Round(time.Second).String())
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// fileOutput is a file a file sink writes.
type fileOutput struct {
	pipeline, sink string
	path           string // absolute
	counters       *engine.Counters
}

// fileOutputs lists the files the file sinks of ps write, with absolute
// paths: a relative path is relative to its pipeline file, which a user
// running the file from elsewhere would not guess.
func fileOutputs(ps []*pipelines.Pipeline) []fileOutput {
	var out []fileOutput
	for _, p := range ps {
		for _, b := range p.Components {
			if b.Def.Kind != spec.KindSink || b.Def.Type != "file" || b.Def.Config == nil {
				continue
			}
			path := b.Def.Config.String("path")
			if !filepath.IsAbs(path) {
				path = filepath.Join(p.Def.Dir, path)
			}
			if abs, err := filepath.Abs(path); err == nil {
				path = abs
			}
			out = append(out, fileOutput{pipeline: p.Def.Name, sink: b.Def.Name, path: path, counters: b.Counters})
		}
	}
	return out
}

// stopOnSignal returns a context cancelled on the first SIGINT or SIGTERM
// (a graceful stop: the caller drains) and exits with code 130 on a second
// one, until the returned function is called (once the run is over).
func stopOnSignal(parent context.Context, log *slog.Logger) (context.Context, func()) {
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithCancel(parent)
	done := make(chan struct{})
	var once sync.Once
	stop := func() {
		cancel()
		once.Do(func() { close(done) })
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		defer signal.Stop(sigs)
		select {
		case s := <-sigs:
			log.Info("stopping: draining in-flight batches and open windows (signal again to exit now)", "signal", s.String())
			cancel()
		case <-done:
			return
		}
		select {
		case <-sigs:
			log.Error("second signal: exiting without draining")
			os.Exit(130)
		case <-done:
		}
	}()
	return ctx, stop
}
