package ingest_test

import (
	"context"
	cryptorand "crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/hub/ingest"
	"github.com/sluice-edge/sluice/engine/hub/store"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/nats-io/nats.go/jetstream.(*jetStream).resetPendingAcksOnReconnect"))
}

// newNATSProcess starts a nats-server of the test's own, with JetStream
// in a temporary directory.
func newNATSProcess(t testing.TB) *enginetest.NATSServer {
	n := enginetest.NewNATSServer(t)
	n.Start()
	return n
}

var seqNo atomic.Int64

// testDSN is the machine's test database (see outboundtest.PostgresDSN).
func testDSN(t testing.TB) string { return outboundtest.PostgresDSN(t) }

// env is a test's own nats-server, stream and store schema.
type env struct {
	t      testing.TB
	js     jetstream.JetStream
	st     *store.Store
	db     *sql.DB
	schema string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	dsn := testDSN(t)
	n := newNATSProcess(t)
	nc, err := natsgo.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EDGES", Subjects: []string{"edges.>"},
		Duplicates: time.Hour}); err != nil {
		t.Fatal(err)
	}
	schema := fmt.Sprintf("ingest_test_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9, seqNo.Add(1))
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
	st, err := store.Open(ctx, dsn, store.Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return &env{t: t, js: js, st: st, db: db, schema: schema}
}

// publish publishes messages as the nats sink does: metadata as headers
// and the id as Nats-Msg-Id.
func (e *env) publish(subject string, msgs []*message.Message) {
	e.t.Helper()
	for _, m := range msgs {
		nm := natsgo.NewMsg(subject)
		for k, v := range m.Metadata {
			nm.Header.Set(k, v)
		}
		nm.Header.Set(natsgo.MsgIdHdr, m.UUID)
		nm.Data = m.Payload
		if _, err := e.js.PublishMsgAsync(nm); err != nil {
			e.t.Fatal(err)
		}
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		e.t.Fatal("publish did not complete")
	}
}

func (e *env) count(where string) int {
	e.t.Helper()
	var n int
	if err := e.db.QueryRow("SELECT count(*) FROM " + e.schema + ".telemetry " + where).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// drained waits until the consumer has nothing pending or unacked.
func (e *env) drained(durable string) {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := e.js.Consumer(context.Background(), "EDGES", durable)
		if err == nil {
			info, err := c.Info(context.Background())
			if err == nil && info.NumPending == 0 && info.NumAckPending == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			info, _ := e.js.Consumer(context.Background(), "EDGES", durable)
			if info != nil {
				ci, _ := info.Info(context.Background())
				e.t.Logf("consumer info %+v", ci)
			}
			e.t.Fatalf("consumer %s did not drain", durable)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// running is an Ingest started in a goroutine.
type running struct {
	g      *ingest.Ingest
	cancel context.CancelFunc
	done   chan error
}

func (e *env) start(durable string) *running {
	return e.startWith(durable, 0)
}

// startWith starts an Ingest fetching batches of at most fetchBytes bytes
// (of at most the default count of messages when zero).
func (e *env) startWith(durable string, fetchBytes int) *running {
	e.t.Helper()
	return e.startOn(e.st, ingest.Options{Stream: "EDGES", Durable: durable,
		FilterSubjects: []string{"edges.>"}, FetchWait: 200 * time.Millisecond, FetchBytes: fetchBytes})
}

// startOn starts an Ingest with opts writing to st (the env's store or
// one wrapping it); it stops when the test ends.
func (e *env) startOn(st ingest.Store, opts ingest.Options) *running {
	e.t.Helper()
	g, err := ingest.New(e.js, st, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{g: g, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- g.Run(ctx) }()
	e.t.Cleanup(r.stop)
	return r
}

func (r *running) stop() {
	r.cancel()
	<-r.done
	r.done <- nil // later stops return at once
}

var dataSchema = engine.MustSchema([]engine.Field{
	{Name: "ts", Type: engine.Timestamp},
	{Name: "asset", Type: engine.String},
	{Name: "v", Type: engine.Float64},
}, "ts", "asset")

// publishBatches publishes rows of dataSchema as stream stats of edge
// e1 from sequence 1, in json_batch messages of 10 rows.
func (e *env) publishBatches(rows []enginetest.Row) {
	e.t.Helper()
	e.publish("edges.e1.stats", e.encode(rows, 10))
}

// encode encodes rows of dataSchema as stream stats of edge e1 from
// sequence 1, in json_batch messages of batch rows.
func (e *env) encode(rows []enginetest.Row, batch int) []*message.Message {
	e.t.Helper()
	rec := enginetest.Record(nil, dataSchema, rows...)
	defer rec.Release()
	en := outbound.Encoder{Encoding: outbound.JSONBatch, Edge: "e1", Stream: "stats", BatchRows: batch}
	msgs, err := en.Encode(outbound.Entry{Rec: rec, First: 1, Schema: dataSchema})
	if err != nil {
		e.t.Fatal(err)
	}
	return msgs
}

// secondRows returns n rows of dataSchema a second apart from
// 2025-03-01, the value of row i being i and its asset "A", or odd[i]
// where odd has one.
func secondRows(n int, odd map[int]string) []enginetest.Row {
	t0 := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	rows := make([]enginetest.Row, n)
	for i := range rows {
		asset, ok := odd[i]
		if !ok {
			asset = "A"
		}
		rows[i] = enginetest.Row{t0.Add(time.Duration(i) * time.Second), asset, float64(i)}
	}
	return rows
}

// publishRows publishes total rows from three edges (json, json_batch
// and arrow; the arrow edge's rows are backfill) and republishes about a
// fifth of them, cut into other messages, plus some exact copies.
func (e *env) publishRows(total int) {
	e.t.Helper()
	t0 := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	encs := []outbound.Encoding{outbound.JSON, outbound.JSONBatch, outbound.Arrow}
	for k, enc := range encs {
		edge := fmt.Sprintf("edge%d", k)
		n := total / 3
		if k == 0 {
			n += total % 3
		}
		rows := make([]enginetest.Row, n)
		for i := range rows {
			rows[i] = enginetest.Row{t0.Add(time.Duration(i) * time.Millisecond), fmt.Sprintf("A%d", i%10), float64(i)}
		}
		mk := func(enc outbound.Encoding, batch, lo, hi int) []*message.Message {
			rec := enginetest.Record(nil, dataSchema, rows[lo:hi]...)
			defer rec.Release()
			en := outbound.Encoder{Encoding: enc, Edge: edge, Stream: "stats", BatchRows: batch}
			msgs, err := en.Encode(outbound.Entry{Rec: rec, First: uint64(lo + 1), Schema: dataSchema, Backfill: k == 2})
			if err != nil {
				e.t.Fatal(err)
			}
			return msgs
		}
		subject := "edges." + edge + ".stats"
		msgs := mk(enc, 100, 0, n)
		e.publish(subject, msgs)
		// Exact copies: JetStream drops them by Nats-Msg-Id.
		e.publish(subject, msgs[:len(msgs)/10])
		// The same rows cut differently: new ids, stored once by key.
		dupEnc := outbound.JSONBatch
		if enc == outbound.JSONBatch {
			dupEnc = outbound.Arrow
		}
		e.publish(subject, mk(dupEnc, 37, n/3, n/3+n/5))
	}
}

func TestIngestExactlyOnceWithRestart(t *testing.T) {
	e := newEnv(t)
	e.publishRows(20000)
	a := e.start("hub")
	deadline := time.Now().Add(30 * time.Second)
	for e.count("") < 5000 {
		if time.Now().After(deadline) {
			t.Fatal("first instance stored too little")
		}
		time.Sleep(5 * time.Millisecond)
	}
	a.stop()
	first := a.g.Stats()
	b := e.start("hub")
	e.drained("hub")
	if n := e.count(""); n != 20000 {
		t.Fatalf("%d rows stored, want 20000", n)
	}
	if n := e.count("WHERE backfill"); n != 20000/3 {
		t.Errorf("%d backfill rows, want %d", n, 20000/3)
	}
	if n := e.count("WHERE time < '2025-03-01'"); n != 0 {
		t.Errorf("%d rows with a wrong time", n)
	}
	second := b.g.Stats()
	if first.Rows == 0 || second.Rows == 0 || second.Poison != 0 || first.Poison != 0 {
		t.Errorf("stats %+v then %+v", first, second)
	}
	t.Logf("first %+v; second %+v", first, second)
}

func TestIngestTwoInstancesShare(t *testing.T) {
	e := newEnv(t)
	a, b := e.start("hub"), e.startWith("hub", 64<<10)
	e.publishRows(20000)
	e.drained("hub")
	deadline := time.Now().Add(10 * time.Second)
	for e.count("") < 20000 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := e.count(""); n != 20000 {
		t.Fatalf("%d rows stored, want 20000", n)
	}
	sa, sb := a.g.Stats(), b.g.Stats()
	if sa.Messages == 0 || sb.Messages == 0 {
		t.Errorf("work not shared: %+v and %+v", sa, sb)
	}
	if sa.Rows+sb.Rows < 20000 {
		t.Errorf("instances wrote %d+%d rows", sa.Rows, sb.Rows)
	}
	t.Logf("a %+v; b %+v", sa, sb)
}

func TestIngestAlertsOutOfOrder(t *testing.T) {
	e := newEnv(t)
	occur := time.Date(2025, 4, 1, 8, 0, 0, 0, time.UTC)
	recov := occur.Add(time.Minute)
	rec := enginetest.Record(nil, engine.AlertSchema,
		enginetest.Row{occur, "a1", "T1", "hot", "major", "temp", "too hot", 90.0, occur, nil, "raised"},
		enginetest.Row{recov, "a1", "T1", "hot", "major", "temp", "ok", 70.0, occur, recov, "cleared"},
		enginetest.Row{recov.Add(time.Minute), "a2", "T2", "cold", "minor", "temp", "too cold", 1.0, recov.Add(time.Minute), nil, "raised"},
	)
	defer rec.Release()
	msgs, err := outbound.Encode(outbound.JSON, "edge1", "alerts", outbound.Entry{Rec: rec, First: 1, Schema: engine.AlertSchema, Backfill: true})
	if err != nil {
		t.Fatal(err)
	}
	// The clear arrives before the raise.
	e.publish("edges.edge1.alerts", []*message.Message{msgs[2], msgs[1], msgs[0]})
	g := e.start("hub")
	e.drained("hub")
	alerts, err := e.st.Alerts(context.Background(), false, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(alerts) != 2 || alerts[0].ID != "a1" || alerts[0].State != store.AlertCleared || !alerts[0].Recover.Equal(recov) ||
		alerts[1].ID != "a2" || alerts[1].State != store.AlertRaised {
		t.Fatalf("alerts %+v", alerts)
	}
	tr, err := e.st.Transitions(context.Background(), "edge1", "a1")
	if err != nil {
		t.Fatal(err)
	}
	if len(tr) != 2 {
		t.Errorf("a1 transitions %+v", tr)
	}
	if s := g.g.Stats(); s.Alerts != 3 || s.Rows != 0 || e.count("") != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestIngestPoisonDoesNotBlock(t *testing.T) {
	e := newEnv(t)
	t0 := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	rows := make([]enginetest.Row, 50)
	for i := range rows {
		rows[i] = enginetest.Row{t0, "A", float64(i)}
	}
	msgs := e.encode(rows, 10)
	bad := message.NewMessage("e1/stats/100-109", []byte(`{"id":"e1/stats/100-109","rows":[`))
	bad.Metadata = message.Metadata{}
	for k, v := range msgs[0].Metadata {
		bad.Metadata[k] = v
	}
	bad.Metadata[outbound.MetaID], bad.Metadata[outbound.MetaFirstSeq], bad.Metadata[outbound.MetaLastSeq] = "e1/stats/100-109", "100", "109"
	e.publish("edges.e1.stats", []*message.Message{msgs[0], msgs[1], bad, msgs[2], msgs[3], msgs[4]})
	g := e.start("hub")
	e.drained("hub")
	t.Logf("stats %+v", g.g.Stats())
	if n := e.count(""); n != 50 {
		t.Fatalf("%d rows stored, want 50", n)
	}
	if s := g.g.Stats(); s.Poison != 1 || s.Messages != 5 {
		t.Fatalf("stats %+v", s)
	}
}

// TestIngestConflictsCounted: an edge whose buffer was reset sends stored
// sequences again with other values; the ingest acks them, counts them as
// conflicts and warns once per batch with their keys and without their
// values, while a plain redelivery counts nothing.
func TestIngestConflictsCounted(t *testing.T) {
	e := newEnv(t)
	t0 := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	encode := func(batch int, v float64) []*message.Message {
		rows := make([]enginetest.Row, 20)
		for i := range rows {
			rows[i] = enginetest.Row{t0.Add(time.Duration(i) * time.Second), "A", v + float64(i)}
		}
		return e.encode(rows, batch)
	}
	var logs enginetest.LogBuffer
	g, err := ingest.New(e.js, e.st, ingest.Options{Stream: "EDGES", Durable: "hub", FilterSubjects: []string{"edges.>"},
		FetchWait: 200 * time.Millisecond, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() { cancel(); <-done }()

	e.publish("edges.e1.stats", encode(10, 1000))
	e.drained("hub")
	// A redelivery cut into other messages: nothing new, no conflict.
	e.publish("edges.e1.stats", encode(5, 1000))
	e.drained("hub")
	if s := g.Stats(); s.Conflicts != 0 || s.Messages != 6 {
		t.Fatalf("after a redelivery: %+v", s)
	}
	// The edge's second life: other values under the same sequences, in
	// one message (ids other than the first life's, as after a restart
	// with another batching; equal ids within the broker's duplicate
	// window never reach the hub).
	e.publish("edges.e1.stats", encode(20, 7777))
	e.drained("hub")
	if s := g.Stats(); s.Conflicts != 20 || s.Messages != 7 || s.Poison != 0 || s.StoreErrors != 0 {
		t.Fatalf("after the reset edge's rows: %+v", s)
	}
	var kept int
	if err := e.db.QueryRow("SELECT count(*) FROM " + e.schema + ".telemetry_conflicts WHERE msg_id = 'e1/stats/1-20'").Scan(&kept); err != nil {
		t.Fatal(err)
	}
	if kept != 20 || e.count("WHERE (\"values\"->>'v')::float8 >= 7777") != 0 || e.count("") != 20 {
		t.Errorf("%d conflicts kept, telemetry %d rows", kept, e.count(""))
	}
	out := logs.String()
	if n := strings.Count(out, "telemetry_conflicts"); n != 1 || !strings.Contains(out, `rows=20`) ||
		!strings.Contains(out, `e1/stats seq 1-20 (20 rows)`) || strings.Contains(out, "7777") {
		t.Errorf("log:\n%s", out)
	}
}

// BenchmarkIngest measures rows/s written by one instance and by two
// sharing the consumer, from arrow messages of 256 rows.
func BenchmarkIngest(b *testing.B) {
	for _, instances := range []int{1, 2} {
		b.Run(fmt.Sprintf("instances=%d", instances), func(b *testing.B) { benchIngest(b, instances) })
	}
}

func benchIngest(b *testing.B, instances int) {
	e := newEnv(b)
	const perIter = 20000
	t0 := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	rows := make([]enginetest.Row, perIter)
	for i := range rows {
		rows[i] = enginetest.Row{t0.Add(time.Duration(i) * time.Millisecond), fmt.Sprintf("A%d", i%10), float64(i)}
	}
	rec := enginetest.Record(nil, dataSchema, rows...)
	defer rec.Release()
	var gs []*running
	for range instances {
		gs = append(gs, e.start("bench"))
	}
	written := func() uint64 {
		var n uint64
		for _, g := range gs {
			n += g.g.Stats().Rows
		}
		return n
	}
	b.ResetTimer()
	var elapsed time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		en := outbound.Encoder{Encoding: outbound.Arrow, Edge: "e1", Stream: "stats", BatchRows: 256}
		msgs, err := en.Encode(outbound.Entry{Rec: rec, First: uint64(i*perIter + 1), Schema: dataSchema})
		if err != nil {
			b.Fatal(err)
		}
		want := uint64((i + 1) * perIter)
		start := time.Now()
		e.publish("edges.e1.stats", msgs)
		b.StartTimer()
		for written() < want {
			time.Sleep(time.Millisecond)
		}
		elapsed += time.Since(start)
	}
	b.ReportMetric(float64(b.N*perIter)/elapsed.Seconds(), "rows/s")
}

// slowStore is the real store whose first InsertRows call takes delay
// longer.
type slowStore struct {
	*store.Store
	delay time.Duration
	calls atomic.Int32
}

func (s *slowStore) InsertRows(ctx context.Context, rows []store.Row) (store.Inserted, error) {
	if s.calls.Add(1) == 1 {
		time.Sleep(s.delay)
	}
	return s.Store.InsertRows(ctx, rows)
}

// TestSlowWriteNotRedelivered: a batch whose write takes three times the
// ack wait is not handed to another instance meanwhile (the instance
// says it is still working on it), and every row is stored once.
func TestSlowWriteNotRedelivered(t *testing.T) {
	e := newEnv(t)
	opts := ingest.Options{Stream: "EDGES", Durable: "slow", FilterSubjects: []string{"edges.>"},
		FetchWait: 100 * time.Millisecond, AckWait: time.Second}
	e.publishRows(3000)
	slow := e.startOn(&slowStore{Store: e.st, delay: 3 * time.Second}, opts)
	ctx := context.Background()
	// The slow instance holds its first batch; then a second one starts.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := e.js.Consumer(ctx, "EDGES", "slow")
		if err == nil {
			if info, err := c.Info(ctx); err == nil && info.NumAckPending > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the slow instance took no batch")
		}
		time.Sleep(10 * time.Millisecond)
	}
	other := e.startOn(e.st, opts)
	e.drained("slow")
	if n := e.count(""); n != 3000 {
		t.Fatalf("%d rows stored, want 3000", n)
	}
	if r := other.g.Stats().Redelivered + slow.g.Stats().Redelivered; r != 0 {
		t.Fatalf("%d messages redelivered while their batch was being written", r)
	}
}

// refusingStore is the real store, except that PostgreSQL refuses (as a
// data exception, not tied to a row) every batch holding a row of asset
// "BAD", as it refuses a value it cannot hold.
type refusingStore struct{ *store.Store }

func (s refusingStore) InsertRows(ctx context.Context, rows []store.Row) (store.Inserted, error) {
	for _, r := range rows {
		if r.Asset == "BAD" {
			return store.Inserted{}, fmt.Errorf("insert: %w", &pgconn.PgError{Code: "22003", Message: "value out of range"})
		}
	}
	return s.Store.InsertRows(ctx, rows)
}

// TestDataErrorIsolated: a message PostgreSQL refuses with a data error
// the store cannot tie to a row is found by halving the batch and set
// aside; every other message of the batch is stored, nothing retried
// forever.
func TestDataErrorIsolated(t *testing.T) {
	e := newEnv(t)
	e.publishBatches(secondRows(200, map[int]string{37: "BAD", 151: "BAD"}))
	g := e.startOn(refusingStore{e.st}, ingest.Options{Stream: "EDGES", Durable: "refusing",
		FilterSubjects: []string{"edges.>"}, FetchWait: 100 * time.Millisecond})
	e.drained("refusing")
	g.stop()
	if n := e.count(""); n != 180 {
		t.Fatalf("%d rows stored, want the 180 of the 18 messages PostgreSQL takes", n)
	}
	if s := g.g.Stats(); s.Poison != 2 || s.StoreErrors != 0 {
		t.Fatalf("stats %+v: want the 2 refused messages set aside and no store error", s)
	}
}

// TestOversizedKeyIsolated: a row whose asset PostgreSQL cannot index (an
// incompressible 4 KiB asset: an index entry holds at most about 2.7 KB)
// is set aside as poison, not retried for ever; the other rows of its
// batch are stored.
func TestOversizedKeyIsolated(t *testing.T) {
	e := newEnv(t)
	var noise [2000]byte
	if _, err := cryptorand.Read(noise[:]); err != nil {
		t.Fatal(err)
	}
	huge := hex.EncodeToString(noise[:]) // 4,000 characters that do not compress
	e.publishBatches(secondRows(40, map[int]string{25: huge}))
	g := e.start("oversized")
	e.drained("oversized")
	if n := e.count(""); n != 30 {
		t.Fatalf("%d rows stored, want the 30 of the 3 messages without the huge asset", n)
	}
	if s := g.g.Stats(); s.Poison != 1 {
		t.Fatalf("stats %+v: want the message with the huge asset set aside", s)
	}
}

// TestRefusedRowIsolated: a row the store refuses before writing anything
// (an asset longer than its MaxTextBytes) sets aside the one message that
// holds it, the third of four, and the rows of the other three are stored.
func TestRefusedRowIsolated(t *testing.T) {
	e := newEnv(t)
	st, err := store.Open(context.Background(), testDSN(t), store.Options{Schema: e.schema, MaxTextBytes: 64})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	e.publishBatches(secondRows(40, map[int]string{25: strings.Repeat("a", 100)}))
	g := e.startOn(st, ingest.Options{Stream: "EDGES", Durable: "refused",
		FilterSubjects: []string{"edges.>"}, FetchWait: 200 * time.Millisecond})
	e.drained("refused")
	if n := e.count(""); n != 30 {
		t.Fatalf("%d rows stored, want the 30 of the 3 messages without the long asset", n)
	}
	if n := e.count("WHERE seq BETWEEN 21 AND 30"); n != 0 {
		t.Fatalf("%d rows of the message with the long asset stored", n)
	}
	if s := g.g.Stats(); s.Poison != 1 {
		t.Fatalf("stats %+v: want the message with the long asset set aside", s)
	}
}

// downStore is the real store whose first InsertRows call fails as a
// database that is down does.
type downStore struct {
	*store.Store
	calls atomic.Int32
}

func (s *downStore) InsertRows(ctx context.Context, rows []store.Row) (store.Inserted, error) {
	if s.calls.Add(1) == 1 {
		return store.Inserted{}, errors.New("connection refused")
	}
	return s.Store.InsertRows(ctx, rows)
}

// TestStoreErrorRedelivered: a batch whose write fails for a reason other
// than its content is nak'ed, delivered again and stored then; the
// counters show the store error and the redelivered messages.
func TestStoreErrorRedelivered(t *testing.T) {
	e := newEnv(t)
	e.publishBatches(secondRows(40, nil))
	g := e.startOn(&downStore{Store: e.st}, ingest.Options{Stream: "EDGES", Durable: "down",
		FilterSubjects: []string{"edges.>"}, FetchWait: 200 * time.Millisecond, NakDelay: 100 * time.Millisecond})
	e.drained("down")
	if n := e.count(""); n != 40 {
		t.Fatalf("%d rows stored, want 40", n)
	}
	if s := g.g.Stats(); s.StoreErrors != 1 || s.Redelivered == 0 || s.Poison != 0 {
		t.Fatalf("stats %+v: want one store error and the nak'ed messages redelivered", s)
	}
}

// TestRefusedAlertIsolated: an alert record the store refuses before
// writing anything (a content longer than its MaxTextBytes) sets its
// message aside as poison instead of retrying it for ever, and the alert
// of the other message is stored.
func TestRefusedAlertIsolated(t *testing.T) {
	e := newEnv(t)
	st, err := store.Open(context.Background(), testDSN(t), store.Options{Schema: e.schema, MaxTextBytes: 64})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	occur := time.Date(2025, 4, 1, 8, 0, 0, 0, time.UTC)
	rec := enginetest.Record(nil, engine.AlertSchema,
		enginetest.Row{occur, "a1", "T1", "hot", "major", "temp", strings.Repeat("x", 100), 90.0, occur, nil, "raised"},
		enginetest.Row{occur, "a2", "T2", "cold", "minor", "temp", "too cold", 1.0, occur, nil, "raised"},
	)
	defer rec.Release()
	msgs, err := outbound.Encode(outbound.JSON, "edge1", "alerts", outbound.Entry{Rec: rec, First: 1, Schema: engine.AlertSchema})
	if err != nil {
		t.Fatal(err)
	}
	e.publish("edges.edge1.alerts", msgs)
	g := e.startOn(st, ingest.Options{Stream: "EDGES", Durable: "refused-alert",
		FilterSubjects: []string{"edges.>"}, FetchWait: 200 * time.Millisecond, NakDelay: 100 * time.Millisecond})
	deadline := time.Now().Add(15 * time.Second)
	for g.g.Stats().Poison+g.g.Stats().Alerts < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: the refused alert was neither stored nor set aside", g.g.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s := g.g.Stats(); s.Poison != 1 || s.Alerts != 1 {
		t.Fatalf("stats %+v: want the message of the long content set aside and the other alert stored", s)
	}
	alerts, err := e.st.Alerts(context.Background(), false, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(alerts) != 1 || alerts[0].ID != "a2" {
		t.Fatalf("alerts %+v, want a2 alone", alerts)
	}
}

// TestLagCounted: with messages still waiting in the stream, Stats.Lag
// counts them, and it falls to 0 once the consumer has read them all.
func TestLagCounted(t *testing.T) {
	e := newEnv(t)
	e.publishBatches(secondRows(40, nil)) // four messages, read one at a time
	g := e.startOn(e.st, ingest.Options{Stream: "EDGES", Durable: "lag",
		FilterSubjects: []string{"edges.>"}, FetchWait: 100 * time.Millisecond, FetchMessages: 1})
	deadline := time.Now().Add(10 * time.Second)
	for g.g.Stats().Lag == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: no lag seen while messages waited", g.g.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if l := g.g.Stats().Lag; l > 3 {
		t.Fatalf("lag %d, want at most the 3 messages not yet read", l)
	}
	e.drained("lag")
	deadline = time.Now().Add(10 * time.Second)
	for g.g.Stats().Lag != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: lag stays after every message was read", g.g.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
