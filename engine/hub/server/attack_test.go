package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/hub/protocol"
	"github.com/sluice-edge/sluice/engine/hub/server"
	"github.com/sluice-edge/sluice/engine/hub/store"
)

// TestUnauthenticatedConnectionClosed: a client without the token gets
// its 401 and loses the connection at once, so that it cannot hold one of
// the API's connections by trickling a declared body (which the server
// would otherwise wait up to the whole-request timeout to discard) or by
// keeping the connection alive between requests.
func TestUnauthenticatedConnectionClosed(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	for _, req := range []string{
		// A body declared and never sent.
		"POST /v1/releases?all=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc",
		// A keep-alive request without a body.
		"GET /v1/edges HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		conn, err := net.Dial("tcp", in.api.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, req); err != nil {
			t.Fatal(err)
		}
		if err := conn.SetReadDeadline(time.Now().Add(3 * time.Second)); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%q: %d", req, resp.StatusCode)
		}
		// The server closes the connection: the read ends with EOF, not
		// with the deadline.
		_, err = br.ReadByte()
		if !errors.Is(err, io.EOF) {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				err = fmt.Errorf("connection still open 3 s after the 401")
			}
			t.Errorf("%q: %v", req, err)
		}
	}
	// A client with a wrong token sending a large body still reads the 401.
	bad, err := server.NewClient("http://"+in.api.Addr(), "wrong")
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	body := make([]byte, 8<<20)
	var ae *server.APIError
	if _, err := bad.Release(context.Background(), bytes.NewReader(body), int64(len(body)), server.Target{Kind: store.TargetAll}); !errors.As(err, &ae) || ae.Code != http.StatusUnauthorized {
		t.Fatalf("release with a wrong token: %v", err)
	}
}

// TestHeartbeatWithAllowedLabels: a heartbeat carrying as many labels as
// an edge's configuration allows is stored, not terminated as poison
// (such an edge would never be seen online nor reached by a label).
func TestHeartbeatWithAllowedLabels(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	_, js := e.connect()
	labels := map[string]string{}
	for i := range 256 {
		labels[fmt.Sprintf("k%03d", i)] = "v"
	}
	lj, err := json.Marshal(labels)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, js, "sluice.e1.heartbeat", encode(t, "e1", protocol.HeartbeatStream, protocol.HeartbeatSchema(), 1,
		enginetest.Row{time.Now().UTC(), string(lj), "", int64(0), "[]", int64(0), "v"}))
	waitFor(t, 10*time.Second, "heartbeat handled", func() error {
		if _, ev := in.hub.Stats(); ev.Messages+ev.Poison != 1 {
			return fmt.Errorf("edge events %+v", ev)
		}
		return nil
	})
	es, err := in.client.Edges(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || !es[0].Online || len(es[0].Labels) != 256 {
		t.Fatalf("edges %+v", es)
	}
}

