package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/goleak"

	"github.com/sluice-edge/sluice/engine/hub/store"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var seq atomic.Int64

// testDSN is the machine's test database (see outboundtest.PostgresDSN).
func testDSN(t testing.TB) string { return outboundtest.PostgresDSN(t) }

// schemaFor returns a schema name unique to this test run and drops the
// schema when the test ends.
func schemaFor(t testing.TB) string {
	t.Helper()
	dsn := testDSN(t)
	name := fmt.Sprintf("hub_test_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9, seq.Add(1))
	t.Cleanup(func() {
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Errorf("drop schema %s: %v", name, err)
			return
		}
		defer db.Close()
		if _, err := db.Exec("DROP SCHEMA IF EXISTS " + name + " CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	return name
}

func open(t testing.TB, opts store.Options) *store.Store {
	t.Helper()
	if opts.Schema == "" {
		opts.Schema = schemaFor(t)
	}
	s, err := store.Open(context.Background(), testDSN(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestMigrationsTwice(t *testing.T) {
	schema := schemaFor(t)
	for i := range 2 {
		s := open(t, store.Options{Schema: schema})
		v, err := s.Version(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if v != store.SchemaVersion {
			t.Fatalf("open %d: schema version %d, want %d", i, v, store.SchemaVersion)
		}
		s.Close()
	}
}

func TestMigrationsConcurrent(t *testing.T) {
	schema := schemaFor(t)
	const n = 4
	var (
		wg   sync.WaitGroup
		errs = make([]error, n)
		ss   = make([]*store.Store, n)
	)
	for i := range n {
		wg.Go(func() {
			ss[i], errs[i] = store.Open(context.Background(), testDSN(t), store.Options{Schema: schema})
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("store %d: %v", i, errs[i])
		}
		defer ss[i].Close()
	}
	// Each applied version is recorded once.
	db, err := sql.Open("pgx", testDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rows int
	if err := db.QueryRow("SELECT count(*) FROM " + schema + ".goose_db_version WHERE version_id > 0").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != store.SchemaVersion {
		t.Fatalf("%d migration records, want %d", rows, store.SchemaVersion)
	}
}

func TestBadSchemaName(t *testing.T) {
	for _, name := range []string{"Upper", "a;drop", "1abc", strings.Repeat("a", 64), "x y"} {
		if _, err := store.Open(context.Background(), "postgres://127.0.0.1:1/none", store.Options{Schema: name}); err == nil {
			t.Errorf("schema %q accepted", name)
		}
	}
}

func TestHeartbeatAndEdges(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s := open(t, store.Options{Now: func() time.Time { return now }, OfflineAfter: time.Minute})
	ctx := context.Background()
	steps := []struct {
		edge   string
		labels map[string]string
		at     time.Time
	}{
		{"e1", map[string]string{"site": "a"}, now.Add(-10 * time.Second)},
		{"e1", map[string]string{"site": "b"}, now.Add(-5 * time.Second)},
		{"e1", map[string]string{"site": "old"}, now.Add(-time.Hour)}, // late, older heartbeat
		{"e1", map[string]string{"site": "b"}, now.Add(-5 * time.Second)},
		{"e2", nil, now.Add(-2 * time.Minute)},
	}
	for _, st := range steps {
		if err := s.Heartbeat(ctx, st.edge, st.labels, st.at); err != nil {
			t.Fatal(err)
		}
	}
	edges, err := s.Edges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(edges) != 2 {
		t.Fatalf("%d edges, want 2", len(edges))
	}
	e1, e2 := edges[0], edges[1]
	if e1.Labels["site"] != "b" || !e1.Online || !e1.LastSeen.Equal(now.Add(-5*time.Second)) || !e1.FirstSeen.Equal(now.Add(-time.Hour)) {
		t.Errorf("e1 = %+v", e1)
	}
	if e2.Online || len(e2.Labels) != 0 {
		t.Errorf("e2 = %+v", e2)
	}
	if err := s.Heartbeat(ctx, "bad\x00edge", nil, now); err == nil {
		t.Error("NUL in edge id accepted")
	}
}

func TestReports(t *testing.T) {
	s := open(t, store.Options{})
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := s.Heartbeat(ctx, "e1", map[string]string{"site": "a"}, t0); err != nil {
		t.Fatal(err)
	}
	reports := []store.Report{
		{Time: t0.Add(1 * time.Minute), Bundle: "wf", Version: 1, Outcome: store.Applied, Steps: "p: started"},
		{Time: t0.Add(3 * time.Minute), Bundle: "wf", Version: 3, Outcome: store.Rejected, Reason: "bad rule", Location: "rules/a.yaml:3:1"},
		{Time: t0.Add(2 * time.Minute), Bundle: "wf", Version: 2, Outcome: store.Applied}, // arrives late
	}
	for range 2 { // the second pass is a redelivery
		for _, r := range reports {
			if err := s.RecordReport(ctx, "e1", r); err != nil {
				t.Fatal(err)
			}
		}
	}
	st, err := s.EdgeStatus(ctx, "e1")
	if err != nil {
		t.Fatal(err)
	}
	if st.Bundle != "wf" || st.Version != 2 {
		t.Errorf("runs %s v%d, want wf v2", st.Bundle, st.Version)
	}
	if st.LastReport == nil || st.LastReport.Version != 3 || st.LastReport.Reason != "bad rule" {
		t.Errorf("last report %+v", st.LastReport)
	}
	if len(st.History) != 3 || st.History[0].Version != 3 || st.History[2].Version != 1 {
		t.Errorf("history %+v", st.History)
	}
	if _, err := s.EdgeStatus(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown edge: %v", err)
	}
	for _, bad := range []store.Report{
		{Time: t0, Bundle: "wf", Version: 1, Outcome: "maybe"},
		{Time: t0, Bundle: "wf", Version: math.MaxUint64, Outcome: store.Applied},
		{Time: t0, Bundle: "w\x00f", Version: 1, Outcome: store.Applied},
	} {
		if err := s.RecordReport(ctx, "e1", bad); err == nil {
			t.Errorf("report %+v accepted", bad)
		}
	}
}

func TestReleases(t *testing.T) {
	s := open(t, store.Options{})
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, site := range []string{"a", "a", "b"} {
		if err := s.Heartbeat(ctx, fmt.Sprintf("e%d", i+1), map[string]string{"site": site}, t0); err != nil {
			t.Fatal(err)
		}
	}
	b := store.Bundle{Name: "wf", Version: 4, Digest: "sha256:ab", Size: 10, Created: t0, Signer: "k1"}
	for range 2 {
		if err := s.PutBundle(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	b2 := b
	b2.Digest = "sha256:cd"
	if err := s.PutBundle(ctx, b2); err == nil {
		t.Error("same version with another digest accepted")
	}
	tests := []struct {
		target, selector string
		want             []string
	}{
		{store.TargetAll, "", []string{"e1", "e2", "e3"}},
		{store.TargetLabel, "site=a", []string{"e1", "e2"}},
		{store.TargetEdge, "e3", []string{"e3"}},
		{store.TargetEdge, "nobody", nil},
	}
	for _, tc := range tests {
		_, edges, err := s.CreateRelease(ctx, store.Release{Bundle: "wf", Version: 4, Target: tc.target, Selector: tc.selector, By: "ops", At: t0})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(edges) != fmt.Sprint(tc.want) {
			t.Errorf("%s %s: edges %v, want %v", tc.target, tc.selector, edges, tc.want)
		}
	}
	id, _, err := s.CreateRelease(ctx, store.Release{Bundle: "wf", Version: 4, Target: store.TargetLabel, Selector: "site=a", At: t0})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetReleaseEdgeState(ctx, id, "e2", store.ReleaseOffline, "", t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetReleaseEdgeState(ctx, id, "e3", store.ReleaseOffline, "", t0); !errors.Is(err, store.ErrNoEntry) {
		t.Errorf("edge outside the release: %v", err)
	}
	if err := s.RecordReport(ctx, "e1", store.Report{Time: t0.Add(time.Minute), Bundle: "wf", Version: 4, Outcome: store.Applied}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordReport(ctx, "e2", store.Report{Time: t0.Add(time.Minute), Bundle: "wf", Version: 4, Outcome: store.Rejected, Reason: "no disk"}); err != nil {
		t.Fatal(err)
	}
	// A stale state change does not undo the report.
	if err := s.SetReleaseEdgeState(ctx, id, "e2", store.ReleasePending, "", t0); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReleaseEdges(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].State != store.ReleaseApplied || got[1].State != store.ReleaseRejected || got[1].Reason != "no disk" {
		t.Errorf("release edges %+v", got)
	}
	for _, bad := range []store.Release{
		{Bundle: "wf", Version: 4, Target: "some"},
		{Bundle: "wf", Version: 4, Target: store.TargetLabel, Selector: "nolabel"},
		{Bundle: "unknown", Version: 1, Target: store.TargetAll},
	} {
		if _, _, err := s.CreateRelease(ctx, bad); err == nil {
			t.Errorf("release %+v accepted", bad)
		}
	}
}

func TestReportsConcurrent(t *testing.T) {
	schema := schemaFor(t)
	stores := []*store.Store{open(t, store.Options{Schema: schema}), open(t, store.Options{Schema: schema})}
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 40
	var (
		wg   sync.WaitGroup
		errs = make([]error, n)
	)
	for i := range n {
		wg.Go(func() {
			v := uint64(n - i) // newest first
			errs[i] = stores[i%2].RecordReport(ctx, "e1", store.Report{
				Time: t0.Add(time.Duration(v) * time.Second), Bundle: "wf", Version: v, Outcome: store.Applied})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	st, err := stores[0].EdgeStatus(ctx, "e1")
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != n || st.LastReport == nil || st.LastReport.Version != n {
		t.Errorf("runs v%d, last report %+v; want v%d", st.Version, st.LastReport, n)
	}
}

// TestSchemaVersionIsNewest: SchemaVersion names the newest embedded
// migration.
func TestSchemaVersionIsNewest(t *testing.T) {
	ents, err := os.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	last := ents[len(ents)-1].Name()
	if want := fmt.Sprintf("%05d_", store.SchemaVersion); !strings.HasPrefix(last, want) {
		t.Fatalf("newest migration %s, SchemaVersion %d", last, store.SchemaVersion)
	}
}
