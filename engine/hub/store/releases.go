package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Bundle is a bundle the hub holds.
type Bundle struct {
	Name    string
	Version uint64
	// Digest is the bundle file's digest ("sha256:…").
	Digest  string
	Size    int64
	Created time.Time
	// Signer is the key id of the key that signed it.
	Signer string
}

// Release targets.
const (
	TargetEdge  = "edge"
	TargetLabel = "label"
	TargetAll   = "all"
)

// Release states of one edge.
const (
	ReleasePending  = "pending"
	ReleaseApplied  = Applied
	ReleaseRejected = Rejected
	ReleaseOffline  = "offline"
)

// Release is a bundle version released to edges.
type Release struct {
	Bundle  string
	Version uint64
	// Target is TargetEdge (Selector is the edge id), TargetLabel
	// (Selector is "key=value") or TargetAll.
	Target   string
	Selector string
	By       string
	At       time.Time
}

// ErrConflict is wrapped by PutBundle's refusal of a name and version
// stored with another digest.
var ErrConflict = errors.New("conflict")

// PutBundle records b. Storing the same name and version again is a no-op
// when the digest matches and an error when it does not.
func (s *Store) PutBundle(ctx context.Context, b Bundle) error {
	if err := s.checkTexts("bundle", b.Name, "digest", b.Digest, "signer", b.Signer); err != nil {
		return fmt.Errorf("hub store: bundle: %w", err)
	}
	if b.Version > 1<<63-1 {
		return fmt.Errorf("hub store: bundle %s: version %d out of range", b.Name, b.Version)
	}
	var digest string
	err := s.db.QueryRow(ctx, `
INSERT INTO bundles (name, version, digest, size, created, signer) VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (name, version) DO UPDATE SET name = EXCLUDED.name
RETURNING digest`, b.Name, int64(b.Version), b.Digest, b.Size, b.Created, b.Signer).Scan(&digest)
	if err != nil {
		return fmt.Errorf("hub store: bundle %s v%d: %w", b.Name, b.Version, err)
	}
	if digest != b.Digest {
		return fmt.Errorf("hub store: bundle %s v%d: %w: already stored with digest %s, not %s", b.Name, b.Version, ErrConflict, digest, b.Digest)
	}
	return nil
}

// CreateRelease records r and one pending entry per edge it targets among
// the edges known now (applied at once for an edge that already runs the
// bundle version). It returns the release id and those edges.
func (s *Store) CreateRelease(ctx context.Context, r Release) (int64, []string, error) {
	if err := s.checkTexts("bundle", r.Bundle, "selector", r.Selector, "by", r.By); err != nil {
		return 0, nil, fmt.Errorf("hub store: release: %w", err)
	}
	var (
		where string
		args  = []any{}
	)
	switch r.Target {
	case TargetEdge:
		where, args = "id = $1", append(args, r.Selector)
	case TargetLabel:
		k, v, ok := strings.Cut(r.Selector, "=")
		if !ok || k == "" {
			return 0, nil, fmt.Errorf("hub store: release: label selector %q, want key=value", r.Selector)
		}
		where, args = "labels ->> $1 = $2", append(args, k, v)
	case TargetAll:
		where = "true"
	default:
		return 0, nil, fmt.Errorf("hub store: release: target %q, want edge, label or all", r.Target)
	}
	var (
		id    int64
		edges []string
	)
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
INSERT INTO releases (bundle, version, target_kind, target, released_by, released_at)
VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
			r.Bundle, int64(r.Version), r.Target, r.Selector, r.By, r.At).Scan(&id)
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT id FROM edges WHERE `+where+` ORDER BY id`, args...)
		if err != nil {
			return err
		}
		edges, err = pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		// An edge that already runs the bundle version skips the record
		// and never reports it: its entry starts applied.
		_, err = tx.Exec(ctx, `
INSERT INTO release_edges (release_id, edge, state, at)
SELECT $1, e.id, CASE WHEN e.bundle = $4 AND e.version = $5 THEN 'applied' ELSE 'pending' END, $3
FROM edges e WHERE e.id = ANY($2::text[])`, id, edges, r.At, r.Bundle, int64(r.Version))
		return err
	})
	if err != nil {
		return 0, nil, fmt.Errorf("hub store: release %s v%d: %w", r.Bundle, r.Version, err)
	}
	return id, edges, nil
}

// ErrNoEntry is returned by SetReleaseEdgeState for an edge a release does
// not target.
var ErrNoEntry = errors.New("no such release entry")

// SetReleaseEdgeState sets the state of edge in release id. An older
// change (at before the stored one) is ignored, so redelivery is a no-op.
func (s *Store) SetReleaseEdgeState(ctx context.Context, id int64, edge, state, reason string, at time.Time) error {
	switch state {
	case ReleasePending, ReleaseApplied, ReleaseRejected, ReleaseOffline:
	default:
		return fmt.Errorf("hub store: release %d: state %q, want pending, applied, rejected or offline", id, state)
	}
	if err := s.checkTexts("edge", edge, "reason", reason); err != nil {
		return fmt.Errorf("hub store: release %d: %w", id, err)
	}
	var exists bool
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `
UPDATE release_edges SET state = $3, reason = $4, at = $5
WHERE release_id = $1 AND edge = $2 AND at <= $5`, id, edge, state, reason, at); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM release_edges WHERE release_id = $1 AND edge = $2)`, id, edge).Scan(&exists)
	})
	if err != nil {
		return fmt.Errorf("hub store: release %d, edge %s: %w", id, edge, err)
	}
	if !exists {
		return fmt.Errorf("hub store: release %d, edge %s: %w", id, edge, ErrNoEntry)
	}
	return nil
}

