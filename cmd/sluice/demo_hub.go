//go:build !sluice_lean

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/connectors/nats"
	"github.com/sluice-edge/sluice/engine/bundle"
	"github.com/sluice-edge/sluice/engine/hub/protocol"
	"github.com/sluice-edge/sluice/engine/hub/server"
	"github.com/sluice-edge/sluice/engine/hub/store"
	"github.com/sluice-edge/sluice/engine/netlink"
	"github.com/sluice-edge/sluice/engine/redact"
	"github.com/sluice-edge/sluice/pipelines"
	"github.com/sluice-edge/sluice/pipelines/examples"
)

// hubDemo is one run of `sluice demo --hub`.
type hubDemo struct {
	g    *globals
	log  *slog.Logger
	out  io.Writer
	opts hubDemoOptions
	dir  string

	natsToken string
	nats      *nats.Server
	js        jetstream.JetStream // the hub's
	db        *pgx.Conn
	st        *store.Store
	api       *server.API
	client    *server.Client
	tokenFile string
	pub       string // the trusted public key file
	trust     *bundle.Trust
	edges     []*demoEdge
	bundles   []string // the bundle files of versions 1 and 2
	hubTask   *task
	start     time.Time
	// closers stop what the demo started, in reverse order.
	closers []func() error
}

// demoEdge is one simulated edge: an edge agent run in this process as
// `sluice run --config` runs it.
type demoEdge struct {
	id   string
	link *netlink.Link // nil: connected directly
	stop context.CancelFunc
	task *task
}

// task is a goroutine of the demo (the hub, an edge) whose end the demo's
// waits notice: none of them ends before the demo stops it.
type task struct {
	name string
	done chan struct{}
	err  error
}

// goTask runs f in a goroutine.
func goTask(name string, f func() error) *task {
	t := &task{name: name, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		t.err = f()
	}()
	return t
}

// ended returns an error when t has ended.
func (t *task) ended() error {
	select {
	case <-t.done:
		if t.err != nil {
			return fmt.Errorf("demo: %s stopped: %w", t.name, t.err)
		}
		return fmt.Errorf("demo: %s stopped", t.name)
	default:
		return nil
	}
}

// wait waits for t to end and returns its error.
func (t *task) wait() error {
	<-t.done
	return t.err
}

// say prints one line of the demo's narrative, prefixed with the time
// since the start.
func (d *hubDemo) say(format string, args ...any) {
	fmt.Fprintf(d.out, "[%5.1fs] %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
}

// runHubDemo runs the hub demo until it is done or ctx ends.
func runHubDemo(ctx context.Context, g *globals, log *slog.Logger, opts hubDemoOptions) (err error) {
	d := &hubDemo{g: g, log: log, out: g.stdout, opts: opts, start: time.Now()}
	defer func() {
		if cerr := d.close(); err == nil {
			err = cerr
		}
	}()
	steps := []func(context.Context) error{d.setUp, d.buildBundles, d.startHub, d.startEdges, d.firstRelease, d.outage, d.summary}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			if ctx.Err() != nil {
				d.say("interrupted: stopping the edges (one cut off from the hub gives its buffers a few seconds), the hub and the NATS server")
				return nil
			}
			return err
		}
	}
	return nil
}

// setUp makes the demo's directory, starts the NATS server and resets the
// schema.
func (d *hubDemo) setUp(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "sluice-hub-demo-")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	d.dir = dir
	d.natsToken = randomToken()
	d.nats, err = nats.StartServer(nats.ServerOptions{Listen: "127.0.0.1:0", Token: d.natsToken, StoreDir: filepath.Join(dir, "nats")})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	d.say("NATS JetStream started in this process on %s (token auth, store %s)", d.nats.Addr(), d.nats.StoreDir())

	d.db, err = pgx.Connect(ctx, d.opts.Postgres)
	if err != nil {
		return fmt.Errorf("demo: PostgreSQL: %w", err)
	}
	if _, err := d.db.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{d.opts.Schema}.Sanitize()+" CASCADE"); err != nil {
		return fmt.Errorf("demo: resetting schema %s: %w", d.opts.Schema, err)
	}
	// An edge is offline 3 s after its last heartbeat (one a second), so
	// that the cut shows.
	d.st, err = store.Open(ctx, d.opts.Postgres, store.Options{Schema: d.opts.Schema, OfflineAfter: 3 * time.Second})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	d.say("PostgreSQL: schema %s reset and migrated", d.opts.Schema)
	return nil
}

