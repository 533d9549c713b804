package server_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	_ "github.com/jackc/pgx/v5/stdlib"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/bundle"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/hub/hubsync"
	"github.com/sluice-edge/sluice/engine/hub/ingest"
	"github.com/sluice-edge/sluice/engine/hub/protocol"
	"github.com/sluice-edge/sluice/engine/hub/server"
	"github.com/sluice-edge/sluice/engine/hub/store"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/nats-io/nats.go/jetstream.(*jetStream).resetPendingAcksOnReconnect"))
}

var seqNo atomic.Int64

const testToken = "0123456789abcdef0123456789abcdef"

// env is a test's own nats-server and store schema, and a signing key.
type env struct {
	t      testing.TB
	nats   *enginetest.NATSServer
	dsn    string
	schema string
	db     *sql.DB
	key    ed25519.PrivateKey
	trust  *bundle.Trust
	// opts are given to every hub the env starts.
	opts server.Options
}

func newEnv(t testing.TB) *env {
	t.Helper()
	dsn := outboundtest.PostgresDSN(t)
	n := enginetest.NewNATSServer(t)
	n.Start()
	schema := fmt.Sprintf("hub_server_test_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9, seqNo.Add(1))
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := db.Exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		db.Close()
	})
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
	trust := bundle.NewTrust(key.Public().(ed25519.PublicKey))
	return &env{t: t, nats: n, dsn: dsn, schema: schema, db: db, key: key, trust: trust,
		opts: server.Options{Trust: trust, Ingest: ingest.Options{FetchWait: 100 * time.Millisecond}, JanitorEvery: time.Hour}}
}

// connect returns a JetStream client of the env's server, closed when the
// test ends.
func (e *env) connect() (*natsgo.Conn, jetstream.JetStream) {
	e.t.Helper()
	nc, err := natsgo.Connect(e.nats.URL(), natsgo.MaxReconnects(-1), natsgo.ReconnectWait(50*time.Millisecond))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		e.t.Fatal(err)
	}
	return nc, js
}

