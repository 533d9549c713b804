package pipelines_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
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

	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/faultfs"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
	"github.com/sluice-edge/sluice/pipelines"
)

// The power-loss drill: the kill drill's pipeline (MQTT in, a 1-minute
// window, an alert held for 5 minutes, NATS JetStream out, checkpoints)
// run in this process on a simulated disk (engine/buffer/faultfs) that
// loses, at random moments, every write not yet synced.

const (
	plTurbines = 6
	plMinutes  = 120 // event-time minutes of readings per turbine
	// plClose is the minute of the closing readings, far enough ahead to
	// close every window of the readings before it.
	plClose   = 240
	plCuts    = 12
	plPublish = 45 * time.Second // wall time over which the readings are published
	plWait    = 90 * time.Second
	plEdge    = "site"
	plBroker  = "127.0.0.1:1883"
	// plSeedEnv sets the seed of the cut moments (default: the clock).
	plSeedEnv = "SLUICE_POWER_LOSS_SEED"
)

// plBase is the event time of minute 0.
var plBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// plHot says whether turbine i runs hot at minute m: 10 minutes in every
// 30 (an alert held for 5 minutes, then cleared) and 3 more (pending
// only, never raised), shifted per turbine.
func plHot(i, m int) bool {
	p := (m + 3*i) % 30
	return p < 10 || p >= 15 && p < 18
}

// plPost is the EnOS measure-point post of turbine i at minute m.
func plPost(i, m int) []byte {
	temp := 60 + float64(m%5)/8 + float64(i)/4
	if plHot(i, m) {
		temp = 90 + float64(m%7)/8 + float64(i)/4
	}
	power := 1000 + float64((m*37+i*101)%500) + float64(i)/4
	return fmt.Appendf(nil, `{"id":"%d","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":{"temp":%s,"power":%s},"time":%d}}`,
		m*plTurbines+i, strconv.FormatFloat(temp, 'g', -1, 64), strconv.FormatFloat(power, 'g', -1, 64),
		plBase.Add(time.Duration(m)*time.Minute).UnixMilli())
}

// plAlerts returns how many alerts the dataset raises and clears under
// the rule of plPipeline: raised once hot has held 5 minutes, cleared at
// the first minute that is not hot.
func plAlerts() (raised, cleared int) {
	for i := range plTurbines {
		start, up := -1, false
		for m := range plMinutes {
			switch {
			case plHot(i, m) && !up:
				if start < 0 {
					start = m
				}
				if m-start >= 5 {
					up, raised = true, raised+1
				}
			case !plHot(i, m):
				if up {
					cleared++
				}
				start, up = -1, false
			}
		}
	}
	return raised, cleared
}

// plPipeline is the pipeline of both runs: %[1]s is the MQTT client id,
// %[2]s the product key of its topics, %[3]s the subject prefix and %[4]s
// the JetStream stream of its sinks, %[5]s the address of the broker. The sinks' buffers have a fixed
// quota: a share of the free space would be measured on the real disk.
const plPipeline = `name: farm
checkpoint: {interval: 100ms, ingest_fsync: always}
event_time: {max_future: 0s, max_past: 0s}
sources:
  turbines:
    type: mqtt
    urls: [tcp://%[5]s]
    client_id: %[1]s
    clean_session: false
    session_expiry: 10m
    qos: 1
    format: enos
    drain_timeout: 100ms
    topics: [/sys/%[2]s/+/thing/measurepoint/post]
    history_column: ""
    schema: {key: asset, fields: {temp: float64, power: float64}}
steps:
  m1:
    type: window
    input: turbines
    size: 1m
    aggregates: {temp: [avg, max], power: [avg, min, max]}
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
  m1_out:
    type: nats
    input: m1
    url: nats://127.0.0.1:4222
    subject: %[3]s.m1
    stream: %[4]s
    duplicate_window: 10m
    encoding: json
    timeout: 2s
    buffer: {max_bytes: 256MiB}
    forward: {retry_min: 20ms, retry_max: 200ms, drain_timeout: 1s}
  hot_out:
    type: nats
    input: hot
    url: nats://127.0.0.1:4222
    subject: %[3]s.hot
    stream: %[4]s
    duplicate_window: 10m
    encoding: json
    timeout: 2s
    buffer: {max_bytes: 256MiB}
    forward: {retry_min: 20ms, retry_max: 200ms, drain_timeout: 1s}
`

