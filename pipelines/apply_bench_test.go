package pipelines_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/bundle"
	"github.com/sluice-edge/sluice/pipelines"
)

// BenchmarkApplyBundle applies signed bundles of 10 pipelines (a
// simulated farm at 10 000 rows/s each, windowed, into a file) through the
// edge agent, each version changing every pipeline's sink so that sources
// and windows are handed over. It reports the time of each phase of an
// apply — verify (signature and digests), unpack, check (load and dry-run
// build of every pipeline), switch (the time data is held back: the upper
// bound of the delay a live row sees) — and the rows/s the sources
// produced throughout.
func BenchmarkApplyBundle(b *testing.B) {
	dir := b.TempDir()
	pub, key, err := bundle.GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	mk := func(v int) string {
		src := filepath.Join(dir, fmt.Sprintf("src%d", v), "pipelines")
		if err := os.MkdirAll(src, 0o755); err != nil {
			b.Fatal(err)
		}
		for i := range 10 {
			y := fmt.Sprintf(`
batch: {size: 256, linger: 5ms}
sources:
  farm: {type: sim, turbines: 20, interval: 1s, rate: 10000, faults: 0, resume: false}
steps:
  stats: {type: window, input: farm, size: 1m, aggregates: {power: [avg, max, p95]}}
sinks:
  out: {type: file, input: stats, path: %s}
`, filepath.Join(dir, fmt.Sprintf("out%d-v%d.jsonl", i, v)))
			if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("p%d.yaml", i)), []byte(y), 0o644); err != nil {
				b.Fatal(err)
			}
		}
		out := filepath.Join(dir, fmt.Sprintf("v%d.bundle", v))
		f, err := os.Create(out)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := bundle.Build(f, filepath.Dir(src), bundle.BuildOptions{Name: "farm", Version: uint64(v), Key: key}); err != nil {
			b.Fatal(err)
		}
		f.Close()
		return out
	}
	var marks []struct {
		step string
		at   time.Time
	}
	log := slog.New(slog.DiscardHandler)
	rt := pipelines.NewRuntime(pipelines.Options{DataDir: filepath.Join(dir, "data"), Log: log})
	defer rt.Stop()
	a, err := agent.Open(agent.Options{Dir: filepath.Join(dir, "data", "agent"), Edge: "e", Trust: bundle.NewTrust(pub), Log: log,
		Hook: func(step string) {
			marks = append(marks, struct {
				step string
				at   time.Time
			}{step, time.Now()})
		}}, pipelines.NewAgentRunner(rt, os.LookupEnv, nil))
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	if _, err := a.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	if rep, err := a.Apply(mk(1)); err != nil || rep.Outcome != agent.Applied {
		b.Fatal(rep, err)
	}
	bundles := make([]string, b.N)
	for i := range bundles {
		bundles[i] = mk(i + 2)
	}
	time.Sleep(200 * time.Millisecond)
	phase := map[string]time.Duration{}
	rows := func() int64 { return pipelines.SourceRows(rt.Pipelines()) }
	r0, t0 := rows(), time.Now()
	b.ResetTimer()
	for _, file := range bundles {
		marks = marks[:0]
		start := time.Now()
		rep, err := a.Apply(file)
		if err != nil || rep.Outcome != agent.Applied {
			b.Fatal(rep, err)
		}
		prev := start
		for _, m := range marks {
			phase[m.step] += m.at.Sub(prev)
			prev = m.at
		}
	}
	b.StopTimer()
	ms := func(step string) float64 { return float64(phase[step].Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(ms(agent.StepVerified), "verify_ms/op")
	b.ReportMetric(ms(agent.StepUnpacked)+ms(agent.StepInstalled), "unpack_ms/op")
	b.ReportMetric(ms(agent.StepChecked), "check_ms/op")
	b.ReportMetric(ms(agent.StepSwitched), "switch_ms/op")
	b.ReportMetric(float64(rows()-r0)/time.Since(t0).Seconds(), "rows/s")
}
