package pipelines_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/health"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
	"github.com/sluice-edge/sluice/pipelines"
)

// clock is a test's manual clock for health checks.
type clock struct{ now time.Time }

func (c *clock) next(step time.Duration) time.Time { c.now = c.now.Add(step); return c.now }

// streamData returns the data of the messages of a JetStream stream, in
// order; nil while the stream or one of its messages cannot be read.
func streamData(js natsjs.JetStream, stream string) [][]byte {
	s, err := js.Stream(context.Background(), stream)
	if err != nil {
		return nil
	}
	info, err := s.Info(context.Background())
	if err != nil {
		return nil
	}
	var out [][]byte
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := s.GetMsg(context.Background(), seq)
		if err != nil {
			return nil
		}
		out = append(out, m.Data)
	}
	return out
}

// rules lists "state rule" of alerts.
func rules(as []engine.EngineAlert) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.State+" "+a.Rule)
	}
	return out
}

// TestHealthLinkCut: a cloud sink's link is cut (its nats-server killed)
// while rows keep coming: link_down and backlog_growing are raised; once
// the server is back and the backlog drained, both clear; the raises and
// clears reach the broker through the alert sink's buffer.
func TestHealthLinkCut(t *testing.T) {
	srv := enginetest.NewNATSServer(t)
	srv.Start()
	sfx := outboundtest.Suffix()
	dir := t.TempDir()
	yaml := fmt.Sprintf(`
name: farm
batch: {size: 16, linger: 5ms}
sources:
  s: {type: sim, turbines: 2, rate: 200, rows: 0, resume: false}
steps:
  hot:
    type: alert
    input: s
    rules:
      - {name: never, expr: "power < -1000000", severity: minor, type: test}
sinks:
  cloud:
    type: nats
    input: s
    url: %[1]q
    subject: hl%[2]s.rows
    stream: HL%[2]s_ROWS
    forward: {retry_min: 20ms, retry_max: 200ms, publish_timeout: 1s, drain_timeout: 1s}
  alerts:
    type: nats
    input: hot
    url: %[1]q
    subject: hl%[2]s.alerts
    stream: HL%[2]s_ALERTS
    forward: {retry_min: 20ms, retry_max: 200ms, publish_timeout: 1s, drain_timeout: 2s}
`, srv.URL(), sfx)
	file := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	defs, errs := pipelines.Load([]string{file}, os.LookupEnv)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	sh := engine.NewShared()
	ps, errs := pipelines.BuildAll(defs, pipelines.Options{DataDir: filepath.Join(dir, "data"), Edge: "e1", Shared: sh})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pipelines.RunAll(ctx, ps) }()
	defer func() { cancel(); <-done }()

	const step = 10 * time.Second
	w, err := pipelines.NewHealthWatcher(sh, func() []*pipelines.Pipeline { return ps },
		health.Thresholds{Interval: step, LinkDownAfter: 20 * time.Second, BacklogFor: 20 * time.Second, ClearAfter: 20 * time.Second, StallAfter: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Now()}
	linkOf := func(sink string) (backlog int64, up bool) {
		for _, l := range pipelines.HealthSample(ps, time.Now()).Links {
			if l.Component == sink {
				return l.BacklogRows, l.LinkUp
			}
		}
		t.Fatalf("no %s link", sink)
		return 0, false
	}
	link := func() (int64, bool) { return linkOf("cloud") }
	// drained: both sinks' links are up and their backlogs empty. The
	// alerts sink holds the health alerts raised so far; with its link up
	// it sends them within milliseconds, far below an interval.
	drained := func() bool {
		b, up := linkOf("cloud")
		ab, aup := linkOf("alerts")
		return up && aup && b == 0 && ab == 0
	}
	waitFor(t, 20*time.Second, "rows flowing to the broker", func() bool {
		_, up := link()
		return up && pipelines.SourceRows(ps) > 100
	})
	if as := w.Check(clk.next(step)); len(as) != 0 {
		t.Fatalf("alerts with the link up: %v", rules(as))
	}

	srv.Kill()
	raised := map[string]bool{}
	deadline := time.Now().Add(60 * time.Second)
	for !raised["link_down"] || !raised["backlog_growing"] {
		// Each check follows a real rise of the backlog: the clock moves
		// only once the figures have.
		before, _ := link()
		waitFor(t, 20*time.Second, "the backlog to grow", func() bool { b, up := link(); return !up && b > before })
		for _, a := range w.Check(clk.next(step)) {
			if a.State != engine.AlertRaised || a.Asset != "farm" || a.Type != health.Type {
				t.Fatalf("unexpected alert %+v", a)
			}
			// The alerts sink's link is cut as well; the cloud sink's
			// alerts are the ones looked for.
			if strings.HasPrefix(a.ID, a.Rule+"/farm/cloud/") {
				raised[a.Rule] = true
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("raised %v", raised)
		}
	}

	active := map[string]bool{}
	for _, a := range w.Active() {
		active[a.Rule] = a.State == engine.AlertRaised
	}
	if !active["link_down"] || !active["backlog_growing"] {
		t.Fatalf("active alerts %v, want link_down and backlog_growing", active)
	}

	srv.Start()
	cleared := map[string]bool{}
	for i := 0; i < 10 && (!cleared["link_down"] || !cleared["backlog_growing"]); i++ {
		// As while the link was cut, the clock moves only once the figures
		// have: a check stands for an interval in which both sinks, their
		// links up, sent what they held (the health alerts raised so far
		// included). Checks with the clock racing ahead of a sink still
		// reconnecting would see its few alert rows stay for "20s" and
		// rightly call its backlog growing.
		waitFor(t, 60*time.Second, "both backlogs drained", drained)
		for _, a := range w.Check(clk.next(step)) {
			if a.State != engine.AlertCleared {
				t.Fatalf("unexpected alert %+v", a)
			}
			if strings.HasPrefix(a.ID, a.Rule+"/farm/cloud/") {
				cleared[a.Rule] = true
			}
		}
	}
	if !cleared["link_down"] || !cleared["backlog_growing"] {
		t.Fatalf("cleared %v", cleared)
	}
	if act := w.Active(); len(act) != 0 {
		t.Fatalf("alerts still active after their clear: %+v", act)
	}

	// The health alerts went through the alerts sink's buffer to the
	// broker, after the link returned.
	nc, err := natsgo.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	want := []string{`"rule":"link_down"`, `"rule":"backlog_growing"`, `"state":"raised"`, `"state":"cleared"`, `"type":"health"`}
	waitFor(t, 30*time.Second, "the health alerts at the broker", func() bool {
		all := string(bytes.Join(streamData(js, "HL"+sfx+"_ALERTS"), nil))
		for _, w := range want {
			if !strings.Contains(all, w) {
				return false
			}
		}
		return strings.Count(all, `"type":"health"`) >= 4
	})
}

// TestHealthInput: a flood of bad payloads raises bad_input_spike; a
// publisher that stops raises input_stalled; both clear when good rows
// flow again.
func TestHealthInput(t *testing.T) {
	url := mosquittoURL(t)
	prefix := fmt.Sprintf("/sys/health%d", time.Now().UnixNano())
	_, ps, _ := startPipelines(t, "name: farm\n"+devicesOver(url, prefix)+"sinks:\n  out: {type: discard, input: devices}\n")
	pub := mqttPublisher(t, url)
	good := func(n int) {
		for i := 0; i < n; i++ {
			pub(prefix+"/T1/thing/measurepoint/post", fmt.Sprintf(`{"id":"1","params":{"measurepoints":{"temp":%d},"time":%d}}`, i, time.Now().UnixMilli()), false)
		}
	}
	bad := func(n int) {
		for i := 0; i < n; i++ {
			pub(prefix+"/T1/thing/measurepoint/post", `{"id":"1","params":{"measurepoints":`, false)
		}
	}
	counts := func() (rows, rejected int64) {
		for _, in := range pipelines.HealthSample(ps, time.Now()).Inputs {
			if in.Component == "devices" {
				return in.Rows, in.Bad
			}
		}
		t.Fatal("no source")
		return 0, 0
	}
	waitFor(t, 20*time.Second, "the source subscribed", func() bool { good(1); r, _ := counts(); return r > 0 })

	const step = 10 * time.Second
	w, err := pipelines.NewHealthWatcher(engine.NewShared(), func() []*pipelines.Pipeline { return ps },
		health.Thresholds{Interval: step, StallAfter: 30 * time.Second, ClearAfter: 20 * time.Second, BadMin: 20, BadRatio: 0.5}, nil)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Now()}
	check := func() []string { return rules(w.Check(clk.next(step))) }
	check()
	// Rows flow: nothing to say.
	r0, _ := counts()
	good(10)
	waitFor(t, 20*time.Second, "10 rows", func() bool { r, _ := counts(); return r >= r0+10 })
	if got := check(); len(got) != 0 {
		t.Fatalf("alerts while rows flow: %v", got)
	}
	// A flood of bad payloads.
	_, b0 := counts()
	bad(100)
	waitFor(t, 20*time.Second, "100 bad payloads counted", func() bool { _, b := counts(); return b >= b0+100 })
	if got := check(); fmt.Sprint(got) != "[raised bad_input_spike]" {
		t.Fatalf("after the flood: %v", got)
	}
	// Good rows again: cleared after ClearAfter.
	var got []string
	for i := 0; i < 4 && len(got) == 0; i++ {
		r, _ := counts()
		good(5)
		waitFor(t, 20*time.Second, "5 rows", func() bool { n, _ := counts(); return n >= r+5 })
		got = check()
	}
	if fmt.Sprint(got) != "[cleared bad_input_spike]" {
		t.Fatalf("after good rows: %v", got)
	}
	// The publisher stops: nothing arrives (the broker holds nothing more
	// for the source: every post was counted above).
	var stalled []string
	for i := 0; i < 5 && len(stalled) == 0; i++ {
		stalled = check()
	}
	if fmt.Sprint(stalled) != "[raised input_stalled]" {
		t.Fatalf("after the publisher stopped: %v", stalled)
	}
	// It publishes again.
	got = nil
	for i := 0; i < 4 && len(got) == 0; i++ {
		r, _ := counts()
		good(5)
		waitFor(t, 20*time.Second, "5 rows", func() bool { n, _ := counts(); return n >= r+5 })
		got = check()
	}
	if fmt.Sprint(got) != "[cleared input_stalled]" {
		t.Fatalf("after the publisher resumed: %v", got)
	}
}
