package server

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-edge/sluice/engine/httpapi"
	"github.com/sluice-edge/sluice/engine/hub/ingest"
	"github.com/sluice-edge/sluice/engine/hub/protocol"
	"github.com/sluice-edge/sluice/engine/hub/store"
)

// Paths of the API.
const (
	HealthPath   = "/v1/health"
	EdgesPath    = "/v1/edges"
	ReleasesPath = "/v1/releases"
	AlertsPath   = "/v1/alerts"
	MetricsPath  = "/metrics"
)

// DefaultListen is where the API listens unless told otherwise: loopback
// only.
const DefaultListen = "127.0.0.1:8470"

// maxConns bounds the connections the API holds at once.
const maxConns = 256

// maxListedEdges bounds the edges of one release in GET /v1/releases.
const maxListedEdges = 100

// EdgeView is one edge in the API.
type EdgeView struct {
	ID        string            `json:"id"`
	Labels    map[string]string `json:"labels"`
	Online    bool              `json:"online"`
	FirstSeen *time.Time        `json:"first_seen,omitempty"`
	LastSeen  *time.Time        `json:"last_seen,omitempty"`
	// Bundle and Version are what the edge runs (its newest applied
	// report).
	Bundle      string           `json:"bundle"`
	Version     uint64           `json:"version"`
	Running     []store.Pipeline `json:"running"`
	Backlog     int64            `json:"backlog"`
	Software    string           `json:"software"`
	HeartbeatAt *time.Time       `json:"heartbeat_at,omitempty"`
	LastReport  *ReportView      `json:"last_report,omitempty"`
}

// EdgeDetail is one edge with its apply history, newest first.
type EdgeDetail struct {
	EdgeView
	History []ReportView `json:"history"`
}

// LeaseEventView is one lease event of an edge's arbiter (an audit entry
// of no command), in the JSON form the store keeps: edge, seq, at, asset,
// origin, reason.
type LeaseEventView = store.LeaseEvent

// ReportView is one apply report, in the JSON form the store keeps.
type ReportView = store.Report

// ReleaseView is a release and the state of each targeted edge.
type ReleaseView struct {
	ID      string    `json:"id"`
	Bundle  string    `json:"bundle"`
	Version uint64    `json:"version"`
	Digest  string    `json:"digest,omitempty"`
	Size    int64     `json:"size,omitempty"`
	Signer  string    `json:"signer,omitempty"`
	Target  string    `json:"target"`
	By      string    `json:"by,omitempty"`
	At      time.Time `json:"released_at"`
	// Edges are the targeted edges; Counts the number in each state.
	Edges  []ReleaseEdgeView `json:"edges"`
	Counts map[string]int    `json:"counts"`
	// EdgesOmitted is, in a listing and in the answer of a release
	// (POST), the number of edges left out of Edges, which holds the
	// first 100 by edge (Counts counts them all). The release's own
	// answer (GET /v1/releases/{id}) holds a page of its edges instead,
	// and the cursor of the next one in NextHeader.
	EdgesOmitted int `json:"edges_omitted,omitempty"`
}

// Pending says whether an edge of the release has not answered yet
// (pending or offline).
func (r ReleaseView) Pending() bool {
	return r.Counts[store.ReleasePending]+r.Counts[store.ReleaseOffline] > 0
}

