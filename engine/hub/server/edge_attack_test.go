package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/hub/protocol"
	"github.com/sluice-edge/sluice/engine/hub/server"
	"github.com/sluice-edge/sluice/engine/hub/store"
	"github.com/sluice-edge/sluice/engine/outbound"
)

// encodeArrow is encode with the arrow encoding, which carries a column's
// own type (a float64 where the protocol has an integer, say).
func encodeArrow(t testing.TB, edge, stream string, s *engine.Schema, first uint64, rows ...enginetest.Row) []*message.Message {
	t.Helper()
	rec := enginetest.Record(nil, s, rows...)
	defer rec.Release()
	en := outbound.Encoder{Encoding: outbound.Arrow, Edge: edge, Stream: stream}
	msgs, err := en.Encode(outbound.Entry{Rec: rec, First: first, Schema: s})
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// withFloatVersion is schema s with its version column a float64.
func withFloatVersion(t testing.TB, s *engine.Schema) *engine.Schema {
	t.Helper()
	fields := append([]engine.Field(nil), s.Fields...)
	for i := range fields {
		if fields[i].Name == protocol.ColVersion {
			fields[i].Type = engine.Float64
		}
	}
	out, err := engine.NewSchema(fields, protocol.ColTime, "")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEdgeEventsVersionBeyondInt64: a heartbeat and a report whose version
// is the float 2^63 (an arrow float64 column, one past the largest version
// the store holds) are set aside as poison, not retried for ever: with
// them retried, the consumer's pending acks fill up with them and no
// other edge's heartbeat is stored again.
func TestEdgeEventsVersionBeyondInt64(t *testing.T) {
	e := newEnv(t)
	e.opts.Ingest.MaxAckPending = 2
	in := e.start()
	ctx := context.Background()
	_, js := e.connect()
	now := time.Now().UTC()
	const v = float64(1 << 63)
	publish(t, js, "sluice.e1.heartbeat", encodeArrow(t, "e1", protocol.HeartbeatStream, withFloatVersion(t, protocol.HeartbeatSchema()), 1,
		enginetest.Row{now, `{"site":"x"}`, "wf", v, "[]", int64(0), "v"}))
	publish(t, js, "sluice.e1.reports", encodeArrow(t, "e1", protocol.ReportStream, withFloatVersion(t, protocol.ReportSchema()), 1,
		enginetest.Row{now, "wf", v, "applied", "", "", "", ""}))
	publish(t, js, "sluice.e2.heartbeat", encode(t, "e2", protocol.HeartbeatStream, protocol.HeartbeatSchema(), 1,
		enginetest.Row{now, `{"site":"y"}`, "", int64(0), "[]", int64(0), "v"}))
	waitFor(t, 15*time.Second, "e2's heartbeat stored, e1's messages poison", func() error {
		_, ev := in.hub.Stats()
		es, err := in.client.Edges(ctx)
		if err != nil {
			return err
		}
		if ev.Poison != 2 || len(es) != 1 || es[0].ID != "e2" {
			return fmt.Errorf("edge events %+v, edges %+v", ev, es)
		}
		return nil
	})
}

// controlRow is a control row of edge carrying record rec.
func controlRow(t testing.TB, edge string, seq uint64, rec command.Command) []*message.Message {
	t.Helper()
	raw, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return encode(t, edge, protocol.ControlStream, protocol.ControlSchema(), seq,
		enginetest.Row{rec.Updated, rec.ID, int64(rec.Version), string(rec.Status), string(raw), ""})
}

// TestCommandInputsBeyondFloat64: an edge reporting a command record
// whose input is a number no float64 holds (1e400, which jsonb keeps)
// does not make the fleet's command listing, or its own record, fail
// to read: the listing of every edge's commands still answers.
func TestCommandInputsBeyondFloat64(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	ctx := context.Background()
	_, js := e.connect()
	now := time.Now().UTC().Truncate(time.Millisecond)
	issued, err := in.client.IssueCommand(ctx, server.CommandRequest{Edge: "e2", Asset: "T2", Inputs: map[string]any{"p": 1.0}})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, js, "sluice.evil.control", controlRow(t, "evil", 1, command.Command{ID: "x1", Asset: "T1",
		Service: command.SetPoints, Inputs: map[string]any{"p": json.Number("1e400"), "q": json.Number("-1e400")},
		Status: command.Acked, Created: now, Updated: now, Version: 1}))
	waitFor(t, 10*time.Second, "the record stored", func() error {
		if _, ev := in.hub.Stats(); ev.Messages+ev.Poison != 1 {
			return fmt.Errorf("edge events %+v", ev)
		}
		return nil
	})
	page, _, err := in.client.CommandsPage(ctx, server.CommandFilter{}, "", 10)
	if err != nil {
		t.Fatalf("listing the commands: %v", err)
	}
	ids := map[string]bool{}
	for _, c := range page {
		ids[c.Edge+"/"+c.ID] = true
	}
	if !ids["e2/"+issued.ID] {
		t.Fatalf("listed %v, without e2's command", ids)
	}
	if ids["evil/x1"] {
		if _, err := in.client.Command(ctx, "evil", "x1"); err != nil {
			t.Fatalf("the stored record: %v", err)
		}
	}
}

// TestEdgeTimesBeyondYear9999: times PostgreSQL holds but JSON does not
// (years after 9999 or before 1, which the edge's encodings carry): a
// heartbeat and a report stamped so are set aside as poison rather than
// retried for ever, and an alert raised in the year 20000 does not make
// the fleet's alert listing fail; the other edges go on being stored
// and listed.
func TestEdgeTimesBeyondYear9999(t *testing.T) {
	e := newEnv(t)
	e.opts.Ingest.MaxAckPending = 3
	in := e.start()
	ctx := context.Background()
	_, js := e.connect()
	now := time.Now().UTC().Truncate(time.Millisecond)
	future := time.Date(20000, 1, 1, 0, 0, 0, 0, time.UTC)
	past := time.Date(-100, 1, 1, 0, 0, 0, 0, time.UTC)
	publish(t, js, "sluice.evil.heartbeat", encode(t, "evil", protocol.HeartbeatStream, protocol.HeartbeatSchema(), 1,
		enginetest.Row{past, `{}`, "", int64(0), "[]", int64(0), "v"}))
	publish(t, js, "sluice.evil.reports", encode(t, "evil", protocol.ReportStream, protocol.ReportSchema(), 1,
		enginetest.Row{future, "wf", int64(1), "applied", "", "", "", ""}))
	publish(t, js, "sluice.evil.reports", encode(t, "evil", protocol.ReportStream, protocol.ReportSchema(), 2,
		enginetest.Row{past, "wf", int64(1), "applied", "", "", "", ""}))
	publish(t, js, "sluice.evil.alerts", encode(t, "evil", "alerts", engine.AlertSchema, 1,
		enginetest.Row{now, "a0", "A0", "hot", "major", "temp", "far", 1.0, future, nil, "raised"},
		enginetest.Row{now, "a9", "A9", "hot", "major", "temp", "far", 1.0, past, nil, "raised"}))
	publish(t, js, "sluice.e2.heartbeat", encode(t, "e2", protocol.HeartbeatStream, protocol.HeartbeatSchema(), 1,
		enginetest.Row{now, `{"site":"y"}`, "", int64(0), "[]", int64(0), "v"}))
	publish(t, js, "sluice.e2.alerts", encode(t, "e2", "alerts", engine.AlertSchema, 1,
		enginetest.Row{now, "b1", "B1", "hot", "major", "temp", "real", 1.0, now, nil, "raised"}))
	waitFor(t, 15*time.Second, "e2's heartbeat and alert stored", func() error {
		d, ev := in.hub.Stats()
		es, err := in.client.Edges(ctx)
		if err != nil {
			return err
		}
		if ev.Poison != 3 || d.Poison != 2 || d.Messages != 1 || len(es) != 1 || es[0].ID != "e2" {
			return fmt.Errorf("data %+v, edge events %+v, edges %+v", d, ev, es)
		}
		return nil
	})
	all, err := in.client.Alerts(ctx, false, "")
	if err != nil {
		t.Fatalf("listing the alerts: %v", err)
	}
	var found bool
	for _, a := range all {
		found = found || a.Edge == "e2" && a.ID == "b1"
	}
	if !found {
		t.Fatalf("alerts %+v, without e2's", all)
	}
}

// TestCommandRecordOfAnotherEdge: an edge reporting a record under the id
// of a command the hub issued to another edge, at a higher version, on
// its own subject or claiming the other edge's message id, never changes
// that command: it stays issued until its own edge reports it.
func TestCommandRecordOfAnotherEdge(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	ctx := context.Background()
	_, js := e.connect()
	issued, err := in.client.IssueCommand(ctx, server.CommandRequest{Edge: "e2", Asset: "T2", Inputs: map[string]any{"p": 1.0}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	forged := command.Command{ID: issued.ID, Asset: "T2", Service: command.SetPoints, Inputs: map[string]any{"p": 1.0},
		Status: command.Acked, Reason: "forged", Created: now, Updated: now, Version: 99}
	publish(t, js, "sluice.evil.control", controlRow(t, "evil", 1, forged))
	publish(t, js, "sluice.evil.control", controlRow(t, "e2", 1, forged))
	waitFor(t, 10*time.Second, "records handled", func() error {
		if _, ev := in.hub.Stats(); ev.Messages != 1 || ev.Poison != 1 {
			return fmt.Errorf("edge events %+v", ev)
		}
		return nil
	})
	got, err := in.client.Command(ctx, "e2", issued.ID)
	if err != nil || got.Status != store.CommandIssued || got.Version != 0 || got.Reason != issued.Reason {
		t.Fatalf("e2's command %+v (%v)", got, err)
	}
	if ev, err := in.client.Command(ctx, "evil", issued.ID); err != nil || ev.Edge != "evil" || ev.Status != "acked" {
		t.Fatalf("evil's record %+v (%v)", ev, err)
	}
}

// TestHeartbeatFloodLeavesOthersOnline: an edge flooding the edge stream
// with 5,000 heartbeats does not hold another edge's heartbeat back until
// it reads offline. A transaction per heartbeat (a commit waits for the
// disk) held the consumer to about 80 a second here: a minute for the
// flood, while an edge is offline 90 s after its last heartbeat stored.
// Heartbeats of one edge in a batch now cost two writes, and a batch one
// commit.
func TestHeartbeatFloodLeavesOthersOnline(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	ctx := context.Background()
	_, js := e.connect()
	now := time.Now().UTC().Truncate(time.Millisecond)
	const n = 5000
	rows := make([]enginetest.Row, n)
	for i := range rows {
		rows[i] = enginetest.Row{now.Add(-time.Duration(n-i) * time.Millisecond), `{"site":"x"}`, "", int64(0), "[]", int64(i), "v"}
	}
	publish(t, js, "sluice.evil.heartbeat", encode(t, "evil", protocol.HeartbeatStream, protocol.HeartbeatSchema(), 1, rows...))
	publish(t, js, "sluice.e2.heartbeat", encode(t, "e2", protocol.HeartbeatStream, protocol.HeartbeatSchema(), 1,
		enginetest.Row{now, `{"site":"y"}`, "", int64(0), "[]", int64(7), "v"}))
	start := time.Now()
	waitFor(t, 20*time.Second, "e2's heartbeat stored behind the flood", func() error {
		st, err := in.client.Edge(ctx, "e2")
		if err != nil {
			return err
		}
		if st.Backlog != 7 {
			return fmt.Errorf("e2 %+v", st)
		}
		return nil
	})
	t.Logf("e2's heartbeat stored %v after the flood of %d", time.Since(start).Round(time.Millisecond), n)
	st, err := in.client.Edge(ctx, "evil")
	if err != nil || st.Backlog != n-1 || st.Labels["site"] != "x" || st.FirstSeen == nil || !st.FirstSeen.Equal(rows[0][0].(time.Time)) {
		t.Fatalf("evil %+v (%v)", st, err)
	}
}

// TestAlertFloodLeavesDataFlowing: an edge flooding the data stream with
// 5,000 alert records does not hold another edge's data back for long. A
// transaction per alert record held the data consumer, which every
// edge's telemetry shares, to about 100 records a second here; a batch's
// records are now one transaction.
func TestAlertFloodLeavesDataFlowing(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	_, js := e.connect()
	now := time.Now().UTC().Truncate(time.Millisecond)
	const n = 5000
	rows := make([]enginetest.Row, n)
	for i := range rows {
		at := now.Add(-time.Duration(n-i) * time.Millisecond)
		rows[i] = enginetest.Row{at, fmt.Sprintf("a%d", i), "A", "hot", "major", "temp", "flood", 1.0, at, nil, "raised"}
	}
	publish(t, js, "sluice.evil.alerts", encode(t, "evil", "alerts", engine.AlertSchema, 1, rows...))
	publish(t, js, "sluice.e2.data.stats", encode(t, "e2", "stats", statsSchema(), 1, enginetest.Row{statsT0, "T1", 1.5}))
	start := time.Now()
	waitFor(t, 20*time.Second, "e2's row stored behind the flood", func() error {
		var c int
		if err := e.db.QueryRow("SELECT count(*) FROM " + e.schema + ".telemetry WHERE edge = 'e2'").Scan(&c); err != nil {
			return err
		}
		if c != 1 {
			return fmt.Errorf("%d rows of e2", c)
		}
		return nil
	})
	t.Logf("e2's row stored %v after the flood of %d alert records", time.Since(start).Round(time.Millisecond), n)
	waitFor(t, 60*time.Second, "the flood stored", func() error {
		if d, _ := in.hub.Stats(); d.Alerts != n {
			return fmt.Errorf("data %+v", d)
		}
		return nil
	})
}
