package uplink

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/bundle"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/hub/hubsync"
	"github.com/sluice-edge/sluice/engine/hub/hubtest"
	"github.com/sluice-edge/sluice/engine/hub/protocol"
	"github.com/sluice-edge/sluice/engine/hub/store"
)

const testEdge = "edge-7"

// connect returns a JetStream client of url that starts while the server
// is down and reconnects without end, failing publishes at once while
// disconnected (as Dial's).
func connect(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := natsgo.Connect(url, natsgo.RetryOnFailedConnect(true), natsgo.MaxReconnects(-1),
		natsgo.ReconnectWait(50*time.Millisecond), natsgo.ReconnectBufSize(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// createEdgeStream creates the stream the hub owns.
func createEdgeStream(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		// The client may not have reconnected to a server just started.
		_, err := js.CreateStream(ctx, protocol.EdgeStreamConfig(1))
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// open opens an uplink with fast retries that is closed when the test
// ends.
func open(t *testing.T, o Options) *Uplink {
	t.Helper()
	if o.Edge == "" {
		o.Edge = testEdge
	}
	o.RetryMin, o.RetryMax = 20*time.Millisecond, 200*time.Millisecond
	o.PublishTimeout = 2 * time.Second
	u, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close(context.Background()) })
	return u
}

func subjects(t *testing.T) (reports, heartbeat string) {
	r, err := protocol.ReportsSubject(testEdge)
	if err != nil {
		t.Fatal(err)
	}
	h, err := protocol.HeartbeatSubject(testEdge)
	if err != nil {
		t.Fatal(err)
	}
	return r, h
}

// checkReport compares a row with the report it was made of.
func checkReport(t *testing.T, row store.Row, r agent.Report, backfill bool) {
	t.Helper()
	v := row.Values
	if !row.Time.Equal(r.Time.Truncate(time.Millisecond)) || row.Backfill != backfill || row.Edge != testEdge || row.Stream != protocol.ReportStream ||
		v[protocol.ColBundle] != r.Bundle || fmt.Sprint(v[protocol.ColVersion]) != fmt.Sprint(r.Version) || v[protocol.ColOutcome] != r.Outcome ||
		v[protocol.ColReason] != r.Reason || v[protocol.ColLocation] != r.Location || v[protocol.ColSteps] != r.Steps || v[protocol.ColFile] != r.File {
		t.Errorf("row %+v (time %v backfill %v)\nreport %+v (backfill %v)", row, row.Time, row.Backfill, r, backfill)
	}
}

// TestReportsMadeOfflineArriveAfterwards: reports and a heartbeat stored
// while the hub's server is down reach the edge stream once it is up,
// with their original times and the backfill flag; a report made with the
// link up is not backfill.
func TestReportsMadeOfflineArriveAfterwards(t *testing.T) {
	srv := enginetest.NewNATSServer(t) // not started: the hub is down
	js := connect(t, srv.URL())
	u := open(t, Options{JS: js, Dir: t.TempDir()})
	rsub, hsub := subjects(t)

	t0 := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Millisecond)
	reps := []agent.Report{
		{Time: t0, Bundle: "windfarm", Version: 7, Outcome: agent.Applied, Steps: "pipeline p: started", File: "w7.bundle"},
		{Time: t0.Add(time.Minute), Bundle: "windfarm", Version: 8, Outcome: agent.Rejected, Reason: "pipelines/p.yaml:3:5: unknown field", Location: "pipelines/p.yaml:3:5", File: "w8.bundle"},
	}
	for _, r := range reps {
		if err := u.Report(r); err != nil {
			t.Fatal(err)
		}
	}
	d := protocol.Desired{Bundle: "windfarm", Version: 9, Digest: "sha256:" + strings.Repeat("ab", 32), Size: 10, ReleasedAt: t0, ReleaseID: "r-9"}
	if err := u.Refused(d, errors.New("the object's digest is wrong"), t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	hb := Heartbeat{Time: t0.Add(3 * time.Minute), Labels: map[string]string{"site": "north"}, Bundle: "windfarm", Version: 7,
		Running: []Running{{"z", "failed"}, {"a", "running"}}, Backlog: 42, Software: "v1.2.3"}
	if err := u.Heartbeat(hb); err != nil {
		t.Fatal(err)
	}
	if l, _ := u.Left(); l.Rows != 3 {
		t.Fatalf("%d reports buffered while the hub is down, want 3", l.Rows)
	}

	srv.Start()
	createEdgeStream(t, js)
	rows := hubtest.EdgeRows(t, js, rsub, 3)
	if len(rows) != 3 {
		t.Fatalf("%d report rows, want 3", len(rows))
	}
	checkReport(t, rows[0], reps[0], true)
	checkReport(t, rows[1], reps[1], true)
	checkReport(t, rows[2], agent.Report{Time: t0.Add(2 * time.Minute), Bundle: "windfarm", Version: 9, Outcome: agent.Rejected,
		Reason: "hub release r-9: the object's digest is wrong", File: d.Digest}, true)
	for i, r := range rows {
		if r.Seq != uint64(i+1) || r.MsgID != fmt.Sprintf("%s/%s/%d", testEdge, protocol.ReportStream, i+1) {
			t.Errorf("row %d: seq %d id %q", i, r.Seq, r.MsgID)
		}
	}

	hrows := hubtest.EdgeRows(t, js, hsub, 1)
	h := hrows[0]
	if !h.Time.Equal(hb.Time) || !h.Backfill || h.Stream != protocol.HeartbeatStream || h.Values[protocol.ColLabels] != `{"site":"north"}` ||
		h.Values[protocol.ColRunning] != `[{"pipeline":"a","state":"running"},{"pipeline":"z","state":"failed"}]` ||
		h.Values[protocol.ColBundle] != "windfarm" || fmt.Sprint(h.Values[protocol.ColVersion]) != "7" ||
		fmt.Sprint(h.Values[protocol.ColBacklog]) != "42" || h.Values[protocol.ColSoftware] != "v1.2.3" {
		t.Errorf("heartbeat row %+v", h)
	}

	// With the link up, a new report goes out at once, not as backfill.
	live := agent.Report{Time: time.Now().UTC().Truncate(time.Millisecond), Bundle: "windfarm", Version: 10, Outcome: agent.Applied}
	if err := u.Report(live); err != nil {
		t.Fatal(err)
	}
	rows = hubtest.EdgeRows(t, js, rsub, 4)
	checkReport(t, rows[3], live, false)
}

// TestHeartbeatBufferBounded: heartbeats made during a long outage keep
// the heartbeat buffer within its quota (the oldest are dropped), and the
// newest reach the hub once it is back.
func TestHeartbeatBufferBounded(t *testing.T) {
	srv := enginetest.NewNATSServer(t)
	js := connect(t, srv.URL())
	const quota = 64 << 10
	u := open(t, Options{JS: js, Dir: t.TempDir(), HeartbeatMaxBytes: quota})
	_, hbuf := u.Buffers()
	t0 := time.Now().Add(-30 * 24 * time.Hour).UTC().Truncate(time.Millisecond)
	const n = 1000
	var last time.Time
	for i := range n {
		last = t0.Add(time.Duration(i) * 30 * time.Second)
		hb := Heartbeat{Time: last, Labels: map[string]string{"site": "north", "rack": "r12"}, Bundle: "windfarm", Version: 7,
			Running: []Running{{"stats", "running"}, {"alerts", "running"}}, Backlog: int64(i), Software: "v1.2.3"}
		if err := u.Heartbeat(hb); err != nil {
			t.Fatal(err)
		}
		if st := hbuf.Status(); st.WALBytes+st.SegmentBytes > quota+segmentBytes(quota) {
			t.Fatalf("after %d heartbeats the buffer holds %d bytes (quota %d)", i+1, st.WALBytes+st.SegmentBytes, quota)
		}
	}
	st := hbuf.Status()
	if st.DroppedRows == 0 || st.BacklogRows >= n {
		t.Fatalf("no heartbeat dropped: %+v", st)
	}
	t.Logf("%d heartbeats: %d kept (%d bytes), %d dropped", n, st.BacklogRows, st.WALBytes+st.SegmentBytes, st.DroppedRows)

	srv.Start()
	createEdgeStream(t, js)
	// The forwarder may still hold rows it read before they were dropped
	// (a publish that failed while the hub was down is tried again with
	// the same rows): those reach the hub too, so the stream can hold
	// more rows than the backlog. Wait until the buffer has delivered
	// everything, then read the stream: what it holds no longer changes.
	drained := func() bool { s := hbuf.Status(); return s.BacklogRows == 0 && s.Cursor+1 == s.NextSeq }
	deadline := time.Now().Add(30 * time.Second)
	for !drained() {
		if time.Now().After(deadline) {
			t.Fatalf("the heartbeat buffer was not delivered: %+v", hbuf.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, hsub := subjects(t)
	rows := hubtest.EdgeRows(t, js, hsub, int(st.BacklogRows))
	kept := map[string]bool{}
	for _, r := range rows {
		kept[fmt.Sprint(r.Values[protocol.ColBacklog])] = true
	}
	for i := n - int(st.BacklogRows); i < n; i++ {
		if !kept[fmt.Sprint(i)] {
			t.Errorf("heartbeat %d was kept by the buffer but did not reach the hub", i)
		}
	}
	if got := rows[len(rows)-1]; !got.Time.Equal(last) || fmt.Sprint(got.Values[protocol.ColBacklog]) != fmt.Sprint(n-1) {
		t.Errorf("newest heartbeat row %+v, want the one of %v", got, last)
	}
	t.Logf("%d rows reached the hub (%d kept, %d read before they were dropped)", len(rows), st.BacklogRows, int64(len(rows))-st.BacklogRows)
}

// appendReportLine appends r to the agent's reports.jsonl as the agent
// does.
func appendReportLine(t testing.TB, dir string, r agent.Report) {
	line, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "reports.jsonl"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(append(line, '\n')); err != nil {
		t.Fatal(err)
	}
}

// killReports are the reports of TestKillLosesNoReport.
func killReports() []agent.Report {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	return []agent.Report{
		{Time: t0, Bundle: "w", Version: 1, Outcome: agent.Applied},
		{Time: t0.Add(time.Second), Bundle: "w", Version: 2, Outcome: agent.Rejected, Reason: "signature"},
		{Time: t0.Add(2 * time.Second), Bundle: "w", Version: 3, Outcome: agent.Applied},
	}
}

// TestHelperProcess is the edge of TestKillLosesNoReport: it stores two
// reports, then the agent writes a third to reports.jsonl and the process
// dies (SIGKILL) before the uplink stores it.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv("UPLINK_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process")
	}
	u, err := Open(Options{JS: connect(t, os.Getenv("UPLINK_HELPER_URL")), Edge: testEdge, Dir: filepath.Join(dir, "hub"), AgentDir: filepath.Join(dir, "agent")})
	if err != nil {
		t.Fatal(err)
	}
	reps := killReports()
	for _, r := range reps[:2] {
		appendReportLine(t, filepath.Join(dir, "agent"), r)
		if err := u.Report(r); err != nil {
			t.Fatal(err)
		}
	}
	appendReportLine(t, filepath.Join(dir, "agent"), reps[2])
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// TestKillLosesNoReport: a process killed between the agent writing a
// report and the uplink storing it loses no report, and repeats none of
// those it had stored: the next start stores what follows the cursor.
func TestKillLosesNoReport(t *testing.T) {
	srv := enginetest.NewNATSServer(t) // down while the edge runs and dies
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "agent"), 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "UPLINK_HELPER_DIR="+dir, "UPLINK_HELPER_URL="+srv.URL())
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the edge did not die by SIGKILL: %v\n%s", err, out)
	}

	srv.Start()
	js := connect(t, srv.URL())
	createEdgeStream(t, js)
	u := open(t, Options{JS: js, Dir: filepath.Join(dir, "hub"), AgentDir: filepath.Join(dir, "agent")})
	rsub, _ := subjects(t)
	rows := hubtest.EdgeRows(t, js, rsub, 3)
	reps := killReports()
	// The two stored before the kill left the buffer as backlog; the
	// third, stored from reports.jsonl at the start, went out live.
	for i, backfill := range []bool{true, true, false} {
		checkReport(t, rows[i], reps[i], backfill)
	}
	// Once the buffer is empty, nothing more comes: the two stored
	// before the kill are not repeated.
	waitEmpty(t, u)
	if rows := hubtest.EdgeRows(t, js, rsub, 3); len(rows) != 3 {
		t.Errorf("%d report rows, want 3: %+v", len(rows), rows)
	}
}

// waitEmpty waits until u's buffers hold nothing undelivered.
func waitEmpty(t *testing.T, u *Uplink) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, h := u.Left()
		if r.Rows == 0 && h.Rows == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("undelivered after 20s: %d reports, %d heartbeats", r.Rows, h.Rows)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFirstStartSendsKeptReports: without a cursor (the first start with
// a hub) every report reports.jsonl keeps is stored; a second start stores
// none again.
func TestFirstStartSendsKeptReports(t *testing.T) {
	srv := enginetest.NewNATSServer(t)
	srv.Start()
	js := connect(t, srv.URL())
	createEdgeStream(t, js)
	dir := t.TempDir()
	adir := filepath.Join(dir, "agent")
	if err := os.MkdirAll(adir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, r := range killReports() {
		appendReportLine(t, adir, r)
	}
	u, err := Open(Options{JS: js, Edge: testEdge, Dir: filepath.Join(dir, "hub"), AgentDir: adir})
	if err != nil {
		t.Fatal(err)
	}
	rsub, _ := subjects(t)
	hubtest.EdgeRows(t, js, rsub, 3)
	if err := u.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	u = open(t, Options{JS: js, Dir: filepath.Join(dir, "hub"), AgentDir: adir})
	if l, _ := u.Left(); l.Rows != 0 {
		t.Errorf("a second start stored %d reports again", l.Rows)
	}
	if rows := hubtest.EdgeRows(t, js, rsub, 3); len(rows) != 3 {
		t.Errorf("%d report rows, want 3", len(rows))
	}
}

// TestRefusedReleasesAreReported: desired releases hubsync refuses before
// the bundle reaches the agent — bytes that do not hash to the digest, a
// bundle over max_bundle_bytes — become rejected reports on the reports
// subject.
func TestRefusedReleasesAreReported(t *testing.T) {
	srv := enginetest.NewNATSServer(t)
	srv.Start()
	js := connect(t, srv.URL())
	createEdgeStream(t, js)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, protocol.DesiredConfig(1))
	if err != nil {
		t.Fatal(err)
	}
	obs, err := js.CreateObjectStore(ctx, protocol.BundlesConfig(1))
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(nil)
	a, err := agent.Open(agent.Options{Dir: filepath.Join(t.TempDir(), "agent"), Edge: testEdge, Trust: bundle.NewTrust(pub)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	u := open(t, Options{JS: js, Dir: t.TempDir(), AgentDir: a.Dir()})

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		hubsync.Sync(ctx, js, testEdge, a, hubsync.Options{Current: hubsync.AgentCurrent(a), MaxBundleBytes: 1 << 20,
			MinBackoff: 20 * time.Millisecond, OnOutcome: u.Outcome})
	}()
	defer wg.Wait()
	defer cancel()

	// An object stored under the digest of other bytes.
	real, fake := []byte("these bytes are the bundle"), []byte("these bytes are the digest")
	sum := sha256.Sum256(fake)
	digest := protocol.DigestPrefix + hex.EncodeToString(sum[:])
	if _, err := obs.PutBytes(ctx, digest, real); err != nil {
		t.Fatal(err)
	}
	key, _ := protocol.DesiredKey(testEdge)
	put := func(d protocol.Desired) {
		data, err := d.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, key, data); err != nil {
			t.Fatal(err)
		}
	}
	put(protocol.Desired{Bundle: "w", Version: 3, Digest: digest, Size: int64(len(real)), ReleasedAt: time.Now(), ReleaseID: "r-1"})
	rsub, _ := subjects(t)
	rows := hubtest.EdgeRows(t, js, rsub, 1)
	if v := rows[0].Values; v[protocol.ColOutcome] != agent.Rejected || v[protocol.ColBundle] != "w" || fmt.Sprint(v[protocol.ColVersion]) != "3" ||
		v[protocol.ColFile] != digest || !strings.Contains(v[protocol.ColReason].(string), "hub release r-1:") ||
		!strings.Contains(v[protocol.ColReason].(string), "digest") {
		t.Errorf("digest mismatch reported as %+v", v)
	}

	put(protocol.Desired{Bundle: "w", Version: 4, Digest: digest, Size: 2 << 20, ReleasedAt: time.Now(), ReleaseID: "r-2"})
	rows = hubtest.EdgeRows(t, js, rsub, 2)
	if v := rows[1].Values; v[protocol.ColOutcome] != agent.Rejected || fmt.Sprint(v[protocol.ColVersion]) != "4" ||
		!strings.Contains(v[protocol.ColReason].(string), "max_bundle_bytes") {
		t.Errorf("a bundle too large reported as %+v", v)
	}
	if len(rows) != 2 {
		t.Errorf("%d report rows, want 2", len(rows))
	}
}

// TestFullReportsBufferDropsNothing: reports made during an outage that
// fill the reports buffer's quota are held back, not dropped; once the hub
// is back every one arrives, in order, once.
func TestFullReportsBufferDropsNothing(t *testing.T) {
	srv := enginetest.NewNATSServer(t)
	js := connect(t, srv.URL())
	const quota = 64 << 10
	u := open(t, Options{JS: js, Dir: t.TempDir(), ReportsMaxBytes: quota, WriteTimeout: 20 * time.Millisecond})
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	reason := strings.Repeat("a long reason ", 100)
	const n = 80
	refused := 0
	var reps []agent.Report
	for i := range n {
		r := agent.Report{Time: t0.Add(time.Duration(i) * time.Second), Bundle: "w", Version: uint64(i + 1), Outcome: agent.Rejected, Reason: reason}
		reps = append(reps, r)
		if err := u.Report(r); err != nil {
			refused++
		}
	}
	if refused == 0 {
		t.Fatalf("the quota of %d bytes took %d reports of %d bytes", quota, n, len(reason))
	}
	rb, _ := u.Buffers()
	if st := rb.Status(); st.DroppedRows != 0 {
		t.Fatalf("the reports buffer dropped %d rows", st.DroppedRows)
	}
	t.Logf("%d of %d reports held back by the full buffer", refused, n)

	srv.Start()
	createEdgeStream(t, js)
	rsub, _ := subjects(t)
	rows := hubtest.EdgeRows(t, js, rsub, n)
	waitEmpty(t, u)
	rows = hubtest.EdgeRows(t, js, rsub, n)
	if len(rows) != n {
		t.Fatalf("%d report rows, want %d", len(rows), n)
	}
	for i, row := range rows {
		checkReport(t, row, reps[i], row.Backfill)
	}
	if c, ok := u.readCursor(); !ok || !c.names(reps[n-1]) {
		t.Errorf("cursor %+v, want the last report", c)
	}
}

// TestRenamedEdgeKeepsSubjectAndIDTogether: reports an edge stored under
// its former id, still undelivered when it restarts under a new one, leave
// with the former id (the buffer keeps the identity of what it holds) and
// on that id's subject, so that the hub, which refuses a message whose
// subject names another edge than its id, stores them.
func TestRenamedEdgeKeepsSubjectAndIDTogether(t *testing.T) {
	srv := enginetest.NewNATSServer(t)
	js := connect(t, srv.URL())
	dir := t.TempDir()
	old := agent.Report{Time: time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond), Bundle: "w", Version: 1, Outcome: agent.Applied}
	u, err := Open(Options{JS: js, Edge: "edge-old", Dir: dir, DrainTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Report(old); err != nil {
		t.Fatal(err)
	}
	if err := u.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	u = open(t, Options{JS: js, Edge: "edge-new", Dir: dir})
	srv.Start()
	createEdgeStream(t, js)
	oldSub, _ := protocol.ReportsSubject("edge-old")
	rows := hubtest.EdgeRows(t, js, oldSub, 1)
	if rows[0].Edge != "edge-old" || !rows[0].Time.Equal(old.Time) {
		t.Errorf("row %+v", rows[0])
	}
	waitEmpty(t, u)
	newSub, _ := protocol.ReportsSubject("edge-new")
	if rows := hubtest.EdgeRows(t, js, newSub, 0); len(rows) != 0 {
		t.Errorf("rows of edge-old on the subject of edge-new: %+v", rows)
	}
}
