package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/hub/store"
)

// TestHeartbeatClockAhead: a heartbeat stamped far ahead of the hub's
// clock counts as now, so the edge goes offline OfflineAfter after it.
func TestHeartbeatClockAhead(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := now
	s := open(t, store.Options{Now: func() time.Time { return clock }})
	ctx := context.Background()
	hb := store.HeartbeatInfo{At: now.Add(24 * time.Hour), Labels: map[string]string{"site": "a"}, Bundle: "wf", Version: 3,
		Running: []store.Pipeline{{Pipeline: "p1", State: "running"}}, Backlog: 42, Software: "1.2.3"}
	if err := s.RecordHeartbeat(ctx, "e1", hb); err != nil {
		t.Fatal(err)
	}
	st, err := s.EdgeStatus(ctx, "e1")
	if err != nil {
		t.Fatal(err)
	}
	if !st.LastSeen.Equal(now) || !st.Online || st.Backlog != 42 || st.Software != "1.2.3" ||
		len(st.Running) != 1 || st.Running[0].State != "running" || st.Labels["site"] != "a" {
		t.Fatalf("edge %+v", st.Edge)
	}
	clock = now.Add(store.DefaultOfflineAfter + time.Second)
	if st, _ = s.EdgeStatus(ctx, "e1"); st.Online {
		t.Fatal("an edge whose clock runs ahead stays online")
	}
	// An older heartbeat does not replace what the newer one said.
	old := hb
	old.At, old.Backlog = now.Add(-time.Hour), 7
	if err := s.RecordHeartbeat(ctx, "e1", old); err != nil {
		t.Fatal(err)
	}
	if st, _ = s.EdgeStatus(ctx, "e1"); st.Backlog != 42 || !st.FirstSeen.Equal(old.At) {
		t.Fatalf("after an older heartbeat: %+v", st.Edge)
	}
}

// TestHeartbeatNamesRelease: without a newer applied report, the newest
// heartbeat says which release the edge runs; an applied report newer
// than it decides.
func TestHeartbeatNamesRelease(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	s := open(t, store.Options{Now: func() time.Time { return now }})
	ctx := context.Background()
	if err := s.RecordHeartbeat(ctx, "e1", store.HeartbeatInfo{At: now.Add(-time.Minute), Bundle: "wf", Version: 3}); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.EdgeStatus(ctx, "e1"); st.Bundle != "wf" || st.Version != 3 {
		t.Fatalf("after a heartbeat: %s v%d", st.Bundle, st.Version)
	}
	if err := s.RecordReport(ctx, "e1", store.Report{Time: now.Add(-30 * time.Second), Bundle: "wf", Version: 4, Outcome: store.Applied}); err != nil {
		t.Fatal(err)
	}
	// A heartbeat older than the report, delivered late, changes nothing;
	// an empty bundle never clears what runs.
	for _, hb := range []store.HeartbeatInfo{{At: now.Add(-45 * time.Second), Bundle: "wf", Version: 3}, {At: now}} {
		if err := s.RecordHeartbeat(ctx, "e1", hb); err != nil {
			t.Fatal(err)
		}
	}
	if st, _ := s.EdgeStatus(ctx, "e1"); st.Bundle != "wf" || st.Version != 4 {
		t.Fatalf("after the report: %s v%d", st.Bundle, st.Version)
	}
}

