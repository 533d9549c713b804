package pipelines_test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	natsgo "github.com/nats-io/nats.go"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/ops"
	"github.com/sluice-edge/sluice/engine/forward"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
	"github.com/sluice-edge/sluice/engine/spec"
)

// A receiver deduplicates by message ID: NATS JetStream by Nats-Msg-Id
// within its duplicate window, the postgres sink by its unique index. These
// tests count what each stored, row by row (every row carries its
// sequence), and fail when a row is stored twice or not at all.

// receiver is a broker the tests write to and read back.
type receiver interface {
	// sink returns the sink configuration (without buffer and forward);
	// down gives one that cannot reach the broker.
	sink(down bool) string
	// stored returns how many stored rows carry each sequence, and the
	// number of stored messages.
	stored(t testing.TB) (map[uint64]int, int)
}

type jetstreamReceiver struct {
	js   *jetstream
	name string
}

func (r jetstreamReceiver) sink(down bool) string {
	url := r.js.url()
	if down {
		url = "nats://127.0.0.1:1"
	}
	return fmt.Sprintf("type: nats\nurl: %s\nsubject: fwd.%s\nstream: %s\ntimeout: 500ms\nduplicate_window: 10m\n", url, r.name, r.name)
}

func (r jetstreamReceiver) stored(t testing.TB) (map[uint64]int, int) {
	t.Helper()
	nc, err := natsgo.Connect(r.js.url(), natsgo.Timeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := nc.JetStream()
	info, err := js.StreamInfo(r.name)
	if err != nil {
		t.Fatal(err)
	}
	seqs := map[uint64]int{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := js.GetMsg(r.name, seq)
		if err != nil {
			t.Fatal(err)
		}
		countRows(t, m.Data, seqs)
	}
	return seqs, int(info.State.Msgs)
}

type postgresReceiver struct {
	dsn, table string
}

func newPostgresReceiver(t *testing.T) postgresReceiver {
	r := postgresReceiver{dsn: outboundtest.PostgresDSN(t), table: "sluice_identity_" + outboundtest.Suffix()}
	t.Cleanup(func() {
		if db, err := sql.Open("pgx", r.dsn); err == nil {
			_, _ = db.Exec(`DROP TABLE IF EXISTS "` + r.table + `"`)
			db.Close()
		}
	})
	return r
}

func (r postgresReceiver) sink(down bool) string {
	dsn := r.dsn
	if down {
		dsn = strings.Replace(dsn, ":5432", ":1", 1)
	}
	return fmt.Sprintf("type: postgres\ndsn: %q\ntable: %s\ntimeout: 2s\n", dsn, r.table)
}

func (r postgresReceiver) stored(t testing.TB) (map[uint64]int, int) {
	t.Helper()
	db, err := sql.Open("pgx", r.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT payload FROM "` + r.table + `"`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seqs, n := map[uint64]int{}, 0
	for rows.Next() {
		var payload []byte
		if err := rows.Scan(&payload); err != nil {
			t.Fatal(err)
		}
		countRows(t, payload, seqs)
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return seqs, n
}

// countRows counts the rows of a json_batch payload by sequence.
func countRows(t testing.TB, payload []byte, seqs map[uint64]int) {
	t.Helper()
	var m struct {
		Rows []struct {
			Seq uint64 `json:"seq"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(payload, &m); err != nil {
		t.Fatalf("payload %.80s: %v", payload, err)
	}
	for _, r := range m.Rows {
		seqs[r.Seq]++
	}
}

// exactlyOnce checks that rows 1..n are each stored once.
func exactlyOnce(t testing.TB, seqs map[uint64]int, n int) {
	t.Helper()
	lost, twice := 0, 0
	for s := uint64(1); s <= uint64(n); s++ {
		switch c := seqs[s]; {
		case c == 0:
			lost++
		case c > 1:
			twice += c - 1
		}
	}
	if lost != 0 || twice != 0 || len(seqs) != n {
		t.Fatalf("%d rows accepted: %d lost, %d stored twice, %d distinct sequences stored", n, lost, twice, len(seqs))
	}
}

// buildSink builds a registered cloud sink type from YAML, as a pipeline
// does.
func buildSink(t testing.TB, yaml, dir, extra string) *forward.Sink {
	t.Helper()
	src := yaml + "encoding: json_batch\nbatch_rows: 256\nedge: site\nmessage_stream: stats\n" +
		"buffer: {dir: " + dir + "}\nforward: {retry_min: 5ms, retry_max: 100ms, drain_timeout: 1s" + extra + "}\n"
	typ := strings.TrimSpace(strings.TrimPrefix(strings.SplitN(src, "\n", 2)[0], "type:"))
	c, ok := engine.Lookup(spec.KindSink, typ)
	if !ok {
		t.Fatalf("sink type %s is not registered", typ)
	}
	cfg := outboundtest.Parse(t, c.Spec, strings.SplitN(src, "\n", 2)[1])
	// The data directory holds the key of the nats sink's message ids, which
	// a restart must find again.
	bc := engine.BuildContext{Pipeline: "p", Name: "cloud", Edge: "site", DataDir: filepath.Dir(dir), Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Counters: engine.NewCounters()}
	s, err := c.Sink(cfg, fwdSchema, bc)
	if err != nil {
		t.Fatal(err)
	}
	return s.(*forward.Sink)
}

const identityChildEnv = "SLUICE_IDENTITY_CHILD"

// TestIdentityChild is the engine process of the kill tests: it opens the
// sink on the buffer and writes live batches of 30 rows from row `from`,
// printing each acknowledged row count and the buffer's cursor (the rows
// delivered in order), until it is killed.
func TestIdentityChild(t *testing.T) {
	env := os.Getenv(identityChildEnv)
	if env == "" {
		t.Skip("runs only as the subprocess of the identity kill tests")
	}
	var args struct{ Sink, Dir, Extra string }
	if err := json.Unmarshal([]byte(env), &args); err != nil {
		t.Fatal(err)
	}
	from, _ := strconv.Atoi(os.Getenv(identityChildEnv + "_FROM"))
	s := buildSink(t, args.Sink, args.Dir, args.Extra)
	n := from
	for {
		if err := s.Write(context.Background(), engine.Batch{Rec: fwdRows(n, 30)}); err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		n += 30
		fmt.Printf("ACK %d %d\n", n, s.Buffer().Cursor())
		time.Sleep(2 * time.Millisecond)
	}
}

// killDuringBackfill builds a backlog with the broker unreachable, starts an
// engine process that drains it (capped) while writing live rows, kills it
// with SIGKILL during the drain (once a quarter of the backlog was
// delivered, however long the process took to start and connect), then
// drains what is left here. Live rows
// published ahead of the backlog are not acknowledged yet when the process
// dies, so they are sent again from a sealed segment after the restart:
// they must be the same messages.
func killDuringBackfill(t *testing.T, rc receiver) {
	dir := filepath.Join(t.TempDir(), "buf")
	backlog := 6000
	s := buildSink(t, rc.sink(true), dir, ", publish_timeout: 200ms")
	for i := 0; i < backlog; i += 30 {
		if err := s.Write(context.Background(), engine.Batch{Rec: fwdRows(i, 30)}); err != nil {
			t.Fatal(err)
		}
	}
	_ = s.Close(context.Background())

	args, _ := json.Marshal(map[string]string{"Sink": rc.sink(false), "Dir": dir, "Extra": ", backfill_rate: 1500"})
	cmd := exec.Command(os.Args[0], "-test.run=^TestIdentityChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), identityChildEnv+"="+string(args), identityChildEnv+"_FROM="+strconv.Itoa(backlog))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked, cursor := backlog, 0
	sc := bufio.NewScanner(out)
	deadline := time.Now().Add(60 * time.Second)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "ACK "); ok {
			a, c, _ := strings.Cut(v, " ")
			acked, _ = strconv.Atoi(a)
			cursor, _ = strconv.Atoi(c)
		}
		// Capped at 1500 rows/s, the rest of the drain lasts about 3 s.
		if cursor >= backlog/4 {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			t.Fatalf("after 60s the engine process delivered %d rows of the backlog of %d", cursor, backlog)
		}
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	go io.Copy(io.Discard, out)
	_ = cmd.Wait()
	if acked <= backlog {
		t.Fatal("the engine process acknowledged no live rows")
	}
	mid, _ := rc.stored(t)
	// The rows the killed process wrote are sealed into a segment (as the
	// sealer does with a full or idle WAL file), so the restart reads them
	// in large runs, not in the batches the live lane sent.
	b, err := buffer.Open(dir, buffer.Options{Schema: fwdSchema, ManualSeal: true, IdleSeal: -1, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if c := b.Cursor(); c >= uint64(backlog) {
		t.Fatalf("the kill came after the backlog drained (cursor %d of %d): no backfill was interrupted", c, backlog)
	}
	if err := b.Roll(); err != nil {
		t.Fatal(err)
	}
	if err := b.Seal(); err != nil {
		t.Fatal(err)
	}
	sealed := len(b.Segments())
	// The rows the buffer holds: every acknowledged one, and the batches
	// the process wrote after the last acknowledgement read above (it ran
	// on until the kill) — accepted too, so they must be stored once.
	accepted := int(b.NextSeq() - 1)
	b.Close()
	if sealed == 0 {
		t.Fatal("nothing sealed")
	}
	if accepted < acked {
		t.Fatalf("the buffer holds %d rows, %d were acknowledged", accepted, acked)
	}
	// Restart: everything above the cursor goes out again.
	s = buildSink(t, rc.sink(false), dir, "")
	defer s.Close(context.Background())
	waitFor(t, 60*time.Second, "backlog delivered after restart", func() bool { return s.Buffer().Cursor() >= uint64(accepted) })
	seqs, msgs := rc.stored(t)
	t.Logf("backlog %d, live rows acknowledged before the kill %d (%d accepted in all, %d rows stored when killed), then %d stored rows in %d messages",
		backlog, acked-backlog, accepted-backlog, len(mid), len(seqs), msgs)
	exactlyOnce(t, seqs, accepted)
}

// TestKill9DuringBackfillJetStream: no row stored twice in JetStream after
// kill -9 during a backfill and a restart.
func TestKill9DuringBackfillJetStream(t *testing.T) {
	killDuringBackfill(t, jetstreamReceiver{js: newJetStream(t), name: "IDK" + outboundtest.Suffix()})
}

// TestKill9DuringBackfillPostgres: the same, through the postgres sink's
// unique message IDs.
func TestKill9DuringBackfillPostgres(t *testing.T) {
	killDuringBackfill(t, newPostgresReceiver(t))
}

// exportReplayDrain builds a backlog of 12,000 rows appended 1,024 at a
// time, exports it, replays the export to the broker, and then lets the
// engine drain the same backlog itself: every row must be stored once.
func exportReplayDrain(t *testing.T, rc receiver) {
	dir := filepath.Join(t.TempDir(), "buf")
	n := 12000
	s := buildSink(t, rc.sink(true), dir, ", publish_timeout: 200ms")
	for i := 0; i < n; i += 1024 {
		if err := s.Write(context.Background(), engine.Batch{Rec: fwdRows(i, min(1024, n-i))}); err != nil {
			t.Fatal(err)
		}
	}
	_ = s.Close(context.Background())
	out := t.TempDir()
	rep, err := ops.Export(context.Background(), dir, out, ops.ExportOptions{RowsPerFile: 5000})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rows != int64(n) || rep.Edge != "site" || rep.Stream != "stats" {
		t.Fatalf("export: %d rows as %s/%s", rep.Rows, rep.Edge, rep.Stream)
	}
	files, _ := filepath.Glob(filepath.Join(out, "*.parquet"))
	yaml := rc.sink(false) + "encoding: json_batch\nbatch_rows: 256\n"
	typ := strings.TrimSpace(strings.TrimPrefix(strings.SplitN(yaml, "\n", 2)[0], "type:"))
	reg, _ := outbound.LookupPublisher(typ)
	// The engine's data directory, as sluice replay --data-dir gives it:
	// its key signs the nats sink's message ids.
	pub, err := reg.New(outboundtest.Parse(t, reg.Spec, strings.SplitN(yaml, "\n", 2)[1]), engine.BuildContext{DataDir: filepath.Dir(dir)})
	if err != nil {
		t.Fatal(err)
	}
	rr, err := ops.Replay(context.Background(), files, ops.ReplayOptions{Publisher: pub})
	pub.Close()
	if err != nil || rr.Rows != int64(n) {
		t.Fatalf("replay: %v (%d rows)", err, rr.Rows)
	}
	replayed, replayMsgs := rc.stored(t)
	s = buildSink(t, rc.sink(false), dir, "")
	defer s.Close(context.Background())
	waitFor(t, 60*time.Second, "own drain", func() bool { return s.Buffer().Cursor() >= uint64(n) })
	seqs, msgs := rc.stored(t)
	t.Logf("replayed %d rows in %d messages; after the engine's own drain %d rows in %d messages", len(replayed), replayMsgs, len(seqs), msgs)
	exactlyOnce(t, seqs, n)
	if msgs != replayMsgs {
		t.Fatalf("the engine's drain stored %d messages beside the %d replayed", msgs-replayMsgs, replayMsgs)
	}
}

// TestExportReplayOwnDrainJetStream: export + replay + the engine's own
// drain of the same backlog store each row once in JetStream.
func TestExportReplayOwnDrainJetStream(t *testing.T) {
	exportReplayDrain(t, jetstreamReceiver{js: newJetStream(t), name: "IDX" + outboundtest.Suffix()})
}

// TestExportReplayOwnDrainPostgres: the same in PostgreSQL.
func TestExportReplayOwnDrainPostgres(t *testing.T) {
	exportReplayDrain(t, newPostgresReceiver(t))
}
