package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Apply outcomes, as the edge agent records them.
const (
	Applied  = "applied"
	Rejected = "rejected"
)

// Report is the outcome of one apply on an edge. Its JSON form is the one
// the edge agent writes.
type Report struct {
	Time    time.Time `json:"time"`
	Bundle  string    `json:"bundle"`
	Version uint64    `json:"version"`
	Outcome string    `json:"outcome"`
	// Reason says why a bundle was rejected.
	Reason string `json:"reason,omitempty"`
	// Location is where the reason lies.
	Location string `json:"location,omitempty"`
	// Steps is what the switch did, one line per pipeline.
	Steps string `json:"steps,omitempty"`
}

// Pipeline is one pipeline an edge runs and its state, as its heartbeat
// says.
type Pipeline struct {
	Pipeline string `json:"pipeline"`
	State    string `json:"state"`
}

// Edge is what the hub knows of one edge.
type Edge struct {
	ID     string
	Labels map[string]string
	// FirstSeen and LastSeen bound the edge's heartbeats (and reports);
	// both are zero for an edge a release registered before it was heard
	// of.
	FirstSeen time.Time
	LastSeen  time.Time
	// Bundle and Version are the release the edge runs, from its newest
	// applied report; empty and 0 before the first.
	Bundle  string
	Version uint64
	// LastReport is the newest apply report, nil before the first.
	LastReport *Report
	// Online is true when the last heartbeat is within OfflineAfter.
	Online bool
	// Running, Backlog and Software are what the newest heartbeat said:
	// the pipelines and their states, the rows waiting in the edge's
	// cloud buffers, the engine's version.
	Running  []Pipeline
	Backlog  int64
	Software string
	// HeartbeatAt is the time of the newest heartbeat (zero before the
	// first).
	HeartbeatAt time.Time
}

// EdgeStatus is one edge and its apply history, newest first.
type EdgeStatus struct {
	Edge
	History []Report
}

// checkText rejects text PostgreSQL cannot store (NUL, invalid UTF-8) or
// longer than max bytes, with an error matching ErrInvalid.
func checkText(field, v string, max int) error {
	switch {
	case len(v) > max:
		return invalidError{fmt.Errorf("%s: %d bytes, more than %d", field, len(v), max)}
	case strings.IndexByte(v, 0) >= 0:
		return invalidError{fmt.Errorf("%s: contains a NUL byte", field)}
	case !utf8.ValidString(v):
		return invalidError{fmt.Errorf("%s: not valid UTF-8", field)}
	}
	return nil
}

// checkTimes rejects times outside the years 1 to 9999, with an error
// matching ErrInvalid: PostgreSQL holds them, but JSON does not (Go's
// encoding of a time), so a listing that reached one would fail for
// every edge, and the hub's own JSON records of it could not be written.
func checkTimes(kv ...any) error {
	for i := 0; i+1 < len(kv); i += 2 {
		if t, _ := kv[i+1].(time.Time); t.Year() < 1 || t.Year() > 9999 {
			return invalidError{fmt.Errorf("%s: %s is outside the years 1 to 9999", kv[i], t.Format(time.RFC3339))}
		}
	}
	return nil
}

func (s *Store) checkTexts(kv ...string) error {
	for i := 0; i+1 < len(kv); i += 2 {
		if err := checkText(kv[i], kv[i+1], s.opts.MaxTextBytes); err != nil {
			return err
		}
	}
	return nil
}

// Heartbeat records that edge was alive at at with labels. The newest
// heartbeat sets the labels; an older one (redelivered, backfilled) only
// widens first_seen.
func (s *Store) Heartbeat(ctx context.Context, edge string, labels map[string]string, at time.Time) error {
	return s.heartbeat(ctx, s.db, edge, labels, at)
}

