package pipelines_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"

	wnats "github.com/sluice-edge/sluice/connectors/nats"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/forward"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
	"github.com/sluice-edge/sluice/engine/spec"
	_ "github.com/sluice-edge/sluice/pipelines"
)

var fwdSchema = engine.MustSchema([]engine.Field{
	{Name: "time", Type: engine.Timestamp}, {Name: "asset", Type: engine.String}, {Name: "v", Type: engine.Float64},
}, "time", "asset")

func fwdRows(base, n int) arrow.RecordBatch {
	rb := engine.NewRecordBuilder(memory.DefaultAllocator, fwdSchema)
	defer rb.Release()
	for i := range n {
		k := base + i
		rb.Timestamp(0).Append(arrow.Timestamp(1_700_000_000_000 + int64(k)))
		rb.String(1).Append(fmt.Sprintf("WT%03d", k%100))
		rb.Float64(2).Append(float64(k))
		rb.RowDone()
	}
	return rb.NewRecord()
}

// jetstream runs an embedded JetStream server on a fixed port and store.
type jetstream struct {
	t    testing.TB
	port int
	dir  string
	srv  *server.Server
}

func newJetStream(t testing.TB) *jetstream {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no local TCP port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	js := &jetstream{t: t, port: port, dir: t.TempDir()}
	js.start()
	t.Cleanup(js.stop)
	return js
}

func (j *jetstream) start() {
	j.t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: j.port, JetStream: true, StoreDir: j.dir, NoLog: true, NoSigs: true})
	if err != nil {
		j.t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		j.t.Skip("embedded NATS server did not start")
	}
	j.srv = s
}

func (j *jetstream) stop() {
	if j.srv != nil {
		j.srv.Shutdown()
		j.srv.WaitForShutdown()
		j.srv = nil
	}
}

func (j *jetstream) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", j.port) }

// natsSink builds the registered "nats" sink type from YAML, as a pipeline
// would.
func natsSink(t testing.TB, url, name, dir, extra string, hook func(forward.Delivery)) *forward.Sink {
	t.Helper()
	c, ok := engine.Lookup(spec.KindSink, "nats")
	if !ok {
		t.Fatal("sink type nats is not registered")
	}
	src := fmt.Sprintf("url: %s\nsubject: fwd.%s\nstream: %s\ntimeout: 500ms\nencoding: json_batch\nbatch_rows: 256\n"+
		"buffer: {dir: %s}\nforward: {retry_min: 5ms, retry_max: 200ms, max_attempts: 3, drain_timeout: 2s}\n%s", url, name, name, dir, extra)
	cfg := outboundtest.Parse(t, c.Spec, src)
	bc := engine.BuildContext{Pipeline: "p", Name: name, Edge: "site", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Counters: engine.NewCounters()}
	s, err := c.Sink(cfg, fwdSchema, bc)
	if err != nil {
		t.Fatal(err)
	}
	fs := s.(*forward.Sink)
	if hook != nil {
		// Tests observe deliveries through the option; rebuild with it.
		_ = fs.Close(context.Background())
		opts, err := forward.FromConfig(cfg, fwdSchema, bc)
		if err != nil {
			t.Fatal(err)
		}
		opts.OnDelivered = hook
		reg, _ := outbound.LookupPublisher("nats")
		pub, err := reg.New(cfg, bc)
		if err != nil {
			t.Fatal(err)
		}
		if fs, err = forward.New(pub, opts); err != nil {
			t.Fatal(err)
		}
	}
	return fs
}

type fwdTally struct{ accepted, delivered, duplicates, lost, backfillWrong, orderErrors int }

func (f fwdTally) String() string {
	return fmt.Sprintf("accepted %d, delivered %d, duplicates %d, lost %d", f.accepted, f.delivered, f.duplicates, f.lost)
}

