package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// CommandIssued is the status of a command the hub issued and its edge
// has not reported yet.
const CommandIssued = "issued"

// Command is one command record: issued by the hub, or reported by an
// edge's arbiter (any origin). Of two copies the higher Version is newer;
// a command the hub issued has Version 0 until its edge reports it.
type Command struct {
	Edge, ID        string
	Product, Asset  string
	Service         string
	Inputs          map[string]any
	Origin, Class   string
	Status, Reason  string
	Expiry          time.Time // zero: none
	Created         time.Time
	Updated         time.Time
	Version         uint64
	IssuedBy        string
	Record          json.RawMessage // the edge's whole record; nil before it reports
	Audit           json.RawMessage // the record's last audit entries (JSON array); nil before the edge reports
	inputsJSON      []byte
	expiryForInsert *time.Time
}

// CommandKey is the place of a command in the order of CommandsAfter:
// newest first by creation, then by edge and id, descending.
type CommandKey struct {
	Created  time.Time
	Edge, ID string
}

// CommandFilter selects commands; empty fields select all.
type CommandFilter struct {
	Edge, Asset, Status string
}

func (s *Store) prepareCommand(c *Command) error {
	if c.Edge == "" || c.ID == "" {
		return invalidError{errors.New("command: empty edge or id")}
	}
	if err := s.checkTexts("edge", c.Edge, "id", c.ID, "product", c.Product, "asset", c.Asset, "service", c.Service,
		"origin", c.Origin, "class", c.Class, "status", c.Status, "reason", c.Reason, "issued_by", c.IssuedBy); err != nil {
		return err
	}
	if c.Version > 1<<63-1 {
		return invalidError{fmt.Errorf("command %s: version out of range", c.ID)}
	}
	if c.Inputs == nil {
		c.Inputs = map[string]any{}
	}
	b, err := json.Marshal(c.Inputs)
	if err != nil {
		return invalidError{fmt.Errorf("command %s: inputs: %w", c.ID, err)}
	}
	// Store only inputs that read back (scanCommand): a number beyond
	// float64 (1e400, which jsonb holds) would fail every listing that
	// reaches the record, the commands of every edge.
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		return invalidError{fmt.Errorf("command %s: inputs: %w", c.ID, err)}
	}
	c.inputsJSON = b
	if !c.Expiry.IsZero() {
		e := c.Expiry
		c.expiryForInsert = &e
	}
	if c.Created.IsZero() || c.Updated.IsZero() {
		return invalidError{fmt.Errorf("command %s: no created or updated time", c.ID)}
	}
	if err := checkTimes("created", c.Created, "updated", c.Updated, "expiry", c.Expiry); err != nil {
		return fmt.Errorf("command %s: %w", c.ID, err)
	}
	return nil
}

// InsertCommand records a command the hub issues (Version 0). An id the
// edge holds already is ErrConflict.
func (s *Store) InsertCommand(ctx context.Context, c Command) error {
	if err := s.prepareCommand(&c); err != nil {
		return fmt.Errorf("hub store: command: %w", err)
	}
	if err := s.RegisterEdge(ctx, c.Edge); err != nil {
		return err
	}
	_, err := s.db.Exec(ctx, `
INSERT INTO commands (edge, id, product, asset, service, inputs, origin, class, status, reason, expiry, created, updated, version, issued_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 0, $14)`,
		c.Edge, c.ID, c.Product, c.Asset, c.Service, c.inputsJSON, c.Origin, c.Class, c.Status, c.Reason,
		c.expiryForInsert, c.Created, c.Updated, c.IssuedBy)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return fmt.Errorf("hub store: command %s of %s: %w", c.ID, c.Edge, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("hub store: command %s of %s: %w", c.ID, c.Edge, err)
	}
	return nil
}

