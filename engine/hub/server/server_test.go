package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/hub/protocol"
	"github.com/sluice-edge/sluice/engine/hub/server"
	"github.com/sluice-edge/sluice/engine/hub/store"
)

// TestReleaseLifecycle: a release to a label reaches the two edges that
// carry it (pending, then applied as they report), not the third; a
// release to all reaches the three; a release to an edge the hub never
// heard of registers it (offline) and applies when it appears; the API
// shows what each edge runs and its history.
func TestReleaseLifecycle(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	ctx := context.Background()
	now := time.Now().UTC()
	edges := []*edgeSim{e.edge("e1", `{"site":"a"}`), e.edge("e2", `{"site":"a"}`), e.edge("e3", `{"site":"b"}`)}
	for _, s := range edges {
		s.heartbeat(now)
	}
	waitFor(t, 10*time.Second, "three edges online", func() error {
		es, err := in.client.Edges(ctx)
		if err != nil {
			return err
		}
		if len(es) != 3 || !es[0].Online || es[2].Labels["site"] != "b" || es[0].Backlog != 3 || len(es[0].Running) != 1 {
			return fmt.Errorf("edges %+v", es)
		}
		return nil
	})
	// Released before the edges follow their keys: pending until they do.
	b1 := e.build("wf", 1, e.key)
	rel, err := in.client.Release(ctx, bytes.NewReader(b1), int64(len(b1)), server.Target{Kind: store.TargetLabel, Selector: "site=a"})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := states(t, in.client, rel.ID); got != "e1=pending e2=pending " {
		t.Fatalf("release %s: %s", rel.ID, got)
	}
	for _, s := range edges {
		s.run()
	}
	waitFor(t, 20*time.Second, "label release applied", func() error {
		if got, v := states(t, in.client, rel.ID); got != "e1=applied e2=applied " || v.Pending() {
			return errors.New(got)
		}
		return nil
	})
	b2 := e.build("wf", 2, e.key)
	rel2, err := in.client.Release(ctx, bytes.NewReader(b2), int64(len(b2)), server.Target{Kind: store.TargetAll})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "release to all applied", func() error {
		if got, _ := states(t, in.client, rel2.ID); got != "e1=applied e2=applied e3=applied " {
			return errors.New(got)
		}
		return nil
	})
	d, err := in.client.Edge(ctx, "e1")
	if err != nil {
		t.Fatal(err)
	}
	if d.Bundle != "wf" || d.Version != 2 || len(d.History) != 2 || d.History[0].Version != 2 || d.LastReport == nil {
		t.Fatalf("edge e1: %+v", d)
	}
	rs, err := in.client.Releases(ctx)
	if err != nil || len(rs) != 2 || rs[0].ID != rel2.ID || rs[0].Target != "all" || rs[1].Target != "label site=a" {
		t.Fatalf("releases %+v %v", rs, err)
	}
	// An edge the hub never heard of.
	rel3, err := in.client.Release(ctx, bytes.NewReader(b2), int64(len(b2)), server.Target{Kind: store.TargetEdge, Selector: "late"})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := states(t, in.client, rel3.ID); got != "late=offline " {
		t.Fatalf("release to an unknown edge: %s", got)
	}
	late := e.edge("late", `{"site":"c"}`)
	late.heartbeat(time.Now().UTC())
	late.run()
	waitFor(t, 20*time.Second, "late edge applied", func() error {
		if got, _ := states(t, in.client, rel3.ID); got != "late=applied " {
			return errors.New(got)
		}
		return nil
	})
	// A rejected release keeps its reason.
	_, rogue, _ := ed25519.GenerateKey(nil)
	e.opts.Trust = nil // this hub does not check signers
	in.stop()
	in2 := e.start()
	b3 := e.build("wf", 3, rogue)
	rel4, err := in2.client.Release(ctx, bytes.NewReader(b3), int64(len(b3)), server.Target{Kind: store.TargetEdge, Selector: "e3"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "rejected", func() error {
		_, v := states(t, in2.client, rel4.ID)
		if len(v.Edges) != 1 || v.Edges[0].State != store.ReleaseRejected || v.Edges[0].Reason == "" {
			return fmt.Errorf("%+v", v.Edges)
		}
		return nil
	})
}

