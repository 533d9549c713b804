//go:build !sluice_lean

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/bundle"
	"github.com/sluice-edge/sluice/engine/hub/console"
	"github.com/sluice-edge/sluice/engine/hub/server"
	"github.com/sluice-edge/sluice/engine/hub/store"
	"github.com/sluice-edge/sluice/engine/redact"
)

// Defaults of the hub command.
const (
	defaultHubNATS      = "nats://127.0.0.1:4222"
	defaultHubTokenFile = "sluice-hub.token"
	hubPostgresEnv      = "SLUICE_HUB_POSTGRES"
	hubTokenEnv         = "SLUICE_HUB_TOKEN"
	hubURLEnv           = "SLUICE_HUB_URL"
)

// hubRunFlags configure a hub instance.
type hubRunFlags struct {
	nats      string
	postgres  string
	schema    string
	listen    string
	tokenFile string
	trust     string
	replicas  int
	logDir    string
}

func newHubCmd(g *globals) *cobra.Command {
	var f hubRunFlags
	cmd := &cobra.Command{
		Use:   "hub --postgres DSN [--nats URL] [--listen ADDR] [--token-file F] [--trust KEYS]",
		Short: "Run the hub (releases and commands to edges, their data, reports, alerts and command records), or ask it",
		Long: `Without a subcommand, hub runs one hub instance until SIGINT or SIGTERM.

At start it applies the database migrations (PostgreSQL schema --schema) and
creates the JetStream resources it uses when missing: the KV bucket
SLUICE_DESIRED, the object store SLUICE_BUNDLES, the streams SLUICE_EDGE
(reports, heartbeats and command records), SLUICE_DATA (data and alerts)
and SLUICE_COMMANDS (commands to edges). It then stores what the edges
send, exactly once, and serves the HTTP JSON API on --listen
(127.0.0.1 by default). Every API request needs the bearer token kept in
--token-file, created (mode 0600) when missing. The same listener serves a
web console over the fleet at /console/ (sign in with that token): edges,
alerts, releases, commands and an edge's log.

PostgreSQL and NATS may come up after the hub: it waits for them (1 s,
doubling up to 30 s, each failure logged) and listens once both are up.
When NATS comes back without the hub's streams or without JetStream, the
hub creates them again.

Several instances may run over the same NATS and PostgreSQL: they share the
work, and any one may stop.

The other subcommands ask a running hub through its API (--hub URL, the
token from --token-file or $SLUICE_HUB_TOKEN).

Exit codes: 0 stopped by a signal, 1 failed, 64 a bad command line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runHub(cmd.Context(), g, f)
		},
	}
	cmd.Flags().StringVar(&f.nats, "nats", defaultHubNATS, "NATS URL of the JetStream deployment the edges use")
	cmd.Flags().StringVar(&f.postgres, "postgres", "", "PostgreSQL DSN of the hub's database (default $"+hubPostgresEnv+")")
	cmd.Flags().StringVar(&f.schema, "schema", store.DefaultSchema, "PostgreSQL schema of the hub's tables")
	cmd.Flags().StringVar(&f.listen, "listen", server.DefaultListen, "address of the HTTP API (host:port)")
	cmd.Flags().StringVar(&f.tokenFile, "token-file", defaultHubTokenFile, "file of the API's bearer token, created (0600) when missing")
	cmd.Flags().StringVar(&f.trust, "trust", "", "public key file or directory of keys a released bundle's signature must verify with (default: the edges alone check signatures)")
	cmd.Flags().IntVar(&f.replicas, "replicas", 1, "replicas of the JetStream resources the hub creates (clustered JetStream)")
	cmd.Flags().StringVar(&f.logDir, "log-dir", "", "also write the log (JSON, masked) to rotating files in this directory, 10 of 10 MiB (sluice logs --log-dir reads them)")
	cmd.AddCommand(newHubEdgesCmd(g), newHubStatusCmd(g), newHubReleaseCmd(g), newHubReleasesCmd(g), newHubAlertsCmd(g), newHubLogsCmd(g),
		newHubCommandCmd(g), newHubCommandsCmd(g))
	return cmd
}

// runHub runs a hub instance until ctx ends or a signal arrives.
func runHub(parent context.Context, g *globals, f hubRunFlags) error {
	log, err := g.logger()
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	if f.logDir != "" {
		defer g.openLogDir(log, f.logDir, defaultLogs())()
	}
	if f.postgres == "" {
		f.postgres = os.Getenv(hubPostgresEnv)
	}
	if f.postgres == "" {
		return &exitError{code: exitUsage, err: fmt.Errorf("hub: give --postgres DSN or $%s", hubPostgresEnv)}
	}
	if f.replicas < 1 {
		return &exitError{code: exitUsage, err: errors.New("hub: --replicas must be at least 1")}
	}
	var trust *bundle.Trust
	if f.trust != "" {
		if trust, err = bundle.LoadTrust(f.trust); err != nil {
			return &exitError{code: exitFailed, err: fmt.Errorf("hub: %w", err)}
		}
	}
	token, err := agent.EnsureToken(f.tokenFile)
	if err != nil {
		return &exitError{code: exitFailed, err: fmt.Errorf("hub: %w", err)}
	}
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// PostgreSQL and NATS may come up after the hub: it waits for them.
	st, err := openHubStore(ctx, log, f.postgres, store.Options{Schema: f.schema})
	if ctx.Err() != nil {
		log.Info("hub stopped")
		return nil
	}
	if err != nil {
		return &exitError{code: exitFailed, err: fmt.Errorf("hub: %w", err)}
	}
	defer st.Close()
	nc, err := natsgo.Connect(f.nats, natsgo.Name("sluice-hub"), natsgo.MaxReconnects(-1), natsgo.RetryOnFailedConnect(true),
		natsgo.ConnectHandler(func(*natsgo.Conn) { log.Info("hub: NATS connected", "url", redact.String(f.nats)) }),
		natsgo.DisconnectErrHandler(func(_ *natsgo.Conn, err error) {
			if err != nil {
				log.Warn("hub: NATS connection lost", "err", err)
			}
		}),
		natsgo.ReconnectHandler(func(*natsgo.Conn) { log.Info("hub: NATS connection back") }))
	if err != nil {
		return &exitError{code: exitFailed, err: fmt.Errorf("hub: nats %s: %w", redact.String(f.nats), err)}
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return &exitError{code: exitFailed, err: fmt.Errorf("hub: %w", err)}
	}
	h, err := server.New(js, st, server.Options{Replicas: f.replicas, Trust: trust, Log: log})
	if err != nil {
		return &exitError{code: exitFailed, err: fmt.Errorf("hub: %w", err)}
	}
	if err := h.WaitResources(ctx); err != nil {
		log.Info("hub stopped")
		return nil // ctx ended
	}
	api, err := server.Listen(f.listen, token, h, log)
	if err != nil {
		return &exitError{code: exitFailed, err: err}
	}
	log.Info("hub console: sign in with the API token", "url", "http://"+api.Addr()+console.Prefix)
	defer api.Close()
	log.Info("hub running", "schema", f.schema, "api", "http://"+api.Addr(), "token_file", f.tokenFile, "trusted_keys", len(trust.KeyIDs()))
	if err := h.Run(ctx); err != nil {
		return &exitError{code: exitFailed, err: err}
	}
	log.Info("hub stopped")
	return nil
}

// hubClientFlags choose the hub a client command asks.
type hubClientFlags struct {
	url       string
	tokenFile string
	asJSON    bool
}

func (f *hubClientFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.url, "hub", "", "URL of the hub's API (default $"+hubURLEnv+", else http://"+server.DefaultListen+")")
	cmd.Flags().StringVar(&f.tokenFile, "token-file", "", "file of the API's bearer token (default $"+hubTokenEnv+", else "+defaultHubTokenFile+")")
	cmd.Flags().BoolVar(&f.asJSON, "json", false, "print the hub's answer as JSON")
}

// client returns a client of the hub with the token from --token-file,
// $SLUICE_HUB_TOKEN or the default token file.
func (f *hubClientFlags) client() (*server.Client, error) {
	url := f.url
	if url == "" {
		url = os.Getenv(hubURLEnv)
	}
	if url == "" {
		url = "http://" + server.DefaultListen
	}
	var token string
	switch {
	case f.tokenFile != "":
		tok, err := agent.ReadToken(f.tokenFile)
		if err != nil {
			return nil, &exitError{code: exitFailed, err: fmt.Errorf("hub: %w", err)}
		}
		token = tok
	case os.Getenv(hubTokenEnv) != "":
		token = strings.TrimSpace(os.Getenv(hubTokenEnv))
	default:
		tok, err := agent.ReadToken(defaultHubTokenFile)
		if err != nil {
			return nil, &exitError{code: exitFailed, err: fmt.Errorf("hub: no token: give --token-file or $%s (%w)", hubTokenEnv, err)}
		}
		token = tok
	}
	c, err := server.NewClient(url, token)
	if err != nil {
		return nil, &exitError{code: exitUsage, err: err}
	}
	return c, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// failed wraps a client error.
func failed(err error) error { return &exitError{code: exitFailed, err: fmt.Errorf("hub: %w", err)} }

func ago(t *time.Time, now time.Time) string {
	if t == nil {
		return "never"
	}
	d := now.Sub(*t).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String() + " ago"
}

func newHubEdgesCmd(g *globals) *cobra.Command {
	var (
		f     hubClientFlags
		limit int
	)
	cmd := &cobra.Command{
		Use:   "edges [--limit N] [--hub URL] [--token-file F] [--json]",
		Short: "List the edges the hub knows: online, the release they run, last seen, backlog",
		Long: `Edges lists every edge the hub has heard of (or a release named): whether it
is online (a heartbeat within the last 90 s), the release it runs (from its
newest applied report), when it was last seen and the rows waiting in its
cloud buffers (from its newest heartbeat). The edges come by id, page after
page, each printed as it comes; --limit N stops after N of them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 0 {
				return &exitError{code: exitUsage, err: errors.New("hub edges: --limit must not be negative")}
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			defer c.Close()
			now := time.Now()
			return streamList(cmd.Context(), g.stdout, f.asJSON, limit, edgesHeader, c.EdgesPage,
				func(w io.Writer, es []server.EdgeView) { hubEdgeRows(w, es, now) })
		},
	}
	f.register(cmd)
	cmd.Flags().IntVar(&limit, "limit", 0, "print at most this many edges (0: all)")
	return cmd
}