// RecordCommand stores a command record an edge reported: a new record
// is inserted, a stored one replaced when c's Version is higher (a copy
// of an older or the same version changes nothing). The hub's issued_by
// is kept. A creation time ahead of the hub's clock is stored as the
// hub's now: the listing is ordered by it across all edges, and an edge
// stamping its records a year ahead would otherwise keep them above every
// other edge's until then (the record itself keeps the edge's time).
func (s *Store) RecordCommand(ctx context.Context, c Command) error {
	if err := s.prepareCommand(&c); err != nil {
		return fmt.Errorf("hub store: command: %w", err)
	}
	c.Created = s.clamp(c.Created)
	rec, audit := c.Record, c.Audit
	if len(rec) == 0 {
		rec = nil
	}
	if len(audit) == 0 {
		audit = nil
	}
	if err := s.RegisterEdge(ctx, c.Edge); err != nil {
		return err
	}
	_, err := s.db.Exec(ctx, `
INSERT INTO commands AS c (edge, id, product, asset, service, inputs, origin, class, status, reason, expiry, created, updated, version, record, audit)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
ON CONFLICT (edge, id) DO UPDATE SET product = EXCLUDED.product, asset = EXCLUDED.asset, service = EXCLUDED.service,
  inputs = EXCLUDED.inputs, origin = EXCLUDED.origin, class = EXCLUDED.class, status = EXCLUDED.status,
  reason = EXCLUDED.reason, expiry = EXCLUDED.expiry, created = LEAST(c.created, EXCLUDED.created),
  updated = EXCLUDED.updated, version = EXCLUDED.version, record = EXCLUDED.record, audit = EXCLUDED.audit
WHERE c.version < EXCLUDED.version`,
		c.Edge, c.ID, c.Product, c.Asset, c.Service, c.inputsJSON, c.Origin, c.Class, c.Status, c.Reason,
		c.expiryForInsert, c.Created, c.Updated, int64(c.Version), rec, audit)
	if err != nil {
		return fmt.Errorf("hub store: command %s of %s: %w", c.ID, c.Edge, err)
	}
	return nil
}

// FailIssued marks a command the hub issued as failed with reason, unless
// its edge reported it meanwhile.
func (s *Store) FailIssued(ctx context.Context, edge, id, reason string, at time.Time) error {
	if err := s.checkTexts("reason", reason); err != nil {
		return fmt.Errorf("hub store: command: %w", err)
	}
	_, err := s.db.Exec(ctx, `UPDATE commands SET status = 'failed', reason = $3, updated = $4 WHERE edge = $1 AND id = $2 AND version = 0`,
		edge, id, reason, at)
	if err != nil {
		return fmt.Errorf("hub store: command %s of %s: %w", id, edge, err)
	}
	return nil
}

const commandColumns = `edge, id, product, asset, service, inputs, origin, class, status, reason, expiry, created, updated, version, issued_by, record, audit`

func scanCommand(row pgx.Row) (Command, error) {
	var (
		c       Command
		inputs  []byte
		expiry  *time.Time
		version int64
		rec     []byte
		audit   []byte
	)
	if err := row.Scan(&c.Edge, &c.ID, &c.Product, &c.Asset, &c.Service, &inputs, &c.Origin, &c.Class, &c.Status, &c.Reason,
		&expiry, &c.Created, &c.Updated, &version, &c.IssuedBy, &rec, &audit); err != nil {
		return c, err
	}
	if expiry != nil {
		c.Expiry = *expiry
	}
	c.Version = uint64(max(version, 0))
	if len(rec) > 0 {
		c.Record = rec
	}
	if len(audit) > 0 {
		c.Audit = audit
	}
	c.Inputs = map[string]any{}
	if err := json.Unmarshal(inputs, &c.Inputs); err != nil {
		return c, fmt.Errorf("inputs of %s: %w", c.ID, err)
	}
	return c, nil
}