// consume reads the whole JetStream stream, dedupes by ID and checks
// completeness 1..n and per-lane order; outage rows must be backfill.
func consume(t testing.TB, url, stream string, n int, outage func(uint64) bool) fwdTally {
	t.Helper()
	nc, err := natsgo.Connect(url, natsgo.Timeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := nc.JetStream()
	info, err := js.StreamInfo(stream)
	if err != nil {
		t.Fatal(err)
	}
	tl := fwdTally{accepted: n}
	seen := map[string]bool{}
	have := make([]bool, n+1)
	last := map[string]uint64{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		raw, err := js.GetMsg(stream, seq)
		if err != nil {
			t.Fatal(err)
		}
		m, err := wnats.Marshaler().Unmarshal(&natsgo.Msg{Subject: raw.Subject, Header: raw.Header, Data: raw.Data})
		if err != nil {
			t.Fatal(err)
		}
		if seen[m.UUID] {
			tl.duplicates++
			continue
		}
		seen[m.UUID] = true
		lo, _ := strconv.ParseUint(m.Metadata.Get(outbound.MetaFirstSeq), 10, 64)
		hi, _ := strconv.ParseUint(m.Metadata.Get(outbound.MetaLastSeq), 10, 64)
		lane := m.Metadata.Get(outbound.MetaBackfill)
		if lo <= last[lane] {
			tl.orderErrors++
		}
		last[lane] = hi
		for s := lo; s <= hi && s <= uint64(n); s++ {
			if have[s] {
				tl.duplicates++
			}
			have[s] = true
			if outage != nil && outage(s) && lane != "true" {
				tl.backfillWrong++
			}
		}
	}
	for s := 1; s <= n; s++ {
		if have[s] {
			tl.delivered++
		} else {
			tl.lost++
		}
	}
	return tl
}

func waitFor(t testing.TB, d time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestForwardNATSOutage stops the broker mid-stream, keeps writing, restarts
// it on the same port and store, and checks every row arrived once (after ID
// dedupe), in order per lane, with outage rows flagged backfill.
func TestForwardNATSOutage(t *testing.T) {
	srv := newJetStream(t)
	name := "OUT" + outboundtest.Suffix()
	start := time.Now()
	s := natsSink(t, srv.url(), name, filepath.Join(t.TempDir(), "buf"), "", nil)
	defer s.Close(context.Background())
	n := 0
	write := func(k int) {
		for range k {
			if err := s.Write(context.Background(), engine.Batch{Rec: fwdRows(n, 100)}); err != nil {
				t.Fatal(err)
			}
			n += 100
		}
	}
	write(20)
	waitFor(t, 10*time.Second, "live rows delivered", func() bool { return s.Buffer().Cursor() == uint64(n) })
	srv.stop()
	outFrom := uint64(n + 1)
	write(50) // accepted while the broker is down
	outTo := uint64(n)
	waitFor(t, 10*time.Second, "forwarder to notice the outage", func() bool { return !s.Metrics().LinkUp })
	write(10)
	srv.start()
	write(20)
	waitFor(t, 30*time.Second, "backlog drained", func() bool { return s.Buffer().Cursor() == uint64(n) })
	tl := consume(t, srv.url(), name, n, func(seq uint64) bool { return seq >= outFrom && seq <= outTo })
	t.Logf("outage: %v; order errors %d, outage rows not flagged backfill %d (%v)", tl, tl.orderErrors, tl.backfillWrong, time.Since(start).Round(time.Millisecond))
	if tl.lost != 0 || tl.orderErrors != 0 || tl.backfillWrong != 0 {
		t.Fatal("outage guarantees broken")
	}
}

const childEnv = "SLUICE_FORWARD_KILL_CHILD"

// TestForwardKillChild is the writer process of TestForwardKill9: it writes
// batches into a buffered sink whose broker is down and prints each
// acknowledged sequence.
func TestForwardKillChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("runs only as the subprocess of TestForwardKill9")
	}
	parts := strings.SplitN(os.Getenv(childEnv), "|", 3)
	s := natsSink(t, parts[0], parts[1], parts[2], "", nil)
	n := 0
	for {
		if err := s.Write(context.Background(), engine.Batch{Rec: fwdRows(n, 10)}); err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		n += 10
		fmt.Printf("ACK %d\n", n)
	}
}

// TestForwardKill9 kills a writer with SIGKILL during an outage, restarts
// the sink on the same buffer with the broker up and finds every
// acknowledged row delivered.
func TestForwardKill9(t *testing.T) {
	srv := newJetStream(t)
	name := "KILL" + outboundtest.Suffix()
	dir := filepath.Join(t.TempDir(), "buf")
	url := srv.url()
	srv.stop() // outage from the start
	cmd := exec.Command(os.Args[0], "-test.run=^TestForwardKillChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+url+"|"+name+"|"+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := 0
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "ACK "); ok {
			acked, _ = strconv.Atoi(v)
			if acked >= 3000 {
				break
			}
		}
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	go io.Copy(io.Discard, out)
	_ = cmd.Wait()
	if acked == 0 {
		t.Fatal("child acknowledged nothing")
	}
	srv.start()
	start := time.Now()
	s := natsSink(t, url, name, dir, "", nil)
	defer s.Close(context.Background())
	waitFor(t, 30*time.Second, "backlog delivered after restart", func() bool { return s.Buffer().Cursor() >= uint64(acked) })
	tl := consume(t, url, name, acked, nil)
	t.Logf("kill -9: %v (buffer held %d rows; redelivered in %v)", tl, s.Buffer().Status().NextSeq-1, time.Since(start).Round(time.Millisecond))
	if tl.lost != 0 {
		t.Fatal("acknowledged rows lost")
	}
}

