package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	natsgo "github.com/nats-io/nats.go"
	"github.com/parquet-go/parquet-go"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/disk"
)

var opsSchema = engine.MustSchema([]engine.Field{
	{Name: "time", Type: engine.Timestamp},
	{Name: "asset", Type: engine.String},
	{Name: "power", Type: engine.Float64},
}, "time", "asset")

var opsStart = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// opsBatch returns n rows whose times continue from row k.
func opsBatch(k, n int) arrow.RecordBatch {
	rb := engine.NewRecordBuilder(memory.DefaultAllocator, opsSchema)
	defer rb.Release()
	for i := k; i < k+n; i++ {
		rb.Timestamp(0).Append(arrow.Timestamp(opsStart.Add(time.Duration(i) * time.Second).UnixMilli()))
		rb.String(1).Append(fmt.Sprintf("WT%02d", i%7))
		rb.Float64(2).Append(float64(i) / 4)
		rb.RowDone()
	}
	return rb.NewRecord()
}

// makeBuffer writes rows in batches of 100 (one message each) into a
// buffer published as site-a/site.stats: the first sealed batches become a
// segment, the others stay in the WAL.
func makeBuffer(t *testing.T, dir string, sealed, wal int) {
	t.Helper()
	b, err := buffer.Open(dir, buffer.Options{Schema: opsSchema, ManualSeal: true, IdleSeal: -1, Edge: "site-a", Stream: "site.stats"})
	if err != nil {
		t.Fatal(err)
	}
	k := 0
	app := func(n int) {
		for range n {
			rec := opsBatch(k, 100)
			if _, err := b.Append(rec); err != nil {
				t.Fatal(err)
			}
			rec.Release()
			k += 100
		}
	}
	app(sealed)
	if sealed > 0 {
		if err := b.Roll(); err != nil {
			t.Fatal(err)
		}
		if err := b.Seal(); err != nil {
			t.Fatal(err)
		}
	}
	app(wal)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

func only(t *testing.T, pattern string) string {
	t.Helper()
	m, _ := filepath.Glob(pattern)
	if len(m) != 1 {
		t.Fatalf("%s: %v, want one file", pattern, m)
	}
	return m[0]
}

func TestBufferStatusInspectRepair(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "stats")
	makeBuffer(t, dir, 2, 3)
	sample := filepath.Join(t.TempDir(), "sample.json")

	code, out, errOut := run(t, "buffer", "status", dir, "--json", "--sample-file", sample)
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, errOut)
	}
	var st struct {
		BacklogRows     int64     `json:"backlog_rows"`
		OldestEventTime time.Time `json:"oldest_event_time"`
		Segments        int       `json:"segments"`
		Problems        []string  `json:"problems"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err, out)
	}
	if st.BacklogRows != 500 || st.Segments != 1 || !st.OldestEventTime.Equal(opsStart) || len(st.Problems) != 0 {
		t.Fatalf("healthy status: %+v", st)
	}

	// Damage: a bad record header in the middle of the WAL file, and a
	// segment cut short.
	wal := only(t, filepath.Join(dir, "wal", "*.wal"))
	data, err := os.ReadFile(wal)
	if err != nil {
		t.Fatal(err)
	}
	second := int64(32 + 56 + binary.LittleEndian.Uint32(data[32+4:]))
	data[second+20] ^= 0xff // the sequence field: the header checksum fails
	if err := os.WriteFile(wal, data, 0o644); err != nil {
		t.Fatal(err)
	}
	seg := only(t, filepath.Join(dir, "seg", "*.parquet"))
	fi, _ := os.Stat(seg)
	if err := os.Truncate(seg, fi.Size()-100); err != nil {
		t.Fatal(err)
	}
	walRel := "wal/" + filepath.Base(wal)
	segRel := "seg/" + filepath.Base(seg)
	offset := fmt.Sprintf("offset %d", second)

	code, out, _ = run(t, "buffer", "status", dir, "--sample-file", sample)
	if code != 0 || !strings.Contains(out, walRel+" at "+offset) || !strings.Contains(out, segRel+": size") || !strings.Contains(out, "drain") {
		t.Fatalf("status after damage: exit %d\n%s", code, out)
	}
	code, out, _ = run(t, "buffer", "inspect", dir)
	for _, want := range []string{walRel, segRel, offset, "bad record header checksum", "bad_size", "2 problem(s)"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("inspect lacks %q (exit %d):\n%s", want, code, out)
		}
	}
	code, out, _ = run(t, "buffer", "repair", "--dry-run", dir)
	for _, want := range []string{"dry run", "quarantine " + walRel + " at " + offset, "quarantine " + segRel, "sequences 1-200 lost", "salvage " + walRel} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("repair --dry-run lacks %q (exit %d):\n%s", want, code, out)
		}
	}
	if _, err := os.Stat(wal); err != nil {
		t.Fatalf("dry run changed the buffer: %v", err)
	}
	code, out, errOut = run(t, "buffer", "repair", dir, "--log-level", "error")
	for _, want := range []string{"quarantine " + walRel + " at " + offset, "moved to quarantine/wal-" + filepath.Base(wal),
		"quarantine " + segRel, "moved to quarantine/seg-" + filepath.Base(seg), "sequences 301-400 lost", "backlog before"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("repair lacks %q (exit %d):\n%s\n%s", want, code, out, errOut)
		}
	}
	code, out, _ = run(t, "buffer", "inspect", dir)
	for _, want := range []string{"no damage found", "quarantine/wal-" + filepath.Base(wal), "quarantine/seg-" + filepath.Base(seg), "corrupt"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("inspect after repair lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = run(t, "buffer", "status", dir, "--json", "--sample-file", "-")
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || st.BacklogRows != 200 || len(st.Problems) != 0 {
		t.Fatalf("status after repair: %v %+v\n%s", err, st, out)
	}
}

// crashAfterFirstRecord makes the WAL file look like a crash tore its
// second record: the sync mark covers the first only.
func crashAfterFirstRecord(t *testing.T, dir, wal string) (torn int64) {
	t.Helper()
	data, _ := os.ReadFile(wal)
	torn = int64(32 + 56 + binary.LittleEndian.Uint32(data[32+4:]))
	st, err := disk.ReadMark(disk.OS, dir)
	if err != nil || !st.Valid {
		t.Fatalf("sync mark: %v %+v", err, st)
	}
	mf, err := disk.OpenMarkFile(disk.OS, dir, st)
	if err != nil {
		t.Fatal(err)
	}
	m := st.Mark
	m.Next, m.Size = m.Base+100, torn
	if err := mf.Write(m); err != nil {
		t.Fatal(err)
	}
	mf.Sync()
	mf.Close()
	fi, _ := os.Stat(wal)
	if err := os.Truncate(wal, fi.Size()-10); err != nil {
		t.Fatal(err)
	}
	return torn
}

func TestBufferRepairTornTail(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "stats")
	makeBuffer(t, dir, 0, 2)
	wal := only(t, filepath.Join(dir, "wal", "*.wal"))
	torn := crashAfterFirstRecord(t, dir, wal)
	want := fmt.Sprintf("truncate wal/%s at offset %d: torn tail", filepath.Base(wal), torn)
	code, out, _ := run(t, "buffer", "repair", "--dry-run", dir)
	if code != 0 || !strings.Contains(out, want) {
		t.Fatalf("dry run lacks %q:\n%s", want, out)
	}
	code, out, _ = run(t, "buffer", "repair", dir, "--log-level", "error")
	if code != 0 || !strings.Contains(out, want) {
		t.Fatalf("repair lacks %q:\n%s", want, out)
	}
	if fi, _ := os.Stat(wal); fi.Size() != torn {
		t.Fatalf("WAL is %d bytes, want %d", fi.Size(), torn)
	}
}

// TestBufferRepairDamageAndTornTail: a WAL file damaged in the middle and
// torn at its end. Repair reports both (the tail goes to quarantine with
// the file), where it reported only the damage.
func TestBufferRepairDamageAndTornTail(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "stats")
	makeBuffer(t, dir, 0, 3)
	wal := only(t, filepath.Join(dir, "wal", "*.wal"))
	data, _ := os.ReadFile(wal)
	second := int64(32 + 56 + binary.LittleEndian.Uint32(data[32+4:]))
	third := second + 56 + int64(binary.LittleEndian.Uint32(data[second+4:]))
	// The mark covers two records; the third is torn; the second's header
	// is damaged.
	st, _ := disk.ReadMark(disk.OS, dir)
	mf, err := disk.OpenMarkFile(disk.OS, dir, st)
	if err != nil {
		t.Fatal(err)
	}
	m := st.Mark
	m.Next, m.Size = m.Base+200, third
	mf.Write(m)
	mf.Close()
	data = data[:len(data)-10]
	data[second+20] ^= 0xff
	if err := os.WriteFile(wal, data, 0o644); err != nil {
		t.Fatal(err)
	}
	walRel := "wal/" + filepath.Base(wal)
	for _, args := range [][]string{{"buffer", "repair", "--dry-run", dir}, {"buffer", "repair", dir, "--log-level", "error"}} {
		code, out, _ := run(t, args...)
		for _, want := range []string{"quarantine " + walRel + fmt.Sprintf(" at offset %d", second), fmt.Sprintf("%s at offset %d: torn tail", walRel, third)} {
			if code != 0 || !strings.Contains(out, want) {
				t.Fatalf("%v lacks %q:\n%s", args, want, out)
			}
		}
	}
}

// TestOpsToolsRespectTheLock: export and repair refuse a buffer an engine
// has open (they used to run beside it).
func TestOpsToolsRespectTheLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "stats")
	makeBuffer(t, dir, 1, 1)
	b, err := buffer.Open(dir, buffer.Options{Schema: opsSchema, ManualSeal: true, IdleSeal: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, args := range [][]string{{"export", dir, "--out", t.TempDir(), "--progress", "never"}, {"buffer", "repair", dir}} {
		code, out, errOut := run(t, args...)
		if code == 0 || !strings.Contains(errOut, "in use") {
			t.Fatalf("%v on a buffer in use: exit %d\n%s%s", args, code, out, errOut)
		}
	}
	// status and inspect only read, without the lock.
	if code, _, errOut := run(t, "buffer", "status", dir, "--sample-file", "-"); code != 0 {
		t.Fatalf("status: %s", errOut)
	}
}

func TestExportFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "elsewhere", "stats")
	makeBuffer(t, dir, 2, 3)
	out := t.TempDir()
	// No --edge, --stream: the buffer's own identity, whatever the path.
	code, stdout, errOut := run(t, "export", dir, "--out", out, "--rows-per-file", "300",
		"--since", opsStart.Add(50*time.Second).Format(time.RFC3339), "--until", "450", "--progress", "never")
	if code != 0 {
		t.Fatalf("export: exit %d: %s%s", code, stdout, errOut)
	}
	files, _ := filepath.Glob(filepath.Join(out, "*.parquet"))
	// Rows 51..450 are selected; they lie in the messages (appended
	// batches) 1-100 .. 401-500, exported whole; files end where a message
	// ends once they hold 300 rows.
	if len(files) != 2 || !strings.Contains(stdout, "exported 500 rows") {
		t.Fatalf("files %v\n%s", files, stdout)
	}
	// A plain Parquet file any reader opens, with the metadata replay needs.
	f, err := os.Open(files[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	pf, err := parquet.OpenFile(f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"sluice.edge": "site-a", "sluice.stream": "site.stats", "sluice.first_seq": "1", "sluice.last_seq": "300"} {
		if v, _ := pf.Lookup(k); v != want {
			t.Errorf("%s = %q, want %q", k, v, want)
		}
	}
	if pf.NumRows() != 300 {
		t.Errorf("%d rows, want 300", pf.NumRows())
	}
	for _, col := range []string{"_seq", "_msg"} {
		if _, ok := pf.Schema().Lookup(col); !ok {
			t.Errorf("no %s column", col)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(out, "export-site-a-site.stats-1-500.json")); len(m) != 1 {
		t.Error("no summary file")
	}
}

const natsURL = "nats://127.0.0.1:4222"

func TestExportReplayNATS(t *testing.T) {
	nc, err := natsgo.Connect(natsURL, natsgo.Timeout(time.Second), natsgo.MaxReconnects(0))
	if err != nil {
		t.Skipf("replay round trip needs a NATS JetStream server at %s: %v", natsURL, err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err == nil {
		_, err = js.AccountInfo()
	}
	if err != nil {
		t.Skipf("NATS server at %s has no JetStream: %v", natsURL, err)
	}
	id := fmt.Sprintf("%d", time.Now().UnixNano())
	subject, stream := "sluice.replaytest."+id, "SLUICE_REPLAYTEST_"+id
	defer js.DeleteStream(stream)

	dir := filepath.Join(t.TempDir(), "stats")
	makeBuffer(t, dir, 2, 3)
	out := t.TempDir()
	if code, o, e := run(t, "export", dir, "--out", out, "--edge", "site-a", "--stream", "stats", "--rows-per-file", "200", "--progress", "never"); code != 0 {
		t.Fatalf("export: exit %d: %s%s", code, o, e)
	}
	args := []string{"replay", out, "--type", "nats", "--set", "url=" + natsURL, "--set", "subject=" + subject,
		"--set", "stream=" + stream, "--set", "batch_rows=100", "--progress", "never", "--log-level", "error"}
	for i := range 2 {
		code, o, e := run(t, args...)
		if code != 0 || !strings.Contains(o, "replayed 500 rows from 3 files in 5 messages") {
			t.Fatalf("replay %d: exit %d\n%s%s", i, code, o, e)
		}
	}
	info, err := js.StreamInfo(stream)
	if err != nil {
		t.Fatal(err)
	}
	// Rows 1-500 in the messages fixed when they were appended: the
	// batches of 100.
	if info.State.Msgs != 5 {
		t.Fatalf("stream holds %d messages after two replays, want 5", info.State.Msgs)
	}
	var ids []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := js.GetMsg(stream, seq)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.Header.Get("id"))
		if m.Header.Get("backfill") != "true" {
			t.Errorf("message %s: backfill %q", m.Header.Get("id"), m.Header.Get("backfill"))
		}
	}
	want := "site-a/stats/1-100 site-a/stats/101-200 site-a/stats/201-300 site-a/stats/301-400 site-a/stats/401-500"
	if got := strings.Join(ids, " "); got != want {
		t.Fatalf("IDs %s\nwant %s", got, want)
	}
}

func TestReplaySinkConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sink.yaml")
	if err := os.WriteFile(cfg, []byte("type: nats\nurl: nats://127.0.0.1:1\nsubjekt: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	makeBuffer(t, filepath.Join(dir, "stats"), 1, 0)
	code, _, errOut := run(t, "replay", filepath.Join(dir, "stats", "seg"), "--sink-config", cfg)
	if code != exitFailed || !strings.Contains(errOut, cfg+":3:1") || !strings.Contains(errOut, "subjekt") {
		t.Fatalf("bad sink config: exit %d: %s", code, errOut)
	}
}

// TestReplaySinkConfigExpandsVariables: --sink-config used to be read by
// a loader of its own, which left ${VAR} as it was. It now goes through
// the pipelines loader: variables are expanded (an unset one is a located
// error), in a sink file as in a pipeline file.
func TestReplaySinkConfigExpandsVariables(t *testing.T) {
	dir := t.TempDir()
	makeBuffer(t, filepath.Join(dir, "stats"), 1, 0)
	segs := filepath.Join(dir, "stats", "seg")
	unset := filepath.Join(dir, "unset.yaml")
	if err := os.WriteFile(unset, []byte("type: nats\nurl: ${SLUICE_TEST_NO_SUCH_VAR}\nsubject: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := run(t, "replay", segs, "--sink-config", unset)
	if code != exitFailed || !strings.Contains(errOut, unset+":2:6") || !strings.Contains(errOut, "SLUICE_TEST_NO_SUCH_VAR") {
		t.Fatalf("unset variable: exit %d: %s", code, errOut)
	}
	nc, err := natsgo.Connect(natsURL, natsgo.Timeout(time.Second), natsgo.MaxReconnects(0))
	if err != nil {
		t.Skipf("the rest needs NATS at %s: %v", natsURL, err)
	}
	nc.Close()
	id := fmt.Sprintf("%d", time.Now().UnixNano())
	t.Setenv("SLUICE_TEST_NATS", natsURL)
	pipeline := filepath.Join(dir, "site.yaml")
	if err := os.WriteFile(pipeline, []byte(`
sources:
  s: {type: sim, rows: 1}
sinks:
  cloud:
    type: nats
    input: s
    url: ${SLUICE_TEST_NATS}
    subject: sluice.replayvar.`+id+`
    stream: ${SLUICE_TEST_STREAM:-SLUICE_REPLAYVAR_`+id+`}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run(t, "replay", segs, "--sink-config", pipeline, "--progress", "never", "--log-level", "error")
	if code != 0 || !strings.Contains(out, "replayed 100 rows") {
		t.Fatalf("replay through a pipeline file with variables: exit %d\n%s%s", code, out, errOut)
	}
	if nc, err := natsgo.Connect(natsURL); err == nil {
		if js, err := nc.JetStream(); err == nil {
			_ = js.DeleteStream("SLUICE_REPLAYVAR_" + id)
		}
		nc.Close()
	}
}