// GetCommand returns the command id of edge, or of any edge when edge is
// empty (the newest of that id).
func (s *Store) GetCommand(ctx context.Context, edge, id string) (Command, error) {
	q := `SELECT ` + commandColumns + ` FROM commands WHERE id = $1 AND ($2 = '' OR edge = $2) ORDER BY created DESC LIMIT 1`
	c, err := scanCommand(s.db.QueryRow(ctx, q, id, edge))
	if errors.Is(err, pgx.ErrNoRows) {
		return c, fmt.Errorf("hub store: command %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("hub store: command %s: %w", id, err)
	}
	return c, nil
}

// CommandsAfter calls f with the commands f selects, newest first (by
// creation, then edge and id, descending), from the first after after
// (from the newest when nil), at most limit of them (all when 0), until f
// returns false.
func (s *Store) CommandsAfter(ctx context.Context, flt CommandFilter, after *CommandKey, limit int, f func(Command) bool) error {
	q := `SELECT ` + commandColumns + ` FROM commands WHERE true`
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if flt.Edge != "" {
		q += ` AND edge = ` + arg(flt.Edge)
	}
	if flt.Asset != "" {
		q += ` AND asset = ` + arg(flt.Asset)
	}
	if flt.Status != "" {
		q += ` AND status = ` + arg(flt.Status)
	}
	if after != nil {
		q += fmt.Sprintf(` AND (created, edge, id) < (%s, %s, %s)`, arg(after.Created), arg(after.Edge), arg(after.ID))
	}
	q += ` ORDER BY created DESC, edge DESC, id DESC`
	if limit > 0 {
		q += ` LIMIT ` + arg(limit)
	}
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("hub store: commands: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		c, err := scanCommand(rows)
		if err != nil {
			return fmt.Errorf("hub store: commands: %w", err)
		}
		if !f(c) {
			return nil
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("hub store: commands: %w", err)
	}
	return nil
}

// LeaseEvent is an audit entry of an edge's command arbiter that belongs
// to no command: a lease taken, renewed, taken over, refused or released.
type LeaseEvent struct {
	Edge   string    `json:"edge"`
	Seq    uint64    `json:"seq"`
	At     time.Time `json:"at"`
	Asset  string    `json:"asset"`
	Origin string    `json:"origin,omitempty"`
	Reason string    `json:"reason"`
}

// LeaseEventKey is the position of a lease event in the newest-first
// listing: its time and sequence number.
type LeaseEventKey struct {
	At  time.Time
	Seq uint64
}

// RecordLeaseEvent stores a lease event of an edge; one stored already
// (same edge, seq and time) is a no-op.
func (s *Store) RecordLeaseEvent(ctx context.Context, e LeaseEvent) error {
	if err := s.checkTexts("edge", e.Edge, "asset", e.Asset, "origin", e.Origin, "reason", e.Reason); err != nil {
		return fmt.Errorf("hub store: lease event: %w", err)
	}
	if err := checkTimes("time", e.At); err != nil {
		return fmt.Errorf("hub store: lease event of %s: %w", e.Edge, err)
	}
	if e.Seq == 0 || e.Seq > 1<<63-1 || e.At.IsZero() {
		return fmt.Errorf("hub store: lease event of %s: %w: sequence %d, time %v", e.Edge, ErrInvalid, e.Seq, e.At)
	}
	if _, err := s.db.Exec(ctx, `
INSERT INTO lease_events (edge, seq, at, asset, origin, reason) VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (edge, seq, at) DO NOTHING`, e.Edge, int64(e.Seq), e.At, e.Asset, e.Origin, e.Reason); err != nil {
		return fmt.Errorf("hub store: lease event %d of %s: %w", e.Seq, e.Edge, err)
	}
	return nil
}

// LeaseEventsAfter calls f with the lease events of edge (of one asset
// when asset is not empty), newest first, after the key after (from the
// newest when nil), at most limit, until f returns false.
func (s *Store) LeaseEventsAfter(ctx context.Context, edge, asset string, after *LeaseEventKey, limit int, f func(LeaseEvent) bool) error {
	at, seq := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), int64(1<<63-1)
	if after != nil {
		at, seq = after.At, int64(min(after.Seq, 1<<63-1))
	}
	rows, err := s.db.Query(ctx, `
SELECT edge, seq, at, asset, origin, reason FROM lease_events
WHERE edge = $1 AND ($2 = '' OR asset = $2) AND (at, seq) < ($3, $4)
ORDER BY at DESC, seq DESC LIMIT $5`, edge, asset, at, seq, limit)
	if err != nil {
		return fmt.Errorf("hub store: lease events of %s: %w", edge, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			e  LeaseEvent
			sq int64
		)
		if err := rows.Scan(&e.Edge, &sq, &e.At, &e.Asset, &e.Origin, &e.Reason); err != nil {
			return fmt.Errorf("hub store: lease events of %s: %w", edge, err)
		}
		e.Seq = uint64(sq)
		if !f(e) {
			return nil
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("hub store: lease events of %s: %w", edge, err)
	}
	return nil
}
