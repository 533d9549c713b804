package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/connectors/devsim"
)

func newSimCmd(g *globals) *cobra.Command {
	var (
		cfg       devsim.Config
		broker    string
		replay    devsim.Replay
		asJSON    bool
		keyColumn string
		connWait  time.Duration
		progress  string
	)
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Simulate EnOS devices over MQTT (wind farm or CSV replay); also a load generator",
		Long: `Sim publishes EnOS measure-point posts for a simulated wind farm to an MQTT
broker (/sys/{productKey}/{deviceKey}/thing/measurepoint/post), or replays
a CSV file as devices. The devices can answer downlink commands (--answer).
At the end it reports payloads sent and acknowledged and their rates, so it
doubles as a load generator for benchmarks.

Examples:
  sluice sim --devices 1000 --rate 20000 --duration 1m
  sluice sim --replay scada.csv --key-column turbine --time-column ts --time-layout "02 01 2006 15:04"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			cfg.Log = log
			cfg.URLs = []string{broker}
			if replay.Path != "" {
				replay.KeyColumn = keyColumn
				cfg.Replay = &replay
			}
			if err := checkSimFlags(cfg, keyColumn); err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			if connWait <= 0 {
				return &exitError{code: exitUsage, err: fmt.Errorf("--connect-timeout: must be positive, not %v", connWait)}
			}
			if err := checkProgress(progress); err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			// The flags are right: what still fails (an unreadable --replay
			// file) is a failure, not a bad command line.
			sim, err := devsim.New(cfg)
			if err != nil {
				return &exitError{code: exitFailed, err: err}
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// A wrong address or port fails here, clearly, instead of
			// retrying in silence (and exiting 0 at --duration).
			if err := sim.Probe(ctx, connWait); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return &exitError{code: exitFailed, err: fmt.Errorf("sim: %w", err)}
			}
			stopStats := simStats(g, progress, sim)
			if cfg.Answer {
				stopAnswer, err := sim.Answer(ctx)
				if err != nil {
					return &exitError{code: 1, err: err}
				}
				defer stopAnswer()
			}
			st, err := sim.Run(ctx)
			stopStats()
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				_ = enc.Encode(map[string]any{
					"sent": st.Sent, "acked": st.Acked, "points": st.Points, "bad": st.Bad, "errors": st.Errors,
					"elapsed_s": st.Elapsed.Seconds(), "sent_per_s": st.SentRate(), "acked_per_s": st.AckedRate(), "points_per_s": st.PointRate(),
				})
			} else {
				fmt.Fprintf(g.stdout, "sent %d payloads (%d points) in %s: %.0f payloads/s, %.0f points/s; acked %d (%.0f/s); bad %d; errors %d\n",
					st.Sent, st.Points, st.Elapsed.Round(time.Millisecond), st.SentRate(), st.PointRate(), st.Acked, st.AckedRate(), st.Bad, st.Errors)
			}
			if err != nil && ctx.Err() == nil {
				return &exitError{code: 1, err: err}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&broker, "broker", "tcp://127.0.0.1:1883", "MQTT broker URL (tcp:// or tls://)")
	f.StringVar(&cfg.Username, "username", "", "MQTT user name")
	f.StringVar(&cfg.Password, "password", "", "MQTT password")
	f.IntVar(&cfg.QoS, "qos", 0, "QoS of the posts: 0 or 1")
	f.StringVar(&cfg.ProductKey, "product-key", "turbine", "product key of every device")
	f.IntVar(&cfg.Devices, "devices", 100, "number of simulated turbines")
	f.IntVar(&cfg.Points, "points", 10, "measure points per payload")
	f.Float64Var(&cfg.Rate, "rate", 1000, "payloads per second, all devices together (0: as fast as possible)")
	f.Int64Var(&cfg.Payloads, "payloads", 0, "stop after this many payloads (0: no limit)")
	f.DurationVar(&cfg.Duration, "duration", 0, "stop after this long (0: until --payloads or Ctrl-C)")
	f.DurationVar(&cfg.Interval, "interval", time.Second, "event-time step between two readings of a device")
	f.Uint64Var(&cfg.Seed, "seed", 1, "selects the farm; the same seed gives the same readings")
	f.Float64Var(&cfg.Faults, "faults", 0.5, "fault episodes per device per hour of event time")
	f.Float64Var(&cfg.Resume, "resume", 0, "fraction of payloads posted as offline history (measurepoint/resume)")
	f.Float64Var(&cfg.Bad, "bad", 0, "fraction of payloads that are deliberately bad input")
	f.IntVar(&cfg.Connections, "connections", 1, "connections the posts are spread over")
	f.BoolVar(&cfg.Answer, "answer", false, "devices answer downlink commands with replies")
	f.StringVar(&cfg.CommandTopic, "command-topic", "", "with --answer: devices also answer set-points on this generic JSON command topic template (e.g. plant/{asset}/set/{point})")
	f.StringVar(&cfg.ReplyTopic, "reply-topic", "", "with --command-topic: the reply topic template (default: the command topic + /reply)")
	f.StringVar(&replay.Path, "replay", "", "replay this CSV file as devices instead of simulating a farm")
	f.StringVar(&keyColumn, "key-column", "", "with --replay: the column holding the device key")
	f.StringVar(&replay.DeviceKey, "device-key", "", "with --replay: one device key for every row")
	f.StringVar(&replay.TimeColumn, "time-column", "time", "with --replay: the time column")
	f.StringVar(&replay.TimeLayout, "time-layout", "unix_ms", "with --replay: how the time is written (unix_ms, unix_s, rfc3339 or a Go layout)")
	f.BoolVar(&replay.Loop, "loop", false, "with --replay: start over at the end of the file")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.DurationVar(&connWait, "connect-timeout", 10*time.Second, "fail when the broker does not accept a connection within this long")
	f.StringVar(&progress, "progress", "auto", "show payloads sent and acknowledged per second on stderr: auto (when a terminal), always or never")
	return cmd
}

// simStats shows, once a second on a live line of stderr (see
// newProgressBar for the modes), what the simulator sent and had
// acknowledged in the last second and in all; it returns a function that
// stops it.
func simStats(g *globals, mode string, sim *devsim.Sim) func() {
	if !showLive(g.stderr, mode) {
		return func() {}
	}
	line := g.errOut()
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var last devsim.Stats
		for {
			select {
			case <-done:
				line.clear()
				return
			case <-t.C:
				st := sim.Stats()
				line.show(fmt.Sprintf("sent %d/s  acked %d/s  points %d/s  (in all: sent %d, acked %d, errors %d)",
					st.Sent-last.Sent, st.Acked-last.Acked, st.Points-last.Points, st.Sent, st.Acked, st.Errors))
				last = st
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// maxSimDevices bounds --devices: each device holds its own state.
const maxSimDevices = 1_000_000

// checkSimFlags refuses the flag values of sim that are out of their
// range (rather than letting them fall back to defaults).
func checkSimFlags(cfg devsim.Config, keyColumn string) error {
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case cfg.Devices < 1 || cfg.Devices > maxSimDevices:
		return fmt.Errorf("--devices: must be between 1 and %d, not %d", maxSimDevices, cfg.Devices)
	case cfg.Points < 1 || cfg.Points > 64:
		return fmt.Errorf("--points: must be between 1 and 64, not %d", cfg.Points)
	case cfg.Connections < 1:
		return fmt.Errorf("--connections: must be at least 1, not %d", cfg.Connections)
	case cfg.QoS != 0 && cfg.QoS != 1:
		return fmt.Errorf("--qos: must be 0 or 1, not %d", cfg.QoS)
	case cfg.Rate < 0 || !finite(cfg.Rate):
		return fmt.Errorf("--rate: must be 0 or more, not %v", cfg.Rate)
	case cfg.Payloads < 0:
		return fmt.Errorf("--payloads: must not be negative, not %d", cfg.Payloads)
	case cfg.Duration < 0:
		return fmt.Errorf("--duration: must not be negative, not %v", cfg.Duration)
	case cfg.Interval < time.Millisecond:
		return fmt.Errorf("--interval: must be at least 1ms, not %v", cfg.Interval)
	case cfg.Faults < 0 || !finite(cfg.Faults):
		return fmt.Errorf("--faults: must be 0 or more, not %v", cfg.Faults)
	case !(cfg.Resume >= 0 && cfg.Resume <= 1): // NaN fails too
		return fmt.Errorf("--resume: must be a fraction between 0 and 1, not %v", cfg.Resume)
	case !(cfg.Bad >= 0 && cfg.Bad <= 1):
		return fmt.Errorf("--bad: must be a fraction between 0 and 1, not %v", cfg.Bad)
	}
	if r := cfg.Replay; r != nil && (keyColumn == "") == (r.DeviceKey == "") {
		return errors.New("--replay: set one of --key-column and --device-key")
	}
	if r := cfg.Replay; r != nil {
		if _, err := codec.ParseTimeFormat(r.TimeLayout, r.TimeZone); err != nil {
			return fmt.Errorf("--time-layout: %w", err)
		}
	}
	return nil
}
