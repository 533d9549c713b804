package store

import (
	"context"
	"fmt"
	"time"
)

// AlertKey is the place of an alert in the order of Alerts: by asset, id
// and edge.
type AlertKey struct {
	Asset, ID, Edge string
}

// Key is the place of a in the order of Alerts.
func (a Alert) Key() AlertKey { return AlertKey{Asset: a.Asset, ID: a.ID, Edge: a.Edge} }

// AlertsAfter calls f with the current alerts in the order of Alerts,
// from the first one after after (from the first one when after is nil),
// at most limit of them (all when limit is 0), until f returns false.
// activeOnly and asset filter as in Alerts. The rows are read as f takes
// them: a caller that stops early never holds the rest.
//
// A listing read page after page, each page after the last key of the
// one before, sees every alert that exists throughout once, in order,
// whatever is inserted between the pages.
func (s *Store) AlertsAfter(ctx context.Context, activeOnly bool, asset string, after *AlertKey, limit int, f func(Alert) bool) error {
	// The filters are spelled out rather than made optional in SQL, so
	// that the planner uses the (asset, state) and state indexes; the sort
	// keeps only the limit's rows (top-N). An index of (asset, id, edge)
	// would save the sort but would make an alert whose asset and id are
	// long (more than 2,704 bytes together, the most a btree entry holds)
	// impossible to store.
	q := `
SELECT id, edge, asset, rule, severity, type, content, value, occur_time, recover_time, state,
  rule_set_version, changed_at, updated_at
FROM alerts_current WHERE true`
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if activeOnly {
		q += ` AND state = 'raised'`
	}
	if asset != "" {
		q += ` AND asset = ` + arg(asset)
	}
	if after != nil {
		// asset >= spelled out bounds the index scan.
		q += fmt.Sprintf(` AND asset >= %s AND (asset, id, edge) > (%s, %s, %s)`, arg(after.Asset), arg(after.Asset), arg(after.ID), arg(after.Edge))
	}
	q += ` ORDER BY asset, id, edge`
	if limit > 0 {
		q += ` LIMIT ` + arg(limit)
	}
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("hub store: alerts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			a     Alert
			recov *time.Time
		)
		if err := rows.Scan(&a.ID, &a.Edge, &a.Asset, &a.Rule, &a.Severity, &a.Type, &a.Content, &a.Value,
			&a.Occur, &recov, &a.State, &a.RuleSetVersion, &a.ChangedAt, &a.UpdatedAt); err != nil {
			return fmt.Errorf("hub store: alerts: %w", err)
		}
		if recov != nil {
			a.Recover = *recov
		}
		if !f(a) {
			return nil
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("hub store: alerts: %w", err)
	}
	return nil
}

// EdgesAfter calls f with the edges by id, from the first one after the
// id after (from the first edge when after is empty), at most limit of
// them (all when limit is 0), until f returns false. The primary key
// gives the order.
func (s *Store) EdgesAfter(ctx context.Context, after string, limit int, f func(Edge) bool) error {
	q := `SELECT ` + edgeColumns + ` FROM edges WHERE id > $1 ORDER BY id`
	args := []any{after}
	if limit > 0 {
		q += ` LIMIT $2`
		args = append(args, limit)
	}
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("hub store: edges: %w", err)
	}
	defer rows.Close()
	now := s.opts.Now()
	for rows.Next() {
		e, err := s.scanEdge(rows, now)
		if err != nil {
			return fmt.Errorf("hub store: edges: %w", err)
		}
		if !f(e) {
			return nil
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("hub store: edges: %w", err)
	}
	return nil
}

// ReleasesBefore lists the releases with an id less than before (every
// one when before is 0 or less), newest first, at most limit. The primary
// key gives the order.
func (s *Store) ReleasesBefore(ctx context.Context, before int64, limit int) ([]ReleaseInfo, error) {
	if before <= 0 {
		before = 1<<63 - 1
	}
	return s.queryReleases(ctx, `
SELECT id, bundle, version, target_kind, target, released_by, released_at FROM releases
WHERE id < $1 ORDER BY id DESC LIMIT $2`, before, limit)
}

// queryReleases runs query, which selects the columns of ReleaseInfo in
// order, and returns its rows.
func (s *Store) queryReleases(ctx context.Context, query string, args ...any) ([]ReleaseInfo, error) {
	rows, err := s.db.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("hub store: releases: %w", err)
	}
	defer rows.Close()
	var out []ReleaseInfo
	for rows.Next() {
		var (
			ri      ReleaseInfo
			version int64
		)
		if err := rows.Scan(&ri.ID, &ri.Bundle, &version, &ri.Target, &ri.Selector, &ri.By, &ri.At); err != nil {
			return nil, fmt.Errorf("hub store: releases: %w", err)
		}
		ri.Version = uint64(version)
		out = append(out, ri)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("hub store: releases: %w", err)
	}
	return out, nil
}

// ReleaseSummary is what a listing shows of one release's edges: how many
// are in each state (offline derived as in ReleaseStatus) and the first
// of them by edge.
type ReleaseSummary struct {
	Counts map[string]int
	Edges  []ReleaseEdge
}

// ReleaseSummaries returns the summary of each release of ids with at
// most maxEdges edges each; a release without edges has none.
func (s *Store) ReleaseSummaries(ctx context.Context, ids []int64, maxEdges int) (map[int64]ReleaseSummary, error) {
	out := make(map[int64]ReleaseSummary, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	get := func(id int64) ReleaseSummary {
		sum, ok := out[id]
		if !ok {
			sum = ReleaseSummary{Counts: map[string]int{}}
			out[id] = sum
		}
		return sum
	}
	offlineBefore := s.opts.Now().Add(-s.opts.OfflineAfter)
	rows, err := s.db.Query(ctx, `
SELECT re.release_id, `+releaseEdgeState+`, count(*)
FROM release_edges re LEFT JOIN edges e ON e.id = re.edge
WHERE re.release_id = ANY($1) GROUP BY 1, 2`, ids, offlineBefore)
	if err != nil {
		return nil, fmt.Errorf("hub store: release summaries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id int64
			st string
			n  int
		)
		if err := rows.Scan(&id, &st, &n); err != nil {
			return nil, fmt.Errorf("hub store: release summaries: %w", err)
		}
		get(id).Counts[st] += n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("hub store: release summaries: %w", err)
	}
	rows.Close()
	// The first edges of each release, read from the primary key
	// (release_id, edge) release by release.
	rows, err = s.db.Query(ctx, `
SELECT ids.id, f.edge, f.state, f.reason, f.at
FROM unnest($1::bigint[]) AS ids(id)
CROSS JOIN LATERAL (
  SELECT re.edge, `+releaseEdgeState+` AS state, re.reason, re.at
  FROM release_edges re LEFT JOIN edges e ON e.id = re.edge
  WHERE re.release_id = ids.id ORDER BY re.edge LIMIT $3) f
ORDER BY ids.id, f.edge`, ids, offlineBefore, maxEdges)
	if err != nil {
		return nil, fmt.Errorf("hub store: release summaries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id int64
			re ReleaseEdge
		)
		if err := rows.Scan(&id, &re.Edge, &re.State, &re.Reason, &re.At); err != nil {
			return nil, fmt.Errorf("hub store: release summaries: %w", err)
		}
		sum := get(id)
		sum.Edges = append(sum.Edges, re)
		out[id] = sum
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("hub store: release summaries: %w", err)
	}
	return out, nil
}
