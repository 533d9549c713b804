package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
	"github.com/sluice-edge/sluice/pipelines/drilltest"
)

// The kill drill: a wind farm publishes its readings over MQTT (QoS 1) to
// the machine's Mosquitto while two engines run the same checkpointing
// pipeline — 1-minute and 1-hour windows, an alert held `for: 5m`, every
// output to NATS JetStream — one left alone (the reference), the other
// killed with SIGKILL at random moments and started again on the same
// data directory each time. What the killed engine delivered must be
// what the reference delivered, byte for byte.

// drillFarm is the drill's dataset: 10 turbines, 180 event-time minutes
// of readings each, the closing readings at minute 300.
var drillFarm = drilltest.Farm{Turbines: 10, Minutes: 180, Close: 300}

const (
	drillKills   = 20
	drillPublish = 30 * time.Second // wall time over which the readings are published
	drillWait    = 90 * time.Second
	// drillSeedEnv sets the seed of the kill moments (default: the clock).
	drillSeedEnv = "SLUICE_KILL_DRILL_SEED"
)

// drillPipeline is the pipeline both engines run: %[1]s is the MQTT client
// id, %[2]s the product key of its topics, %[3]s its sinks.
const drillPipeline = `name: farm
checkpoint: {interval: 200ms}
event_time: {max_future: 0s, max_past: 0s}
sources:
  turbines:
    type: mqtt
    urls: [tcp://127.0.0.1:1883]
    client_id: %[1]s
    clean_session: false
    session_expiry: 5m
    qos: 1
    format: enos
    reply: true
    topics: [/sys/%[2]s/+/thing/measurepoint/post]
    history_column: ""
    schema: {key: asset, fields: {temp: float64, power: float64}}
steps:
  m1:
    type: window
    input: turbines
    size: 1m
    aggregates: {temp: [avg, max], power: [avg, min, max]}
  h1:
    type: window
    input: turbines
    size: 1h
    aggregates: {temp: [avg, max], power: [avg, min, max, p95]}
  hot:
    type: alert
    input: m1
    rules:
      - name: overheating
        expr: temp_avg > 80
        clear: temp_avg < 75
        for: 5m
        severity: major
        content: "{{.asset}} at {{.temp_avg}} °C"
sinks:
%[3]s`

// drillKinds are the sinks of drillPipeline, by the stream they read.
var drillKinds = []string{"m1", "h1", "hot"}

// drillRun is one engine of the drill with its own client id, topics,
// data directory and JetStream stream.
type drillRun struct {
	name, dir, file, data string
	pk, subject, stream   string
	metrics               string // the address of its metrics endpoint, or ""
	proc                  *childProc
	logs                  []string // the log of every start, in order
	started               []time.Time
}