// streamList prints a listing of the hub page after page (page asks for
// one): as one JSON array when asJSON, else as a table of header and the
// lines rows prints, flushed after each page (so the columns line up
// within a page). It stops after limit items (0: after the last page).
// What it holds is one page, however long the listing.
func streamList[T any](ctx context.Context, w io.Writer, asJSON bool, limit int, header string,
	page func(ctx context.Context, after string, limit int) ([]T, string, error), rows func(io.Writer, []T)) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if asJSON {
		fmt.Fprint(w, "[")
	} else {
		fmt.Fprintln(tw, header)
	}
	after, printed := "", 0
	for {
		n := 0
		if limit > 0 {
			n = min(limit-printed, server.DefaultPageLimit)
		}
		items, next, err := page(ctx, after, n)
		if err != nil {
			return failed(err)
		}
		if limit > 0 && len(items) > limit-printed {
			items = items[:limit-printed]
		}
		if asJSON {
			for _, it := range items {
				b, err := json.MarshalIndent(it, "  ", "  ")
				if err != nil {
					return failed(err)
				}
				sep := ",\n  "
				if printed == 0 {
					sep = "\n  "
				}
				printed++
				if _, err := fmt.Fprintf(w, "%s%s", sep, b); err != nil {
					return err
				}
			}
		} else {
			rows(tw, items)
			printed += len(items)
			if err := tw.Flush(); err != nil {
				return err
			}
		}
		if next == "" || (limit > 0 && printed >= limit) {
			break
		}
		if next == after {
			return failed(errors.New("the hub answered the same page cursor twice"))
		}
		after = next
	}
	if asJSON {
		end := "]\n"
		if printed > 0 {
			end = "\n]\n"
		}
		_, err := fmt.Fprint(w, end)
		return err
	}
	return tw.Flush()
}

