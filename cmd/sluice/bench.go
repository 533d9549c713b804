package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-edge/sluice/bench"
)

func newBenchCmd(g *globals) *cobra.Command {
	var (
		opts     bench.Options
		jsonPath string
		oneCore  bool
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure throughput on the reference scenario (JSON and a table)",
		Long: `Bench runs the reference scenario in process: a wind farm of simulated
turbines (10 points each) -> one-minute tumbling statistics per turbine
(count, avg, min, max, stddev, p95) -> 3 alert rules -> a discarding sink.

Scenarios:
  arrow     the simulator produces Arrow batches directly
  enos      in-memory EnOS JSON payloads go through the EnOS decoder
  baseline  the same computation per element on plain go-streams flows
  checkpoint
            enos twice: without checkpoints, and with checkpoint {interval: 5s,
            ingest_fsync: always} (ingest log, windows and alerts checkpointed);
            throughput ratio, checkpoint count, pause and size (not in the
            default set)
  buffer    spill rate to the durable buffer, Parquet vs JSON bytes, drain to
            an embedded NATS JetStream (not in the default set)
  forward   backlog drain through the forwarder and live latency meanwhile
            (not in the default set)
  infer     the infer step on batches of 1,024 rows with an MLP 10->32->16->1
            (run by the step's dense-chain loop, and by gonnx), 100 trees of
            depth 6 and a GRU over each asset's last 10 rows (sequence), and
            each model called once per batch and once per row in the same run:
            rows/s per core, the ratio, allocations per row (--rows rows per
            measurement, default 262,144; not in the default set)
  mqtt      MQTT ingest: the engine (an MQTT source in front of the reference
            pipeline), the broker (embedded, or --broker URL) and a plain
            counting subscriber each run in a process of their own while
            devices publish at each --mqtt-rates rate for --mqtt-seconds, at
            each --mqtt-qos; per rate: payloads published and received, CPU
            per payload of every process, the engine's CPU over the plain
            subscriber's, RSS, and the lossless ceiling (--turbines devices;
            not in the default set)

It prints a table (rows/s, point values/s, ns per point, allocations per
point, CPU time, peak RSS) and the ratios to the baseline; --json writes the
same as JSON. The scenarios must agree on the window rows and alerts they
produce, else bench exits 1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			opts.Log = log
			if oneCore {
				opts.MaxProcs = 1
			}
			r, err := bench.Run(cmd.Context(), opts)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			if err := r.WriteTable(g.stdout); err != nil {
				return err
			}
			if jsonPath != "" {
				f, err := os.Create(jsonPath)
				if err != nil {
					return &exitError{code: 1, err: err}
				}
				if err := r.WriteJSON(f); err != nil {
					f.Close()
					return &exitError{code: 1, err: err}
				}
				if err := f.Close(); err != nil {
					return &exitError{code: 1, err: err}
				}
				fmt.Fprintf(g.stderr, "wrote %s\n", jsonPath)
			} else {
				fmt.Fprintln(g.stdout)
				if err := r.WriteJSON(g.stdout); err != nil {
					return err
				}
			}
			if err := r.Check(); err != nil {
				return &exitError{code: 1, err: err}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Turbines, "turbines", bench.DefaultTurbines, "simulated turbines (10 points each)")
	f.DurationVar(&opts.Duration, "duration", 10*time.Minute, "event time covered (one reading per turbine per second)")
	f.Int64Var(&opts.Rows, "rows", 0, "readings in all (overrides --duration)")
	f.StringSliceVar(&opts.Scenarios, "scenario", nil, "scenarios to run: arrow, enos, baseline (the default set), checkpoint (enos without and with checkpoints), buffer (spill, Parquet vs JSON, drain to JetStream), forward (forwarder drain and live latency during backfill), infer (infer step, batch vs per-row model calls), mqtt (MQTT ingest: engine, broker and plain subscriber CPU per payload at paced rates)")
	f.StringVar(&opts.MQTT.Broker, "broker", "", "mqtt scenario: an external broker's URL (default: the embedded broker, in a process of its own)")
	f.Float64SliceVar(&opts.MQTT.Rates, "mqtt-rates", bench.DefaultMQTTRates, "mqtt scenario: publishing rates, payloads/s")
	f.IntSliceVar(&opts.MQTT.QoS, "mqtt-qos", bench.DefaultMQTTQoS, "mqtt scenario: QoS levels")
	f.DurationVar(&opts.MQTT.Seconds, "mqtt-seconds", bench.DefaultMQTTSeconds, "mqtt scenario: how long each rate is published")
	f.IntVar(&opts.MQTT.Connections, "mqtt-connections", 2, "mqtt scenario: publishing connections")
	f.DurationVar(&opts.CheckpointInterval, "checkpoint-interval", bench.DefaultCheckpointInterval, "checkpoint interval of the checkpoint scenario")
	f.IntVar(&opts.Repeat, "repeat", 1, "runs per scenario; the run of median wall time is reported")
	f.BoolVar(&oneCore, "1core", false, "run with GOMAXPROCS=1 (per-core figures)")
	f.StringVar(&opts.CPUProfile, "cpuprofile", "", "write a CPU profile per scenario to this path")
	f.StringVar(&jsonPath, "json", "", "write the JSON report to this file instead of stdout")
	return cmd
}
