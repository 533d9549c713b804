package console_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/hub/console"
	"github.com/sluice-edge/sluice/engine/hub/server"
	"github.com/sluice-edge/sluice/engine/webpage/browsertest"
)

// fleetAPI answers the console's reads for a fleet larger than a page of
// every listing, paging as the hub does (limit=, after=, the cursor of the
// next page in server.NextHeader) but with pages of at most pageMax items
// whatever the limit asked: 2,000 edges (every tenth offline), 1,500
// alerts (every third on an edge active), 45 releases (the newest targets
// every edge and lists the first 100 in the listing), 250 commands. It
// records the largest limit asked and the requests without one.
type fleetAPI struct {
	mu       sync.Mutex
	maxLimit int
	noLimit  []string
}

const (
	fleetEdges    = 2000
	fleetAlerts   = 1500
	fleetReleases = 45
	fleetCommands = 250
	pageMax       = 500
)

func fleetEdge(i int) string { return fmt.Sprintf("edge-%04d", i) }

func (f *fleetAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now().UTC()
	q := r.URL.Query()
	limit := server.DefaultPageLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > server.MaxPageLimit {
			http.Error(w, `{"error":"bad limit"}`, http.StatusBadRequest)
			return
		}
		limit = n
	}
	f.mu.Lock()
	if !q.Has("limit") {
		f.noLimit = append(f.noLimit, r.URL.RequestURI())
	}
	f.maxLimit = max(f.maxLimit, limit)
	f.mu.Unlock()
	from := 0
	if s := q.Get("after"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			http.Error(w, `{"error":"bad cursor"}`, http.StatusBadRequest)
			return
		}
		from = n
	}
	// list answers items n from `from`, a page at most.
	list := func(n int, item func(i int) any) any {
		size := min(limit, pageMax)
		out := []any{}
		for i := from; i < n && len(out) < size; i++ {
			out = append(out, item(i))
		}
		if from+len(out) < n {
			w.Header().Set(server.NextHeader, strconv.Itoa(from+len(out)))
		}
		return out
	}
	releaseEdges := func(rel, first, n int) []any {
		out := []any{}
		for i := first; i < first+n && i < fleetEdges; i++ {
			out = append(out, map[string]any{"edge": fleetEdge(i), "state": "applied", "at": now})
		}
		return out
	}
	release := func(i int) map[string]any {
		// Release r<fleetReleases-i>, newest first; the newest targets
		// every edge, the others edge-0000 alone.
		id := fleetReleases - i
		r := map[string]any{"id": fmt.Sprintf("r%d", id), "bundle": "farm", "version": id, "target": "edge edge-0000", "released_at": now.Add(-time.Duration(i) * time.Minute)}
		if i == 0 {
			r["target"], r["edges"], r["edges_omitted"] = "all", releaseEdges(id, 0, 100), fleetEdges-100
		} else {
			r["edges"] = []any{map[string]any{"edge": "edge-0000", "state": "superseded", "at": now}}
		}
		return r
	}
	var a any
	switch p := r.URL.Path; p {
	case "/v1/edges":
		a = list(fleetEdges, func(i int) any {
			return map[string]any{"id": fleetEdge(i), "online": i%10 != 0, "bundle": "farm", "version": fleetReleases, "software": "sluice v1",
				"backlog": i % 7, "last_seen": now}
		})
	case "/v1/alerts":
		active := q.Get("active") == "1"
		n := fleetAlerts
		if active {
			n = fleetAlerts / 3
		}
		a = list(n, func(i int) any {
			// Alert k is on edge k (the last ones on the last edges);
			// with active=1 item i is alert 3i.
			k := i
			if active {
				k = 3 * i
			}
			state := "cleared"
			if k%3 == 0 {
				state = "raised"
			}
			e := fleetEdges - fleetAlerts + k
			return map[string]any{"id": fmt.Sprintf("a%d", k), "edge": fleetEdge(e), "asset": "T1", "rule": "hot", "severity": "major",
				"type": "t", "content": "too hot", "state": state, "occur_time": now, "changed_at": now}
		})
	case "/v1/releases":
		a = list(fleetReleases, func(i int) any { return release(i) })
	case fmt.Sprintf("/v1/releases/r%d", fleetReleases):
		v := release(0)
		delete(v, "edges_omitted")
		v["edges"] = list(fleetEdges, func(i int) any { return releaseEdges(fleetReleases, i, 1)[0] })
		a = v
	case "/v1/commands":
		a = list(fleetCommands, func(i int) any {
			t := now.Add(-time.Duration(i) * time.Second)
			return map[string]any{"id": fmt.Sprintf("c%d", i), "edge": fleetEdge(i), "asset": "T1", "service": "stop", "status": "acked",
				"created": t, "updated": t}
		})
	default:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(a)
}