// TestRestartKeepsState: a hub started again over the same database and
// broker shows the same edges, releases and states.
func TestRestartKeepsState(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	ctx := context.Background()
	s := e.edge("e1", `{"site":"a"}`)
	s.heartbeat(time.Now().UTC())
	s.run()
	b := e.build("wf", 1, e.key)
	rel, err := in.client.Release(ctx, bytes.NewReader(b), int64(len(b)), server.Target{Kind: store.TargetEdge, Selector: "e1"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "applied", func() error {
		if got, _ := states(t, in.client, rel.ID); got != "e1=applied " {
			return errors.New(got)
		}
		return nil
	})
	in.stop()
	in2 := e.start()
	got, v := states(t, in2.client, rel.ID)
	if got != "e1=applied " || v.Bundle != "wf" || v.Version != 1 || v.Target != "edge e1" {
		t.Fatalf("after restart: %s %+v", got, v)
	}
	es, err := in2.client.Edges(ctx)
	if err != nil || len(es) != 1 || es[0].Version != 1 {
		t.Fatalf("edges after restart: %+v %v", es, err)
	}
	// The same bundle again: its object is there, the edge runs it.
	rel2, err := in2.client.Release(ctx, bytes.NewReader(b), int64(len(b)), server.Target{Kind: store.TargetEdge, Selector: "e1"})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := states(t, in2.client, rel2.ID); got != "e1=applied " {
		t.Fatalf("release of what runs: %s", got)
	}
}

// TestAPIAuth: every endpoint refuses a request without the token or with
// a wrong one, and answers with it.
func TestAPIAuth(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	paths := []string{"GET /v1/health", "GET /v1/edges", "GET /v1/edges/e1", "POST /v1/releases?all=1", "GET /v1/releases",
		"GET /v1/releases/r1", "GET /v1/alerts?active=1", "GET /metrics", "GET /v1/nothing"}
	for _, p := range paths {
		method, path, _ := strings.Cut(p, " ")
		for _, auth := range []string{"", "Bearer wrong", "Bearer " + testToken + "x", "bearer " + testToken, testToken} {
			req, _ := http.NewRequest(method, "http://"+in.api.Addr()+path, strings.NewReader("x"))
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || bytes.Contains(body, []byte(testToken)) {
				t.Errorf("%s with %q: %d %s", p, auth, resp.StatusCode, body)
			}
		}
	}
	bad, err := server.NewClient("http://"+in.api.Addr(), "wrong")
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	var ae *server.APIError
	if _, err := bad.Edges(context.Background()); !errors.As(err, &ae) || ae.Code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %v", err)
	}
	if h, err := in.client.Health(context.Background()); err != nil || !h.OK {
		t.Fatalf("health %+v %v", h, err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+in.api.Addr()+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`sluice_hub_ingest_rows_total{consumer="data"} 0`)) ||
		!bytes.Contains(body, []byte(`sluice_hub_ingest_lag{consumer="edge_events"}`)) {
		t.Fatalf("metrics %d\n%s", resp.StatusCode, body)
	}
}