// execer runs a statement: the pool or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func (s *Store) heartbeat(ctx context.Context, q execer, edge string, labels map[string]string, at time.Time) error {
	if err := s.checkTexts("edge", edge); err != nil {
		return fmt.Errorf("hub store: heartbeat: %w", err)
	}
	if err := checkTimes("time", at); err != nil {
		return fmt.Errorf("hub store: heartbeat of %s: %w", edge, err)
	}
	if edge == "" {
		return invalidError{errors.New("hub store: heartbeat: empty edge id")}
	}
	for k, v := range labels {
		if err := s.checkTexts("label name", k, "label "+k, v); err != nil {
			return fmt.Errorf("hub store: heartbeat of %s: %w", edge, err)
		}
	}
	if labels == nil {
		labels = map[string]string{}
	}
	lj, err := json.Marshal(labels)
	if err != nil {
		return fmt.Errorf("hub store: heartbeat of %s: %w", edge, err)
	}
	_, err = q.Exec(ctx, `
INSERT INTO edges (id, labels, first_seen, last_seen) VALUES ($1, $2, $3, $3)
ON CONFLICT (id) DO UPDATE SET
  labels = CASE WHEN edges.last_seen IS NULL OR EXCLUDED.last_seen >= edges.last_seen THEN EXCLUDED.labels ELSE edges.labels END,
  first_seen = least(edges.first_seen, EXCLUDED.first_seen),
  last_seen = greatest(edges.last_seen, EXCLUDED.last_seen)`, edge, lj, s.clamp(at))
	if err != nil {
		return fmt.Errorf("hub store: heartbeat of %s: %w", edge, err)
	}
	return nil
}

// clamp keeps at from lying ahead of the hub's clock: an edge whose clock
// runs ahead must not look online for longer than it is.
func (s *Store) clamp(at time.Time) time.Time {
	if now := s.opts.Now(); at.After(now) {
		return now
	}
	return at
}

// HeartbeatInfo is one heartbeat of an edge: who it is and what it runs.
type HeartbeatInfo struct {
	// At is when the edge sent it; a time ahead of the hub's clock counts
	// as the hub's now.
	At     time.Time         `json:"time"`
	Labels map[string]string `json:"labels"`
	// Bundle and Version are the release the edge runs.
	Bundle   string     `json:"bundle"`
	Version  uint64     `json:"version"`
	Running  []Pipeline `json:"running"`
	Backlog  int64      `json:"backlog"`
	Software string     `json:"software"`
}