// plRunner runs the drill pipeline of one side (the reference or the
// drill) in this process, one run at a time.
type plRunner struct {
	name, pk, subject, stream string
	client                    string
	data                      string
	logs                      *os.File
	runs                      int
}

func newPLRunner(t *testing.T, name, suffix string) *plRunner {
	t.Helper()
	r := &plRunner{name: name, pk: "pl" + suffix + name, subject: "pl." + suffix + "." + name,
		stream: strings.ToUpper("PL_" + suffix + "_" + name), data: filepath.Join(t.TempDir(), "data")}
	r.client = "pl-" + suffix + "-" + name
	var err error
	if r.logs, err = os.Create(filepath.Join(t.TempDir(), name+".log")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.logs.Close() })
	return r
}

// plRun is one run of a pipeline.
type plRun struct {
	ps     []*pipelines.Pipeline
	cancel context.CancelFunc
	done   chan error
	at     time.Time
}

// start builds the pipeline on fsys (nil: the real disk), connected to
// the MQTT broker at address broker, and runs it.
func (r *plRunner) start(t *testing.T, fsys buffer.FS, broker string) *plRun {
	t.Helper()
	r.runs++
	fmt.Fprintf(r.logs, "--- run %d\n", r.runs)
	def := fmt.Appendf(nil, plPipeline, r.client, r.pk, r.subject, r.stream, broker)
	defs, errs := pipelines.Parse(r.name+".yaml", def, nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	ps, errs := pipelines.BuildAll(defs, pipelines.Options{DataDir: r.data, Edge: plEdge, FS: fsys,
		Log: slog.New(slog.NewTextHandler(r.logs, nil))})
	if len(errs) > 0 {
		t.Fatalf("%s run %d: %v\n%s", r.name, r.runs, errs, r.tail())
	}
	ctx, cancel := context.WithCancel(context.Background())
	run := &plRun{ps: ps, cancel: cancel, done: make(chan error, 1), at: time.Now()}
	go func() { run.done <- pipelines.RunAll(ctx, ps) }()
	return run
}

// stop stops a run and returns its error.
func (r *plRunner) stop(t *testing.T, run *plRun) error {
	t.Helper()
	run.cancel()
	select {
	case err := <-run.done:
		return err
	case <-time.After(time.Minute):
		t.Fatalf("%s run %d did not stop within a minute\n%s", r.name, r.runs, r.tail())
		return nil
	}
}

// counter sums a counter over the components of a run.
func (run *plRun) counter(name string) int64 {
	var n int64
	for _, p := range run.ps {
		for _, b := range p.Components {
			n += b.Counters.Counter(name).Load()
		}
	}
	return n
}

// tail returns the end of the runner's log.
func (r *plRunner) tail() string {
	data, _ := os.ReadFile(r.logs.Name())
	if len(data) > 6000 {
		data = data[len(data)-6000:]
	}
	return fmt.Sprintf("--- %s\n%s", r.logs.Name(), data)
}

// plLink carries the MQTT connections of one run of the drill to the
// broker. A power cut silences it: from then on nothing the client sends
// arrives and no new connection is taken.
type plLink struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	muted  bool
	conns  []net.Conn
}

func newPLLink(t *testing.T, target string) *plLink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &plLink{ln: ln, target: target}
	go l.serve()
	t.Cleanup(func() {
		l.cut()
		l.drop()
	})
	return l
}

func (l *plLink) addr() string { return l.ln.Addr().String() }