// TestHostileRequests: bodies over the bound, bundles that are not
// bundles or not signed by a trusted key, bad targets, bad edge and
// release ids are refused with a client error and change nothing.
func TestHostileRequests(t *testing.T) {
	e := newEnv(t)
	e.opts.MaxBundleBytes = 64 << 10
	in := e.start()
	ctx := context.Background()
	good := e.build("wf", 1, e.key)
	_, rogueKey, _ := ed25519.GenerateKey(nil)
	all := server.Target{Kind: store.TargetAll}
	code := func(err error) int {
		var ae *server.APIError
		if errors.As(err, &ae) {
			return ae.Code
		}
		t.Fatalf("not an API error: %v", err)
		return 0
	}
	cases := []struct {
		name string
		body []byte
		t    server.Target
		want int
	}{
		{"random bytes", bytes.Repeat([]byte("junk"), 100), all, 422},
		{"empty", nil, all, 422},
		{"truncated", good[:len(good)/2], all, 422},
		{"untrusted signer", e.build("wf", 1, rogueKey), all, 422},
		{"over the bound", bytes.Repeat([]byte{1}, 65<<10), all, 413},
		{"label without =", good, server.Target{Kind: store.TargetLabel, Selector: "site"}, 400},
		{"label without key", good, server.Target{Kind: store.TargetLabel, Selector: "=a"}, 400},
		{"label with control", good, server.Target{Kind: store.TargetLabel, Selector: "site=a\nb"}, 400},
		{"label too long", good, server.Target{Kind: store.TargetLabel, Selector: "k=" + strings.Repeat("v", 300)}, 400},
		{"edge with dot", good, server.Target{Kind: store.TargetEdge, Selector: "a.b"}, 400},
		{"edge wildcard", good, server.Target{Kind: store.TargetEdge, Selector: "*"}, 400},
		{"edge too long", good, server.Target{Kind: store.TargetEdge, Selector: strings.Repeat("e", 65)}, 400},
		{"unknown kind", good, server.Target{Kind: "planet", Selector: "x"}, 400},
	}
	for _, tc := range cases {
		_, err := in.client.Release(ctx, bytes.NewReader(tc.body), int64(len(tc.body)), tc.t)
		if got := code(err); got != tc.want {
			t.Errorf("%s: %d (%v), want %d", tc.name, got, err, tc.want)
		}
	}
	// A body over the bound without a length (chunked) is cut off.
	req, _ := http.NewRequest(http.MethodPost, "http://"+in.api.Addr()+"/v1/releases?all=1",
		io.MultiReader(bytes.NewReader(make([]byte, 200<<10))))
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.ContentLength = -1
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked body over the bound: %d", resp.StatusCode)
	}
	// A declared length over the bound is refused before the body is read.
	conn, err := net.Dial("tcp", in.api.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/releases?all=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", testToken, int64(protocol.MaxBundleBytes)*4)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err = http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("declared length over the bound: %d", resp.StatusCode)
	}
	// Two targets, none.
	for _, q := range []string{"all=1&edge=e1", "", "all=2", "edge=e1&edge=e2"} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+in.api.Addr()+"/v1/releases?"+q, bytes.NewReader(good))
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("target %q: %d", q, resp.StatusCode)
		}
	}
	if _, err := in.client.Edge(ctx, "a.b"); code(err) != 400 {
		t.Errorf("edge a.b: %v", err)
	}
	if _, err := in.client.Edge(ctx, "nobody"); code(err) != 404 {
		t.Errorf("unknown edge: %v", err)
	}
	for id, want := range map[string]int{"xyz": 400, "r0": 400, "r-1": 400, "r999": 404, "99999999999999999999": 400} {
		if _, err := in.client.ReleaseStatus(ctx, id); code(err) != want {
			t.Errorf("release %s: %v, want %d", id, err, want)
		}
	}
	if _, err := in.client.Alerts(ctx, false, "a\x00b"); code(err) != 400 {
		t.Errorf("asset with NUL: %v", err)
	}
	// Nothing was released.
	es, err := in.client.Edges(ctx)
	if err != nil || len(es) != 0 {
		t.Fatalf("edges after refused releases: %+v %v", es, err)
	}
	var n int
	if err := e.db.QueryRow("SELECT count(*) FROM " + e.schema + ".releases").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d releases stored (%v)", n, err)
	}
	// The same name and version with other content: a conflict.
	if _, err := in.client.Release(ctx, bytes.NewReader(good), int64(len(good)), all); err != nil {
		t.Fatal(err)
	}
	other := e.build("wf", 1, e.key)
	if bytes.Equal(other, good) {
		t.Fatal("the rebuilt bundle is identical")
	}
	if _, err := in.client.Release(ctx, bytes.NewReader(other), int64(len(other)), all); code(err) != http.StatusConflict {
		t.Errorf("same version, other digest: %v", err)
	}
}

// TestEdgeEventsHostile: an edge's report sent on another edge's subject,
// a report with an unknown outcome, a heartbeat with labels that are not
// JSON are terminated as poison; an edge clock a day ahead does not keep
// the edge online for a day.
func TestEdgeEventsHostile(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	ctx := context.Background()
	_, js := e.connect()
	now := time.Now().UTC()
	rep := protocol.ReportSchema()
	hb := protocol.HeartbeatSchema()
	// e1 pretends to be e2.
	publish(t, js, "sluice.e2.reports", encode(t, "e1", protocol.ReportStream, rep, 1,
		enginetest.Row{now, "wf", int64(1), "applied", "", "", "", ""}))
	// Report rows on the heartbeat subject.
	publish(t, js, "sluice.e1.heartbeat", encode(t, "e1", protocol.ReportStream, rep, 2,
		enginetest.Row{now, "wf", int64(1), "applied", "", "", "", ""}))
	publish(t, js, "sluice.e1.reports", encode(t, "e1", protocol.ReportStream, rep, 3,
		enginetest.Row{now, "wf", int64(1), "exploded", "", "", "", ""}))
	publish(t, js, "sluice.e1.heartbeat", encode(t, "e1", protocol.HeartbeatStream, hb, 1,
		enginetest.Row{now, "{not json", "", int64(0), "", int64(0), ""}))
	// The clock of e3 runs a day ahead.
	publish(t, js, "sluice.e3.heartbeat", encode(t, "e3", protocol.HeartbeatStream, hb, 1,
		enginetest.Row{now.Add(24 * time.Hour), `{"site":"x"}`, "", int64(0), "[]", int64(0), "v"}))
	waitFor(t, 10*time.Second, "events handled", func() error {
		_, ev := in.hub.Stats()
		if ev.Poison != 4 || ev.Messages != 1 {
			return fmt.Errorf("edge events %+v", ev)
		}
		return nil
	})
	es, err := in.client.Edges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].ID != "e3" || es[0].LastSeen.After(time.Now()) {
		t.Fatalf("edges %+v", es)
	}
}