// edgesHeader heads the table of hub edges.
const edgesHeader = "EDGE\tONLINE\tRELEASE\tLAST SEEN\tBACKLOG"

// printEdges prints the table of hub edges.
func printEdges(w io.Writer, es []server.EdgeView, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, edgesHeader)
	hubEdgeRows(tw, es, now)
	return tw.Flush()
}

// hubEdgeRows prints the lines of es in the table of hub edges.
func hubEdgeRows(tw io.Writer, es []server.EdgeView, now time.Time) {
	for _, e := range es {
		rel := "-"
		if e.Bundle != "" {
			rel = fmt.Sprintf("%s v%d", e.Bundle, e.Version)
		}
		online := "no"
		if e.Online {
			online = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", printable(e.ID), online, printable(rel), ago(e.LastSeen, now), e.Backlog)
	}
}

// printable escapes the control and bidirectional-control characters of text
// an edge sent (\x1b, \n, \u202e, ...), so that printing it can neither
// drive the terminal nor forge lines of a listing.
func printable(s string) string {
	if !strings.ContainsFunc(s, unsafeRune) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case !unsafeRune(r):
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(&b, "\\x%02x", r)
		default:
			fmt.Fprintf(&b, "\\u%04x", r)
		}
	}
	return b.String()
}

func unsafeRune(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) }

