package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-edge/sluice/connectors/devsim"
	"github.com/sluice-edge/sluice/connectors/mqtt"
	"github.com/sluice-edge/sluice/connectors/nats"
	"github.com/sluice-edge/sluice/engine/redact"
	"github.com/sluice-edge/sluice/pipelines"
	"github.com/sluice-edge/sluice/pipelines/examples"
)

func newDemoCmd(g *globals) *cobra.Command {
	var (
		flags  runFlags
		direct bool
		cloud  bool
		hub    bool
		hopts  = hubDemoOptions{Wait: 30 * time.Second, Rate: 100}
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the embedded wind-farm example (simulated turbines -> MQTT -> window stats -> alerts), or with --hub the edge-cloud loop",
		Long: `Demo runs the wind-farm example built into the binary, with nothing to
install: an MQTT broker starts inside the process, simulated turbines post
EnOS measure points to it, and the pipeline decodes them, computes one-minute
statistics per turbine and raises alerts. Alerts are printed as JSON lines on
stdout, the statistics written to windfarm-stats.jsonl.

Environment variables tune it: SIM_TURBINES (100), SIM_ROWS readings per
turbine (1800 = 30 minutes of event time), SIM_RATE payloads per second of
wall-clock time (0 = as fast as possible), STATS_FILE.

With --direct it runs the same computation (pipelines/examples/windfarm.yaml:
the same window and alert steps, a farm simulated with the same settings) fed
by the simulator directly as Arrow batches, without MQTT; the statistics go
to windfarm-sim-stats.jsonl.

With --cloud it runs pipelines/examples/windfarm-cloud.yaml: the same farm
and statistics, sent through a nats cloud sink to a NATS JetStream server
started in the process (127.0.0.1, a free port, a random token, its store
in a temporary directory). The sink's durable buffer stays in the data
directory (sluice-data/windfarm-cloud/cloud), for sluice buffer status,
inspect, export and the other Operations commands.

With --hub it shows the edge-cloud coordination loop on this machine,
with nothing but a PostgreSQL server (--postgres, default
$SLUICE_HUB_POSTGRES or postgres://postgres@127.0.0.1:5432/test): a NATS
JetStream server starts in the process (127.0.0.1, a free port, a random
token, its store in a temporary directory), a hub on it and PostgreSQL
(schema --schema, dropped and created again at the start), and two edge
agents whose simulated turbines send data and alerts to the hub through
buffered nats sinks. The demo makes a signing key, builds a release that
adds an alert rule, releases it to both edges and shows the alerts they
raise in the hub; then it cuts one edge's link, releases a second version,
restores the link and shows that edge catch up: it applies the newest
release and its backlog drains. Each step is printed with the hub's facts;
it prints the sluice hub alerts command to try while it runs, and ends by
itself in well under a minute. Its log goes to stderr at level error unless
--log-level says otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if hub && !cmd.Flag("log-level").Changed {
				// The narrative is on stdout; the hub's and the edges' logs
				// would drown it.
				g.logLevel = "error"
			}
			log, err := g.logger()
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			for _, name := range []string{"postgres", "schema", "outage"} {
				if !hub && cmd.Flag(name).Changed {
					return &exitError{code: exitUsage, err: fmt.Errorf("--%s goes with --hub", name)}
				}
			}
			if hub {
				for _, name := range []string{"data-dir", "edge", "from-start", "metrics-addr", "metrics-token-file", "progress", "summary-interval"} {
					if cmd.Flag(name).Changed {
						return &exitError{code: exitUsage, err: fmt.Errorf("--%s has no effect with --hub (each edge of the demo keeps its state in a temporary directory)", name)}
					}
				}
				if hopts.Postgres == "" {
					hopts.Postgres = os.Getenv(hubPostgresEnv)
				}
				if hopts.Postgres == "" {
					hopts.Postgres = defaultDemoPostgres
				}
				if direct || cloud {
					return &exitError{code: exitUsage, err: fmt.Errorf("--hub excludes --direct and --cloud")}
				}
				if hopts.Outage <= 0 {
					return &exitError{code: exitUsage, err: fmt.Errorf("--outage must be positive")}
				}
				if !demoSchema.MatchString(hopts.Schema) {
					// The demo drops its schema: never one of anything else.
					return &exitError{code: exitUsage, err: fmt.Errorf("--schema %q: want %s or %s_ and lower-case letters, digits and underscores (at most 63 in all)",
						hopts.Schema, defaultDemoSchema, defaultDemoSchema)}
				}
				redactDemoPassword(hopts.Postgres)
				ctx, cancel := stopOnSignal(cmd.Context(), log)
				defer cancel()
				if err := runHubDemo(ctx, g, log, hopts); err != nil {
					return &exitError{code: exitFailed, err: err}
				}
				return nil
			}
			if err := flags.check(); err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			if cloud {
				if direct {
					return &exitError{code: exitUsage, err: fmt.Errorf("--cloud and --direct exclude each other")}
				}
				return runCloudDemo(cmd.Context(), g, log, flags)
			}
			if direct {
				defs, errs := pipelines.LoadFS(examples.FS, examples.WindFarm, ".", os.LookupEnv)
				if len(errs) > 0 {
					return &exitError{code: 1, err: errs}
				}
				return runDefs(cmd.Context(), g, log, defs, flags, nil)
			}
			broker, err := mqtt.StartBroker(mqtt.BrokerOptions{Listen: "127.0.0.1:0"})
			if err != nil {
				return &exitError{code: 1, err: fmt.Errorf("demo: embedded broker: %w", err)}
			}
			defer broker.Close()
			log.Info("embedded MQTT broker", "url", broker.URL())
			env := func(k string) (string, bool) {
				if k == "MQTT_URL" {
					return broker.URL(), true
				}
				return os.LookupEnv(k)
			}
			defs, errs := pipelines.LoadFS(examples.FS, examples.WindFarmMQTT, ".", env)
			if len(errs) > 0 {
				return &exitError{code: 1, err: errs}
			}
			sim := devsim.Config{
				URLs:     []string{broker.URL()},
				QoS:      1,
				Devices:  envInt("SIM_TURBINES", 100),
				Interval: time.Second,
				Seed:     42,
				Faults:   1,
				// One message in flight keeps the devices in event-time order.
				Inflight: 1,
				Rate:     float64(envInt("SIM_RATE", 0)),
				Log:      log,
			}
			rows := envInt("SIM_ROWS", 1800)
			sim.Payloads = int64(sim.Devices) * int64(rows)
			// The readings are the last rows seconds up to now, so that
			// they pass the pipeline's event_time bounds, and the run
			// publishes them as fast as it can.
			sim.Start = time.Now().Truncate(time.Minute).Add(-time.Duration(rows) * sim.Interval)
			return runDefs(cmd.Context(), g, log, defs, flags, simulate(sim, broker, log))
		},
	}
	flags.register(cmd)
	cmd.Flags().BoolVar(&direct, "direct", false, "feed the pipeline from the simulator directly (no MQTT)")
	cmd.Flags().BoolVar(&cloud, "cloud", false, "send the statistics through a nats cloud sink (durable buffer in --data-dir) to a NATS JetStream server started in the process")
	cmd.Flags().BoolVar(&hub, "hub", false, "show the edge-cloud loop: an embedded NATS JetStream, a hub on PostgreSQL and two edges")
	cmd.Flags().StringVar(&hopts.Postgres, "postgres", "", "with --hub: PostgreSQL DSN of the hub's database (default $SLUICE_HUB_POSTGRES, else "+defaultDemoPostgres+")")
	cmd.Flags().StringVar(&hopts.Schema, "schema", defaultDemoSchema, "with --hub: PostgreSQL schema of the demo (sluice_demo or sluice_demo_...), dropped and created again at the start")
	cmd.Flags().DurationVar(&hopts.Outage, "outage", 3*time.Second, "with --hub: how long the cut edge stays cut")
	return cmd
}

// runCloudDemo runs the wind farm with a cloud sink against a NATS
// JetStream server started in the process, then names the sink's buffer
// and the commands that work on it.
func runCloudDemo(ctx context.Context, g *globals, log *slog.Logger, flags runFlags) error {
	token := randomToken()
	redact.Register(token)
	srv, err := nats.StartServer(nats.ServerOptions{Listen: "127.0.0.1:0", Token: token})
	if err != nil {
		return &exitError{code: exitFailed, err: fmt.Errorf("demo: embedded NATS JetStream: %w", err)}
	}
	defer srv.Close()
	log.Info("embedded NATS JetStream", "url", srv.URL(), "store", srv.StoreDir())
	env := func(k string) (string, bool) {
		switch k {
		case "NATS_URL":
			return srv.URL(), true
		case "NATS_TOKEN":
			return token, true
		}
		return os.LookupEnv(k)
	}
	defs, errs := pipelines.LoadFS(examples.FS, examples.WindFarmCloud, ".", env)
	if len(errs) > 0 {
		return &exitError{code: exitFailed, err: errs}
	}
	if err := runDefs(ctx, g, log, defs, flags, nil); err != nil {
		return err
	}
	dir := filepath.Join(flags.dataDir, defs[0].Name, "cloud")
	fmt.Fprintf(g.stderr, "the statistics went to NATS JetStream through the buffer %s; try:\n  sluice buffer status %s\n  sluice buffer inspect %s\n", dir, dir, dir)
	return nil
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v >= 0 {
		return v
	}
	return def
}

// simulate publishes the simulated farm once the pipeline listens, waits
// until the pipeline has read every payload, then stops the run so that it
// drains (open windows are flushed).
func simulate(cfg devsim.Config, broker *mqtt.Broker, log *slog.Logger) driver {
	return func(ctx context.Context, ps []*pipelines.Pipeline, stop func()) error {
		topic := fmt.Sprintf("/sys/turbine/T%04d/thing/measurepoint/post", 1)
		if err := waitUntil(ctx, 30*time.Second, func() bool { return broker.Subscribed(topic) }); err != nil {
			return fmt.Errorf("demo: the pipeline did not subscribe: %w", err)
		}
		sim, err := devsim.New(cfg)
		if err != nil {
			return err
		}
		st, err := sim.Run(ctx)
		if err != nil {
			return fmt.Errorf("demo: simulator: %w", err)
		}
		log.Info("simulated devices done", "payloads", st.Sent, "acked", st.Acked, "payloads_per_s", int64(st.SentRate()))
		if err := waitUntil(ctx, time.Minute, func() bool { return pipelines.SourceRows(ps) >= st.Sent }); err != nil {
			return fmt.Errorf("demo: the pipeline read %d of %d payloads: %w", pipelines.SourceRows(ps), st.Sent, err)
		}
		stop()
		return nil
	}
}

// waitUntil polls cond until it holds, ctx ends or the timeout passes.
func waitUntil(ctx context.Context, timeout time.Duration, cond func() bool) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	deadline := time.After(timeout)
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("timed out after %s", timeout)
		case <-t.C:
		}
	}
	return nil
}