// TestEdgeEventsRefusedTexts: a heartbeat whose label holds a NUL byte and
// a report whose bundle name is longer than the store holds are set aside
// as poison, and the edge's next heartbeat is stored.
func TestEdgeEventsRefusedTexts(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	ctx := context.Background()
	_, js := e.connect()
	now := time.Now().UTC()
	publish(t, js, "sluice.e1.heartbeat", encode(t, "e1", protocol.HeartbeatStream, protocol.HeartbeatSchema(), 1,
		enginetest.Row{now, `{"site":"a\u0000b"}`, "", int64(0), "[]", int64(0), "v"}))
	publish(t, js, "sluice.e1.reports", encode(t, "e1", protocol.ReportStream, protocol.ReportSchema(), 1,
		enginetest.Row{now, strings.Repeat("w", store.DefaultMaxTextBytes+1), int64(1), "applied", "", "", "", ""}))
	publish(t, js, "sluice.e1.heartbeat", encode(t, "e1", protocol.HeartbeatStream, protocol.HeartbeatSchema(), 2,
		enginetest.Row{now, `{"site":"x"}`, "", int64(0), "[]", int64(0), "v"}))
	waitFor(t, 10*time.Second, "events handled", func() error {
		_, ev := in.hub.Stats()
		if ev.Poison != 2 || ev.Messages != 1 {
			return fmt.Errorf("edge events %+v", ev)
		}
		return nil
	})
	es, err := in.client.Edges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].ID != "e1" || es[0].Labels["site"] != "x" || es[0].LastReport != nil {
		t.Fatalf("edges %+v", es)
	}
}

