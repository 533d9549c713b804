package pipelines_test

import (
	"bytes"
	"context"
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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/faultfs"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
	"github.com/sluice-edge/sluice/pipelines"
	"github.com/sluice-edge/sluice/pipelines/drilltest"
)

// The power-loss drill: the kill drill's pipeline (MQTT in, a 1-minute
// window, an alert held for 5 minutes, NATS JetStream out, checkpoints)
// run in this process on a simulated disk (engine/buffer/faultfs) that
// loses, at random moments, every write not yet synced.

// plFarm is the drill's dataset: 6 turbines, 120 event-time minutes of
// readings each, the closing readings at minute 240.
var plFarm = drilltest.Farm{Turbines: 6, Minutes: 120, Close: 240}

const (
	plCuts    = 12
	plPublish = 45 * time.Second // wall time over which the readings are published
	plWait    = 90 * time.Second
	plEdge    = "site"
	plBroker  = drilltest.Broker
	// plSeedEnv sets the seed of the cut moments (default: the clock).
	plSeedEnv = "SLUICE_POWER_LOSS_SEED"
)

// plPipeline is the pipeline of both runs: %[1]s is the MQTT client id,
// %[2]s the product key of its topics, %[3]s its sinks (plSinks), %[4]s
// the address of the broker.
const plPipeline = `name: farm
checkpoint: {interval: 100ms, ingest_fsync: always}
event_time: {max_future: 0s, max_past: 0s}
sources:
  turbines:
    type: mqtt
    urls: [tcp://%[4]s]
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
%[3]s`

// plSinks are the sinks of plPipeline, to NATS JetStream on
// 127.0.0.1:4222. Their buffers have a fixed quota: a share of the free
// space would be measured on the real disk.
func plSinks(subject, stream string) string {
	s := drilltest.Sinks{URL: "nats://127.0.0.1:4222", Subject: subject, Stream: stream, Drain: "1s", Buffer: "{max_bytes: 256MiB}"}
	return s.YAML("m1", "hot")
}

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
	def := fmt.Appendf(nil, plPipeline, r.client, r.pk, plSinks(r.subject, r.stream), broker)
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
	seed := drilltest.Seed(t, "power-loss drill", plSeedEnv)
	rng := rand.New(rand.NewPCG(seed, 0x9a55))

	suffix := outboundtest.Suffix()
	ref, drill := newPLRunner(t, "ref", suffix), newPLRunner(t, "drill", suffix)

	js := drilltest.JetStream(t, "nats://127.0.0.1:4222")
	for _, r := range []*plRunner{ref, drill} {
		drilltest.AddStream(t, js, r.stream, r.subject)
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

	published := plFarm.Publish(drilltest.Client(t, "pl-"+suffix+"-pub"), plPublish, ref.pk, drill.pk)

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
		c := cut{minute: published.Minutes(), afterStart: time.Since(drillRun.at), mode: faultfs.PowerLoss}
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
	if err := published.Wait(); err != nil {
		t.Fatal(err)
	}
	var at []string
	for _, c := range cuts {
		at = append(at, fmt.Sprintf("%d@%s/%s/%s", c.minute, c.afterStart.Round(time.Millisecond), c.mode, c.stop.Round(time.Millisecond)))
	}
	t.Logf("readings published in %s; cuts at minutes published@time into the run/mode/stopped in: %v", time.Since(began).Round(time.Millisecond), at)

	// Both deliver what the dataset makes, and nothing more for a while.
	wantCounts := plFarm.Counts(map[string]time.Duration{"m1": time.Minute})
	drilltest.WaitDelivered(js, drilltest.Total(wantCounts), plWait, ref.stream, drill.stream)
	drained := time.Since(began)
	replayed += drillRun.counter("ingest_rows_replayed")
	redelivered += drillRun.counter("redeliveries")
	if err := ref.stop(t, refRun); err != nil {
		t.Errorf("reference: %v\n%s", err, ref.tail())
	}
	if err := drill.stop(t, drillRun); err != nil {
		t.Errorf("drill, last run: %v\n%s", err, drill.tail())
	}

	want, got := drilltest.ReadStream(t, js, ref.stream), drilltest.ReadStream(t, js, drill.stream)
	if c := want.Counts(); !maps.Equal(c, wantCounts) || want.Copies != 0 {
		t.Errorf("the reference delivered %v (%d ids twice), the dataset makes %v\n%s", c, want.Copies, wantCounts, ref.tail())
	}
	if d := drilltest.Diff(want, got, true); d != "" {
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
		len(cuts), failed, len(cuts)-failed, plFarm.Turbines*(plFarm.Minutes+1), want.Counts(), got.Counts(), got.Copies,
		replayed, redelivered, drained.Round(time.Millisecond))
}