// ReleaseEdgeView is the state of one edge in a release: pending,
// applied, rejected (with the reason) or offline (pending, and the edge is
// offline now).
type ReleaseEdgeView struct {
	Edge   string    `json:"edge"`
	State  string    `json:"state"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// AlertView is the current state of one alert.
type AlertView struct {
	ID             string     `json:"id"`
	Edge           string     `json:"edge"`
	Asset          string     `json:"asset"`
	Rule           string     `json:"rule"`
	Severity       string     `json:"severity"`
	Type           string     `json:"type"`
	Content        string     `json:"content"`
	Value          *float64   `json:"value"`
	Occur          time.Time  `json:"occur_time"`
	Recover        *time.Time `json:"recover_time,omitempty"`
	State          string     `json:"state"`
	RuleSetVersion string     `json:"rule_set_version,omitempty"`
	ChangedAt      time.Time  `json:"changed_at"`
}

// AlertTransitionView is one recorded change of an alert: raised or
// cleared at a time, with its value (null when NaN or infinite).
type AlertTransitionView struct {
	ID    string    `json:"id"`
	Edge  string    `json:"edge"`
	State string    `json:"state"`
	Time  time.Time `json:"time"`
	Value *float64  `json:"value"`
}

// Health is the answer of HealthPath.
type Health struct {
	OK bool `json:"ok"`
	// Janitor is true when this instance ran the janitor last.
	Janitor bool `json:"janitor"`
	// Data and Edge are the consumers' counters.
	Data IngestView `json:"data"`
	Edge IngestView `json:"edge_events"`
}

// IngestView are the counters of one consumer.
type IngestView struct {
	Rows        uint64 `json:"rows"`
	Alerts      uint64 `json:"alerts"`
	Messages    uint64 `json:"messages"`
	Poison      uint64 `json:"poison"`
	Redelivered uint64 `json:"redelivered"`
	StoreErrors uint64 `json:"store_errors"`
	// Conflicts counts rows kept in telemetry_conflicts: stored
	// sequences sent again with other content.
	Conflicts uint64 `json:"conflicts"`
	Lag       uint64 `json:"lag"`
}

func ingestView(s ingest.Stats) IngestView {
	return IngestView{Rows: s.Rows, Alerts: s.Alerts, Messages: s.Messages, Poison: s.Poison,
		Redelivered: s.Redelivered, StoreErrors: s.StoreErrors, Conflicts: s.Conflicts, Lag: s.Lag}
}

// errorBody is the answer of a refused or failed request.
type errorBody struct {
	Error string `json:"error"`
}

func opt(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func edgeView(e store.Edge) EdgeView {
	v := EdgeView{ID: e.ID, Labels: e.Labels, Online: e.Online, FirstSeen: opt(e.FirstSeen), LastSeen: opt(e.LastSeen),
		Bundle: e.Bundle, Version: e.Version, Running: e.Running, Backlog: e.Backlog, Software: e.Software,
		HeartbeatAt: opt(e.HeartbeatAt)}
	if v.Labels == nil {
		v.Labels = map[string]string{}
	}
	if v.Running == nil {
		v.Running = []store.Pipeline{}
	}
	v.LastReport = e.LastReport
	return v
}

func releaseView(ri store.ReleaseInfo, edges []store.ReleaseEdge) ReleaseView {
	t := Target{Kind: ri.Target, Selector: ri.Selector}
	v := ReleaseView{ID: ReleaseID(ri.ID), Bundle: ri.Bundle, Version: ri.Version, Target: t.String(), By: ri.By, At: ri.At,
		Edges: make([]ReleaseEdgeView, 0, len(edges)), Counts: map[string]int{}}
	for _, e := range edges {
		v.Edges = append(v.Edges, ReleaseEdgeView{Edge: e.Edge, State: e.State, Reason: e.Reason, At: e.At})
		v.Counts[e.State]++
	}
	return v
}

// setCounts sets Counts to counts, the states of all the release's edges,
// and EdgesOmitted to those of them Edges does not hold.
func (v *ReleaseView) setCounts(counts map[string]int) {
	v.Counts = map[string]int{}
	total := 0
	for st, n := range counts {
		v.Counts[st] = n
		total += n
	}
	v.EdgesOmitted = max(total-len(v.Edges), 0)
}

// API serves the hub's HTTP JSON API. Every request needs the bearer
// token.
type API struct {
	hub   *Hub
	token string
	log   *slog.Logger
	srv   *httpapi.Server
}

// Listen serves the API of h on addr (host:port) with the bearer token.
// A listener on an address other than loopback is logged as a warning.
func Listen(addr, token string, h *Hub, log *slog.Logger) (*API, error) {
	if token == "" {
		return nil, errors.New("hub api: no token")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &API{hub: h, token: token, log: log}
	srv, err := httpapi.Listen(addr, a.Handler(), httpapi.Options{
		Name: "hub api", MaxConns: maxConns, MaxHeaderBytes: 64 << 10, // a cursor and a filter: up to some 32 KiB
		RemoteWarning: "the hub API is reachable from other hosts: put it behind TLS (every request still needs the token)",
		Log:           log,
	})
	if err != nil {
		return nil, err
	}
	a.srv = srv
	log.Info("hub api listening", "url", "http://"+srv.Addr())
	return a, nil
}

// Addr is the address the API listens on.
func (a *API) Addr() string { return a.srv.Addr() }

// Close stops the server, waiting a few seconds for requests in flight.
func (a *API) Close() error { return a.srv.Close(5 * time.Second) }

// Handler is the API's handler, token checked: a request without the
// token is refused and its connection closed without waiting for the body
// the client declared (a trickled one would hold one of the API's
// maxConns connections up to the read timeout).
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+HealthPath, a.health)
	mux.HandleFunc("GET "+EdgesPath, a.edges)
	mux.HandleFunc("GET "+EdgesPath+"/{id}", a.edge)
	mux.HandleFunc("GET "+EdgesPath+"/{id}/logs", a.edgeLogs)
	mux.HandleFunc("GET "+EdgesPath+"/{id}/leases", a.leaseEvents)
	mux.HandleFunc("POST "+ReleasesPath, a.release)
	mux.HandleFunc("GET "+ReleasesPath, a.releases)
	mux.HandleFunc("GET "+ReleasesPath+"/{id}", a.releaseStatus)
	mux.HandleFunc("GET "+AlertsPath, a.alerts)
	mux.HandleFunc("GET "+AlertsPath+"/{id}/history", a.alertHistory)
	mux.HandleFunc("POST "+CommandsPath, a.issueCommand)
	mux.HandleFunc("GET "+CommandsPath, a.commands)
	mux.HandleFunc("GET "+CommandsPath+"/{id}", a.command)
	mux.HandleFunc("GET "+MetricsPath, a.metrics)
	bodyless := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 0)
		}
		mux.ServeHTTP(w, r)
	})
	return a.withConsole(bodyless, httpapi.Bearer(a.token, "sluice hub", "missing or wrong bearer token", nil, bodyless))
}

// fail answers err: the caller's errors with their text, the hub's own as
// a generic 500 (logged).
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, store.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, store.ErrConflict):
		code = http.StatusConflict
	case errors.Is(err, ErrTooLarge), errors.As(err, &mbe):
		code = http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrBadBundle):
		code = http.StatusUnprocessableEntity
	case errors.Is(err, ErrBadTarget), errors.Is(err, protocol.ErrFormat), errors.Is(err, errBadQuery), errors.Is(err, ErrBody):
		code = http.StatusBadRequest
	}
	if code == http.StatusInternalServerError {
		a.log.Error("hub api", "method", r.Method, "path", r.URL.Path, "err", err)
		httpapi.WriteJSON(w, code, errorBody{Error: "the hub failed; see its log"})
		return
	}
	httpapi.WriteJSON(w, code, errorBody{Error: err.Error()})
}

var errBadQuery = errors.New("bad query")

func (a *API) health(w http.ResponseWriter, r *http.Request) {
	d, e := a.hub.Stats()
	httpapi.WriteJSON(w, http.StatusOK, Health{OK: true, Janitor: a.hub.Leader(), Data: ingestView(d), Edge: ingestView(e)})
}

// edges answers a page of the edges by id.
func (a *API) edges(w http.ResponseWriter, r *http.Request) {
	limit, after, err := pageQuery(r, 1)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	from := ""
	if after != nil {
		from = after[0]
	}
	p := newPage(limit)
	err = a.hub.st.EdgesAfter(r.Context(), from, limit+1, func(e store.Edge) bool {
		return p.add(edgeView(e), func() string { return encodeCursor(e.ID) })
	})
	a.writePage(w, r, p, err)
}

func (a *API) edge(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := protocol.CheckEdgeID(id); err != nil {
		a.fail(w, r, err)
		return
	}
	st, err := a.hub.st.EdgeStatus(r.Context(), id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	d := EdgeDetail{EdgeView: edgeView(st.Edge), History: st.History}
	if d.History == nil {
		d.History = []ReportView{}
	}
	httpapi.WriteJSON(w, http.StatusOK, d)
}

// targetOf reads the target of POST /v1/releases: exactly one of
// ?edge=ID, ?label=K=V, ?all=1.
func targetOf(r *http.Request) (Target, error) {
	q := r.URL.Query()
	var ts []Target
	if vs, ok := q["edge"]; ok {
		for _, v := range vs {
			ts = append(ts, Target{Kind: store.TargetEdge, Selector: v})
		}
	}
	if vs, ok := q["label"]; ok {
		for _, v := range vs {
			ts = append(ts, Target{Kind: store.TargetLabel, Selector: v})
		}
	}
	if vs, ok := q["all"]; ok {
		if len(vs) != 1 || (vs[0] != "1" && vs[0] != "true") {
			return Target{}, fmt.Errorf("%w: all=1", ErrBadTarget)
		}
		ts = append(ts, Target{Kind: store.TargetAll})
	}
	if len(ts) != 1 {
		return Target{}, fmt.Errorf("%w: give exactly one of edge=ID, label=KEY=VALUE, all=1", ErrBadTarget)
	}
	return ts[0], ts[0].Check()
}

func (a *API) release(w http.ResponseWriter, r *http.Request) {
	t, err := targetOf(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	max := a.hub.opts.MaxBundleBytes
	if r.ContentLength > max {
		a.fail(w, r, fmt.Errorf("%w: %d bytes, more than %d", ErrTooLarge, r.ContentLength, max))
		return
	}
	body := http.MaxBytesReader(w, r.Body, max)
	rel, err := a.hub.Release(r.Context(), body, t, "api")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	v := releaseView(store.ReleaseInfo{ID: rel.ID, Release: store.Release{Bundle: rel.Bundle, Version: rel.Version,
		Target: t.Kind, Selector: t.Selector, By: "api", At: rel.At}}, rel.Edges)
	v.Digest, v.Size, v.Signer = rel.Digest, rel.Size, rel.Signer
	v.setCounts(rel.Counts)
	httpapi.WriteJSON(w, http.StatusCreated, v)
}

// releases answers a page of the releases, newest first, each with the
// counts of its edges' states and its first maxListedEdges edges.
func (a *API) releases(w http.ResponseWriter, r *http.Request) {
	limit, after, err := pageQuery(r, 1)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var before int64
	if after != nil {
		if before, err = strconv.ParseInt(after[0], 10, 64); err != nil || before < 1 {
			a.fail(w, r, errNotCursor)
			return
		}
	}
	ris, err := a.hub.st.ReleasesBefore(r.Context(), before, limit+1)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	// The edges are read for summaryChunk releases at a time, so that a
	// page that ends early (pageBytes) never read those of the rest.
	const summaryChunk = 100
	var sums map[int64]store.ReleaseSummary
	p := newPage(limit)
	for i, ri := range ris {
		if i%summaryChunk == 0 {
			ids := make([]int64, 0, summaryChunk)
			for _, x := range ris[i:min(i+summaryChunk, len(ris))] {
				ids = append(ids, x.ID)
			}
			if sums, err = a.hub.st.ReleaseSummaries(r.Context(), ids, maxListedEdges); err != nil {
				a.fail(w, r, err)
				return
			}
		}
		sum := sums[ri.ID]
		v := releaseView(ri, sum.Edges)
		v.setCounts(sum.Counts)
		if !p.add(v, func() string { return encodeCursor(strconv.FormatInt(ri.ID, 10)) }) {
			break
		}
	}
	a.writePage(w, r, p, nil)
}

// releaseStatus answers a release with a page of its edges, by edge: at
// most limit= (and pageBytes of them), after the edge of the after=
// cursor, the cursor of the next page in NextHeader; Counts counts every
// edge of the release on every page.
func (a *API) releaseStatus(w http.ResponseWriter, r *http.Request) {
	id, err := ParseReleaseID(r.PathValue("id"))
	if err != nil {
		a.fail(w, r, fmt.Errorf("%w: %w", errBadQuery, err))
		return
	}
	limit, after, err := pageQuery(r, 1)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	from := ""
	if after != nil {
		from = after[0]
	}
	ri, err := a.hub.st.GetRelease(r.Context(), id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	edges, err := a.hub.st.ReleaseStatusAfter(r.Context(), id, from, limit+1)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	sums, err := a.hub.st.ReleaseSummaries(r.Context(), []int64{id}, 0)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	next, size := "", 0
	for i, e := range edges {
		size += len(e.Edge) + len(e.Reason) + 100
		if i == limit || i > 0 && size > pageBytes {
			edges, next = edges[:i], encodeCursor(edges[i-1].Edge)
			break
		}
	}
	v := releaseView(ri, edges)
	v.Counts = map[string]int{}
	for st, n := range sums[id].Counts {
		v.Counts[st] = n
	}
	if next != "" {
		w.Header().Set(NextHeader, next)
	}
	httpapi.WriteJSON(w, http.StatusOK, v)
}

// alertHistory answers a page of the recorded changes of alert {id} of
// edge= (an alert is an edge's and its id), newest first.
func (a *API) alertHistory(w http.ResponseWriter, r *http.Request) {
	id, edge := r.PathValue("id"), r.URL.Query().Get("edge")
	if err := protocol.CheckEdgeID(edge); err != nil {
		a.fail(w, r, fmt.Errorf("%w: edge=: %w", errBadQuery, err))
		return
	}
	if id == "" {
		a.fail(w, r, fmt.Errorf("%w: no alert id", errBadQuery))
		return
	}
	if err := checkText(id); err != nil {
		a.fail(w, r, fmt.Errorf("%w: alert id: %w", errBadQuery, err))
		return
	}
	limit, after, err := pageQuery(r, 2)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var from *store.TransitionKey
	if after != nil {
		at, terr := parseCursorTime(after[0])
		if terr != nil {
			a.fail(w, r, terr)
			return
		}
		from = &store.TransitionKey{Time: at, MsgID: after[1]}
	}
	p := newPage(limit)
	err = a.hub.st.TransitionsBefore(r.Context(), edge, id, from, limit+1, func(t store.Transition) bool {
		v := AlertTransitionView{ID: t.AlertID, Edge: t.Edge, State: t.State, Time: t.Time}
		if val := t.Value; !math.IsNaN(val) && !math.IsInf(val, 0) {
			v.Value = &val
		}
		return p.add(v, func() string { return encodeCursor(cursorTime(t.Time), t.MsgID) })
	})
	a.writePage(w, r, p, err)
}

// leaseEvents answers a page of an edge's lease events (audit entries of
// its arbiter without a command), newest first; asset= picks one asset.
func (a *API) leaseEvents(w http.ResponseWriter, r *http.Request) {
	edge := r.PathValue("id")
	if err := protocol.CheckEdgeID(edge); err != nil {
		a.fail(w, r, fmt.Errorf("%w: %w", errBadQuery, err))
		return
	}
	asset := r.URL.Query().Get("asset")
	if err := checkText(asset); err != nil {
		a.fail(w, r, fmt.Errorf("%w: asset: %w", errBadQuery, err))
		return
	}
	limit, after, err := pageQuery(r, 2)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var from *store.LeaseEventKey
	if after != nil {
		at, terr := parseCursorTime(after[0])
		seq, serr := strconv.ParseUint(after[1], 10, 63)
		if terr != nil || serr != nil {
			a.fail(w, r, errNotCursor)
			return
		}
		from = &store.LeaseEventKey{At: at, Seq: seq}
	}
	p := newPage(limit)
	err = a.hub.st.LeaseEventsAfter(r.Context(), edge, asset, from, limit+1, func(e store.LeaseEvent) bool {
		return p.add(e, func() string { return encodeCursor(cursorTime(e.At), strconv.FormatUint(e.Seq, 10)) })
	})
	a.writePage(w, r, p, err)
}

// alerts answers a page of the alerts' current states by asset, id and
// edge.
func (a *API) alerts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	active := false
	switch q.Get("active") {
	case "", "0", "false":
	case "1", "true":
		active = true
	default:
		a.fail(w, r, fmt.Errorf("%w: active=1 or active=0", errBadQuery))
		return
	}
	asset := q.Get("asset")
	if err := checkText(asset); err != nil {
		a.fail(w, r, fmt.Errorf("%w: asset: %w", errBadQuery, err))
		return
	}
	limit, after, err := pageQuery(r, 3)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var from *store.AlertKey
	if after != nil {
		from = &store.AlertKey{Asset: after[0], ID: after[1], Edge: after[2]}
	}
	p := newPage(limit)
	err = a.hub.st.AlertsAfter(r.Context(), active, asset, from, limit+1, func(x store.Alert) bool {
		v := AlertView{ID: x.ID, Edge: x.Edge, Asset: x.Asset, Rule: x.Rule, Severity: x.Severity, Type: x.Type,
			Content: x.Content, Occur: x.Occur, Recover: opt(x.Recover), State: x.State, RuleSetVersion: x.RuleSetVersion,
			ChangedAt: x.ChangedAt}
		if val := x.Value; !math.IsNaN(val) && !math.IsInf(val, 0) { // JSON holds no NaN or ±Inf
			v.Value = &val
		}
		return p.add(v, func() string { return encodeCursor(x.Asset, x.ID, x.Edge) })
	})
	a.writePage(w, r, p, err)
}

// metrics answers the consumers' counters in the Prometheus text format.
func (a *API) metrics(w http.ResponseWriter, r *http.Request) {
	d, e := a.hub.Stats()
	var b strings.Builder
	counter := func(name, help string, get func(ingest.Stats) uint64, typ string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
		fmt.Fprintf(&b, "%s{consumer=\"data\"} %d\n%s{consumer=\"edge_events\"} %d\n", name, get(d), name, get(e))
	}
	counter("sluice_hub_ingest_rows_total", "Rows written.", func(s ingest.Stats) uint64 { return s.Rows }, "counter")
	counter("sluice_hub_ingest_alerts_total", "Alert records written.", func(s ingest.Stats) uint64 { return s.Alerts }, "counter")
	counter("sluice_hub_ingest_messages_total", "Messages acknowledged after their write.", func(s ingest.Stats) uint64 { return s.Messages }, "counter")
	counter("sluice_hub_ingest_poison_total", "Messages terminated as poison.", func(s ingest.Stats) uint64 { return s.Poison }, "counter")
	counter("sluice_hub_ingest_redelivered_total", "Messages delivered more than once.", func(s ingest.Stats) uint64 { return s.Redelivered }, "counter")
	counter("sluice_hub_ingest_store_errors_total", "Batches retried after a store error.", func(s ingest.Stats) uint64 { return s.StoreErrors }, "counter")
	counter("sluice_hub_ingest_conflicts_total", "Rows kept apart: stored sequences sent again with other content.", func(s ingest.Stats) uint64 { return s.Conflicts }, "counter")
	counter("sluice_hub_ingest_lag", "Messages of the consumer not yet delivered.", func(s ingest.Stats) uint64 { return s.Lag }, "gauge")
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	_, _ = io.WriteString(w, b.String())
}