// TestTwoInstancesShareIngest: two instances share the data and the
// edge-event consumers; one killed in the middle leaves its unacked
// messages to the other, and every row and report is stored once.
func TestTwoInstancesShareIngest(t *testing.T) {
	e := newEnv(t)
	// What the killed instance held comes back after the ack wait.
	e.opts.Ingest.AckWait = 3 * time.Second
	a := e.start()
	b := e.start()
	_, js := e.connect()
	schema, t0 := statsSchema(), statsT0
	const perEdge = 6000
	for k := range 3 {
		edge := fmt.Sprintf("e%d", k)
		rows := make([]enginetest.Row, perEdge)
		for i := range rows {
			rows[i] = enginetest.Row{t0.Add(time.Duration(i) * time.Millisecond), fmt.Sprintf("A%d", i%7), float64(i)}
		}
		msgs := encode(t, edge, "stats", schema, 1, rows...)
		publish(t, js, "sluice."+edge+".data.stats", msgs)
	}
	count := func() int {
		var n int
		if err := e.db.QueryRow("SELECT count(*) FROM " + e.schema + ".telemetry").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitFor(t, 30*time.Second, "both instances at work", func() error {
		da, _ := a.hub.Stats()
		db, _ := b.hub.Stats()
		if da.Rows == 0 || db.Rows == 0 {
			return fmt.Errorf("rows: a %d, b %d", da.Rows, db.Rows)
		}
		return nil
	})
	// Reports of 40 edges on the edge stream while one instance dies.
	const reporters = 40
	for k := range reporters {
		edge := fmt.Sprintf("r%02d", k)
		publish(t, js, "sluice."+edge+".reports", encode(t, edge, protocol.ReportStream, protocol.ReportSchema(), 1,
			enginetest.Row{t0, "wf", int64(1), "applied", "", "", "", ""},
			enginetest.Row{t0.Add(time.Second), "wf", int64(2), "applied", "", "", "", ""}))
	}
	a.kill()
	waitFor(t, 60*time.Second, "every row stored", func() error {
		if n := count(); n != 3*perEdge {
			return fmt.Errorf("%d rows stored", n)
		}
		return nil
	})
	waitFor(t, 60*time.Second, "every report stored", func() error {
		var n, v2 int
		if err := e.db.QueryRow("SELECT count(*), count(*) FILTER (WHERE version = 2) FROM "+e.schema+".edges").Scan(&n, &v2); err != nil {
			return err
		}
		var reports int
		if err := e.db.QueryRow("SELECT count(*) FROM " + e.schema + ".apply_reports").Scan(&reports); err != nil {
			return err
		}
		if n != reporters || v2 != reporters || reports != 2*reporters {
			return fmt.Errorf("%d edges, %d on v2, %d reports", n, v2, reports)
		}
		return nil
	})
	var distinct int
	if err := e.db.QueryRow("SELECT count(DISTINCT (edge, stream, seq)) FROM " + e.schema + ".telemetry").Scan(&distinct); err != nil || distinct != 3*perEdge {
		t.Fatalf("%d distinct rows (%v)", distinct, err)
	}
}

// TestEnsureConcurrent: instances starting together over a fresh broker
// all find the resources, and an existing data stream made by an edge's
// sink keeps working with the hub's subjects added.
func TestEnsureConcurrent(t *testing.T) {
	e := newEnv(t)
	_, js := e.connect()
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstreamConfig(protocol.DataStream, "sluice.e1.data.stats")); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			_, js := e.connect()
			h, err := server.New(js, nil, e.opts)
			if err == nil {
				err = h.Ensure(ctx)
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	s, err := js.Stream(ctx, protocol.DataStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if len(cfg.Subjects) != 2 || cfg.Duplicates < protocol.DuplicateWindow {
		t.Fatalf("data stream %+v", cfg)
	}
}

// TestJanitor: the janitor deletes an old object no desired record names
// and keeps the one a record names.
func TestJanitor(t *testing.T) {
	e := newEnv(t)
	e.opts.BundleGrace = time.Millisecond
	in := e.start()
	ctx := context.Background()
	b1 := e.build("wf", 1, e.key)
	b2 := e.build("wf", 2, e.key)
	if _, err := in.client.Release(ctx, bytes.NewReader(b1), int64(len(b1)), server.Target{Kind: store.TargetEdge, Selector: "e1"}); err != nil {
		t.Fatal(err)
	}
	r2, err := in.client.Release(ctx, bytes.NewReader(b2), int64(len(b2)), server.Target{Kind: store.TargetEdge, Selector: "e1"})
	if err != nil {
		t.Fatal(err)
	}
	_, js := e.connect()
	obj, err := js.ObjectStore(ctx, protocol.BundleBucket)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // older than the grace, which is 1 ms
	if err := in.hub.Janitor(ctx); err != nil {
		t.Fatal(err)
	}
	if !in.hub.Leader() {
		t.Fatal("the only instance did not lead")
	}
	infos, err := obj.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || infos[0].Name != r2.Digest {
		t.Fatalf("objects after the janitor: %d", len(infos))
	}
}

// TestConcurrentReleasesNewestWins: releases to one edge written at once
// by two instances leave the newest release in the edge's key; the older
// ones read rejected (superseded) rather than pending for ever.
func TestConcurrentReleasesNewestWins(t *testing.T) {
	e := newEnv(t)
	a := e.start()
	b := e.start()
	ctx := context.Background()
	const n = 6
	bundles := make([][]byte, n)
	for i := range bundles {
		bundles[i] = e.build("wf", uint64(i+1), e.key)
	}
	errs := make(chan error, n)
	for i := range n {
		in := a
		if i%2 == 1 {
			in = b
		}
		go func() {
			_, err := in.client.Release(ctx, bytes.NewReader(bundles[i]), int64(len(bundles[i])), server.Target{Kind: store.TargetEdge, Selector: "e1"})
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	_, js := e.connect()
	kv, err := js.KeyValue(ctx, protocol.DesiredBucket)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(ctx, "edge.e1")
	if err != nil {
		t.Fatal(err)
	}
	d, err := protocol.DecodeDesired(entry.Value())
	if err != nil {
		t.Fatal(err)
	}
	if d.ReleaseID != fmt.Sprintf("r%d", n) {
		t.Fatalf("key holds %s, want r%d", d, n)
	}
	for i := 1; i < n; i++ {
		_, v := states(t, a.client, fmt.Sprint(i))
		if st := v.Edges[0]; st.State != store.ReleaseRejected || !strings.HasPrefix(st.Reason, "superseded by release r") {
			t.Errorf("release r%d: %+v", i, st)
		}
	}
}

// TestAlertsOfTwoEdgesSameID: two edges publishing alerts of the same id
// for assets of the same name each keep their own alert: GET /v1/alerts
// lists both, each with its edge, and the clear of one edge leaves the
// other's alert raised.
func TestAlertsOfTwoEdgesSameID(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	ctx := context.Background()
	_, js := e.connect()
	occur := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
	recov := occur.Add(time.Minute)
	publish(t, js, "sluice.e1.alerts", encode(t, "e1", "alerts", engine.AlertSchema, 1,
		enginetest.Row{occur, "a1", "T01", "hot", "major", "temp", "e1 too hot", 90.0, occur, nil, "raised"}))
	publish(t, js, "sluice.e2.alerts", encode(t, "e2", "alerts", engine.AlertSchema, 1,
		enginetest.Row{occur, "a1", "T01", "hot", "major", "temp", "e2 too hot", 95.0, occur, nil, "raised"},
		enginetest.Row{recov, "a1", "T01", "hot", "major", "temp", "e2 ok", 70.0, occur, recov, "cleared"}))
	waitFor(t, 10*time.Second, "alerts stored", func() error {
		if d, _ := in.hub.Stats(); d.Alerts != 3 {
			return fmt.Errorf("data %+v", d)
		}
		return nil
	})
	all, err := in.client.Alerts(ctx, false, "T01")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Edge != "e1" || all[1].Edge != "e2" || all[0].ID != "a1" || all[1].ID != "a1" {
		t.Fatalf("alerts %+v, want a1 of e1 and a1 of e2", all)
	}
	if all[0].State != store.AlertRaised || all[0].Content != "e1 too hot" || all[1].State != store.AlertCleared || all[1].Content != "e2 ok" {
		t.Errorf("alerts %+v: want e1's raised, e2's cleared", all)
	}
	active, err := in.client.Alerts(ctx, true, "")
	if err != nil || len(active) != 1 || active[0].Edge != "e1" {
		t.Fatalf("active %+v %v", active, err)
	}
}

// TestAlertsThroughHub: alert rows an edge's sink publishes on
// sluice.<edge>.alerts reach GET /v1/alerts, filtered by state and asset;
// alert rows of another edge's id on that subject are refused.
func TestAlertsThroughHub(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	ctx := context.Background()
	_, js := e.connect()
	occur := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
	recov := occur.Add(time.Minute)
	rows := []enginetest.Row{
		{occur, "a1", "T1", "hot", "major", "temp", "too hot", 90.0, occur, nil, "raised"},
		{recov, "a1", "T1", "hot", "major", "temp", "ok", 70.0, occur, recov, "cleared"},
		{recov, "a2", "T2", "cold", "minor", "temp", "too cold", 1.0, recov, nil, "raised"},
	}
	publish(t, js, "sluice.e1.alerts", encode(t, "e1", "alerts", engine.AlertSchema, 1, rows...))
	publish(t, js, "sluice.e1.alerts", encode(t, "e2", "alerts", engine.AlertSchema, 1,
		enginetest.Row{occur, "a3", "T3", "hot", "major", "temp", "forged", 1.0, occur, nil, "raised"}))
	waitFor(t, 10*time.Second, "alerts stored", func() error {
		d, _ := in.hub.Stats()
		if d.Alerts != 3 || d.Poison != 1 {
			return fmt.Errorf("data %+v", d)
		}
		return nil
	})
	all, err := in.client.Alerts(ctx, false, "")
	if err != nil || len(all) != 2 || all[0].ID != "a1" || all[0].State != store.AlertCleared || all[0].Recover == nil {
		t.Fatalf("alerts %+v %v", all, err)
	}
	active, err := in.client.Alerts(ctx, true, "")
	if err != nil || len(active) != 1 || active[0].ID != "a2" || active[0].Value == nil || *active[0].Value != 1 {
		t.Fatalf("active %+v %v", active, err)
	}
	if byAsset, err := in.client.Alerts(ctx, false, "T1"); err != nil || len(byAsset) != 1 || byAsset[0].Asset != "T1" {
		t.Fatalf("asset T1 %+v %v", byAsset, err)
	}
}
