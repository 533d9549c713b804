package main

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/hub/protocol"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

// TestHubCommands runs `sluice hub` over a nats-server and a schema of the
// test's own, and asks it with the client commands: an edge's heartbeat
// shows in `hub edges` and `hub status`, a release to an edge that never
// reported reads offline, a wrong token and bad targets are refused, and
// a signal stops the hub with exit 0.
func TestHubCommands(t *testing.T) {
	h := startHubCmd(t, "hub_cmd_test")
	addr, tokenFile, hub, stderr, stop := h.addr, h.tokenFile, h.client, h.stderr, h.stop
	dir := t.TempDir()
	if fi, err := os.Stat(tokenFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", fi, err)
	}
	// An edge's heartbeat, as its forwarder sends it.
	nc, err := natsgo.Connect(h.nats.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	rec := enginetest.Record(nil, protocol.HeartbeatSchema(),
		enginetest.Row{time.Now(), `{"site":"north"}`, "", int64(0), `[{"pipeline":"p","state":"running"}]`, int64(12), "test"})
	msgs, err := outbound.Encode(outbound.JSON, "edge-01", protocol.HeartbeatStream, outbound.Entry{Rec: rec, First: 1, Schema: protocol.HeartbeatSchema()})
	rec.Release()
	if err != nil {
		t.Fatal(err)
	}
	m := natsgo.NewMsg("sluice.edge-01.heartbeat")
	for k, v := range msgs[0].Metadata {
		m.Header.Set(k, v)
	}
	m.Header.Set(natsgo.MsgIdHdr, msgs[0].UUID)
	m.Data = msgs[0].Payload
	if err := nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, out, errOut := run(t, append([]string{"hub", "edges"}, hub...)...)
		if code == 0 && strings.Contains(out, "edge-01") {
			if !strings.Contains(out, "yes") || !strings.Contains(out, "12") {
				t.Fatalf("hub edges:\n%s", out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hub edges: %d\n%s%s", code, out, errOut)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, out, errOut := run(t, append([]string{"hub", "status", "edge-01"}, hub...)...); code != 0 ||
		!strings.Contains(out, "edge edge-01: online") || !strings.Contains(out, "pipeline p: running") {
		t.Fatalf("hub status: %d\n%s%s", code, out, errOut)
	}
	// A release to an edge that never reported.
	e := newEdgeSetup(t)
	b := e.bundle(t, 1, simPipeline("p"))
	if code, out, errOut := run(t, append([]string{"hub", "release", b, "--to", "edge-02"}, hub...)...); code != 0 ||
		!strings.Contains(out, "release r1: w v1 to edge edge-02") || !strings.Contains(out, "edge-02: offline") {
		t.Fatalf("hub release: %d\n%s%s", code, out, errOut)
	}
	// Waiting for an edge that does not come: exit 1 after the timeout.
	if code, out, errOut := run(t, append([]string{"hub", "release", b, "--to", "edge-02", "--wait", "--timeout", "1s"}, hub...)...); code != exitFailed ||
		!strings.Contains(out, "edge-02: offline") || !strings.Contains(out, "(sha256:") || !strings.Contains(errOut, "still pending") {
		t.Fatalf("hub release --wait: %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := run(t, append([]string{"hub", "releases"}, hub...)...); code != 0 || !strings.Contains(out, "r2") || !strings.Contains(out, "edge edge-02") {
		t.Fatalf("hub releases: %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := run(t, append([]string{"hub", "releases", "r1"}, hub...)...); code != 0 || !strings.Contains(out, "edge-02: rejected: superseded by release r2") {
		t.Fatalf("hub releases r1: %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := run(t, append([]string{"hub", "alerts", "--active"}, hub...)...); code != 0 || !strings.Contains(out, "STATE") {
		t.Fatalf("hub alerts: %d\n%s%s", code, out, errOut)
	}
	// Refusals.
	for _, args := range [][]string{
		{"hub", "release", b, "--to", "edge-02", "--all"},
		{"hub", "release", b},
		{"hub", "release", b, "--label", "nokey"},
		{"hub", "release", b, "--to", "a.b"},
	} {
		if code, _, _ := run(t, append(args, hub...)...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
	wrong := filepath.Join(dir, "wrong.token")
	if err := os.WriteFile(wrong, []byte("nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := run(t, "hub", "edges", "--hub", "http://"+addr, "--token-file", wrong); code != exitFailed || !strings.Contains(errOut, "401") {
		t.Errorf("wrong token: exit %d %s", code, errOut)
	}
	token, _ := os.ReadFile(tokenFile)
	if code := stop(); code != 0 {
		t.Fatalf("hub exit %d\n%s", code, stderr.String())
	}
	if strings.Contains(stderr.String(), strings.TrimSpace(string(token))) {
		t.Fatal("the token is in the hub's log")
	}
}

// hubCmd is a `sluice hub` a test runs over a nats-server and a schema of
// its own.
type hubCmd struct {
	nats      *enginetest.NATSServer
	dsn       string
	schema    string
	db        *sql.DB
	addr      string
	tokenFile string
	stderr    *enginetest.LogBuffer
	// client are the flags by which a client command asks this hub.
	client []string
	done   chan int
	// stop stops the hub (once) and returns its exit code.
	stop func() int
}

// startHubCmd starts `sluice hub` with a schema named after prefix and
// waits until its API answers. The hub stops and the schema is dropped
// when the test ends.
func startHubCmd(t *testing.T, prefix string) *hubCmd {
	t.Helper()
	h := &hubCmd{dsn: outboundtest.PostgresDSN(t), nats: enginetest.NewNATSServer(t), stderr: &enginetest.LogBuffer{}, done: make(chan int, 1)}
	h.nats.Start()
	h.schema = fmt.Sprintf("%s_%d_%d", prefix, os.Getpid(), time.Now().UnixNano()%1e9)
	db, err := sql.Open("pgx", h.dsn)
	if err != nil {
		t.Fatal(err)
	}
	h.db = db
	t.Cleanup(func() {
		db.Exec("DROP SCHEMA IF EXISTS " + h.schema + " CASCADE")
		db.Close()
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = l.Addr().String()
	l.Close()
	h.tokenFile = filepath.Join(t.TempDir(), "hub.token")
	ctx, cancel := context.WithCancel(context.Background())
	var stdout enginetest.LogBuffer
	go func() {
		h.done <- executeContext(ctx, []string{"hub", "--nats", h.nats.URL(), "--postgres", h.dsn, "--schema", h.schema, "--listen", h.addr,
			"--token-file", h.tokenFile, "--log-format", "json"}, &stdout, h.stderr)
	}()
	stopped, code := false, 0
	h.stop = func() int {
		if !stopped {
			stopped = true
			cancel()
			code = <-h.done
		}
		return code
	}
	t.Cleanup(func() { h.stop() })
	h.client = []string{"--hub", "http://" + h.addr, "--token-file", h.tokenFile}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _, _ := run(t, append([]string{"hub", "edges"}, h.client...)...)
		if code == 0 {
			break
		}
		select {
		case code := <-h.done:
			stopped = true
			cancel()
			t.Fatalf("the hub exited %d\n%s", code, h.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hub's API did not answer\n%s", h.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return h
}