// instance is one running hub and its API.
type instance struct {
	hub    *server.Hub
	st     *store.Store
	api    *server.API
	client *server.Client
	nc     *natsgo.Conn
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// start starts a hub instance (store, consumers, API) and waits until its
// resources exist.
func (e *env) start() *instance {
	e.t.Helper()
	st, err := store.Open(context.Background(), e.dsn, store.Options{Schema: e.schema})
	if err != nil {
		e.t.Fatal(err)
	}
	nc, js := e.connect()
	h, err := server.New(js, st, e.opts)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := h.Ensure(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	api, err := server.Listen("127.0.0.1:0", testToken, h, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	c, err := server.NewClient("http://"+api.Addr(), testToken)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{hub: h, st: st, api: api, client: c, nc: nc, cancel: cancel, done: make(chan error, 1)}
	go func() { in.done <- h.Run(ctx) }()
	e.t.Cleanup(in.stop)
	return in
}

// stop stops the instance; later calls do nothing.
func (in *instance) stop() {
	in.once.Do(func() {
		in.cancel()
		<-in.done
		in.api.Close()
		in.client.Close()
		in.st.Close()
		in.nc.Close()
	})
}

// kill ends the instance abruptly: its connection to NATS drops with
// whatever it holds unacked, then it stops.
func (in *instance) kill() {
	in.nc.Close()
	in.stop()
}

// build returns a signed bundle of release name v; two builds differ.
func (e *env) build(name string, v uint64, key ed25519.PrivateKey) []byte {
	e.t.Helper()
	src := e.t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "pipelines"), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "pipelines", "p.yaml"), fmt.Appendf(nil, "# build %d\nsources:\n  s: {type: sim, rows: %d}\n", seqNo.Add(1), v), 0o644); err != nil {
		e.t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := bundle.Build(&buf, src, bundle.BuildOptions{Name: name, Version: v, Key: key}); err != nil {
		e.t.Fatal(err)
	}
	return buf.Bytes()
}

// publish publishes messages as the nats sink and the edge's forwarder
// do: metadata as headers and the id as Nats-Msg-Id.
func publish(t testing.TB, js jetstream.JetStream, subject string, msgs []*message.Message) {
	t.Helper()
	for _, m := range msgs {
		nm := natsgo.NewMsg(subject)
		for k, v := range m.Metadata {
			nm.Header.Set(k, v)
		}
		nm.Header.Set(natsgo.MsgIdHdr, m.UUID)
		nm.Data = m.Payload
		if _, err := js.PublishMsgAsync(nm); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("publish did not complete")
	}
}

// statsT0 is the first event time of the rows the tests send on a
// stream of statsSchema.
var statsT0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// statsSchema is the schema of the data streams the tests send: a time
// ts, an asset and a value v, keyed by ts and asset.
func statsSchema() *engine.Schema {
	return engine.MustSchema([]engine.Field{
		{Name: "ts", Type: engine.Timestamp},
		{Name: "asset", Type: engine.String},
		{Name: "v", Type: engine.Float64},
	}, "ts", "asset")
}

// sendEdgeEvent publishes msgs, one edge event of edge e1, on subject,
// waits until instance in handled it (recorded or set aside as poison)
// and returns what the API shows of e1.
func sendEdgeEvent(t testing.TB, in *instance, js jetstream.JetStream, subject string, msgs []*message.Message) server.EdgeDetail {
	t.Helper()
	publish(t, js, subject, msgs)
	waitFor(t, 10*time.Second, "edge event handled", func() error {
		if _, ev := in.hub.Stats(); ev.Messages+ev.Poison != 1 {
			return fmt.Errorf("edge events %+v", ev)
		}
		return nil
	})
	d, err := in.client.Edge(context.Background(), "e1")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// encode encodes rows of schema s, sequences from first, as the edge's
// forwarder does (json).
func encode(t testing.TB, edge, stream string, s *engine.Schema, first uint64, rows ...enginetest.Row) []*message.Message {
	t.Helper()
	rec := enginetest.Record(nil, s, rows...)
	defer rec.Release()
	en := outbound.Encoder{Encoding: outbound.JSON, Edge: edge, Stream: stream}
	msgs, err := en.Encode(outbound.Entry{Rec: rec, First: first, Schema: s})
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// edgeSim is an edge as the hub sees it: a real agent (with a runner that
// only records switches) follows its desired release through hubsync, and
// its heartbeats and apply reports travel as rows on its subjects, as the
// edge's forwarder sends them.
type edgeSim struct {
	t      testing.TB
	id     string
	labels string
	js     jetstream.JetStream
	agent  *agent.Agent
	mu     sync.Mutex
	hbSeq  uint64
	repSeq uint64
	out    chan agent.Report
}

func (e *env) edge(id, labels string) *edgeSim {
	e.t.Helper()
	_, js := e.connect()
	s := &edgeSim{t: e.t, id: id, labels: labels, js: js, out: make(chan agent.Report, 64)}
	var lm map[string]string
	if err := json.Unmarshal([]byte(labels), &lm); err != nil {
		e.t.Fatal(err)
	}
	a, err := agent.Open(agent.Options{Dir: filepath.Join(e.t.TempDir(), "agent"), Edge: id, Labels: lm,
		Trust: e.trust, DiskReserve: 1, OnReport: func(r agent.Report) { s.out <- r }}, switcher{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { a.Close() })
	if _, err := a.Start(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	s.agent = a
	// The agent reports with its apply lock held: the reports leave from
	// here, as the edge's uplink buffers them.
	done := make(chan struct{})
	stop := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case r := <-s.out:
				s.report(r)
			case <-stop:
				return
			}
		}
	}()
	e.t.Cleanup(func() { close(stop); <-done })
	return s
}

// switcher is a Runner whose switches always succeed.
type switcher struct{}

func (switcher) Check(string, *bundle.Manifest) error { return nil }

func (switcher) Switch(_ context.Context, _ string, m *bundle.Manifest) (string, error) {
	return fmt.Sprintf("switched to %s v%d", m.Name, m.Version), nil
}

// heartbeat sends a heartbeat stamped at.
func (s *edgeSim) heartbeat(at time.Time) {
	s.t.Helper()
	s.mu.Lock()
	s.hbSeq++
	seq := s.hbSeq
	s.mu.Unlock()
	name, ver := hubsync.AgentCurrent(s.agent)()
	running := `[{"pipeline":"p","state":"running"}]`
	msgs := encode(s.t, s.id, protocol.HeartbeatStream, protocol.HeartbeatSchema(), seq,
		enginetest.Row{at, s.labels, name, int64(ver), running, int64(3), "test"})
	publish(s.t, s.js, "sluice."+s.id+".heartbeat", msgs)
}

// report sends an apply report.
func (s *edgeSim) report(rep agent.Report) {
	s.mu.Lock()
	s.repSeq++
	seq := s.repSeq
	s.mu.Unlock()
	msgs := encode(s.t, s.id, protocol.ReportStream, protocol.ReportSchema(), seq,
		enginetest.Row{rep.Time, rep.Bundle, int64(rep.Version), rep.Outcome, rep.Reason, rep.Location, rep.Steps, rep.File})
	publish(s.t, s.js, "sluice."+s.id+".reports", msgs)
}

// run follows the edge's desired release until the test ends.
func (s *edgeSim) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = hubsync.Sync(ctx, s.js, s.id, s.agent, hubsync.Options{Current: hubsync.AgentCurrent(s.agent), MinBackoff: 50 * time.Millisecond,
			MaxBackoff: 200 * time.Millisecond, Resync: time.Second})
	}()
	s.t.Cleanup(func() { cancel(); <-done })
}

// waitFor polls f until it returns nil or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// states returns "edge=state" of each edge of release id.
func states(t testing.TB, c *server.Client, id string) (string, server.ReleaseView) {
	t.Helper()
	v, err := c.ReleaseStatus(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	s := ""
	for _, e := range v.Edges {
		s += e.Edge + "=" + e.State + " "
	}
	return s, v
}

func jetstreamConfig(name, subject string) jetstream.StreamConfig {
	return jetstream.StreamConfig{Name: name, Subjects: []string{subject}, Duplicates: time.Minute}
}