// TestForwardPoisonNATS sends one batch larger than the server's
// max_payload among normal ones: it is dead-lettered, the rest flows.
func TestForwardPoisonNATS(t *testing.T) {
	srv := newJetStream(t)
	name := "POISON" + outboundtest.Suffix()
	s := natsSink(t, srv.url(), name, filepath.Join(t.TempDir(), "buf"), "", nil)
	defer s.Close(context.Background())
	n := 0
	mk := func(rows int, big bool) arrow.RecordBatch {
		rb := engine.NewRecordBuilder(memory.DefaultAllocator, fwdSchema)
		defer rb.Release()
		for i := range rows {
			rb.Timestamp(0).Append(arrow.Timestamp(1_700_000_000_000 + int64(n+i)))
			if big {
				rb.String(1).Append(strings.Repeat("x", 8<<10)) // 256 rows x 8 KiB > 1 MB max_payload
			} else {
				rb.String(1).Append("WT1")
			}
			rb.Float64(2).Append(float64(n + i))
			rb.RowDone()
		}
		return rb.NewRecord()
	}
	for i := range 6 {
		big := i == 2
		if err := s.Write(context.Background(), engine.Batch{Rec: mk(256, big)}); err != nil {
			t.Fatal(err)
		}
		n += 256
	}
	waitFor(t, 30*time.Second, "everything delivered or dead-lettered", func() bool { return s.Buffer().Cursor() == uint64(n) })
	dead := s.Buffer().DeadLetters()
	tl := consume(t, srv.url(), name, n, nil)
	deadRows := 0
	for _, d := range dead {
		deadRows += int(d.Last - d.First + 1)
	}
	t.Logf("poison: %v; dead-lettered %d rows in %d segments, publish errors %v", tl, deadRows, len(dead), s.Metrics().PublishErrors)
	// Messages of 256 rows are cut from each batch's first row: 513-768
	// is the oversized message.
	if len(dead) != 1 || dead[0].First != 513 || deadRows != tl.lost || tl.lost == 0 {
		t.Fatalf("want the oversized message (from row 513) dead-lettered and all others delivered")
	}
}

// TestForwardBackfillLatency measures the drain rate of a large backlog to
// a local JetStream and the latency of live rows written meanwhile.
func TestForwardBackfillLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	srv := newJetStream(t)
	name := "LAT" + outboundtest.Suffix()
	dir := filepath.Join(t.TempDir(), "buf")
	var live []time.Duration
	var liveMu = make(chan struct{}, 1)
	liveMu <- struct{}{}
	backlogDone := make(chan struct{})
	var drainStart time.Time
	backlog := 200_000
	hook := func(d forward.Delivery) {
		if d.Live {
			<-liveMu
			live = append(live, d.Latency)
			liveMu <- struct{}{}
		}
	}
	// Build the backlog while the broker is down.
	srv.stop()
	s := natsSink(t, srv.url(), name, dir, "", hook)
	for i := 0; i < backlog; i += 1000 {
		if err := s.Write(context.Background(), engine.Batch{Rec: fwdRows(i, 1000)}); err != nil {
			t.Fatal(err)
		}
	}
	srv.start()
	drainStart = time.Now()
	n := backlog
	go func() {
		defer close(backlogDone)
		for s.Buffer().Cursor() < uint64(backlog) {
			time.Sleep(time.Millisecond)
		}
	}()
	// Live rows: 100 rows every 10 ms while the backlog drains.
	ticker := time.NewTicker(10 * time.Millisecond)
	defer ticker.Stop()
	for draining := true; draining; {
		select {
		case <-backlogDone:
			draining = false
		case <-ticker.C:
			if err := s.Write(context.Background(), engine.Batch{Rec: fwdRows(n, 100)}); err != nil {
				t.Fatal(err)
			}
			n += 100
		case <-time.After(60 * time.Second):
			t.Fatal("backlog did not drain in 60 s")
		}
	}
	drain := time.Since(drainStart)
	waitFor(t, 30*time.Second, "live rows delivered", func() bool { return s.Buffer().Cursor() == uint64(n) })
	_ = s.Close(context.Background())
	<-liveMu
	slices.Sort(live)
	p := func(q float64) time.Duration {
		if len(live) == 0 {
			return 0
		}
		return live[min(len(live)-1, int(q*float64(len(live))))]
	}
	tl := consume(t, srv.url(), name, n, nil)
	rate := float64(backlog) / drain.Seconds()
	t.Logf("backfill: %d rows drained in %v = %.0f rows/s (= point values/s: one value per row; %.0f values/s with 10-point rows at equal row rate); live batches %d (transient publish errors %d): p50 %v p99 %v max %v; %v",
		backlog, drain.Round(time.Millisecond), rate, rate*10, len(live), s.Metrics().PublishErrors["transient"], p(0.5), p(0.99), p(1), tl)
	if tl.lost != 0 {
		t.Fatal("rows lost")
	}
}

var _ = message.NewMessage