// TestPostgresOutageMidIngest: the hub's link to PostgreSQL breaks while
// rows and heartbeats arrive; the hub keeps running, its API answers 500
// meanwhile rather than hanging, and once the database is back every row
// is stored exactly once and the janitor runs again.
func TestPostgresOutageMidIngest(t *testing.T) {
	e := newEnv(t)
	p := enginetest.NewProxy(t, "127.0.0.1:5432")
	e.dsn = strings.Replace(e.dsn, "127.0.0.1:5432", p.Addr(), 1)
	e.opts.JanitorEvery = 100 * time.Millisecond
	in := e.start()
	_, js := e.connect()
	schema, t0 := statsSchema(), statsT0
	send := func(first, n int) {
		rows := make([]enginetest.Row, n)
		for i := range rows {
			rows[i] = enginetest.Row{t0.Add(time.Duration(first+i) * time.Millisecond), "A", float64(first + i)}
		}
		for i := 0; i < n; i += 100 {
			publish(t, js, "sluice.e1.data.stats", encode(t, "e1", "stats", schema, uint64(first+i), rows[i:i+100]...))
		}
	}
	send(1, 2000)
	waitFor(t, 20*time.Second, "rows arriving", func() error {
		if d, _ := in.hub.Stats(); d.Rows == 0 {
			return errors.New("no rows yet")
		}
		return nil
	})
	p.Down()
	p.Cut()
	send(2001, 2000)
	publish(t, js, "sluice.e1.heartbeat", encode(t, "e1", protocol.HeartbeatStream, protocol.HeartbeatSchema(), 1,
		enginetest.Row{time.Now().UTC(), `{"site":"x"}`, "", int64(0), "[]", int64(0), "v"}))
	waitFor(t, 20*time.Second, "store errors counted", func() error {
		if d, _ := in.hub.Stats(); d.StoreErrors == 0 {
			return errors.New("no store error yet")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var ae *server.APIError
	if _, err := in.client.Edges(ctx); !errors.As(err, &ae) || ae.Code != http.StatusInternalServerError {
		t.Errorf("edges while the database is away: %v", err)
	}
	p.Up()
	waitFor(t, 60*time.Second, "every row stored once", func() error {
		var n, distinct int
		if err := e.db.QueryRow("SELECT count(*), count(DISTINCT seq) FROM "+e.schema+".telemetry").Scan(&n, &distinct); err != nil {
			return err
		}
		if n != 4000 || distinct != 4000 {
			return fmt.Errorf("%d rows, %d distinct", n, distinct)
		}
		return nil
	})
	waitFor(t, 30*time.Second, "heartbeat stored", func() error {
		es, err := in.client.Edges(context.Background())
		if err != nil {
			return err
		}
		if len(es) != 1 || !es[0].Online {
			return fmt.Errorf("edges %+v", es)
		}
		return nil
	})
	waitFor(t, 30*time.Second, "janitor runs again", func() error {
		if !in.hub.Leader() {
			return errors.New("not leading")
		}
		return nil
	})
	select {
	case err := <-in.done:
		t.Fatalf("the hub stopped: %v", err)
	default:
	}
}

// TestLongReportTextsRecorded: an apply report whose reason, location and
// steps are as long as the edge's agent keeps them (8 KiB, 1 KiB, 32 KiB:
// a rejection listing many errors, a release of many pipelines) is
// recorded with its texts shortened to what the hub stores, not set aside
// as poison (the release would read pending forever).
func TestLongReportTextsRecorded(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	_, js := e.connect()
	now := time.Now().UTC()
	reason := strings.Repeat("é", 4<<10) // 8 KiB, two bytes a rune
	steps := strings.Repeat("pipeline p: started\n", 1600)
	d := sendEdgeEvent(t, in, js, "sluice.e1.reports", encode(t, "e1", protocol.ReportStream, protocol.ReportSchema(), 1,
		enginetest.Row{now, "wf", int64(3), "rejected", reason, strings.Repeat("l", 1<<10), steps, ""}))
	if len(d.History) != 1 {
		t.Fatalf("history %+v", d.History)
	}
	h := d.History[0]
	for name, s := range map[string]string{"reason": h.Reason, "steps": h.Steps} {
		if len(s) > store.DefaultMaxTextBytes || len(s) < store.DefaultMaxTextBytes/2 || !utf8.ValidString(s) {
			t.Errorf("%s: %d bytes, valid UTF-8 %v", name, len(s), utf8.ValidString(s))
		}
	}
	if h.Outcome != "rejected" || h.Version != 3 || len(h.Location) != 1<<10 {
		t.Errorf("report %+v", h)
	}
}

// TestHeartbeatWithManyPipelines: a heartbeat naming as many pipelines as
// a bundle can hold files is stored, not set aside as poison.
func TestHeartbeatWithManyPipelines(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	_, js := e.connect()
	running := make([]store.Pipeline, 2000)
	for i := range running {
		running[i] = store.Pipeline{Pipeline: fmt.Sprintf("p%04d", i), State: "running"}
	}
	rj, err := json.Marshal(running)
	if err != nil {
		t.Fatal(err)
	}
	d := sendEdgeEvent(t, in, js, "sluice.e1.heartbeat", encode(t, "e1", protocol.HeartbeatStream, protocol.HeartbeatSchema(), 1,
		enginetest.Row{time.Now().UTC(), `{}`, "", int64(0), string(rj), int64(0), "v"}))
	if len(d.Running) != 2000 {
		t.Fatalf("%d pipelines", len(d.Running))
	}
}

// TestLongAlertContentStored: an alert whose content is as long as the
// edge's alert operator renders by default (64 KiB) reaches the hub with
// its content shortened, rather than being set aside as poison (the hub's
// alert table would miss it).
func TestLongAlertContentStored(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	_, js := e.connect()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	content := strings.Repeat("temperature 81.5 °C above 80 °C; ", 1900) // about 64 KiB
	publish(t, js, "sluice.e1.alerts", encode(t, "e1", "alerts", engine.AlertSchema, 1,
		enginetest.Row{t0, "a1", "T1", "hot", "major", "threshold", content, 81.5, t0, nil, "raised"}))
	waitFor(t, 10*time.Second, "alert handled", func() error {
		if d, _ := in.hub.Stats(); d.Alerts+d.Poison != 1 {
			return fmt.Errorf("data %+v", d)
		}
		return nil
	})
	as, err := in.client.Alerts(context.Background(), true, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 1 || as[0].State != "raised" || len(as[0].Content) > store.DefaultMaxTextBytes ||
		!strings.HasPrefix(content, strings.TrimSuffix(as[0].Content, "…")) || !utf8.ValidString(as[0].Content) {
		t.Fatalf("alerts %+v", as)
	}
}