// TestRegisteredEdge: an edge a release registers is listed, never seen,
// offline; its first heartbeat makes it online with its labels; a release
// to it reads offline until then.
func TestRegisteredEdge(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	s := open(t, store.Options{Now: func() time.Time { return now }})
	ctx := context.Background()
	if err := s.RegisterEdge(ctx, "late"); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterEdge(ctx, "late"); err != nil {
		t.Fatal(err)
	}
	edges, err := s.Edges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(edges) != 1 || edges[0].Online || !edges[0].LastSeen.IsZero() {
		t.Fatalf("edges %+v", edges)
	}
	if err := s.PutBundle(ctx, store.Bundle{Name: "wf", Version: 1, Digest: "sha256:ab", Size: 1, Created: now}); err != nil {
		t.Fatal(err)
	}
	id, targeted, err := s.CreateRelease(ctx, store.Release{Bundle: "wf", Version: 1, Target: store.TargetEdge, Selector: "late", At: now})
	if err != nil || len(targeted) != 1 {
		t.Fatalf("release: %v %v", targeted, err)
	}
	st, err := s.ReleaseStatus(ctx, id)
	if err != nil || len(st) != 1 || st[0].State != store.ReleaseOffline {
		t.Fatalf("status %+v %v", st, err)
	}
	if err := s.RecordHeartbeat(ctx, "late", store.HeartbeatInfo{At: now, Labels: map[string]string{"site": "b"}}); err != nil {
		t.Fatal(err)
	}
	if st, _ = s.ReleaseStatus(ctx, id); st[0].State != store.ReleasePending {
		t.Fatalf("status after a heartbeat %+v", st)
	}
	e, _ := s.EdgeStatus(ctx, "late")
	if !e.Online || e.Labels["site"] != "b" || !e.FirstSeen.Equal(now) {
		t.Fatalf("edge %+v", e.Edge)
	}
	// A release of what the edge already runs starts applied.
	if err := s.RecordReport(ctx, "late", store.Report{Time: now, Bundle: "wf", Version: 1, Outcome: store.Applied}); err != nil {
		t.Fatal(err)
	}
	id2, _, err := s.CreateRelease(ctx, store.Release{Bundle: "wf", Version: 1, Target: store.TargetAll, At: now})
	if err != nil {
		t.Fatal(err)
	}
	if st, _ = s.ReleaseStatus(ctx, id2); len(st) != 1 || st[0].State != store.ReleaseApplied {
		t.Fatalf("release of what runs: %+v", st)
	}
	ri, err := s.GetRelease(ctx, id2)
	if err != nil || ri.Target != store.TargetAll || ri.Version != 1 {
		t.Fatalf("release %+v %v", ri, err)
	}
}

// TestLeaderExclusive: one holder of a leader lock at a time; released, it
// passes to another.
func TestLeaderExclusive(t *testing.T) {
	schema := schemaFor(t)
	a := open(t, store.Options{Schema: schema})
	b := open(t, store.Options{Schema: schema})
	ctx := context.Background()
	la, err := a.TryLead(ctx, "janitor")
	if err != nil || la == nil {
		t.Fatalf("first: %v %v", la, err)
	}
	if lb, err := b.TryLead(ctx, "janitor"); err != nil || lb != nil {
		t.Fatalf("second while held: %v %v", lb, err)
	}
	if err := la.Check(ctx); err != nil {
		t.Fatal(err)
	}
	la.Release(ctx)
	lb, err := b.TryLead(ctx, "janitor")
	if err != nil || lb == nil {
		t.Fatalf("second after release: %v %v", lb, err)
	}
	lb.Release(ctx)
}

// TestReportClockAhead: an apply report stamped far ahead of the hub's
// clock (an edge whose clock was wrong, then set right) counts as made
// when the hub received it, so a later report still says what the edge
// runs and which report is its last; the report keeps its own time.
func TestReportClockAhead(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := now
	s := open(t, store.Options{Now: func() time.Time { return clock }})
	ctx := context.Background()
	ahead := now.Add(365 * 24 * time.Hour)
	if err := s.RecordReport(ctx, "e1", store.Report{Time: ahead, Bundle: "wf", Version: 1, Outcome: store.Applied}); err != nil {
		t.Fatal(err)
	}
	clock = now.Add(time.Minute)
	if err := s.RecordReport(ctx, "e1", store.Report{Time: clock, Bundle: "wf", Version: 2, Outcome: store.Applied}); err != nil {
		t.Fatal(err)
	}
	st, err := s.EdgeStatus(ctx, "e1")
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != 2 || st.LastReport == nil || st.LastReport.Version != 2 {
		t.Fatalf("after a report a year ahead and a later one: runs v%d, last report %+v", st.Version, st.LastReport)
	}
	// A heartbeat newer than the report of a year ahead names the release.
	clock = now.Add(2 * time.Minute)
	if err := s.RecordHeartbeat(ctx, "e1", store.HeartbeatInfo{At: clock, Bundle: "wf", Version: 3}); err != nil {
		t.Fatal(err)
	}
	if st, _ = s.EdgeStatus(ctx, "e1"); st.Version != 3 {
		t.Fatalf("after a newer heartbeat: runs v%d", st.Version)
	}
	var found bool
	for _, r := range st.History {
		found = found || r.Version == 1 && r.Time.Equal(ahead)
	}
	if !found {
		t.Fatalf("the report keeps its own time: %+v", st.History)
	}
}
