package store_test

import (
	"context"
	"database/sql"
	"os"
	"testing"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/sluice-edge/sluice/engine/hub/store"
)

// alertOf returns the current state of alert id of edge among as.
func alertOf(t *testing.T, as []store.Alert, edge, id string) store.Alert {
	t.Helper()
	for _, a := range as {
		if a.Edge == edge && a.ID == id {
			return a
		}
	}
	t.Fatalf("no alert %s of edge %s in %+v", id, edge, as)
	return store.Alert{}
}

// TestAlertsOfTwoEdgesSameID: two edges whose alerts have the same id
// (edges of a release older than ids with the edge in their hash, or an
// edge reusing another's ids on purpose) each keep their own alert: a
// raise or a clear of one edge leaves the other's alert as it was, and
// the transitions of an alert are those of its edge.
func TestAlertsOfTwoEdgesSameID(t *testing.T) {
	s := open(t, store.Options{})
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	apply := func(m msg) {
		t.Helper()
		if err := s.ApplyAlert(ctx, m.a, m.id); err != nil {
			t.Fatal(err)
		}
	}
	apply(raise("e1", "a1", "T01", "1", at(1), 91))
	b := raise("e2", "a1", "T01", "1", at(5), 99)
	b.a.Content, b.a.Severity = "hostile", "minor"
	apply(b)
	all, err := s.Alerts(ctx, false, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 {
		t.Fatalf("%d alerts, want one per edge: %+v", len(all), all)
	}
	a1 := alertOf(t, all, "e1", "a1")
	if a1.State != store.AlertRaised || !a1.Occur.Equal(at(1)) || a1.Value != 91 || a1.Content != "too hot" || a1.Severity != "major" {
		t.Errorf("e1's alert after e2's raise of the same id: %+v", a1)
	}
	if a2 := alertOf(t, all, "e2", "a1"); a2.State != store.AlertRaised || !a2.Occur.Equal(at(5)) || a2.Content != "hostile" {
		t.Errorf("e2's alert: %+v", a2)
	}
	// e2 clears its alert: e1's stays raised; then e1 clears its own.
	apply(clearMsg("e2", "a1", "T01", "2", at(5), at(6), 50))
	active, err := s.Alerts(ctx, true, "T01")
	if err != nil {
		t.Fatal(err)
	}
	if len(active) != 1 || active[0].Edge != "e1" || active[0].ID != "a1" {
		t.Fatalf("raised after e2's clear: %+v", active)
	}
	apply(clearMsg("e1", "a1", "T01", "2", at(1), at(3), 60))
	all, err = s.Alerts(ctx, false, "")
	if err != nil {
		t.Fatal(err)
	}
	if a := alertOf(t, all, "e1", "a1"); a.State != store.AlertCleared || !a.Recover.Equal(at(3)) {
		t.Errorf("e1's alert after its clear: %+v", a)
	}
	if a := alertOf(t, all, "e2", "a1"); a.State != store.AlertCleared || !a.Recover.Equal(at(6)) {
		t.Errorf("e2's alert after e1's clear: %+v", a)
	}
	for _, edge := range []string{"e1", "e2"} {
		tr, err := s.Transitions(ctx, edge, "a1")
		if err != nil {
			t.Fatal(err)
		}
		if len(tr) != 2 || tr[0].Edge != edge || tr[1].Edge != edge || tr[0].State != store.AlertRaised || tr[1].State != store.AlertCleared {
			t.Errorf("transitions of %s's a1: %+v", edge, tr)
		}
	}
}

// TestMigrateAlertsFromVersion2: a database at schema version 2 holding
// alerts migrates to the newest version with its alerts and transitions
// kept, and then keeps the alerts of two edges with the same id apart;
// migrating back down keeps one alert per id.
func TestMigrateAlertsFromVersion2(t *testing.T) {
	schema := schemaFor(t)
	ctx := context.Background()
	db, err := sql.Open("pgx", testDSN(t)+"&search_path="+schema)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, os.DirFS("migrations"),
		goose.WithTableName(schema+".goose_db_version"), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 2); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, q := range []string{`
INSERT INTO alerts_current (id, edge, asset, rule, severity, type, content, value, occur_time, recover_time,
  state, rule_set_version, changed_at, updated_at)
VALUES ('a1', 'e1', 'T01', 'hot', 'major', 'temp', 'too hot', 91, $1, NULL, 'raised', '7', $1, $1)`, `
INSERT INTO alert_transitions (msg_id, alert_id, edge, state, time, value)
VALUES ('e1/alerts/1', 'a1', 'e1', 'raised', $1, 91)`} {
		if _, err := db.ExecContext(ctx, q, t0); err != nil {
			t.Fatal(err)
		}
	}
	s := open(t, store.Options{Schema: schema})
	if v, err := s.Version(ctx); err != nil || v != store.SchemaVersion {
		t.Fatalf("schema version %d (%v), want %d", v, err, store.SchemaVersion)
	}
	// e2 raises an alert of the same id, later: e1's stays as it was.
	if err := s.ApplyAlert(ctx, raise("e2", "a1", "T01", "1", t0.Add(time.Hour), 99).a, "e2/alerts/1"); err != nil {
		t.Fatal(err)
	}
	all, err := s.Alerts(ctx, false, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 {
		t.Fatalf("%d alerts after the migration, want 2: %+v", len(all), all)
	}
	if a := alertOf(t, all, "e1", "a1"); a.State != store.AlertRaised || !a.Occur.Equal(t0) || a.Value != 91 || a.RuleSetVersion != "7" {
		t.Errorf("e1's alert from before the migration: %+v", a)
	}
	// e1 clears its alert, stored before the migration.
	if err := s.ApplyAlert(ctx, clearMsg("e1", "a1", "T01", "2", t0, t0.Add(time.Minute), 60).a, "e1/alerts/2"); err != nil {
		t.Fatal(err)
	}
	active, err := s.Alerts(ctx, true, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(active) != 1 || active[0].Edge != "e2" {
		t.Errorf("raised after e1's clear: %+v", active)
	}
	tr, err := s.Transitions(ctx, "e1", "a1")
	if err != nil {
		t.Fatal(err)
	}
	if len(tr) != 2 || tr[0].MsgID != "e1/alerts/1" || tr[1].State != store.AlertCleared {
		t.Errorf("transitions of e1's a1: %+v", tr)
	}
	// Down to version 2: the id held by both edges keeps the alert of the
	// newest change (e2's raise, an hour after e1's alert), and up again.
	s.Close()
	if _, err := p.DownTo(ctx, 2); err != nil {
		t.Fatal(err)
	}
	var edges []string
	rows, err := db.QueryContext(ctx, "SELECT edge FROM alerts_current WHERE id = 'a1'")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var e string
		if err := rows.Scan(&e); err != nil {
			t.Fatal(err)
		}
		edges = append(edges, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if len(edges) != 1 || edges[0] != "e2" {
		t.Errorf("alerts of id a1 at version 2: of edges %q, want e2's", edges)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatal(err)
	}
}
