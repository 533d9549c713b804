package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/hub/hubtest"
	"github.com/sluice-edge/sluice/engine/hub/protocol"
	"github.com/sluice-edge/sluice/engine/hub/uplink"
	"github.com/sluice-edge/sluice/engine/logquery"
)

// TestEdgeReportsToHub: an edge configured with a hub starts while the
// hub's server is down; the report of a local import made meanwhile
// reaches the edge stream once the server is up, with its time and the
// backfill flag; heartbeats name the release and the pipelines; a desired
// release whose bundle does not match its digest becomes a rejected
// report; SIGTERM-like cancellation stops the edge cleanly.
func TestEdgeReportsToHub(t *testing.T) {
	srv := enginetest.NewNATSServer(t)
	e := newEdgeSetup(t)
	e.appendConfig(t, fmt.Sprintf("hub: {url: %q, heartbeat: 200ms}\n", srv.URL()))
	stop := e.start(t)

	code, stdout, stderr := run(t, "import", e.bundle(t, 1, simPipeline("turbines")), "--config", e.config)
	if code != 0 || !strings.Contains(stdout, "applied w v1") {
		t.Fatalf("import v1: exit %d\n%s%s", code, stdout, stderr)
	}
	rs, err := agent.ReadReports(e.data+"/agent", agent.DefaultMaxReportBytes)
	if err != nil || len(rs) != 1 {
		t.Fatalf("reports %+v %v", rs, err)
	}

	// The hub comes up and creates what it owns.
	srv.Start()
	nc, err := natsgo.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, protocol.EdgeStreamConfig(1)); err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(ctx, protocol.DesiredConfig(1))
	if err != nil {
		t.Fatal(err)
	}
	obs, err := js.CreateObjectStore(ctx, protocol.BundlesConfig(1))
	if err != nil {
		t.Fatal(err)
	}

	rsub, _ := protocol.ReportsSubject("edge-01")
	hsub, _ := protocol.HeartbeatSubject("edge-01")
	rows := hubtest.EdgeRows(t, js, rsub, 1)
	if r := rows[0]; !r.Time.Equal(rs[0].Time.Truncate(time.Millisecond)) || !r.Backfill || r.Values[protocol.ColOutcome] != agent.Applied ||
		fmt.Sprint(r.Values[protocol.ColVersion]) != "1" || r.Values[protocol.ColBundle] != "w" {
		t.Errorf("report row %+v, want the report %+v as backfill", r, rs[0])
	}
	// Heartbeats made with the link up name the release and its pipeline.
	deadline := time.Now().Add(30 * time.Second)
	for {
		hs := hubtest.EdgeRows(t, js, hsub, 1)
		h := hs[len(hs)-1]
		if !h.Backfill && fmt.Sprint(h.Values[protocol.ColVersion]) == "1" &&
			h.Values[protocol.ColRunning] == `[{"pipeline":"turbines","state":"running"}]` &&
			h.Values[protocol.ColLabels] == `{"site":"north"}` && h.Values[protocol.ColSoftware] == version {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("last heartbeat %+v", h)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The hub may ask for the edge's log (sluice hub logs): the edge
	// answers on its logs subject from its log file.
	lsub, _ := protocol.LogsSubject("edge-01")
	msg, err := nc.Request(lsub, []byte(`{"level":"info","grep":"hub: following"}`), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ans, err := logquery.DecodeAnswer(msg.Data, logquery.DefaultAnswerBytes)
	if err != nil || ans.Error != "" || len(ans.Records) != 1 || !strings.Contains(string(ans.Records[0]), `"edge":"edge-01"`) {
		t.Errorf("log query answered %s (%v)", msg.Data, err)
	}

	// A desired release whose object does not hash to its digest.
	body, other := []byte("not the bundle it claims to be"), []byte("the bytes of the digest")
	sum := sha256.Sum256(other)
	digest := protocol.DigestPrefix + hex.EncodeToString(sum[:])
	if _, err := obs.PutBytes(ctx, digest, body); err != nil {
		t.Fatal(err)
	}
	key, _ := protocol.DesiredKey("edge-01")
	d := protocol.Desired{Bundle: "w", Version: 2, Digest: digest, Size: int64(len(body)), ReleasedAt: time.Now().UTC(), ReleaseID: "r-2"}
	data, err := d.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, key, data); err != nil {
		t.Fatal(err)
	}
	rows = hubtest.EdgeRows(t, js, rsub, 2)
	if v := rows[1].Values; v[protocol.ColOutcome] != agent.Rejected || fmt.Sprint(v[protocol.ColVersion]) != "2" ||
		!strings.Contains(fmt.Sprint(v[protocol.ColReason]), "hub release r-2") || v[protocol.ColFile] != digest {
		t.Errorf("refused release reported as %+v", v)
	}
	if st := e.status(t); st.Current == nil || st.Current.Version != 1 {
		t.Errorf("status after the refused release: %+v", st)
	}
	if code, stderr := stop(); code != 0 {
		t.Fatalf("stop: exit %d\n%s", code, stderr)
	}
}

// TestEdgeStopsWhileHubDown: an edge whose hub never answers starts,
// stops on cancellation within the drain bound with exit 0, keeps its
// heartbeat for the next start, and logs neither password nor token.
func TestEdgeStopsWhileHubDown(t *testing.T) {
	srv := enginetest.NewNATSServer(t) // never started
	e := newEdgeSetup(t)
	e.appendConfig(t, fmt.Sprintf("hub: {url: %q, user: edge, password: Hunter2-secret-pw, heartbeat: 100ms}\n", strings.Replace(srv.URL(), "nats://", "nats://edge:Hunter2-url-pw@", 1)))
	stop := e.start(t)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(e.log.String(), "publish failed; buffering and retrying") {
		if time.Now().After(deadline) {
			t.Fatalf("no failed publish logged\n%s", e.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	began := time.Now()
	code, stderr := stop()
	took := time.Since(began)
	if code != 0 {
		t.Fatalf("stop: exit %d\n%s", code, stderr)
	}
	if took > uplink.DefaultDrainTimeout+5*time.Second {
		t.Errorf("stopping took %v", took)
	}
	t.Logf("stopped in %v with the hub down", took.Round(time.Millisecond))
	if !strings.Contains(stderr, "left buffered for the next start") {
		t.Errorf("no word of what is left buffered:\n%s", stderr)
	}
	if strings.Contains(stderr, "Hunter2") {
		t.Errorf("a secret reached the log:\n%s", stderr)
	}
	// The log file got the same records, masked as well.
	logged := readLogFiles(t, e.data)
	if !strings.Contains(logged, "publish failed; buffering and retrying") {
		t.Errorf("the log file lacks the failed publishes:\n%s", logged)
	}
	if strings.Contains(logged, "Hunter2") {
		t.Errorf("a secret reached the log file:\n%s", logged)
	}
}