// RecordHeartbeat records a heartbeat of edge, like Heartbeat, and what it
// says the edge runs: the newest heartbeat (by its time) sets the running
// pipelines, backlog, software and the stored heartbeat, and the release
// the edge runs when it names one and no applied report is newer; an older
// heartbeat only widens first_seen.
func (s *Store) RecordHeartbeat(ctx context.Context, edge string, hb HeartbeatInfo) error {
	if err := s.checkTexts("edge", edge, "bundle", hb.Bundle, "software", hb.Software); err != nil {
		return fmt.Errorf("hub store: heartbeat: %w", err)
	}
	if err := checkTimes("time", hb.At); err != nil {
		return fmt.Errorf("hub store: heartbeat of %s: %w", edge, err)
	}
	for _, p := range hb.Running {
		if err := s.checkTexts("pipeline", p.Pipeline, "state", p.State); err != nil {
			return fmt.Errorf("hub store: heartbeat of %s: %w", edge, err)
		}
	}
	if hb.Version > 1<<63-1 {
		return invalidError{fmt.Errorf("hub store: heartbeat of %s: version %d out of range", edge, hb.Version)}
	}
	if hb.Running == nil {
		hb.Running = []Pipeline{}
	}
	hb.At = s.clamp(hb.At)
	rj, err := json.Marshal(hb.Running)
	if err != nil {
		return fmt.Errorf("hub store: heartbeat of %s: %w", edge, err)
	}
	whole, err := json.Marshal(hb)
	if err != nil {
		return invalidError{fmt.Errorf("hub store: heartbeat of %s: %w", edge, err)}
	}
	// What the edge runs comes from its newest applied report; a newer
	// heartbeat naming a release says it too (an apply whose report
	// never reached the hub, a release applied before the hub existed).
	// One transaction: a reader never sees the heartbeat's time without
	// what it says.
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if err := s.heartbeat(ctx, tx, edge, hb.Labels, hb.At); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
UPDATE edges SET running = $2, backlog = $3, software = $4, heartbeat = $5, heartbeat_at = $6,
  bundle = CASE WHEN $7 <> '' AND NOT EXISTS (
    SELECT 1 FROM apply_reports a WHERE a.edge = $1 AND a.outcome = 'applied' AND a.ordered_at > $6) THEN $7 ELSE bundle END,
  version = CASE WHEN $7 <> '' AND NOT EXISTS (
    SELECT 1 FROM apply_reports a WHERE a.edge = $1 AND a.outcome = 'applied' AND a.ordered_at > $6) THEN $8 ELSE version END
WHERE id = $1 AND (heartbeat_at IS NULL OR heartbeat_at <= $6)`, edge, rj, hb.Backlog, hb.Software, whole, hb.At, hb.Bundle, int64(hb.Version)); err != nil {
			return fmt.Errorf("hub store: heartbeat of %s: %w", edge, err)
		}
		return nil
	})
}

// RegisterEdge records that edge exists before the hub heard of it (a
// release names it), so that releases and listings include it. It is
// neither seen nor online until its first heartbeat. Registering a known
// edge changes nothing.
func (s *Store) RegisterEdge(ctx context.Context, edge string) error {
	if err := s.checkTexts("edge", edge); err != nil {
		return fmt.Errorf("hub store: register edge: %w", err)
	}
	if edge == "" {
		return invalidError{errors.New("hub store: register edge: empty edge id")}
	}
	if _, err := s.db.Exec(ctx, `INSERT INTO edges (id, registered_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING`,
		edge, s.opts.Now()); err != nil {
		return fmt.Errorf("hub store: register edge %s: %w", edge, err)
	}
	return nil
}

// RecordReport stores an apply report of edge. A report already stored
// (same edge, time, bundle, version and outcome) is a no-op. The newest
// report becomes the edge's last report; the newest applied one sets what
// it runs; the edge's entries of releases of that bundle version take the
// outcome.
func (s *Store) RecordReport(ctx context.Context, edge string, r Report) error {
	if err := s.checkTexts("edge", edge, "bundle", r.Bundle, "outcome", r.Outcome,
		"reason", r.Reason, "location", r.Location, "steps", r.Steps); err != nil {
		return fmt.Errorf("hub store: report: %w", err)
	}
	if err := checkTimes("time", r.Time); err != nil {
		return fmt.Errorf("hub store: report of %s: %w", edge, err)
	}
	if edge == "" {
		return invalidError{errors.New("hub store: report: empty edge id")}
	}
	if r.Outcome != Applied && r.Outcome != Rejected {
		return invalidError{fmt.Errorf("hub store: report of %s: outcome %q, want applied or rejected", edge, r.Outcome)}
	}
	if r.Version > 1<<63-1 {
		return invalidError{fmt.Errorf("hub store: report of %s: version %d out of range", edge, r.Version)}
	}
	rj, err := json.Marshal(r)
	if err != nil {
		return invalidError{fmt.Errorf("hub store: report of %s: %w", edge, err)}
	}
	// Reports are ordered by their time, or by the hub's clock when their
	// time lies ahead of it (a report stamped a year ahead must not win
	// over every later one); the report keeps its own time.
	at := s.clamp(r.Time)
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		// A report also shows the edge exists; it does not move last_seen,
		// which only heartbeats do. Locking the edge's row serializes
		// reports of one edge, so the statements below see every report
		// committed before.
		if _, err := tx.Exec(ctx, `
INSERT INTO edges (id, first_seen, last_seen) VALUES ($1, $2, $2) ON CONFLICT (id) DO NOTHING`, edge, at); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT 1 FROM edges WHERE id = $1 FOR UPDATE`, edge); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `
INSERT INTO apply_reports (edge, time, bundle, version, outcome, reason, location, steps, ordered_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`,
			edge, r.Time, r.Bundle, int64(r.Version), r.Outcome, r.Reason, r.Location, r.Steps, at)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return nil // redelivered
		}
		if _, err := tx.Exec(ctx, `
UPDATE edges SET last_report = $2, last_report_at = $3
WHERE id = $1 AND (last_report_at IS NULL OR last_report_at <= $3)`, edge, rj, at); err != nil {
			return err
		}
		if r.Outcome == Applied {
			if _, err := tx.Exec(ctx, `
UPDATE edges SET bundle = $2, version = $3
WHERE id = $1 AND NOT EXISTS (
  SELECT 1 FROM apply_reports a
  WHERE a.edge = $1 AND a.outcome = 'applied' AND a.ordered_at > $4)`, edge, r.Bundle, int64(r.Version), at); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `
UPDATE release_edges re SET state = $4, reason = $5, at = $6
FROM releases rl
WHERE re.release_id = rl.id AND re.edge = $1 AND rl.bundle = $2 AND rl.version = $3
  AND (re.state IN ('pending', 'offline') OR re.at <= $6)`,
			edge, r.Bundle, int64(r.Version), r.Outcome, r.Reason, at)
		return err
	})
	if err != nil {
		return fmt.Errorf("hub store: report of %s: %w", edge, err)
	}
	return nil
}