func (l *plLink) serve() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		b, err := net.Dial("tcp", l.target)
		if err != nil {
			c.Close()
			continue
		}
		l.mu.Lock()
		l.conns = append(l.conns, c, b)
		l.mu.Unlock()
		go func() {
			_, _ = io.Copy(c, b)
			c.Close()
		}()
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := c.Read(buf)
				l.mu.Lock()
				if n > 0 && !l.muted {
					if _, werr := b.Write(buf[:n]); werr != nil {
						err = werr
					}
				}
				l.mu.Unlock()
				if err != nil {
					b.Close()
					return
				}
			}
		}()
	}
}

// cut silences the link: nothing more reaches the broker.
func (l *plLink) cut() {
	l.mu.Lock()
	l.muted = true
	l.mu.Unlock()
	l.ln.Close()
}

// drop closes the link's connections: the broker sees them end.
func (l *plLink) drop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
}

// plOutput is what a run delivered: payloads and kinds by Nats-Msg-Id.
type plOutput struct {
	payload map[string][]byte
	kind    map[string]string
	copies  int // messages stored twice under one id
}

// readPLStream reads every message of a stream.
func readPLStream(t *testing.T, js natsgo.JetStreamContext, stream string) plOutput {
	t.Helper()
	info, err := js.StreamInfo(stream)
	if err != nil {
		t.Fatal(err)
	}
	out := plOutput{payload: map[string][]byte{}, kind: map[string]string{}}
	for q := info.State.FirstSeq; info.State.Msgs > 0 && q <= info.State.LastSeq; q++ {
		m, err := js.GetMsg(stream, q)
		if err != nil {
			t.Fatalf("%s seq %d: %v", stream, q, err)
		}
		id := m.Header.Get(natsgo.MsgIdHdr)
		if _, ok := out.payload[id]; ok {
			out.copies++
			continue
		}
		// The one byte that says which lane sent the row.
		p := m.Data
		if bytes.HasSuffix(p, []byte(`,"backfill":true}`)) {
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
		out.payload[id], out.kind[id] = p, kind
	}
	return out
}

// counts returns the number of messages per kind.
func (o plOutput) counts() map[string]int {
	c := map[string]int{}
	for _, k := range o.kind {
		c[k]++
	}
	return c
}

// plDiff describes how got differs from want, or returns "".
func plDiff(want, got plOutput) string {
	var missing, extra, differ []string
	for id, w := range want.payload {
		g, ok := got.payload[id]
		switch {
		case !ok:
			missing = append(missing, id)
		case !bytes.Equal(w, g):
			differ = append(differ, id)
		}
	}
	for id := range got.payload {
		if _, ok := want.payload[id]; !ok {
			extra = append(extra, id)
		}
	}
	if len(missing)+len(extra)+len(differ) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "counts per kind: reference %v, drill %v\n", want.counts(), got.counts())
	fmt.Fprintf(&b, "%d missing, %d extra, %d differing\n", len(missing), len(extra), len(differ))
	show := func(what string, ids []string, f func(id string) string) {
		slices.Sort(ids)
		for i, id := range ids {
			if i == 5 {
				fmt.Fprintf(&b, "  ... %d more %s\n", len(ids)-i, what)
				break
			}
			fmt.Fprintf(&b, "  %s %s %s\n", what, id, f(id))
		}
	}
	show("missing", missing, func(id string) string { return string(want.payload[id]) })
	show("extra", extra, func(id string) string { return string(got.payload[id]) })
	show("differing", differ, func(id string) string {
		return fmt.Sprintf("\n    reference %s\n    drill     %s", want.payload[id], got.payload[id])
	})
	return b.String()
}

