package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/buffer"
)

// sluice buffer status and inspect on the buffer of a running engine
// that appends, seals, delivers and deletes segments all the time (20,000
// rows/s into 8 KiB WAL files, at most 2 MiB of them, to the NATS
// JetStream on 127.0.0.1:4222):
// every run reports what one moment of the buffer held, never damage that
// is a write in progress (a torn tail of the WAL file being appended, a
// segment deleted between reading the manifest and listing the files) nor
// rows that are neither delivered nor in the backlog, or, when the buffer
// changed during every reading, says so and points at sluice status. On the
// engine's data directory, which is no buffer, status says so and names
// the buffers in it. The engine runs on throughout and stops cleanly.
func TestBufferStatusWhileEngineRuns(t *testing.T) {
	e := newEdgeSetup(t)
	stop := e.start(t)
	name := fmt.Sprintf("BUFLIVE%d", time.Now().UnixNano())
	files := map[string]string{"pipelines/live.yaml": fmt.Sprintf(`batch: {size: 32, linger: 2ms}
sources:
  s: {type: sim, turbines: 5, rate: 20000, rows: 0}
sinks:
  cloud:
    type: nats
    input: s
    url: nats://127.0.0.1:4222
    subject: %s.x
    stream: %s
    buffer: {segment_bytes: 8192, max_bytes: 2MiB}
    forward: {mode: fifo}
`, strings.ToLower(name), name)}
	if code, stdout, stderr := run(t, "import", e.bundle(t, 1, files), "--config", e.config); code != 0 {
		t.Fatalf("import: exit %d\n%s%s", code, stdout, stderr)
	}
	dir := filepath.Join(e.data, "live", "cloud")
	type status struct {
		Cursor      uint64   `json:"cursor"`
		NextSeq     uint64   `json:"next_seq"`
		BacklogRows int64    `json:"backlog_rows"`
		OldestSeq   uint64   `json:"oldest_seq"`
		Problems    []string `json:"problems"`
	}
	// refused says whether a run that failed refused a buffer that
	// changed during every reading, as it should.
	refused := func(code int, errOut string) bool {
		return code == 1 && strings.Contains(errOut, "changed during each of") && strings.Contains(errOut, "`sluice status`")
	}
	read := func() (status, string, bool) {
		t.Helper()
		code, out, errOut := run(t, "buffer", "status", dir, "--json", "--sample-file", "-")
		var st status
		if refused(code, errOut) {
			return st, errOut, false
		}
		if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
			t.Fatalf("buffer status of a running engine's buffer: exit %d\n%s%s", code, out, errOut)
		}
		return st, out, true
	}
	// Wait for delivery (the cursor moves).
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "meta")); err == nil {
			if st, _, _ := read(); st.Cursor > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing delivered\n%s", e.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	var first, last status
	var read1, refusedN, inspected, inspectRefused int
	// 100 runs, for at most 25 s (a reading refused takes 5 s).
	start := time.Now()
	for i := 0; i < 100 && time.Since(start) < 25*time.Second; i++ {
		if i%4 == 3 {
			code, out, errOut := run(t, "buffer", "inspect", dir)
			switch {
			case refused(code, errOut):
				inspectRefused++
			case code != 0 || strings.Contains(out, "problem"):
				t.Fatalf("buffer inspect of a running engine's buffer, run %d: exit %d\n%s%s", i, code, out, errOut)
			default:
				inspected++
			}
			continue
		}
		st, out, ok := read()
		if !ok {
			refusedN++
			continue
		}
		if len(st.Problems) > 0 || st.BacklogRows > 0 && st.OldestSeq != st.Cursor+1 || st.BacklogRows > int64(st.NextSeq-1-st.Cursor) {
			t.Fatalf("buffer status of a running engine's buffer, run %d:\n%s", i, out)
		}
		if read1++; read1 == 1 {
			first = st
		}
		last = st
	}
	t.Logf("status: %d readings, %d refused; inspect: %d readings, %d refused", read1, refusedN, inspected, inspectRefused)
	if read1 < 2 || last.Cursor <= first.Cursor {
		t.Fatalf("status read the buffer %d times (the cursor from %d to %d)", read1, first.Cursor, last.Cursor)
	}

	code, out, errOut := run(t, "buffer", "status", e.data)
	if code != 1 || !strings.Contains(errOut, "not a sink's buffer directory") || !strings.Contains(errOut, dir) {
		t.Fatalf("buffer status of the data directory: exit %d\n%s%s", code, out, errOut)
	}
	if code, log := stop(); code != 0 {
		t.Fatalf("the engine exited %d\n%s", code, log)
	}
}

// A torn tail is the record a running engine is writing only while an
// engine holds the buffer: in a buffer no process holds (its last writer,
// this process, still runs) status reports it as damage Open truncates.
func TestBufferStatusTornTailWhenNotHeld(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "stats")
	makeBuffer(t, dir, 0, 2)
	crashAfterFirstRecord(t, dir, only(t, filepath.Join(dir, "wal", "*.wal")))
	code, out, errOut := run(t, "buffer", "status", dir, "--sample-file", "-")
	if code != 0 || !strings.Contains(out, "torn tail") {
		t.Fatalf("status: exit %d\n%s%s", code, out, errOut)
	}
}

// bufferHolder finds the process that holds a buffer open for writing
// without taking its lock, and none once it is closed.
func TestBufferHolder(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/locks is Linux's")
	}
	dir := filepath.Join(t.TempDir(), "stats")
	b, err := buffer.Open(dir, buffer.Options{Schema: opsSchema, ManualSeal: true, IdleSeal: -1})
	if err != nil {
		t.Fatal(err)
	}
	if pid, ok := bufferHolder(dir); !ok || pid != os.Getpid() {
		t.Errorf("open buffer: holder %d %v, want %d", pid, ok, os.Getpid())
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if pid, ok := bufferHolder(dir); ok {
		t.Errorf("closed buffer: holder %d", pid)
	}
}