// startHub starts the hub on the NATS server and the database, and its
// API. The hub releases only bundles signed with the demo's key.
func (d *hubDemo) startHub(ctx context.Context) error {
	nc, err := natsgo.Connect(d.nats.URL(), natsgo.Token(d.natsToken), natsgo.Name("sluice-hub"), natsgo.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("demo: hub: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fmt.Errorf("demo: hub: %w", err)
	}
	d.js = js
	h, err := server.New(js, d.st, server.Options{Replicas: 1, Trust: d.trust, TempDir: d.dir, Log: d.log.With("hub", "demo")})
	if err != nil {
		nc.Close()
		return fmt.Errorf("demo: hub: %w", err)
	}
	if err := h.Ensure(ctx); err != nil {
		nc.Close()
		return fmt.Errorf("demo: hub: %w", err)
	}
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.hubTask = goTask("the hub", func() error { return h.Run(hctx) })
	d.closers = append(d.closers, func() error {
		cancel()
		err := d.hubTask.wait()
		nc.Close()
		return err
	})

	apiToken := randomToken()
	d.tokenFile = filepath.Join(d.dir, "hub.token")
	if err := os.WriteFile(d.tokenFile, []byte(apiToken+"\n"), 0o600); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	d.api, err = server.Listen("127.0.0.1:0", apiToken, h, d.log)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	url := "http://" + d.api.Addr()
	if d.client, err = server.NewClient(url, apiToken); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	d.say("hub started: it releases bundles signed with key %s, ingests data, alerts, reports and heartbeats; API on %s", d.trust.KeyIDs()[0], url)
	d.say("  while the demo runs, try: sluice hub alerts --hub %s --token-file %s", url, d.tokenFile)
	return nil
}

// close stops the edges, the hub and the servers, and removes the demo's
// directory.
func (d *hubDemo) close() error {
	var errs []error
	d.stopEdges()
	if d.client != nil {
		d.client.Close()
	}
	if d.api != nil {
		errs = append(errs, d.api.Close())
	}
	for i := len(d.closers) - 1; i >= 0; i-- {
		errs = append(errs, d.closers[i]())
	}
	if d.st != nil {
		d.st.Close()
	}
	if d.db != nil {
		errs = append(errs, d.db.Close(context.Background()))
	}
	if d.nats != nil {
		errs = append(errs, d.nats.Close())
	}
	if d.dir != "" {
		errs = append(errs, os.RemoveAll(d.dir))
	}
	return errors.Join(errs...)
}

// redactDemoPassword masks the password of the hub demo's database DSN
// wherever it would show.
func redactDemoPassword(dsn string) {
	if pc, err := pgx.ParseConfig(dsn); err == nil && pc.Password != "" {
		// Its password, and only it (not a user name), is masked.
		redact.Register(pc.Password)
	}
}

// buildBundles makes the signing key and builds versions 1 and 2 of the
// release from the embedded files.
func (d *hubDemo) buildBundles(context.Context) error {
	pub, priv, err := bundle.GenerateKey()
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	d.trust = bundle.NewTrust(pub)
	d.pub = filepath.Join(d.dir, "release.pub")
	if err := bundle.WritePublicKey(d.pub, pub); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	src := filepath.Join(d.dir, "release")
	for v := uint64(1); v <= 2; v++ {
		if err := examples.WriteHub(src, int(v)); err != nil {
			return fmt.Errorf("demo: release files: %w", err)
		}
		out := filepath.Join(d.dir, fmt.Sprintf("%s-v%d.bundle", demoBundle, v))
		m, err := buildTo(out, src, bundle.BuildOptions{Name: demoBundle, Version: v, Parent: v - 1, Key: priv})
		if err != nil {
			return fmt.Errorf("demo: building version %d: %w", v, err)
		}
		d.bundles = append(d.bundles, out)
		rules, err := d.ruleNames(src)
		if err != nil {
			return err
		}
		d.say("bundle %s, signed with key %s: rule set turbine with %s", bundle.ManifestSummary(m), bundle.KeyID(pub), strings.Join(rules, " and "))
	}
	return nil
}

// ruleNames lists the rule names of the release in dir, checking the
// release as an edge will.
func (d *hubDemo) ruleNames(dir string) ([]string, error) {
	env := map[string]string{"HUB_URL": d.nats.URL(), "HUB_TOKEN": d.natsToken, "EDGE": "edge-a"}
	rel, errs := pipelines.LoadRelease(dir, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if len(errs) > 0 {
		return nil, fmt.Errorf("demo: release: %w", errs)
	}
	var names []string
	for _, set := range rel.RuleSets {
		for _, r := range set.Rules {
			names = append(names, "rule "+r.String("name"))
		}
	}
	return names, nil
}

// startEdges writes the configuration of two edges and runs their agents:
// edge-a connected to NATS directly, edge-b through a link the demo cuts
// later. It waits until the hub has heard of both.
func (d *hubDemo) startEdges(ctx context.Context) error {
	for _, id := range []string{"edge-a", "edge-b"} {
		e := &demoEdge{id: id}
		url, how := d.nats.URL(), "connected directly"
		if id == "edge-b" {
			l, err := netlink.Open(d.nats.Addr())
			if err != nil {
				return fmt.Errorf("demo: %w", err)
			}
			e.link = l
			url, how = "nats://"+l.Addr(), "connected through a link the demo will cut ("+l.Addr()+")"
		}
		dir := filepath.Join(d.dir, id)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		cfg := filepath.Join(dir, "sluice.yaml")
		conf, err := yaml.Marshal(map[string]any{
			"edge": id, "data_dir": "data", "trust": d.pub, "labels": map[string]string{"site": "demo"},
			"api": map[string]string{"listen": "127.0.0.1:0"},
			"hub": map[string]string{"url": url, "token": d.natsToken, "heartbeat": "1s"},
		})
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		if err := os.WriteFile(cfg, conf, 0o600); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		env := map[string]string{"HUB_URL": url, "HUB_TOKEN": d.natsToken, "EDGE": id, "SIM_RATE": fmt.Sprint(d.opts.Rate)}
		ectx, cancel := context.WithCancel(withEnv(context.WithoutCancel(ctx), env))
		e.stop = cancel
		// Each edge has globals of its own (a release's settings may set
		// its log level). What it says on stderr when it stops (the rows
		// left in its buffers for its next run) does not hold here: its
		// directory goes with the demo's.
		eg := &globals{logFormat: d.g.logFormat, logLevel: d.g.logLevel, stdout: io.Discard, stderr: io.Discard}
		eg.level.Set(d.g.level.Level())
		e.task = goTask(id, func() error { return runAgent(ectx, eg, d.log.With("edge", id), cfg, nil, runFlags{}) })
		d.edges = append(d.edges, e)
		d.say("%s started: an edge agent (sluice run --config %s), %s, no release yet", id, cfg, how)
	}
	err := d.waitFor(ctx, "both edges to send a heartbeat", func() (bool, error) {
		es, err := d.client.Edges(ctx)
		if err != nil {
			return false, err
		}
		n := 0
		for _, e := range es {
			if e.Online {
				n++
			}
		}
		return n == len(d.edges), nil
	})
	if err != nil {
		return err
	}
	es, err := d.client.Edges(ctx)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	d.say("hub: %s", edgesLine(es))
	return nil
}

// stopEdges stops the edge agents and waits for them.
func (d *hubDemo) stopEdges() {
	for _, e := range d.edges {
		e.stop()
	}
	for _, e := range d.edges {
		if err := e.task.wait(); err != nil {
			d.log.Error("edge stopped with an error", "edge", e.id, "err", err)
		}
		if e.link != nil {
			_ = e.link.Close()
		}
	}
	d.edges = nil
}

// edgesLine says what the hub knows of each edge.
func edgesLine(es []server.EdgeView) string {
	var parts []string
	for _, e := range es {
		run := "no release"
		if e.Version > 0 {
			run = fmt.Sprintf("runs %s v%d", e.Bundle, e.Version)
		}
		switch {
		case e.Online:
			parts = append(parts, fmt.Sprintf("%s online, %s, backlog %d rows", e.ID, run, e.Backlog))
		case e.HeartbeatAt != nil:
			parts = append(parts, fmt.Sprintf("%s offline (last heartbeat %.1fs ago), %s", e.ID, time.Since(*e.HeartbeatAt).Seconds(), run))
		default:
			parts = append(parts, fmt.Sprintf("%s offline, %s", e.ID, run))
		}
	}
	return strings.Join(parts, "; ")
}

// tasks are the hub's and the edges' goroutines.
func (d *hubDemo) tasks() []*task {
	var ts []*task
	if d.hubTask != nil {
		ts = append(ts, d.hubTask)
	}
	for _, e := range d.edges {
		ts = append(ts, e.task)
	}
	return ts
}

// waitFor polls cond every 100 ms until it holds, ctx ends, opts.Wait
// passes or the hub or an edge stops.
func (d *hubDemo) waitFor(ctx context.Context, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(d.opts.Wait)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var last error
	for {
		for _, t := range d.tasks() {
			if err := t.ended(); err != nil {
				return err
			}
		}
		ok, err := cond()
		if ok && err == nil {
			return nil
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			if last != nil {
				return fmt.Errorf("demo: waited %s for %s: %w", d.opts.Wait, what, last)
			}
			return fmt.Errorf("demo: waited %s for %s", d.opts.Wait, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// release releases version v (1 or 2) to every edge.
func (d *hubDemo) release(ctx context.Context, v int) (server.ReleaseView, error) {
	f, err := os.Open(d.bundles[v-1])
	if err != nil {
		return server.ReleaseView{}, fmt.Errorf("demo: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return server.ReleaseView{}, fmt.Errorf("demo: %w", err)
	}
	r, err := d.client.Release(ctx, f, fi.Size(), server.Target{Kind: store.TargetAll})
	if err != nil {
		return r, fmt.Errorf("demo: release of version %d: %w", v, err)
	}
	d.say("hub: release %s of %s v%d to %s: %s", r.ID, r.Bundle, r.Version, r.Target, releaseStates(r))
	return r, nil
}

// releaseStates lists the state of each edge of a release.
func releaseStates(r server.ReleaseView) string {
	var parts []string
	for _, e := range r.Edges {
		parts = append(parts, e.Edge+" "+e.State)
	}
	return strings.Join(parts, ", ")
}

// waitStates waits until the edges of release id are in the states want
// (edge -> state) and returns the release.
func (d *hubDemo) waitStates(ctx context.Context, id string, want map[string]string) (server.ReleaseView, error) {
	var r server.ReleaseView
	err := d.waitFor(ctx, "release "+id+" to reach its edges", func() (bool, error) {
		var err error
		if r, err = d.client.ReleaseStatus(ctx, id); err != nil {
			return false, err
		}
		for _, e := range r.Edges {
			if w, ok := want[e.Edge]; ok && e.State != w {
				return false, nil
			}
		}
		return true, nil
	})
	return r, err
}

// alertCounts counts the hub's alerts (raised and cleared) by edge, by
// edge and rule, and by rule set version.
type alertCounts struct {
	total  int
	byEdge map[string]int
	byRule map[string]map[string]int // edge -> rule -> count
	sets   map[string]int            // rule set version -> count
}

func countAlerts(as []server.AlertView) alertCounts {
	c := alertCounts{byEdge: map[string]int{}, byRule: map[string]map[string]int{}, sets: map[string]int{}}
	for _, a := range as {
		c.total++
		c.byEdge[a.Edge]++
		if c.byRule[a.Edge] == nil {
			c.byRule[a.Edge] = map[string]int{}
		}
		c.byRule[a.Edge][a.Rule]++
		c.sets[a.RuleSetVersion]++
	}
	return c
}

// String says the counts.
func (c alertCounts) String() string {
	var edges []string
	for _, e := range slices.Sorted(maps.Keys(c.byEdge)) {
		var rules []string
		for _, r := range slices.Sorted(maps.Keys(c.byRule[e])) {
			rules = append(rules, fmt.Sprintf("%s %d", r, c.byRule[e][r]))
		}
		edges = append(edges, fmt.Sprintf("%s %d (%s)", e, c.byEdge[e], strings.Join(rules, ", ")))
	}
	var sets []string
	for _, v := range slices.Sorted(maps.Keys(c.sets)) {
		sets = append(sets, fmt.Sprintf("%q %d", v, c.sets[v]))
	}
	return fmt.Sprintf("%d alerts stored: %s; by rule set version: %s", c.total, strings.Join(edges, ", "), strings.Join(sets, ", "))
}

// edgeRows are the telemetry rows the hub stored from one edge.
type edgeRows struct {
	// Rows, of them Backfilled the rows that arrived as backfill; Span
	// is the number of sequence numbers from the first to the last (Rows
	// when none is missing).
	Rows, Backfilled, Span int64
}

// rows counts the telemetry rows the hub stored from each edge.
func (d *hubDemo) rows(ctx context.Context) (map[string]edgeRows, error) {
	q := fmt.Sprintf("SELECT edge, count(*), count(*) FILTER (WHERE backfill), max(seq) - min(seq) + 1 FROM %s.telemetry GROUP BY edge",
		pgx.Identifier{d.opts.Schema}.Sanitize())
	rs, err := d.db.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("demo: counting rows: %w", err)
	}
	out := map[string]edgeRows{}
	for rs.Next() {
		var edge string
		var r edgeRows
		if err := rs.Scan(&edge, &r.Rows, &r.Backfilled, &r.Span); err != nil {
			return nil, fmt.Errorf("demo: counting rows: %w", err)
		}
		out[edge] = r
	}
	return out, rs.Err()
}

// rowsLine says the rows ingested from each edge.
func rowsLine(rows map[string]edgeRows) string {
	var parts []string
	for _, e := range slices.Sorted(maps.Keys(rows)) {
		r := rows[e]
		missing := "none missing"
		if r.Span != r.Rows {
			missing = fmt.Sprintf("%d missing", r.Span-r.Rows)
		}
		parts = append(parts, fmt.Sprintf("%s %d (%d backfilled, %s)", e, r.Rows, r.Backfilled, missing))
	}
	return strings.Join(parts, ", ")
}

// firstRelease releases version 1 to both edges and waits until both
// applied it and raised alerts the hub stored.
func (d *hubDemo) firstRelease(ctx context.Context) error {
	at := time.Now()
	r, err := d.release(ctx, 1)
	if err != nil {
		return err
	}
	r, err = d.waitStates(ctx, r.ID, map[string]string{"edge-a": store.ReleaseApplied, "edge-b": store.ReleaseApplied})
	if err != nil {
		return err
	}
	d.say("hub: release %s: %s (%.1fs after the release)", r.ID, releaseStates(r), time.Since(at).Seconds())
	var c alertCounts
	err = d.waitFor(ctx, "alerts of both edges in the hub", func() (bool, error) {
		as, err := d.client.Alerts(ctx, false, "")
		if err != nil {
			return false, err
		}
		c = countAlerts(as)
		return c.byEdge["edge-a"] > 0 && c.byEdge["edge-b"] > 0, nil
	})
	if err != nil {
		return err
	}
	d.say("hub: %s", c)
	rows, err := d.rows(ctx)
	if err != nil {
		return err
	}
	d.say("hub: rows ingested: %s", rowsLine(rows))
	return nil
}

// outage cuts edge-b's link, releases version 2, restores the link after
// the hub saw edge-b offline and the outage lasted opts.Outage, and waits
// until edge-b applied version 2 and its backlog drained.
func (d *hubDemo) outage(ctx context.Context) error {
	b := d.edges[1]
	b.link.Down()
	cut := time.Now()
	d.say("link of edge-b cut: its data, alerts, reports and heartbeats now wait in its buffers")
	r, err := d.release(ctx, 2)
	if err != nil {
		return err
	}
	r, err = d.waitStates(ctx, r.ID, map[string]string{"edge-a": store.ReleaseApplied})
	if err != nil {
		return err
	}
	d.say("hub: release %s: %s", r.ID, releaseStates(r))
	var es []server.EdgeView
	err = d.waitFor(ctx, "the hub to see edge-b offline", func() (bool, error) {
		var err error
		if es, err = d.client.Edges(ctx); err != nil {
			return false, err
		}
		for _, e := range es {
			if e.ID == b.id {
				return !e.Online, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	if rest := d.opts.Outage - time.Since(cut); rest > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(rest):
		}
	}
	during, err := d.rows(ctx)
	if err != nil {
		return err
	}
	d.say("hub: %s; rows from edge-b stopped at %d", edgesLine(es), during[b.id].Rows)

	b.link.Up()
	restored := time.Now()
	d.say("link of edge-b restored after %.1fs", restored.Sub(cut).Seconds())
	r, err = d.waitStates(ctx, r.ID, map[string]string{"edge-a": store.ReleaseApplied, "edge-b": store.ReleaseApplied})
	if err != nil {
		return err
	}
	d.say("hub: release %s: %s (edge-b caught up %.1fs after the link returned)", r.ID, releaseStates(r), time.Since(restored).Seconds())
	var eb server.EdgeView
	err = d.waitFor(ctx, "edge-b's backlog to drain", func() (bool, error) {
		es, err := d.client.Edges(ctx)
		if err != nil {
			return false, err
		}
		for _, e := range es {
			if e.ID == b.id {
				eb = e
				return e.Online && e.Version == 2 && e.Backlog == 0 && e.HeartbeatAt != nil && e.HeartbeatAt.After(restored), nil
			}
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	// What edge-b had delivered when it said its backlog was empty is in
	// the data stream; wait until the hub stored all of that.
	if err := d.waitIngested(ctx); err != nil {
		return err
	}
	after, err := d.rows(ctx)
	if err != nil {
		return err
	}
	d.say("hub: edge-b online, runs %s v%d, backlog %d rows (drained %.1fs after the link returned); rows ingested: %s",
		eb.Bundle, eb.Version, eb.Backlog, time.Since(restored).Seconds(), rowsLine(after))
	return nil
}

// waitIngested waits until the hub's data consumer has stored every
// message the data stream holds now.
func (d *hubDemo) waitIngested(ctx context.Context) error {
	st, err := d.js.Stream(ctx, protocol.DataStream)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	last := info.State.LastSeq
	return d.waitFor(ctx, "the hub to store the data stream up to message "+fmt.Sprint(last), func() (bool, error) {
		c, err := st.Consumer(ctx, server.DataDurable)
		if err != nil {
			return false, err
		}
		ci, err := c.Info(ctx)
		if err != nil {
			return false, err
		}
		return ci.AckFloor.Stream >= last, nil
	})
}

// summary waits for alerts the second release's rule raised on both
// edges and prints the hub's raised alerts as sluice hub alerts does.
func (d *hubDemo) summary(ctx context.Context) error {
	var c alertCounts
	err := d.waitFor(ctx, "alerts of version 2 from both edges", func() (bool, error) {
		as, err := d.client.Alerts(ctx, false, "")
		if err != nil {
			return false, err
		}
		c = countAlerts(as)
		return c.byRule["edge-a"]["high_output"] > 0 && c.byRule["edge-b"]["high_output"] > 0, nil
	})
	if err != nil {
		return err
	}
	d.say("hub: %s", c)
	args := []string{"hub", "alerts", "--active", "--hub", "http://" + d.api.Addr(), "--token-file", d.tokenFile}
	var out, errs bytes.Buffer
	if code := execute(args, &out, &errs); code != 0 {
		return fmt.Errorf("demo: sluice %s: exit %d: %s", strings.Join(args, " "), code, strings.TrimSpace(errs.String()))
	}
	d.say("sluice hub alerts --active says:")
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	for i, l := range lines {
		if i == maxAlertLines && len(lines) > maxAlertLines+1 {
			fmt.Fprintf(d.out, "  ... and %d more\n", len(lines)-i)
			break
		}
		fmt.Fprintf(d.out, "  %s\n", l)
	}
	d.say("done: both edges run %s v2; edge-b caught up after its outage", demoBundle)
	return nil
}

// maxAlertLines bounds the lines of sluice hub alerts the demo prints.
const maxAlertLines = 12