// TestPowerLossDrill is the power-loss drill: 6 turbines post one reading
// a minute for 2 hours of event time (published over about 45 seconds,
// QoS 1) to the machine's Mosquitto, through a pipeline that checkpoints
// every 100ms with its ingest log synced before every acknowledgement, to
// a 1-minute window and an alert that holds for 5 minutes and clears
// again and again, into NATS JetStream (held durable buffers). The
// reference runs undisturbed on the real disk. The drill runs on a
// simulated disk (faultfs) whose power is cut 12 times at random moments
// (the seed is logged; SLUICE_POWER_LOSS_SEED repeats a drill): nothing
// the running pipeline sends reaches the broker any more (its MQTT
// connection runs through a link the cut silences, so acknowledgements
// still on their way are lost and the persistent session delivers those
// messages again), every write not synced by then is lost (half the
// time, an unsynced append is torn in half instead), every later disk
// operation of the run fails, the run is stopped, and a new run starts on
// what the disk kept.
// Once both have delivered, the drill's stream, by Nats-Msg-Id, must
// equal the reference's byte for byte: every window row, every raise and
// clear, once. Nothing of the drill's state may reach the real disk. It
// needs Mosquitto on 127.0.0.1:1883 and NATS JetStream on 127.0.0.1:4222.
func TestPowerLossDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("power-loss drill")
	}
	for _, addr := range []string{"127.0.0.1:1883", "127.0.0.1:4222"} {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Skipf("the power-loss drill needs Mosquitto on 127.0.0.1:1883 and NATS on 127.0.0.1:4222: %v", err)
		}
		c.Close()
	}
	began := time.Now()
	seed := uint64(began.UnixNano())
	if s := os.Getenv(plSeedEnv); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", plSeedEnv, err)
		}
		seed = v
	}
	t.Logf("power-loss drill seed %d (repeat with %s=%d)", seed, plSeedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, 0x9a55))

	suffix := outboundtest.Suffix()
	ref, drill := newPLRunner(t, "ref", suffix), newPLRunner(t, "drill", suffix)

	nc, err := natsgo.Connect("nats://127.0.0.1:4222")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*plRunner{ref, drill} {
		if _, err := js.AddStream(&natsgo.StreamConfig{Name: r.stream, Subjects: []string{r.subject + ".>"},
			Storage: natsgo.FileStorage, Duplicates: 10 * time.Minute}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = js.DeleteStream(r.stream) })
	}

	disk := faultfs.New()
	link := newPLLink(t, plBroker)
	refRun, drillRun := ref.start(t, nil, plBroker), drill.start(t, disk, link.addr())
	// The first runs subscribe; later ones find their sessions.
	for _, r := range []*plRunner{ref, drill} {
		outboundtest.Eventually(t, 30*time.Second, r.name+" subscribed", func() bool {
			data, _ := os.ReadFile(r.logs.Name())
			return bytes.Contains(data, []byte("mqtt: connected"))
		})
	}

	pub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://127.0.0.1:1883").SetClientID("pl-" + suffix + "-pub").
		SetCleanSession(true).SetAutoReconnect(false))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect: %v", tok.Error())
	}
	defer pub.Disconnect(100)
	var published atomic.Int64 // minutes published
	pubDone := make(chan error, 1)
	go func() {
		send := func(i, m int) error {
			for _, r := range []*plRunner{ref, drill} {
				tok := pub.Publish(fmt.Sprintf("/sys/%s/WT%02d/thing/measurepoint/post", r.pk, i), 1, false, plPost(i, m))
				if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					return fmt.Errorf("publish minute %d of WT%02d: %v", m, i, tok.Error())
				}
			}
			return nil
		}
		t0 := time.Now()
		for m := range plMinutes + 1 {
			if m == plMinutes {
				m = plClose
			} else {
				time.Sleep(time.Until(t0.Add(time.Duration(m) * plPublish / plMinutes)))
			}
			for i := range plTurbines {
				if err := send(i, m); err != nil {
					pubDone <- err
					return
				}
			}
			published.Add(1)
		}
		pubDone <- nil
	}()

	// The cuts.
	type cut struct {
		minute     int64         // minutes published by then
		afterStart time.Duration // from the start of the run it cut
		err        error         // what the run returned
		mode       faultfs.CrashMode
		stop       time.Duration // from the cut to the run's end
	}
	var cuts []cut
	var replayed, redelivered int64
	for range plCuts {
		time.Sleep(time.Duration(10+rng.IntN(1500)) * time.Millisecond)
		select {
		case err := <-drillRun.done:
			t.Fatalf("the drill's run %d ended by itself after %d cuts: %v\n%s", drill.runs, len(cuts), err, drill.tail())
		default:
		}
		// Power off: nothing the running pipeline sends reaches the
		// broker any more (acknowledgements included), what is not synced
		// is gone, and its disk fails from here on; then it stops, and
		// its connection closes.
		link.cut()
		c := cut{minute: published.Load(), afterStart: time.Since(drillRun.at), mode: faultfs.PowerLoss}
		if rng.IntN(2) == 0 {
			c.mode = faultfs.TornWrites
		}
		disk.FailAt(0, true)
		kept := disk.Crash(c.mode)
		link.drop()
		stopping := time.Now()
		c.err = drill.stop(t, drillRun)
		c.stop = time.Since(stopping)
		replayed += drillRun.counter("ingest_rows_replayed")
		redelivered += drillRun.counter("redeliveries")
		fmt.Fprintf(drill.logs, "--- power cut %d (%s) after %s: %v\n", len(cuts)+1, c.mode, c.afterStart, c.err)
		cuts = append(cuts, c)
		disk = kept
		link = newPLLink(t, plBroker)
		drillRun = drill.start(t, disk, link.addr())
	}
	if err := <-pubDone; err != nil {
		t.Fatal(err)
	}
	var at []string
	for _, c := range cuts {
		at = append(at, fmt.Sprintf("%d@%s/%s/%s", c.minute, c.afterStart.Round(time.Millisecond), c.mode, c.stop.Round(time.Millisecond)))
	}
	t.Logf("readings published in %s; cuts at minutes published@time into the run/mode/stopped in: %v", time.Since(began).Round(time.Millisecond), at)

	// Both deliver what the dataset makes, and nothing more for a while.
	raised, cleared := plAlerts()
	total := uint64(plTurbines*plMinutes + raised + cleared)
	msgs := func(r *plRunner) uint64 {
		info, err := js.StreamInfo(r.stream)
		if err != nil {
			return 0
		}
		return info.State.Msgs
	}
	var last [2]uint64
	stable := time.Now()
	for deadline := time.Now().Add(plWait); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		now := [2]uint64{msgs(ref), msgs(drill)}
		if now != last {
			last, stable = now, time.Now()
		}
		if now[0] >= total && now[1] >= total && time.Since(stable) > time.Second {
			break
		}
	}
	drained := time.Since(began)
	replayed += drillRun.counter("ingest_rows_replayed")
	redelivered += drillRun.counter("redeliveries")
	if err := ref.stop(t, refRun); err != nil {
		t.Errorf("reference: %v\n%s", err, ref.tail())
	}
	if err := drill.stop(t, drillRun); err != nil {
		t.Errorf("drill, last run: %v\n%s", err, drill.tail())
	}

	want, got := readPLStream(t, js, ref.stream), readPLStream(t, js, drill.stream)
	wantCounts := map[string]int{"m1": plTurbines * plMinutes, "alert raised": raised, "alert cleared": cleared}
	if c := want.counts(); !maps.Equal(c, wantCounts) || want.copies != 0 {
		t.Errorf("the reference delivered %v (%d ids twice), the dataset makes %v\n%s", c, want.copies, wantCounts, ref.tail())
	}
	if d := plDiff(want, got); d != "" {
		t.Errorf("the drill's output differs from the reference's (seed %d):\n%s\n%s", seed, d, drill.tail())
	}
	// The simulated disk held all of the drill's state.
	if _, err := os.Stat(drill.data); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the drill's data directory %s is on the real disk (%v): some state bypassed the file system seam", drill.data, err)
	}
	var failed int
	for _, c := range cuts {
		if c.err != nil {
			failed++
		}
	}
	t.Logf("%d power cuts (%d runs failed on the dead disk, %d stopped before noticing); %d readings; delivered: reference %v, drill %v (%d ids stored twice); "+
		"ingest rows replayed %d, redeliveries dropped %d; drained %s after the start",
		len(cuts), failed, len(cuts)-failed, plTurbines*(plMinutes+1), want.counts(), got.counts(), got.copies,
		replayed, redelivered, drained.Round(time.Millisecond))
}
