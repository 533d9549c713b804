package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/hub/store"
)

// alertPages reads the alerts page after page of limit, calling between
// after each page, and returns them in the order read.
func alertPages(t *testing.T, s *store.Store, active bool, asset string, limit int, between func(page int)) []store.Alert {
	t.Helper()
	var (
		out   []store.Alert
		after *store.AlertKey
	)
	for page := 0; ; page++ {
		n := 0
		err := s.AlertsAfter(context.Background(), active, asset, after, limit, func(a store.Alert) bool {
			out = append(out, a)
			n++
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		if n < limit {
			return out
		}
		k := out[len(out)-1].Key()
		after = &k
		between(page)
	}
}

// TestAlertsPaging: read page after page while alerts are added (before
// and after the cursor, of other assets and edges) and changed between
// the pages, every alert that exists throughout
// is read exactly once, in (asset, id, edge) order; the filters hold
// across pages; stopping early stops the reading.
func TestAlertsPaging(t *testing.T) {
	s := open(t, store.Options{})
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	stable := map[store.AlertKey]bool{}
	seq := 0
	apply := func(m msg) {
		t.Helper()
		seq++
		m.id = fmt.Sprintf("%s-%d", m.id, seq)
		if err := s.ApplyAlert(ctx, m.a, m.id); err != nil {
			t.Fatal(err)
		}
	}
	for _, asset := range []string{"T1", "T2", "T3"} {
		for i := 0; i < 10; i++ {
			for _, edge := range []string{"e1", "e2"} {
				m := raise(edge, fmt.Sprintf("a%02d-%s", i*2, asset), asset, "s", t0, float64(i))
				if i%3 == 0 {
					m = clearMsg(edge, m.a.ID, asset, "s", t0, t0.Add(time.Minute), float64(i))
				}
				apply(m)
				stable[store.AlertKey{Asset: asset, ID: m.a.ID, Edge: edge}] = true
			}
		}
	}
	between := func(page int) {
		// New alerts all over the order (odd ids fall between the stable
		// ones), and changes of stable ones; the first pages only, so that
		// the reading ends.
		if page >= 8 {
			return
		}
		for _, asset := range []string{"T0", "T1", "T2", "T3", "T4"} {
			apply(raise("e3", fmt.Sprintf("a%02d-%s", page, asset), asset, "n", t0, 1))
			apply(raise("e1", fmt.Sprintf("a%02d-%s", 2*page+1, asset), asset, "n", t0, 1))
		}
		apply(clearMsg("e1", "a02-T2", "T2", "c", t0, t0.Add(time.Duration(page+2)*time.Minute), 1))
	}
	for _, limit := range []int{1, 3, 7, 100} {
		got := alertPages(t, s, false, "", limit, between)
		seen := map[store.AlertKey]int{}
		for i, a := range got {
			seen[a.Key()]++
			if i > 0 {
				p := got[i-1]
				if [3]string{p.Asset, p.ID, p.Edge} == [3]string{a.Asset, a.ID, a.Edge} ||
					p.Asset > a.Asset || (p.Asset == a.Asset && (p.ID > a.ID || (p.ID == a.ID && p.Edge >= a.Edge))) {
					t.Fatalf("limit %d: %v read after %v", limit, a.Key(), p.Key())
				}
			}
		}
		for k := range stable {
			if seen[k] != 1 {
				t.Errorf("limit %d: alert %v read %d times", limit, k, seen[k])
			}
		}
	}
	// Filters across pages.
	for _, a := range alertPages(t, s, true, "T2", 2, func(int) {}) {
		if a.Asset != "T2" || a.State != store.AlertRaised {
			t.Fatalf("active of T2: %+v", a)
		}
	}
	all, err := s.Alerts(ctx, true, "T2")
	if err != nil {
		t.Fatal(err)
	}
	if got := alertPages(t, s, true, "T2", 2, func(int) {}); len(got) != len(all) {
		t.Fatalf("active of T2 page by page: %d, at once %d", len(got), len(all))
	}
	// A callback that stops ends the reading.
	n := 0
	if err := s.AlertsAfter(ctx, false, "", nil, 0, func(store.Alert) bool { n++; return n < 4 }); err != nil || n != 4 {
		t.Fatalf("stopped reading: %d alerts, %v", n, err)
	}
}

// TestEdgesAndReleasesPaging: edges page by id and releases newest first
// page by id, with edges and releases added between the pages: each one
// that exists throughout is read once, in order; a release's summary
// counts every edge and holds the first maxEdges by edge.
func TestEdgesAndReleasesPaging(t *testing.T) {
	s := open(t, store.Options{})
	ctx := context.Background()
	t0 := time.Now().UTC().Truncate(time.Second)
	for i := 0; i < 20; i++ {
		if err := s.Heartbeat(ctx, fmt.Sprintf("e%02d", 2*i), nil, t0); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	after, added := "", 0
	for {
		n := 0
		if err := s.EdgesAfter(ctx, after, 3, func(e store.Edge) bool { got = append(got, e.ID); n++; return true }); err != nil {
			t.Fatal(err)
		}
		if n < 3 {
			break
		}
		after = got[len(got)-1]
		if err := s.Heartbeat(ctx, fmt.Sprintf("e%02d", 2*added+1), nil, t0); err != nil {
			t.Fatal(err)
		}
		added++
	}
	seen := map[string]int{}
	for i, id := range got {
		seen[id]++
		if i > 0 && got[i-1] >= id {
			t.Fatalf("edges out of order: %v", got)
		}
	}
	for i := 0; i < 20; i++ {
		if id := fmt.Sprintf("e%02d", 2*i); seen[id] != 1 {
			t.Errorf("edge %s read %d times", id, seen[id])
		}
	}

	if err := s.PutBundle(ctx, store.Bundle{Name: "b", Version: 1, Digest: "sha256:1", Size: 1, Created: t0}); err != nil {
		t.Fatal(err)
	}
	release := func() int64 {
		t.Helper()
		id, _, err := s.CreateRelease(ctx, store.Release{Bundle: "b", Version: 1, Target: store.TargetAll, At: t0})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	var stable []int64
	for i := 0; i < 10; i++ {
		stable = append(stable, release())
	}
	var ids []int64
	var before int64
	for {
		rs, err := s.ReleasesBefore(ctx, before, 4)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			ids = append(ids, r.ID)
		}
		if len(rs) < 4 {
			break
		}
		before = rs[len(rs)-1].ID
		release() // newer than every page: not in this listing
	}
	if len(ids) != len(stable) {
		t.Fatalf("releases page by page: %v, want %v", ids, stable)
	}
	for i, id := range ids {
		if id != stable[len(stable)-1-i] {
			t.Fatalf("releases page by page: %v, want %v newest first", ids, stable)
		}
	}
	sums, err := s.ReleaseSummaries(ctx, ids[:2], 5)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids[:2] {
		sum := sums[id]
		total := 0
		for _, n := range sum.Counts {
			total += n
		}
		if total != 20+len(stable)-1 && total < 20 {
			t.Fatalf("release %d counts %v", id, sum.Counts)
		}
		if len(sum.Edges) != 5 || sum.Edges[0].Edge != "e00" || sum.Edges[4].Edge != "e04" {
			t.Fatalf("release %d first edges %+v", id, sum.Edges)
		}
		all, err := s.ReleaseStatus(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if total != len(all) || sum.Counts[store.ReleasePending] != len(all) {
			t.Fatalf("release %d: counts %v, status of %d edges", id, sum.Counts, len(all))
		}
	}
}