// TestConsolePagesThroughInBrowser: a fleet larger than a page of every
// listing. The summary counts every edge and every active alert (not
// those of a first page); the edges and alerts tables show a bounded
// number of rows and say how many of how many, the filter finds an edge
// and the alerts of an edge past the first page, "show more" shows more;
// the newest release's state is that of every edge (not only of the 100
// the listing names); releases and commands show the newest and offer the
// older ones. Every request asks a bounded page (limit=, at most 1,000).
func TestConsolePagesThroughInBrowser(t *testing.T) {
	b := browsertest.New(t)
	api := &fleetAPI{}
	h, err := console.New(console.Options{Token: browserToken, API: api})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	b.Go(t, srv.URL+console.Prefix+"?token="+url.QueryEscape(browserToken))

	const rows = `document.querySelectorAll("#edges tbody tr").length`
	b.Wait(t, "the summary of the whole fleet", `document.getElementById("summary").textContent.startsWith("1,800 of 2,000 edges online") &&
		document.getElementById("summary").textContent.includes(" 500 active alerts")`)
	b.Wait(t, "a bounded edges table saying so", rows+` === 200 && document.getElementById("edges-shown").textContent === "200 of 2,000 edges shown"`)
	b.Wait(t, "the newest release of an edge the listing does not name", `(() => {
		const tr = document.querySelector('#edges tbody tr[data-edge="edge-0150"]');
		return tr !== null && tr.dataset.release === "applied" && tr.cells[4].textContent.startsWith("farm v45: applied");
	})()`)
	browsertest.Eval[bool](t, b, `document.getElementById("edges-more").click(), true`)
	b.Wait(t, "200 more edges", rows+` === 400 && document.getElementById("edges-shown").textContent === "400 of 2,000 edges shown"`)

	// The filter finds an edge past every first page, with its alerts.
	browsertest.Eval[bool](t, b, `(() => { const f = document.getElementById("edge-filter"); f.value = "edge-1997"; f.dispatchEvent(new Event("input")); return true; })()`)
	b.Wait(t, "the edge found", rows+` === 1 && document.querySelector("#edges tbody tr").dataset.edge === "edge-1997" &&
		document.querySelector("#edges tbody tr").dataset.alerts === "1" && document.getElementById("edges-shown").textContent === "1 of 1 edges shown (2,000 in all)"`)
	b.Wait(t, "its alert", `document.querySelectorAll("#alerts tbody tr").length === 1 && document.querySelector("#alerts tbody tr").dataset.edge === "edge-1997"`)
	browsertest.Eval[bool](t, b, `(() => { const f = document.getElementById("edge-filter"); f.value = ""; f.dispatchEvent(new Event("input")); return true; })()`)
	browsertest.Eval[bool](t, b, `(() => { const s = document.getElementById("edge-view"); s.value = "offline"; s.dispatchEvent(new Event("change")); return true; })()`)
	b.Wait(t, "the offline edges", rows+` === 200 && [...document.querySelectorAll("#edges tbody tr")].every((tr) => tr.dataset.state === "offline") &&
		document.getElementById("edges-shown").textContent === "200 of 200 edges shown (2,000 in all)"`)

	// Alerts: every active one counted, a bounded table saying so.
	b.Wait(t, "the alerts", `document.getElementById("alert-count").textContent === "500" && document.querySelectorAll("#alerts tbody tr").length === 200 &&
		document.getElementById("alerts-shown").textContent === "200 of 1,500 alerts shown"`)
	browsertest.Eval[bool](t, b, `document.getElementById("alerts-more").click(), true`)
	b.Wait(t, "200 more alerts", `document.querySelectorAll("#alerts tbody tr").length === 400`)

	// Releases and commands: the newest, then older ones on demand.
	const rels, cmds = `document.querySelectorAll("#releases tbody tr").length`, `document.querySelectorAll("#commands tbody tr").length`
	b.Wait(t, "the newest releases and commands", rels+` === 20 && !document.getElementById("releases-more").hidden && `+cmds+` === 100 && !document.getElementById("commands-more").hidden`)
	browsertest.Eval[bool](t, b, `document.getElementById("releases-more").click(), true`)
	b.Wait(t, "older releases", rels+` === 40 && !document.getElementById("releases-more").hidden`)
	browsertest.Eval[bool](t, b, `document.getElementById("releases-more").click(), true`)
	b.Wait(t, "every release", rels+` === 45 && document.getElementById("releases-more").hidden`)
	browsertest.Eval[bool](t, b, `document.getElementById("commands-more").click(), true`)
	b.Wait(t, "older commands", cmds+` === 200`)
	browsertest.Eval[bool](t, b, `document.getElementById("commands-more").click(), true`)
	b.Wait(t, "every command", cmds+` === 250 && document.getElementById("commands-more").hidden`)

	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.noLimit) > 0 || api.maxLimit > 1000 {
		t.Errorf("unbounded requests: largest limit %d, without a limit: %v", api.maxLimit, api.noLimit)
	}
	if errs := b.Errors(); len(errs) > 0 {
		t.Errorf("console errors: %v", errs)
	}
}