func newHubStatusCmd(g *globals) *cobra.Command {
	var f hubClientFlags
	cmd := &cobra.Command{
		Use:   "status EDGE [--hub URL] [--token-file F] [--json]",
		Short: "Show one edge: what it runs, its pipelines, backlog and apply history",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			defer c.Close()
			d, err := c.Edge(cmd.Context(), args[0])
			if err != nil {
				return failed(err)
			}
			if f.asJSON {
				return printJSON(g.stdout, d)
			}
			printHubEdge(g.stdout, d, time.Now())
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func printHubEdge(w io.Writer, d server.EdgeDetail, now time.Time) {
	state := "offline"
	if d.Online {
		state = "online"
	}
	fmt.Fprintf(w, "edge %s: %s, last seen %s\n", printable(d.ID), state, ago(d.LastSeen, now))
	if len(d.Labels) > 0 {
		b, _ := json.Marshal(d.Labels)
		fmt.Fprintf(w, "labels: %s\n", printable(string(b)))
	}
	if d.Bundle != "" {
		fmt.Fprintf(w, "release: %s v%d\n", printable(d.Bundle), d.Version)
	} else {
		fmt.Fprintln(w, "release: none applied")
	}
	if d.Software != "" {
		fmt.Fprintf(w, "software: %s\n", printable(d.Software))
	}
	fmt.Fprintf(w, "backlog: %d rows\n", d.Backlog)
	for _, p := range d.Running {
		fmt.Fprintf(w, "  pipeline %s: %s\n", printable(p.Pipeline), printable(p.State))
	}
	if len(d.History) > 0 {
		fmt.Fprintln(w, "apply history (newest first):")
	}
	for _, r := range d.History {
		line := fmt.Sprintf("  %s  %s %s v%d", r.Time.Format(time.RFC3339), printable(r.Outcome), printable(r.Bundle), r.Version)
		if r.Reason != "" {
			line += ": " + printable(r.Reason)
		}
		fmt.Fprintln(w, line)
	}
}

func newHubReleaseCmd(g *globals) *cobra.Command {
	var (
		f       hubClientFlags
		to      string
		label   string
		all     bool
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "release FILE (--to EDGE | --label KEY=VALUE | --all) [--wait]",
		Short: "Release a signed bundle to an edge, the edges with a label, or all edges",
		Long: `Release sends a bundle (sluice bundle build) to the hub, which stores it,
records the release and writes the desired release of every targeted edge;
each edge fetches it, verifies it and reports the outcome.

--to names one edge, known or not yet (it gets the release when it appears);
--label and --all target the edges the hub knows now, and an edge that
matches later (it appears, or its labels change) gets the newest release
that targets it with its next heartbeat. Release prints the
state of each targeted edge (the first 100 and how many more; with --wait,
every one): pending, applied, rejected (with the reason) or offline
(pending, and the edge is offline). With --wait it waits until no edge is
pending (or --timeout passes).

Exit codes: 0 released (with --wait: every edge applied), 1 refused, failed,
rejected by an edge or timed out, 64 a bad command line.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var t server.Target
			n := 0
			if to != "" {
				t, n = server.Target{Kind: store.TargetEdge, Selector: to}, n+1
			}
			if label != "" {
				t, n = server.Target{Kind: store.TargetLabel, Selector: label}, n+1
			}
			if all {
				t, n = server.Target{Kind: store.TargetAll}, n+1
			}
			if n != 1 {
				return &exitError{code: exitUsage, err: errors.New("hub release: give exactly one of --to EDGE, --label KEY=VALUE, --all")}
			}
			if err := t.Check(); err != nil {
				return &exitError{code: exitUsage, err: fmt.Errorf("hub release: %w", err)}
			}
			file, size, err := openBundleSized(args[0])
			if err != nil {
				return &exitError{code: exitFailed, err: fmt.Errorf("hub release: %w", err)}
			}
			defer file.Close()
			c, err := f.client()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			r, err := c.Release(ctx, file, size, t)
			if err != nil {
				return failed(err)
			}
			if wait {
				deadline := time.Now().Add(timeout)
				for r.Pending() && time.Now().Before(deadline) {
					select {
					case <-ctx.Done():
						return failed(ctx.Err())
					case <-time.After(time.Second):
					}
					st, err := c.ReleaseStatus(ctx, r.ID)
					if err != nil {
						return failed(err)
					}
					// The status has no digest, size or signer: keep the
					// release's.
					st.Digest, st.Size, st.Signer = r.Digest, r.Size, r.Signer
					r = st
				}
			}
			if f.asJSON {
				if err := printJSON(g.stdout, r); err != nil {
					return err
				}
			} else {
				printRelease(g.stdout, r)
			}
			switch {
			case r.Counts[store.ReleaseRejected] > 0:
				return &exitError{code: exitFailed, err: fmt.Errorf("hub release %s: rejected by %d edge(s)", r.ID, r.Counts[store.ReleaseRejected])}
			case wait && r.Pending():
				return &exitError{code: exitFailed, err: fmt.Errorf("hub release %s: edges still pending after %s", r.ID, timeout)}
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&to, "to", "", "release to this edge id")
	cmd.Flags().StringVar(&label, "label", "", "release to the edges with this label (KEY=VALUE)")
	cmd.Flags().BoolVar(&all, "all", false, "release to every edge the hub knows")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until no targeted edge is pending or offline")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "with --wait: how long to wait")
	return cmd
}

func printRelease(w io.Writer, r server.ReleaseView) {
	fmt.Fprintf(w, "release %s: %s v%d to %s (%s)\n", r.ID, printable(r.Bundle), r.Version, printable(r.Target), r.Digest)
	if len(r.Edges) == 0 {
		fmt.Fprintln(w, "  no edge targeted")
	}
	for _, e := range r.Edges {
		line := fmt.Sprintf("  %s: %s", printable(e.Edge), printable(e.State))
		if e.Reason != "" {
			line += ": " + printable(e.Reason)
		}
		fmt.Fprintln(w, line)
	}
	if r.EdgesOmitted > 0 {
		fmt.Fprintf(w, "  … and %d more edges (hub releases %s lists them all)\n", r.EdgesOmitted, r.ID)
	}
}

func newHubReleasesCmd(g *globals) *cobra.Command {
	var (
		f     hubClientFlags
		limit int
	)
	cmd := &cobra.Command{
		Use:   "releases [ID] [--limit N] [--hub URL] [--token-file F] [--json]",
		Short: "List the releases, newest first, or show the state of each edge in one",
		Long: `Releases lists the releases, newest first, with how many of their edges are
in each state, page after page, each printed as it comes; --limit N stops
after the newest N. With a release id (r7 or 7) it prints that release's
state on each edge, as hub release does, reading the edges page after page.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 0 {
				return &exitError{code: exitUsage, err: errors.New("hub releases: --limit must not be negative")}
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			defer c.Close()
			if len(args) == 1 {
				r, err := c.ReleaseStatus(cmd.Context(), args[0])
				if err != nil {
					return failed(err)
				}
				if f.asJSON {
					return printJSON(g.stdout, r)
				}
				printRelease(g.stdout, r)
				return nil
			}
			return streamList(cmd.Context(), g.stdout, f.asJSON, limit, "RELEASE\tBUNDLE\tTARGET\tRELEASED\tAPPLIED\tREJECTED\tPENDING\tOFFLINE",
				c.ReleasesPage, func(tw io.Writer, rs []server.ReleaseView) {
					for _, r := range rs {
						fmt.Fprintf(tw, "%s\t%s v%d\t%s\t%s\t%d\t%d\t%d\t%d\n", r.ID, printable(r.Bundle), r.Version, printable(r.Target), r.At.Format(time.RFC3339),
							r.Counts[store.ReleaseApplied], r.Counts[store.ReleaseRejected], r.Counts[store.ReleasePending], r.Counts[store.ReleaseOffline])
					}
				})
		},
	}
	f.register(cmd)
	cmd.Flags().IntVar(&limit, "limit", 0, "print at most the newest this many releases (0: all)")
	return cmd
}

func newHubAlertsCmd(g *globals) *cobra.Command {
	var (
		f      hubClientFlags
		active bool
		asset  string
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "alerts [--active] [--asset A] [--limit N] [--hub URL] [--token-file F] [--json]",
		Short: "List the current state of every alert the edges raised",
		Long: `Alerts lists each alert's current state as the hub holds it (raised or
cleared, from its newest transition), by asset, alert id and edge (the
edge and the id identify an alert);
--active shows raised alerts only, --asset those of one asset. The alerts
come page after page, each printed as it comes (a listing of any length
works); --limit N stops after N of them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 0 {
				return &exitError{code: exitUsage, err: errors.New("hub alerts: --limit must not be negative")}
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			defer c.Close()
			return streamList(cmd.Context(), g.stdout, f.asJSON, limit, alertsHeader,
				func(ctx context.Context, after string, n int) ([]server.AlertView, string, error) {
					return c.AlertsPage(ctx, active, asset, after, n)
				}, alertRows)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&active, "active", false, "only raised alerts")
	cmd.Flags().StringVar(&asset, "asset", "", "only alerts of this asset")
	cmd.Flags().IntVar(&limit, "limit", 0, "print at most this many alerts (0: all)")
	return cmd
}

// alertsHeader heads the table of alerts.
const alertsHeader = "STATE\tSEVERITY\tASSET\tRULE\tEDGE\tSINCE\tVALUE\tCONTENT"

// printAlerts prints the table of alerts.
func printAlerts(w io.Writer, as []server.AlertView) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, alertsHeader)
	alertRows(tw, as)
	return tw.Flush()
}

// alertRows prints the lines of as in the table of alerts.
func alertRows(tw io.Writer, as []server.AlertView) {
	for _, a := range as {
		val := "-"
		if a.Value != nil {
			val = fmt.Sprintf("%g", *a.Value)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", printable(a.State), printable(a.Severity), printable(a.Asset), printable(a.Rule), printable(a.Edge),
			a.ChangedAt.Format(time.RFC3339), val, printable(a.Content))
	}
}
