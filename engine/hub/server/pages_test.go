package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/hub/server"
	"github.com/sluice-edge/sluice/engine/hub/store"
)

// get asks the API for path?query with the token and returns the status,
// the next cursor and the body.
func get(t *testing.T, in *instance, path, query string) (int, string, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+in.api.Addr()+path+"?"+query, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get(server.NextHeader), body
}

// TestListingsPaging: GET /v1/alerts, /v1/edges and /v1/releases answer
// pages of limit items with the next cursor in Sluice-Next (none on the
// last page); read page after page with alerts added between the pages,
// every alert that exists throughout comes exactly once, in order, and the
// filters hold on every page.
func TestListingsPaging(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	ctx := context.Background()
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	seq := 0
	alert := func(edge, id, asset, state string) {
		t.Helper()
		seq++
		a := store.AlertRecord{ID: id, Edge: edge, Asset: asset, Rule: "r", Severity: "major", Type: "t", Content: "c",
			Value: 1, Occur: t0, State: state}
		if state == store.AlertCleared {
			a.Recover = t0.Add(time.Second)
		}
		if err := in.st.ApplyAlert(ctx, a, fmt.Sprintf("m%d", seq)); err != nil {
			t.Fatal(err)
		}
	}
	stable := map[string]bool{}
	for i := 0; i < 30; i++ {
		state := store.AlertRaised
		if i%4 == 0 {
			state = store.AlertCleared
		}
		asset := fmt.Sprintf("T%d", i%3)
		alert("e1", fmt.Sprintf("a%02d", 2*i), asset, state)
		stable[asset+"/"+fmt.Sprintf("a%02d", 2*i)] = true
	}
	var (
		got   []server.AlertView
		after string
		pages int
	)
	for {
		as, next, err := in.client.AlertsPage(ctx, false, "", after, 4)
		if err != nil {
			t.Fatal(err)
		}
		if len(as) > 4 || (next != "" && len(as) != 4) {
			t.Fatalf("page %d: %d alerts, next %q", pages, len(as), next)
		}
		got = append(got, as...)
		if next == "" {
			break
		}
		after = next
		// Alerts before and after the cursor.
		alert("e2", fmt.Sprintf("a%02d", 2*pages+1), fmt.Sprintf("T%d", pages%3), store.AlertRaised)
		alert("e0", "a00", fmt.Sprintf("T%d", pages%3), store.AlertRaised)
		pages++
	}
	seen := map[string]int{}
	for i, a := range got {
		seen[a.Asset+"/"+a.ID+"/"+a.Edge]++
		if i > 0 {
			p := got[i-1]
			if !(p.Asset < a.Asset || (p.Asset == a.Asset && (p.ID < a.ID || (p.ID == a.ID && p.Edge < a.Edge)))) {
				t.Fatalf("%s/%s/%s after %s/%s/%s", a.Asset, a.ID, a.Edge, p.Asset, p.ID, p.Edge)
			}
		}
	}
	for k := range stable {
		if seen[k+"/e1"] != 1 {
			t.Errorf("alert %s read %d times", k, seen[k+"/e1"])
		}
	}
	if pages < 7 {
		t.Fatalf("%d pages", pages)
	}
	// Filters on every page.
	active, err := in.client.Alerts(ctx, true, "T1")
	if err != nil {
		t.Fatal(err)
	}
	after, n := "", 0
	for {
		as, next, err := in.client.AlertsPage(ctx, true, "T1", after, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			if a.Asset != "T1" || a.State != store.AlertRaised {
				t.Fatalf("active of T1: %+v", a)
			}
		}
		n += len(as)
		if next == "" {
			break
		}
		after = next
	}
	if n != len(active) || n == 0 {
		t.Fatalf("active of T1: %d page by page, %d at once", n, len(active))
	}

	// Edges by id.
	for i := 0; i < 7; i++ {
		if err := in.st.Heartbeat(ctx, fmt.Sprintf("edge-%d", i), nil, t0); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	after = ""
	for {
		es, next, err := in.client.EdgesPage(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			ids = append(ids, e.ID)
		}
		if next == "" {
			break
		}
		after = next
	}
	if fmt.Sprint(ids) != "[edge-0 edge-1 edge-2 edge-3 edge-4 edge-5 edge-6]" {
		t.Fatalf("edges page by page: %v", ids)
	}

	// Releases newest first; a release to more than 100 edges lists the
	// first 100 and counts them all.
	for i := 7; i < 105; i++ {
		if err := in.st.Heartbeat(ctx, fmt.Sprintf("edge-%d", i), nil, t0); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.st.PutBundle(ctx, store.Bundle{Name: "b", Version: 1, Digest: "sha256:1", Size: 1, Created: t0}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		r := store.Release{Bundle: "b", Version: 1, Target: store.TargetEdge, Selector: "edge-1", At: t0}
		if i == 4 {
			r = store.Release{Bundle: "b", Version: 1, Target: store.TargetAll, At: t0}
		}
		if _, _, err := in.st.CreateRelease(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	var rels []server.ReleaseView
	after = ""
	for {
		rs, next, err := in.client.ReleasesPage(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		rels = append(rels, rs...)
		if next == "" {
			break
		}
		after = next
	}
	if len(rels) != 5 || rels[0].ID != "r5" || rels[4].ID != "r1" {
		t.Fatalf("releases page by page: %+v", rels)
	}
	if r := rels[0]; len(r.Edges) != 100 || r.EdgesOmitted != 5 || r.Counts[store.ReleasePending] != 105 || r.Edges[0].Edge != "edge-0" {
		t.Fatalf("release to 105 edges: %d edges, %d omitted, counts %v", len(r.Edges), r.EdgesOmitted, r.Counts)
	}
	if r, err := in.client.ReleaseStatus(ctx, "r5"); err != nil || len(r.Edges) != 105 || r.EdgesOmitted != 0 {
		t.Fatalf("status of r5: %d edges, %v", len(r.Edges), err)
	}
	if r := rels[1]; len(r.Edges) != 1 || r.EdgesOmitted != 0 || r.Edges[0].Edge != "edge-1" {
		t.Fatalf("release to edge-1: %+v", r)
	}
	// One page of more releases than the hub summarizes at once.
	for i := 0; i < 250; i++ {
		if _, _, err := in.st.CreateRelease(ctx, store.Release{Bundle: "b", Version: 1, Target: store.TargetEdge, Selector: "edge-2", At: t0}); err != nil {
			t.Fatal(err)
		}
	}
	rs, next, err := in.client.ReleasesPage(ctx, "", server.MaxPageLimit)
	if err != nil || next != "" || len(rs) != 255 {
		t.Fatalf("one page of 255 releases: %d, next %q, %v", len(rs), next, err)
	}
	for i, r := range rs {
		want := "edge-2"
		switch {
		case i >= 251:
			want = "edge-1"
		case i == 250:
			want = "edge-0" // the release to all
		}
		if r.ID != server.ReleaseID(int64(255-i)) || len(r.Edges) == 0 || r.Edges[0].Edge != want {
			t.Fatalf("release %d of the page: %s, edges %+v", i, r.ID, r.Edges[:min(len(r.Edges), 1)])
		}
	}
}

// TestListingPageBytes: alerts as large as an edge may make (4 KiB
// contents) end a page before its limit, at some 4 MiB, so that an answer
// stays far below what the client reads; the pages still hold them all.
func TestListingPageBytes(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	const n = 1500 // some 8 MiB of JSON
	if _, err := e.db.Exec(`
INSERT INTO `+e.schema+`.alerts_current (id, edge, asset, rule, severity, type, content, value, occur_time, state, changed_at, updated_at)
SELECT 'a' || lpad(g::text, 5, '0'), 'e1', 'T1', 'r', 'high', 't', repeat('x', 4096), g, now(), 'raised', now(), now()
FROM generate_series(1, $1) g`, n); err != nil {
		t.Fatal(err)
	}
	total, pages, after := 0, 0, ""
	for {
		q := url.Values{"limit": {"5000"}}
		if after != "" {
			q.Set("after", after)
		}
		code, next, body := get(t, in, server.AlertsPath, q.Encode())
		if code != http.StatusOK {
			t.Fatalf("%d %s", code, body)
		}
		if len(body) > 5<<20 {
			t.Fatalf("a page of %d bytes", len(body))
		}
		var as []server.AlertView
		if err := json.Unmarshal(body, &as); err != nil {
			t.Fatal(err)
		}
		if len(as) == 0 {
			t.Fatal("an empty page")
		}
		total += len(as)
		pages++
		if next == "" {
			break
		}
		after = next
	}
	if total != n || pages < 2 {
		t.Fatalf("%d alerts in %d pages, want %d in 2 or more", total, pages, n)
	}
}

// TestReleaseStatusPaging: GET /v1/releases/{id} answers the release
// with a page of its edges (500 by default, limit= up to 5000, by edge),
// the next cursor in Sluice-Next and the counts of all its edges on every
// page; the client reads every page. The answer of a release (POST) holds
// its first 100 edges and counts them all.
func TestReleaseStatusPaging(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	ctx := context.Background()
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	const n = 520
	if _, err := e.db.Exec(`INSERT INTO `+e.schema+`.edges (id, labels, first_seen, last_seen)
SELECT 'edge-' || lpad(g::text, 4, '0'), '{}', $2, $2 FROM generate_series(1, $1) g`, n, t0); err != nil {
		t.Fatal(err)
	}
	b := e.build("wf", 1, e.key)
	rel, err := in.client.Release(ctx, bytes.NewReader(b), int64(len(b)), server.Target{Kind: store.TargetAll})
	if err != nil {
		t.Fatal(err)
	}
	if len(rel.Edges) != 100 || rel.EdgesOmitted != n-100 || rel.Counts[store.ReleasePending] != n || rel.Edges[0].Edge != "edge-0001" {
		t.Fatalf("the release's answer: %d edges, %d omitted, counts %v", len(rel.Edges), rel.EdgesOmitted, rel.Counts)
	}
	path := server.ReleasesPath + "/" + rel.ID
	code, next, body := get(t, in, path, "")
	var v server.ReleaseView
	if err := json.Unmarshal(body, &v); code != http.StatusOK || err != nil {
		t.Fatalf("%d %v %.200s", code, err, body)
	}
	if len(v.Edges) != server.DefaultPageLimit || next == "" || v.Counts[store.ReleasePending] != n || v.ID != rel.ID || v.Bundle != "wf" {
		t.Fatalf("first page: %d edges, next %q, counts %v", len(v.Edges), next, v.Counts)
	}
	var edges []string
	after, pages := "", 0
	for {
		q := url.Values{"limit": {"7"}}
		if after != "" {
			q.Set("after", after)
		}
		code, next, body := get(t, in, path, q.Encode())
		var v server.ReleaseView
		if err := json.Unmarshal(body, &v); code != http.StatusOK || err != nil {
			t.Fatalf("%d %v %.200s", code, err, body)
		}
		if len(v.Edges) > 7 || (next != "" && len(v.Edges) != 7) || v.Counts[store.ReleasePending] != n {
			t.Fatalf("page %d: %d edges, next %q, counts %v", pages, len(v.Edges), next, v.Counts)
		}
		for _, es := range v.Edges {
			edges = append(edges, es.Edge)
		}
		pages++
		if next == "" {
			break
		}
		after = next
	}
	if len(edges) != n || pages != (n+6)/7 {
		t.Fatalf("%d edges in %d pages", len(edges), pages)
	}
	for i, id := range edges {
		if want := fmt.Sprintf("edge-%04d", i+1); id != want {
			t.Fatalf("edge %d of the pages is %s, want %s", i, id, want)
		}
	}
	all, err := in.client.ReleaseStatus(ctx, rel.ID)
	if err != nil || len(all.Edges) != n || all.Counts[store.ReleasePending] != n || all.EdgesOmitted != 0 {
		t.Fatalf("client: %d edges, counts %v, %v", len(all.Edges), all.Counts, err)
	}
	if code, _, body := get(t, in, server.ReleasesPath+"/r999", ""); code != http.StatusNotFound {
		t.Fatalf("an unknown release: %d %s", code, body)
	}
}

// TestListingQueryRefused: hostile limit= and after= values are refused
// with 400 (negative, zero, huge, not numbers, repeated; cursors that are
// not base64, of another listing, with a NUL, longer than a cursor may
// be), and the hub keeps answering.
func TestListingQueryRefused(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	b64 := base64.RawURLEncoding.EncodeToString
	for _, path := range []string{server.AlertsPath, server.EdgesPath, server.ReleasesPath, server.ReleasesPath + "/r1"} {
		for _, q := range []string{
			"limit=-1", "limit=0", "limit=5001", "limit=99999999999999999999", "limit=abc", "limit=", "limit=1&limit=2", "limit=1e3",
			"after=", "after=!!!", "after=%00", "after=" + b64([]byte{0xff, 0xff, 0xff}), "after=" + b64([]byte{5, 'a'}),
			"after=" + b64([]byte{1, 0}), "after=" + b64([]byte{2, 0xc3, 0x28}), "after=a&after=b",
			"after=" + b64(append([]byte{0x80, 0x40}, strings.Repeat("x", 8192)...)),
			"after=" + strings.Repeat("A", 30000),
			"after=" + b64([]byte{1, 'a', 1, 'b', 1, 'c', 1, 'd'}),
		} {
			if code, _, body := get(t, in, path, q); code != http.StatusBadRequest {
				t.Errorf("GET %s?%.60s: %d %s, want 400", path, q, code, body)
			}
		}
	}
	for _, q := range []string{"after=" + b64([]byte{1, 'x'}), "after=" + b64([]byte{1, '0'}), "after=" + b64([]byte{2, '-', '1'})} {
		if code, _, body := get(t, in, server.ReleasesPath, q); code != http.StatusBadRequest {
			t.Errorf("GET releases?%s: %d %s, want 400", q, code, body)
		}
	}
	// Cursors with the listing's number of fields of which a time or a
	// sequence number is not one.
	cursor := func(fields ...string) string {
		var b []byte
		for _, f := range fields {
			b = append(append(b, byte(len(f))), f...)
		}
		return "after=" + b64(b)
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for _, c := range []struct{ path, q string }{
		{server.AlertsPath + "/a/history", "edge=e1&" + cursor("yesterday", "m1")},
		{server.EdgesPath + "/e1/leases", cursor("yesterday", "1")},
		{server.EdgesPath + "/e1/leases", cursor(now, "-1")},
		{server.CommandsPath, cursor("yesterday", "e1", "c1")},
	} {
		if code, _, body := get(t, in, c.path, c.q); code != http.StatusBadRequest {
			t.Errorf("GET %s?%s: %d %s, want 400", c.path, c.q, code, body)
		}
	}
	// Filters the store could not hold: longer than its text bound, a
	// NUL, an empty alert id.
	long := strings.Repeat("a", store.DefaultMaxTextBytes+1)
	for _, c := range []struct{ path, q string }{
		{server.AlertsPath, "asset=" + long}, {server.AlertsPath, "asset=%00"},
		{server.EdgesPath + "/e1/leases", "asset=" + long}, {server.EdgesPath + "/e1/leases", "asset=a%00"},
		{server.AlertsPath + "/" + long + "/history", "edge=e1"}, {server.AlertsPath + "/a%00/history", "edge=e1"},
		{server.AlertsPath + "/a/history", "edge="},
	} {
		if code, _, body := get(t, in, c.path, c.q); code != http.StatusBadRequest {
			t.Errorf("GET %.60s?%.60s: %d %s, want 400", c.path, c.q, code, body)
		}
	}
	for _, path := range []string{server.AlertsPath, server.EdgesPath, server.ReleasesPath} {
		if code, next, body := get(t, in, path, "limit=5000"); code != http.StatusOK || next != "" || strings.TrimSpace(string(body)) != "[]" {
			t.Errorf("GET %s?limit=5000: %d %q %s", path, code, next, body)
		}
	}
}
