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
	natsgo "github.com/nats-io/nats.go"

	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

// The kill drill: a wind farm publishes its readings over MQTT (QoS 1) to
// the machine's Mosquitto while two engines run the same checkpointing
// pipeline — 1-minute and 1-hour windows, an alert held `for: 5m`, every
// output to NATS JetStream — one left alone (the reference), the other
// killed with SIGKILL at random moments and started again on the same
// data directory each time. What the killed engine delivered must be
// what the reference delivered, byte for byte.

const (
	drillTurbines = 10
	drillMinutes  = 180 // event-time minutes of readings per turbine
	// drillClose is the minute of the closing readings, far enough ahead
	// to close every window of the readings before it.
	drillClose   = 300
	drillKills   = 20
	drillPublish = 30 * time.Second // wall time over which the readings are published
	drillWait    = 90 * time.Second
	// drillSeedEnv sets the seed of the kill moments (default: the clock).
	drillSeedEnv = "SLUICE_KILL_DRILL_SEED"
)

// drillBase is the event time of minute 0.
var drillBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// drillHot says whether turbine i runs hot at minute m: 10 minutes in
// every 30 (an alert held for 5 minutes, then cleared) and 3 more (pending
// only, never raised), shifted per turbine.
func drillHot(i, m int) bool {
	p := (m + 3*i) % 30
	return p < 10 || p >= 15 && p < 18
}

// drillReading returns the temperature and power of turbine i at minute m.
func drillReading(i, m int) (temp, power float64) {
	temp = 60 + float64(m%5)/8 + float64(i)/4
	if drillHot(i, m) {
		temp = 90 + float64(m%7)/8 + float64(i)/4
	}
	return temp, 1000 + float64((m*37+i*101)%500) + float64(i)/4
}

// drillAlerts returns how many alerts the dataset raises and clears under
// the rule of drillPipeline: raised once hot has held 5 minutes, cleared
// at the first minute that is not hot.
func drillAlerts() (raised, cleared int) {
	for i := range drillTurbines {
		start, up := -1, false
		for m := range drillMinutes {
			switch {
			case drillHot(i, m) && !up:
				if start < 0 {
					start = m
				}
				if m-start >= 5 {
					up = true
					raised++
				}
			case !drillHot(i, m):
				if up {
					cleared++
				}
				start, up = -1, false
			}
		}
	}
	return raised, cleared
}

// drillPost is the EnOS measure-point post of turbine i at minute m.
func drillPost(i, m int) []byte {
	temp, power := drillReading(i, m)
	ms := drillBase.Add(time.Duration(m) * time.Minute).UnixMilli()
	return fmt.Appendf(nil, `{"id":"%d","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":{"temp":%s,"power":%s},"time":%d}}`,
		m*drillTurbines+i, strconv.FormatFloat(temp, 'g', -1, 64), strconv.FormatFloat(power, 'g', -1, 64), ms)
}

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
	pk, stream            string
	metrics               string // the address of its metrics endpoint, or ""
	proc                  *childProc
	logs                  []string // the log of every start, in order
	started               []time.Time
}