func newDrillRun(t *testing.T, dir, name, suffix, natsURL string) *drillRun {
	t.Helper()
	r := &drillRun{name: name, dir: dir, file: filepath.Join(dir, name+".yaml"), data: filepath.Join(dir, name+"-data"),
		pk: "kd" + suffix + name, subject: "kd." + suffix + "." + name, stream: strings.ToUpper("KD_" + suffix + "_" + name)}
	sinks := drilltest.Sinks{URL: natsURL, Subject: r.subject, Stream: r.stream, Drain: "5s"}
	yaml := fmt.Sprintf(drillPipeline, "kd-"+suffix+"-"+name, r.pk, sinks.YAML(drillKinds...))
	if err := os.WriteFile(r.file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return r
}

// start starts the engine (again) on its data directory.
func (r *drillRun) start(t *testing.T) {
	t.Helper()
	log := filepath.Join(r.dir, fmt.Sprintf("%s-%02d.log", r.name, len(r.logs)))
	r.logs = append(r.logs, log)
	r.started = append(r.started, time.Now())
	args := []string{"run", r.file, "--data-dir", r.data, "--edge", "drill", "--log-format", "json", "--progress", "never"}
	if r.metrics != "" {
		args = append(args, "--metrics-addr", r.metrics)
	}
	r.proc = startChild(t, r.name, log, nil, args...)
}

// metric returns the value of the pipeline's metric name, scraped from the
// engine's metrics endpoint.
func (r *drillRun) metric(name string) (float64, bool) {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + r.metrics + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	prefix := name + `{pipeline="farm"} `
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// samplePauses records the pause of the reference engine's checkpoints
// until stop is closed: the last pause, whenever the count moved by one
// since the previous scrape.
func (r *drillRun) samplePauses(stop <-chan struct{}) <-chan []time.Duration {
	out := make(chan []time.Duration, 1)
	go func() {
		var pauses []time.Duration
		last := -1.0
		for {
			select {
			case <-stop:
				out <- pauses
				return
			case <-time.After(50 * time.Millisecond):
			}
			n, ok := r.metric("sluice_checkpoints_total")
			p, ok2 := r.metric("sluice_checkpoint_pause_seconds")
			if !ok || !ok2 {
				continue
			}
			if n2, _ := r.metric("sluice_checkpoints_total"); last >= 0 && n == last+1 && n2 == n {
				pauses = append(pauses, time.Duration(p*float64(time.Second)))
			}
			last = n
		}
	}()
	return out
}

// logLines returns the JSON log lines of start n.
func (r *drillRun) logLines(n int) []map[string]any {
	f, err := os.Open(r.logs[n])
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// logged returns the time of the first line of start n whose message
// starts with msg.
func (r *drillRun) logged(n int, msg string) (time.Time, bool) {
	for _, l := range r.logLines(n) {
		if s, _ := l["msg"].(string); strings.HasPrefix(s, msg) {
			at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(l["time"]))
			return at, err == nil
		}
	}
	return time.Time{}, false
}

// tail returns the end of the log of the latest start.
func (r *drillRun) tail() string {
	data, _ := os.ReadFile(r.logs[len(r.logs)-1])
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return fmt.Sprintf("--- %s\n%s", filepath.Base(r.logs[len(r.logs)-1]), data)
}

// TestKillDrill is the kill drill: 10 turbines post one reading a minute
// for 3 hours of event time (published over about 30 seconds, QoS 1),
// through a pipeline that checkpoints every 200ms, to 1-minute and 1-hour
// windows and an alert that holds for 5 minutes and clears again and
// again, into NATS JetStream. The reference engine runs undisturbed; the
// drill engine is killed with SIGKILL at 20 random moments (the seed is
// logged; SLUICE_KILL_DRILL_SEED repeats a drill) and started again on the
// same data directory each time, then stopped with SIGTERM once both have
// delivered. The drill's output must equal the reference's byte for byte:
// every window row, every raise and clear, each once. It needs Mosquitto
// on 127.0.0.1:1883 and nats-server on the PATH (it starts its own).
func TestKillDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("kill drill")
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:1883", time.Second); err != nil {
		t.Skipf("the kill drill needs Mosquitto on 127.0.0.1:1883: %v", err)
	} else {
		c.Close()
	}
	nats := enginetest.NewNATSServer(t) // skips without nats-server
	nats.Start()
	began := time.Now()
	seed := drilltest.Seed(t, "kill drill", drillSeedEnv)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))

	suffix := outboundtest.Suffix()
	dir := t.TempDir()
	ref := newDrillRun(t, dir, "ref", suffix, nats.URL())
	drill := newDrillRun(t, dir, "drill", suffix, nats.URL())
	ref.metrics = freeAddr(t)

	js := drilltest.JetStream(t, nats.URL())
	// Each run's stream, with a duplicate window that covers the drill.
	for _, r := range []*drillRun{ref, drill} {
		drilltest.AddStream(t, js, r.stream, r.subject)
	}

	// The publisher, and a listener for the drill engine's replies: the
	// first reply after a restart marks the first live reading processed.
	pub := drilltest.Client(t, "kd-"+suffix+"-pub")
	var repliesMu sync.Mutex
	var replies []time.Time
	sub := drilltest.Client(t, "kd-"+suffix+"-replies")
	if tok := sub.Subscribe("/sys/"+drill.pk+"/+/thing/measurepoint/post_reply", 0, func(paho.Client, paho.Message) {
		now := time.Now()
		repliesMu.Lock()
		replies = append(replies, now)
		repliesMu.Unlock()
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe to replies: %v", tok.Error())
	}

	for _, r := range []*drillRun{ref, drill} {
		r.start(t)
	}
	// The first start subscribes; later ones find their session.
	for _, r := range []*drillRun{ref, drill} {
		outboundtest.Eventually(t, 30*time.Second, r.name+" subscribed", func() bool {
			_, ok := r.logged(0, "mqtt: connected")
			return ok
		})
	}

	stopSampling := make(chan struct{})
	sampled := ref.samplePauses(stopSampling)
	// The readings go out while the drill engine reads its session (the
	// start that runs logged that it connected), not while it is killed
	// and starting again: on a loaded machine that takes seconds, and with
	// 20 kills more than 1,000 readings waited for it and Mosquitto
	// (max_queued_messages 1000) dropped the rest.
	var running atomic.Pointer[string] // the log of the drill engine's running start; nil while killed
	first := drill.logs[0]
	running.Store(&first)
	published := drillFarm.PublishPaced(pub, drillPublish, func() bool {
		log := running.Load()
		if log == nil {
			return false
		}
		data, _ := os.ReadFile(*log)
		return bytes.Contains(data, []byte(`"msg":"mqtt: connected"`))
	}, ref.pk, drill.pk)

	type kill struct {
		at         time.Time
		minute     int64 // minutes published by then
		afterStart time.Duration
	}
	var kills []kill
	for range drillKills {
		time.Sleep(time.Duration(100+rng.IntN(2400)) * time.Millisecond)
		select {
		case <-drill.proc.done:
			t.Fatalf("the drill engine exited by itself after %d kills\n%s", len(kills), drill.tail())
		default:
		}
		at := time.Now()
		running.Store(nil)
		drill.proc.kill()
		kills = append(kills, kill{at: at, minute: published.Minutes(), afterStart: at.Sub(drill.started[len(drill.started)-1])})
		drill.start(t)
		log := drill.logs[len(drill.logs)-1]
		running.Store(&log)
	}
	if err := published.Wait(); err != nil {
		t.Fatal(err)
	}
	var when []string
	for _, k := range kills {
		when = append(when, fmt.Sprintf("%d@%s", k.minute, k.afterStart.Round(10*time.Millisecond)))
	}
	t.Logf("readings published in %s; kills (minutes published@time since the start): %s", time.Since(began).Round(time.Millisecond),
		strings.Join(when, " "))

	// Both deliver everything the dataset makes, and then nothing more for
	// a second; or the time is up, and the comparison says what is amiss.
	wantCounts := drillFarm.Counts(map[string]time.Duration{"m1": time.Minute, "h1": time.Hour})
	drilltest.WaitDelivered(js, drilltest.Total(wantCounts), drillWait, ref.stream, drill.stream)
	close(stopSampling)
	pauses := <-sampled
	count, _ := ref.metric("sluice_checkpoints_total")
	pauseMax, _ := ref.metric("sluice_checkpoint_pause_max_seconds")
	t.Logf("checkpoint pause of the reference engine: %d checkpoints, longest %s; %d sampled: %s", int(count),
		time.Duration(pauseMax*float64(time.Second)).Round(time.Microsecond), len(pauses), drillStats(pauses))
	for _, r := range []*drillRun{ref, drill} {
		r.proc.stop(t)
		if code := r.proc.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("%s engine: exit %d on SIGTERM\n%s", r.name, code, r.tail())
		}
	}

	want := drilltest.ReadStream(t, js, ref.stream)
	got := drilltest.ReadStream(t, js, drill.stream)
	for _, r := range []*drillRun{ref, drill} {
		info, err := js.StreamInfo(r.stream)
		if err != nil {
			t.Fatal(err)
		}
		if took := time.Since(began); info.Config.Duplicates < took {
			t.Errorf("stream %s remembers message ids for %s, less than the drill took (%s): copies could pass", r.stream, info.Config.Duplicates, took)
		}
	}
	if c := want.Counts(); !maps.Equal(c, wantCounts) || want.Copies != 0 {
		t.Errorf("the reference delivered %v (%d ids twice), the dataset makes %v\n%s", c, want.Copies, wantCounts, ref.tail())
	}
	if d := drilltest.Diff(want, got, false); d != "" {
		t.Errorf("the drill's output differs from the reference's (seed %d):\n%s\n%s", seed, d, drill.tail())
	}
	t.Logf("delivered: reference %v, drill %v (%d of them sent from the backlog of a restart)", want.Counts(), got.Counts(), got.Backfill)

	// Recovery: from the kill to the restarted engine's recovery, and to
	// the first reading it answered (after it recovered: a reply of the
	// killed process may still be on its way), for every restart that got
	// so far before the next kill.
	repliesMu.Lock()
	rs := slices.Clone(replies)
	repliesMu.Unlock()
	var recovery, restore []time.Duration
	for k, kl := range kills {
		end := time.Now()
		if k+1 < len(kills) {
			end = kills[k+1].at
		}
		if at, ok := drill.logged(k+1, "checkpoint: recovered"); ok {
			restore = append(restore, at.Sub(kl.at))
			if i, _ := slices.BinarySearchFunc(rs, at, time.Time.Compare); i < len(rs) && rs[i].Before(end) {
				recovery = append(recovery, rs[i].Sub(kl.at))
			}
		}
	}
	t.Logf("kill -> checkpoint recovered: %s; kill -> first live reading processed: %s", drillStats(restore), drillStats(recovery))
}

// drillStats summarises durations: count, min, median, max.
func drillStats(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none measured"
	}
	slices.Sort(ds)
	return fmt.Sprintf("n=%d min %s median %s max %s", len(ds), ds[0].Round(time.Microsecond),
		ds[len(ds)/2].Round(time.Microsecond), ds[len(ds)-1].Round(time.Microsecond))
}