const edgeColumns = `id, labels, first_seen, last_seen, bundle, version, last_report, running, backlog, software, heartbeat_at`

func (s *Store) scanEdge(row pgx.Row, now time.Time) (Edge, error) {
	var (
		e                 Edge
		labels, running   []byte
		report            []byte
		version           int64
		first, last, hbAt *time.Time
	)
	if err := row.Scan(&e.ID, &labels, &first, &last, &e.Bundle, &version, &report, &running, &e.Backlog, &e.Software, &hbAt); err != nil {
		return Edge{}, err
	}
	if first != nil {
		e.FirstSeen = *first
	}
	if last != nil {
		e.LastSeen = *last
	}
	if hbAt != nil {
		e.HeartbeatAt = *hbAt
	}
	if err := json.Unmarshal(running, &e.Running); err != nil {
		return Edge{}, fmt.Errorf("running pipelines of %s: %w", e.ID, err)
	}
	e.Version = uint64(version)
	if err := json.Unmarshal(labels, &e.Labels); err != nil {
		return Edge{}, fmt.Errorf("labels of %s: %w", e.ID, err)
	}
	if report != nil {
		e.LastReport = new(Report)
		if err := json.Unmarshal(report, e.LastReport); err != nil {
			return Edge{}, fmt.Errorf("last report of %s: %w", e.ID, err)
		}
	}
	e.Online = last != nil && now.Sub(e.LastSeen) <= s.opts.OfflineAfter
	return e, nil
}

// Edges lists every edge, by id.
func (s *Store) Edges(ctx context.Context) ([]Edge, error) {
	rows, err := s.db.Query(ctx, `SELECT `+edgeColumns+` FROM edges ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("hub store: edges: %w", err)
	}
	defer rows.Close()
	now := s.opts.Now()
	var out []Edge
	for rows.Next() {
		e, err := s.scanEdge(rows, now)
		if err != nil {
			return nil, fmt.Errorf("hub store: edges: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("hub store: edges: %w", err)
	}
	return out, nil
}

// EdgeStatus returns edge with its newest apply reports (at most
// Options.History); ErrNotFound when the hub never heard of it.
func (s *Store) EdgeStatus(ctx context.Context, edge string) (EdgeStatus, error) {
	e, err := s.scanEdge(s.db.QueryRow(ctx, `SELECT `+edgeColumns+` FROM edges WHERE id = $1`, edge), s.opts.Now())
	if errors.Is(err, pgx.ErrNoRows) {
		return EdgeStatus{}, fmt.Errorf("hub store: edge %q: %w", edge, ErrNotFound)
	}
	if err != nil {
		return EdgeStatus{}, fmt.Errorf("hub store: edge %q: %w", edge, err)
	}
	rows, err := s.db.Query(ctx, `
SELECT time, bundle, version, outcome, reason, location, steps FROM apply_reports
WHERE edge = $1 ORDER BY ordered_at DESC, time DESC, bundle, version, outcome LIMIT $2`, edge, s.opts.History)
	if err != nil {
		return EdgeStatus{}, fmt.Errorf("hub store: history of %q: %w", edge, err)
	}
	defer rows.Close()
	st := EdgeStatus{Edge: e}
	for rows.Next() {
		var (
			r Report
			v int64
		)
		if err := rows.Scan(&r.Time, &r.Bundle, &v, &r.Outcome, &r.Reason, &r.Location, &r.Steps); err != nil {
			return EdgeStatus{}, fmt.Errorf("hub store: history of %q: %w", edge, err)
		}
		r.Version = uint64(v)
		st.History = append(st.History, r)
	}
	if err := rows.Err(); err != nil {
		return EdgeStatus{}, fmt.Errorf("hub store: history of %q: %w", edge, err)
	}
	return st, nil
}