func newDrillRun(t *testing.T, dir, name, suffix, natsURL string) *drillRun {
	t.Helper()
	r := &drillRun{name: name, dir: dir, file: filepath.Join(dir, name+".yaml"), data: filepath.Join(dir, name+"-data"),
		pk: "kd" + suffix + name, stream: strings.ToUpper("KD_" + suffix + "_" + name)}
	var sinks strings.Builder
	for _, k := range drillKinds {
		fmt.Fprintf(&sinks, `  %[1]s_out:
    type: nats
    input: %[1]s
    url: %[2]s
    subject: kd.%[3]s.%[4]s.%[1]s
    stream: %[5]s
    duplicate_window: 10m
    encoding: json
    timeout: 2s
    forward: {retry_min: 20ms, retry_max: 200ms, drain_timeout: 5s}
`, k, natsURL, suffix, name, r.stream)
	}
	yaml := fmt.Sprintf(drillPipeline, "kd-"+suffix+"-"+name, r.pk, sinks.String())
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

// drillMsg is one message of an output stream.
type drillMsg struct {
	id, kind string
	payload  []byte
}

// drillOutput is what a run delivered: its messages by Nats-Msg-Id.
type drillOutput struct {
	msgs     map[string]drillMsg
	copies   int // messages stored twice under one id
	backfill int // messages sent from the backlog of a restart
}

// readDrillStream reads every message of a stream.
func readDrillStream(t *testing.T, js natsgo.JetStreamContext, stream string) drillOutput {
	t.Helper()
	info, err := js.StreamInfo(stream)
	if err != nil {
		t.Fatal(err)
	}
	out := drillOutput{msgs: map[string]drillMsg{}}
	for q := info.State.FirstSeq; info.State.Msgs > 0 && q <= info.State.LastSeq; q++ {
		m, err := js.GetMsg(stream, q)
		if err != nil {
			t.Fatalf("%s seq %d: %v", stream, q, err)
		}
		id := m.Header.Get(natsgo.MsgIdHdr)
		if _, ok := out.msgs[id]; ok {
			out.copies++
			continue
		}
		// The one byte that says which lane sent the row.
		p := m.Data
		if bytes.HasSuffix(p, []byte(`,"backfill":true}`)) {
			out.backfill++
			p = append(bytes.TrimSuffix(p, []byte(`true}`)), `false}`...)
		}
		kind := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
		if kind == "hot" {
			var a struct {
				MP struct {
					State string `json:"state"`
				} `json:"measurepoints"`
			}
			_ = json.Unmarshal(p, &a)
			kind = "alert " + a.MP.State
		}
		out.msgs[id] = drillMsg{id: id, kind: kind, payload: p}
	}
	return out
}

// counts returns the number of messages per kind.
func (o drillOutput) counts() map[string]int {
	c := map[string]int{}
	for _, m := range o.msgs {
		c[m.kind]++
	}
	return c
}

// drillIDLess orders message ids <edge>/<stream>/<seq> by stream, then seq.
func drillIDLess(a, b string) int {
	ia, ib := strings.LastIndexByte(a, '/'), strings.LastIndexByte(b, '/')
	if c := strings.Compare(a[:ia], b[:ib]); c != 0 {
		return c
	}
	sa, _ := strconv.ParseUint(a[ia+1:], 10, 64)
	sb, _ := strconv.ParseUint(b[ib+1:], 10, 64)
	return int(sa) - int(sb)
}

// drillDiff describes how got differs from want, or returns "".
func drillDiff(want, got drillOutput) string {
	var missing, extra, differ []string
	for id, w := range want.msgs {
		g, ok := got.msgs[id]
		switch {
		case !ok:
			missing = append(missing, id)
		case !bytes.Equal(w.payload, g.payload):
			differ = append(differ, id)
		}
	}
	for id := range got.msgs {
		if _, ok := want.msgs[id]; !ok {
			extra = append(extra, id)
		}
	}
	if len(missing)+len(extra)+len(differ) == 0 && got.copies == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "counts per kind: reference %v, drill %v\n", want.counts(), got.counts())
	fmt.Fprintf(&b, "%d missing, %d extra, %d differing, %d ids stored twice in the drill's stream\n",
		len(missing), len(extra), len(differ), got.copies)
	show := func(what string, ids []string, f func(id string) string) {
		slices.SortFunc(ids, drillIDLess)
		for i, id := range ids {
			if i == 5 {
				fmt.Fprintf(&b, "  ... %d more %s\n", len(ids)-i, what)
				break
			}
			fmt.Fprintf(&b, "  %s %s\n", what, f(id))
		}
	}
	show("missing", missing, func(id string) string { return string(want.msgs[id].payload) })
	show("extra", extra, func(id string) string { return string(got.msgs[id].payload) })
	show("differing", differ, func(id string) string {
		return fmt.Sprintf("%s\n    reference %s\n    drill     %s", id, want.msgs[id].payload, got.msgs[id].payload)
	})
	return b.String()
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
	seed := uint64(began.UnixNano())
	if s := os.Getenv(drillSeedEnv); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", drillSeedEnv, err)
		}
		seed = v
	}
	t.Logf("kill drill seed %d (repeat with %s=%d)", seed, drillSeedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))

	suffix := outboundtest.Suffix()
	dir := t.TempDir()
	ref := newDrillRun(t, dir, "ref", suffix, nats.URL())
	drill := newDrillRun(t, dir, "drill", suffix, nats.URL())
	ref.metrics = freeAddr(t)

	nc, err := natsgo.Connect(nats.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	// Each run's stream, with a duplicate window that covers the drill.
	for _, r := range []*drillRun{ref, drill} {
		if _, err := js.AddStream(&natsgo.StreamConfig{Name: r.stream, Subjects: []string{"kd." + suffix + "." + r.name + ".>"},
			Storage: natsgo.FileStorage, Duplicates: 10 * time.Minute}); err != nil {
			t.Fatal(err)
		}
	}

	// The publisher, and a listener for the drill engine's replies: the
	// first reply after a restart marks the first live reading processed.
	mq := func(id string) paho.Client {
		c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://127.0.0.1:1883").SetClientID(id).
			SetCleanSession(true).SetAutoReconnect(false).SetOrderMatters(false))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("mqtt connect: %v", tok.Error())
		}
		t.Cleanup(func() { c.Disconnect(100) })
		return c
	}
	pub := mq("kd-" + suffix + "-pub")
	var repliesMu sync.Mutex
	var replies []time.Time
	sub := mq("kd-" + suffix + "-replies")
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
	var published atomic.Int64 // minutes published
	pubDone := make(chan error, 1)
	go func() {
		send := func(i, m int) error {
			p := drillPost(i, m)
			for _, r := range []*drillRun{ref, drill} {
				tok := pub.Publish(fmt.Sprintf("/sys/%s/WT%02d/thing/measurepoint/post", r.pk, i), 1, false, p)
				if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					return fmt.Errorf("publish minute %d of WT%02d: %v", m, i, tok.Error())
				}
			}
			return nil
		}
		t0 := time.Now()
		for m := range drillMinutes {
			time.Sleep(time.Until(t0.Add(time.Duration(m) * drillPublish / drillMinutes)))
			for i := range drillTurbines {
				if err := send(i, m); err != nil {
					pubDone <- err
					return
				}
			}
			published.Add(1)
		}
		for i := range drillTurbines {
			if err := send(i, drillClose); err != nil {
				pubDone <- err
				return
			}
		}
		pubDone <- nil
	}()

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
		drill.proc.kill()
		kills = append(kills, kill{at: at, minute: published.Load(), afterStart: at.Sub(drill.started[len(drill.started)-1])})
		drill.start(t)
	}
	if err := <-pubDone; err != nil {
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
	raised, cleared := drillAlerts()
	wantCounts := map[string]int{"m1": drillTurbines * drillMinutes, "h1": drillTurbines * drillMinutes / 60,
		"alert raised": raised, "alert cleared": cleared}
	total := uint64(0)
	for _, n := range wantCounts {
		total += uint64(n)
	}
	msgs := func(r *drillRun) uint64 {
		info, err := js.StreamInfo(r.stream)
		if err != nil {
			return 0
		}
		return info.State.Msgs
	}
	var last [2]uint64
	stable := time.Now()
	for deadline := time.Now().Add(drillWait); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		now := [2]uint64{msgs(ref), msgs(drill)}
		if now != last {
			last, stable = now, time.Now()
		}
		if now == [2]uint64{total, total} && time.Since(stable) > time.Second {
			break
		}
	}
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

	want := readDrillStream(t, js, ref.stream)
	got := readDrillStream(t, js, drill.stream)
	for _, r := range []*drillRun{ref, drill} {
		info, err := js.StreamInfo(r.stream)
		if err != nil {
			t.Fatal(err)
		}
		if took := time.Since(began); info.Config.Duplicates < took {
			t.Errorf("stream %s remembers message ids for %s, less than the drill took (%s): copies could pass", r.stream, info.Config.Duplicates, took)
		}
	}
	if c := want.counts(); !maps.Equal(c, wantCounts) || want.copies != 0 {
		t.Errorf("the reference delivered %v (%d ids twice), the dataset makes %v\n%s", c, want.copies, wantCounts, ref.tail())
	}
	if d := drillDiff(want, got); d != "" {
		t.Errorf("the drill's output differs from the reference's (seed %d):\n%s\n%s", seed, d, drill.tail())
	}
	t.Logf("delivered: reference %v, drill %v (%d of them sent from the backlog of a restart)", want.counts(), got.counts(), got.backfill)

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
