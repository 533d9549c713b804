package pipelines_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/health"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
	"github.com/sluice-edge/sluice/pipelines"
)

// runHealthPipeline builds the pipeline file body with the data directory
// data and runs it until the test ends.
func runHealthPipeline(t *testing.T, body, data string, sh *engine.Shared) []*pipelines.Pipeline {
	t.Helper()
	file := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	defs, errs := pipelines.Load([]string{file}, os.LookupEnv)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	ps, errs := pipelines.BuildAll(defs, pipelines.Options{DataDir: data, Edge: "e1", Shared: sh, Log: slog.New(slog.DiscardHandler)})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pipelines.RunAll(ctx, ps) }()
	t.Cleanup(func() { cancel(); <-done })
	return ps
}

// checkpointWatcher waits for the first checkpoints of ps[0] and returns
// its checkpoint statistics, a health watcher of ps (interval 10 s, clear
// after 20 s) and a check of it on a test clock that each call advances
// by the interval; the first check, while checkpoints succeed, must raise
// nothing.
func checkpointWatcher(t *testing.T, ps []*pipelines.Pipeline) (stats func() pipelines.CheckpointStats, w *pipelines.HealthWatcher, check func() []engine.EngineAlert) {
	t.Helper()
	stats = func() pipelines.CheckpointStats { st, _ := ps[0].CheckpointStats(); return st }
	waitFor(t, 20*time.Second, "a checkpoint", func() bool { return stats().Count > 1 })
	const step = 10 * time.Second
	w, err := pipelines.NewHealthWatcher(engine.NewShared(), func() []*pipelines.Pipeline { return ps },
		health.Thresholds{Interval: step, ClearAfter: 20 * time.Second, StallAfter: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Now()}
	check = func() []engine.EngineAlert { return w.Check(clk.next(step)) }
	if as := check(); len(as) != 0 {
		t.Fatalf("alerts while checkpoints succeed: %v", rules(as))
	}
	return stats, w, check
}

// TestHealthCheckpointFailure: a checkpointing pipeline's data directory
// is on a small tmpfs that fills up: the next checkpoints cannot be saved
// (the pipeline keeps running and tries again), and checkpoint_failed is
// raised (critical, asset the pipeline) and stays raised while they fail.
func TestHealthCheckpointFailure(t *testing.T) {
	mnt := enginetest.Tmpfs(t, 8<<20)
	ps := runHealthPipeline(t, `
name: cp
batch: {size: 64, linger: 5ms}
checkpoint: {interval: 50ms}
sources:
  farm: {type: sim, turbines: 5, interval: 1s, rows: 0, rate: 500, seed: 7}
steps:
  stats: {type: window, input: farm, size: 1m, key: asset, aggregates: {power: [avg, max, count]}}
sinks:
  out: {type: discard, input: stats}
`, filepath.Join(mnt, "data"), engine.NewShared())
	stats, w, check := checkpointWatcher(t, ps)

	enginetest.Fill(t, mnt, 0)
	waitFor(t, 20*time.Second, "a checkpoint failure", func() bool { return stats().Failures > 0 })
	as := check()
	i := slices.IndexFunc(as, func(a engine.EngineAlert) bool { return a.Rule == health.RuleCheckpoint })
	if i < 0 {
		t.Fatalf("after the disk filled: %v, want checkpoint_failed raised", rules(as))
	}
	if a := as[i]; a.State != engine.AlertRaised || a.Asset != "cp" || a.Severity != "critical" || a.Type != health.Type {
		t.Fatalf("alert %+v", a)
	}
	t.Logf("raised: %s", as[i].Content)
	for range 3 {
		if as := check(); slices.ContainsFunc(as, func(a engine.EngineAlert) bool { return a.Rule == health.RuleCheckpoint }) {
			t.Fatalf("checkpoint_failed changed while checkpoints keep failing: %v", rules(as))
		}
	}
	if act := w.Active(); len(act) != 1 || act[0].Rule != health.RuleCheckpoint {
		t.Fatalf("active %v", rules(act))
	}
}

// TestHealthDrainETA: a cloud sink with a TTL of 5 minutes whose backlog
// drains at 20 rows/s (backfill_rate) after an outage that left thousands
// of rows: the backlog would take longer than the TTL leaves its oldest
// rows, so backlog_drain_eta is raised after drain_eta_for; once the link
// is cut again there is no drain to estimate and it clears.
func TestHealthDrainETA(t *testing.T) {
	srv := enginetest.NewNATSServer(t)
	srv.Start()
	sfx := outboundtest.Suffix()
	ps := runHealthPipeline(t, fmt.Sprintf(`
name: farm
batch: {size: 16, linger: 5ms}
sources:
  s: {type: sim, turbines: 2, rate: 2000, rows: 0, resume: false, interval: 1ms, start: %[3]q}
sinks:
  cloud:
    type: nats
    input: s
    url: %[1]q
    subject: he%[2]s.rows
    stream: HE%[2]s_ROWS
    buffer: {fsync: none, ttl: 5m}
    forward: {mode: live_first, backfill_rate: 20, retry_min: 20ms, retry_max: 200ms, publish_timeout: 1s, drain_timeout: 1s}
`, srv.URL(), sfx, time.Now().UTC().Format(time.RFC3339)), filepath.Join(t.TempDir(), "data"), engine.NewShared())
	link := func() health.Link {
		for _, l := range pipelines.HealthSample(ps, time.Now()).Links {
			if l.Component == "cloud" {
				return l
			}
		}
		t.Fatal("no cloud link")
		return health.Link{}
	}
	waitFor(t, 20*time.Second, "rows flowing", func() bool { return link().LinkUp && pipelines.SourceRows(ps) > 100 })
	if l := link(); l.TTL != 5*time.Minute {
		t.Fatalf("link %+v, want its ttl", l)
	}
	srv.Kill()
	waitFor(t, 60*time.Second, "a backlog of 10000 rows", func() bool { return link().BacklogRows > 10000 })
	srv.Start()
	waitFor(t, 60*time.Second, "the backlog draining", func() bool { l := link(); return l.LinkUp && l.DrainRate > 0 })

	const step = 10 * time.Second
	w, err := pipelines.NewHealthWatcher(engine.NewShared(), func() []*pipelines.Pipeline { return ps },
		health.Thresholds{Interval: step, DrainETAFor: 20 * time.Second, ClearAfter: 20 * time.Second,
			StallAfter: time.Hour, BacklogFor: time.Hour, LinkDownAfter: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Now()}
	var got []engine.EngineAlert
	for i := 0; i < 10 && len(got) == 0; i++ {
		waitFor(t, 20*time.Second, "a drain rate", func() bool { l := link(); return l.LinkUp && l.DrainRate > 0 })
		got = w.Check(clk.next(step))
		time.Sleep(200 * time.Millisecond)
	}
	if len(got) != 1 || got[0].Rule != health.RuleDrainETA || got[0].State != engine.AlertRaised || got[0].Asset != "farm" {
		t.Fatalf("while the backlog drains slowly: %v, want backlog_drain_eta raised", rules(got))
	}
	t.Logf("raised: %s", got[0].Content)
	if got[0].Value <= (5*time.Minute).Seconds()/2 || strings.Contains(got[0].Content, "expire in 0s") {
		t.Fatalf("eta %vs is not beyond what the ttl leaves", got[0].Value)
	}

	srv.Kill()
	waitFor(t, 20*time.Second, "the link down", func() bool { return !link().LinkUp })
	var cleared []engine.EngineAlert
	for i := 0; i < 5 && len(cleared) == 0; i++ {
		cleared = w.Check(clk.next(step))
	}
	if len(cleared) != 1 || cleared[0].State != engine.AlertCleared || cleared[0].ID != got[0].ID {
		t.Fatalf("with the link cut again: %v, want backlog_drain_eta cleared", rules(cleared))
	}
}