// ReleaseEdge is the state of one edge in a release.
type ReleaseEdge struct {
	Edge, State, Reason string
	At                  time.Time
}

// ReleaseEdges lists the edges of release id with their states, by edge.
func (s *Store) ReleaseEdges(ctx context.Context, id int64) ([]ReleaseEdge, error) {
	rows, err := s.db.Query(ctx, `SELECT edge, state, reason, at FROM release_edges WHERE release_id = $1 ORDER BY edge`, id)
	if err != nil {
		return nil, fmt.Errorf("hub store: release %d: %w", id, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[ReleaseEdge])
	if err != nil {
		return nil, fmt.Errorf("hub store: release %d: %w", id, err)
	}
	return out, nil
}

// ReleaseInfo is a stored release and its id.
type ReleaseInfo struct {
	ID int64
	Release
}

// GetRelease returns release id; ErrNotFound when there is none.
func (s *Store) GetRelease(ctx context.Context, id int64) (ReleaseInfo, error) {
	ris, err := s.queryReleases(ctx, `
SELECT id, bundle, version, target_kind, target, released_by, released_at FROM releases WHERE id = $1`, id)
	if err != nil {
		return ReleaseInfo{}, err
	}
	if len(ris) == 0 {
		return ReleaseInfo{}, fmt.Errorf("hub store: release %d: %w", id, ErrNotFound)
	}
	return ris[0], nil
}

// releaseEdgeState is the state of release entry re of edge e, with the
// offline state derived: a pending entry of an edge whose last heartbeat
// is older than $2 (or that was never seen) reads offline.
const releaseEdgeState = `CASE WHEN re.state = 'pending' AND (e.last_seen IS NULL OR e.last_seen < $2) THEN 'offline' ELSE re.state END`

// ReleaseStatus lists the edges of release id like ReleaseEdges, with the
// offline state derived: a pending entry of an edge that is offline now
// (no heartbeat within OfflineAfter, or never seen) reads offline.
func (s *Store) ReleaseStatus(ctx context.Context, id int64) ([]ReleaseEdge, error) {
	rows, err := s.db.Query(ctx, `
SELECT re.edge, `+releaseEdgeState+`, re.reason, re.at
FROM release_edges re LEFT JOIN edges e ON e.id = re.edge
WHERE re.release_id = $1 ORDER BY re.edge`, id, s.opts.Now().Add(-s.opts.OfflineAfter))
	if err != nil {
		return nil, fmt.Errorf("hub store: release %d: %w", id, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[ReleaseEdge])
	if err != nil {
		return nil, fmt.Errorf("hub store: release %d: %w", id, err)
	}
	return out, nil
}

// ReleaseStatusAfter lists at most limit edges of release id after the
// edge after ("" from the first), by edge, with the offline state derived
// as ReleaseStatus does: a page of a release's edges.
func (s *Store) ReleaseStatusAfter(ctx context.Context, id int64, after string, limit int) ([]ReleaseEdge, error) {
	rows, err := s.db.Query(ctx, `
SELECT re.edge, `+releaseEdgeState+`, re.reason, re.at
FROM release_edges re LEFT JOIN edges e ON e.id = re.edge
WHERE re.release_id = $1 AND re.edge > $3 ORDER BY re.edge LIMIT $4`, id, s.opts.Now().Add(-s.opts.OfflineAfter), after, limit)
	if err != nil {
		return nil, fmt.Errorf("hub store: release %d: %w", id, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[ReleaseEdge])
	if err != nil {
		return nil, fmt.Errorf("hub store: release %d: %w", id, err)
	}
	return out, nil
}

// Releases lists the newest releases, newest first, at most limit.
func (s *Store) Releases(ctx context.Context, limit int) ([]ReleaseInfo, error) {
	return s.queryReleases(ctx, `
SELECT id, bundle, version, target_kind, target, released_by, released_at FROM releases ORDER BY id DESC LIMIT $1`, limit)
}

// Supersede marks the pending entries of edge in releases older than id
// rejected, superseded by release reason: the edge's desired record now
// names release id, so it will not apply them. An apply report of one of
// them made after at still sets its state.
func (s *Store) Supersede(ctx context.Context, edge string, id int64, reason string, at time.Time) error {
	if err := s.checkTexts("edge", edge, "reason", reason); err != nil {
		return fmt.Errorf("hub store: supersede: %w", err)
	}
	if _, err := s.db.Exec(ctx, `
UPDATE release_edges SET state = 'rejected', reason = $3, at = greatest(at, $4)
WHERE edge = $1 AND release_id < $2 AND state = 'pending'`, edge, id, reason, at); err != nil {
		return fmt.Errorf("hub store: supersede releases of %s before %d: %w", edge, id, err)
	}
	return nil
}

// BundleByDigest returns the bundle stored with digest; ErrNotFound when
// there is none.
func (s *Store) BundleByDigest(ctx context.Context, digest string) (Bundle, error) {
	b := Bundle{Digest: digest}
	var version int64
	err := s.db.QueryRow(ctx, `
SELECT name, version, size, created, signer FROM bundles WHERE digest = $1 ORDER BY created LIMIT 1`, digest).Scan(
		&b.Name, &version, &b.Size, &b.Created, &b.Signer)
	if errors.Is(err, pgx.ErrNoRows) {
		return Bundle{}, fmt.Errorf("hub store: bundle %.80s: %w", digest, ErrNotFound)
	}
	if err != nil {
		return Bundle{}, fmt.Errorf("hub store: bundle %.80s: %w", digest, err)
	}
	b.Version = uint64(version)
	return b, nil
}

// Due is the release an edge should run but was never given: the newest
// release whose target matches the edge now (its id, a label it has, or
// all) and that has no entry for it.
type Due struct {
	ID       int64
	Bundle   string
	Version  uint64
	Digest   string
	Size     int64
	Released time.Time
	// Running is set when the edge already runs the bundle version.
	Running bool
}

// matchesEdge is true when release r targets edge e by its current id or
// labels. A label selector is "key=value", cut at the first "=".
const matchesEdge = `(r.target_kind = 'all' OR r.target_kind = 'edge' AND r.target = e.id OR
  r.target_kind = 'label' AND e.labels ->> split_part(r.target, '=', 1) = substr(r.target, strpos(r.target, '=') + 1))`

// DueRelease returns the release edge should have but has no entry in:
// the newest release that targets it now, when that one does not list it
// (the edge first appeared, or its labels changed, after the release was
// made). ok is false when there is none: the edge is in the newest
// release that targets it, or none does.
func (s *Store) DueRelease(ctx context.Context, edge string) (d Due, ok bool, err error) {
	var version int64
	err = s.db.QueryRow(ctx, `
SELECT r.id, r.bundle, r.version, b.digest, b.size, r.released_at, coalesce(e.bundle = r.bundle AND e.version = r.version, false)
FROM edges e
CROSS JOIN LATERAL (SELECT r.* FROM releases r WHERE `+matchesEdge+` ORDER BY r.id DESC LIMIT 1) r
JOIN bundles b ON b.name = r.bundle AND b.version = r.version
WHERE e.id = $1 AND NOT EXISTS (SELECT 1 FROM release_edges re WHERE re.release_id = r.id AND re.edge = e.id)`, edge).Scan(
		&d.ID, &d.Bundle, &version, &d.Digest, &d.Size, &d.Released, &d.Running)
	if errors.Is(err, pgx.ErrNoRows) {
		return Due{}, false, nil
	}
	if err != nil {
		return Due{}, false, fmt.Errorf("hub store: release due to %s: %w", edge, err)
	}
	d.Version = uint64(version)
	return d, true, nil
}

// JoinRelease adds edge to release id in state (pending, applied or
// rejected) with reason; an entry there already is kept as it is.
func (s *Store) JoinRelease(ctx context.Context, id int64, edge, state, reason string, at time.Time) error {
	switch state {
	case ReleasePending, ReleaseApplied, ReleaseRejected:
	default:
		return fmt.Errorf("hub store: release %d: state %q, want pending, applied or rejected", id, state)
	}
	if err := s.checkTexts("edge", edge, "reason", reason); err != nil {
		return fmt.Errorf("hub store: release %d: %w", id, err)
	}
	if _, err := s.db.Exec(ctx, `
INSERT INTO release_edges (release_id, edge, state, reason, at) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (release_id, edge) DO NOTHING`, id, edge, state, reason, at); err != nil {
		return fmt.Errorf("hub store: release %d, edge %s: %w", id, edge, err)
	}
	return nil
}
