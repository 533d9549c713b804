// Package store keeps the hub's state in PostgreSQL: the edges and what
// they run, bundles and releases, apply reports, alerts (current state and
// every transition) and ingested telemetry.
//
// The schema is versioned as SQL files embedded in the package and applied
// with goose when a Store opens; a PostgreSQL session lock makes concurrent
// starts of several hub instances safe. Every write is idempotent under
// redelivery: a report, an alert transition or a telemetry row delivered
// twice is stored once. A telemetry row that reuses a stored row's key
// with other content is kept apart, in telemetry_conflicts.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrations embed.FS

// SchemaVersion is the newest migration's version: what Version returns
// once Open applied them all.
const SchemaVersion = 8

// DefaultSchema is the PostgreSQL schema the hub's tables live in.
const DefaultSchema = "sluice_hub"

// Defaults of Options.
const (
	DefaultOfflineAfter  = 90 * time.Second
	DefaultBatchRows     = 5000
	DefaultMaxValueBytes = 1 << 20
	DefaultMaxTextBytes  = 4096
	DefaultHistory       = 50
)

// ErrNotFound is returned for an edge the hub has never heard of.
var ErrNotFound = errors.New("not found")

// ErrInvalid matches (errors.Is) the error of a value the store refuses
// before writing anything: a text longer than MaxTextBytes, with a NUL
// byte or invalid UTF-8, a version or sequence beyond int64, an unknown
// outcome or state, an empty id. Storing it again fails again, so a
// reader of a queue sets its message aside rather than retrying it.
var ErrInvalid = errors.New("invalid value")

// invalidError is a refused value, matching ErrInvalid; its message is
// the refusal's alone.
type invalidError struct{ error }

func (invalidError) Is(target error) bool { return target == ErrInvalid }

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Options configure a Store. Zero fields take the defaults.
type Options struct {
	// Schema holds the tables; DefaultSchema when empty. Lower-case
	// letters, digits and underscores only.
	Schema string
	// OfflineAfter is how long after its last heartbeat an edge counts as
	// offline.
	OfflineAfter time.Duration
	// BatchRows bounds the rows one INSERT of InsertRows carries.
	BatchRows int
	// MaxValueBytes bounds the encoded values of one telemetry row.
	MaxValueBytes int
	// MaxTextBytes bounds every text field (ids, names, reasons, content).
	MaxTextBytes int
	// History bounds the apply reports EdgeStatus returns.
	History int
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

func (o *Options) defaults() error {
	if o.Schema == "" {
		o.Schema = DefaultSchema
	}
	if !schemaName.MatchString(o.Schema) {
		return fmt.Errorf("schema %q: want lower-case letters, digits and underscores, at most 63", o.Schema)
	}
	if o.OfflineAfter <= 0 {
		o.OfflineAfter = DefaultOfflineAfter
	}
	if o.BatchRows <= 0 {
		o.BatchRows = DefaultBatchRows
	}
	if o.MaxValueBytes <= 0 {
		o.MaxValueBytes = DefaultMaxValueBytes
	}
	if o.MaxTextBytes <= 0 {
		o.MaxTextBytes = DefaultMaxTextBytes
	}
	if o.History <= 0 {
		o.History = DefaultHistory
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// Store is the hub's state in PostgreSQL. It is safe for concurrent use,
// and several Stores (in several hub instances) may share one database.
type Store struct {
	pool *pgxpool.Pool
	db   querier // the pool, or the transaction of InTx
	opts Options
}

// querier runs statements: the pool, or the transaction of InTx.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Begin(ctx context.Context) (pgx.Tx, error)
}

// InTx calls f with a Store whose every statement runs in one
// transaction, committed when f returns nil and rolled back otherwise. A
// method that runs a transaction of its own runs in this one, without a
// savepoint (thousands of them in one transaction would overflow the
// subtransaction cache every other session consults): after any error
// the transaction is aborted, so f must return it.
// Many small records written through it cost one commit, not one each: a
// commit waits for the disk (about 9 ms here), so one transaction per
// record held the edge-event consumer to about 100 records a second. The
// Store given to f is for f's goroutine and must not outlive the call.
func (s *Store) InTx(ctx context.Context, f func(*Store) error) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		c := *s
		c.db = tx
		return f(&c)
	})
}

// ErrBadDSN is wrapped by Open's error for a DSN it cannot parse: trying
// again cannot help.
var ErrBadDSN = errors.New("bad PostgreSQL DSN")

// Open connects to dsn, creates the schema when missing and applies the
// pending migrations under a session lock, so that instances starting
// together apply them once.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	if err := opts.defaults(); err != nil {
		return nil, fmt.Errorf("hub store: %w", err)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("hub store: %w: %w", ErrBadDSN, err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = opts.Schema
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("hub store: connect: %w", err)
	}
	s := &Store{pool: pool, db: pool, opts: opts}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("hub store: %w", err)
	}
	return s, nil
}

// Close releases the connections.
func (s *Store) Close() { s.pool.Close() }

// migrate creates the schema and applies the embedded migrations.
func (s *Store) migrate(ctx context.Context) error {
	// Two instances creating the schema at once may both pass IF NOT
	// EXISTS; the loser's unique violation means the schema is there.
	if _, err := s.db.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{s.opts.Schema}.Sanitize()); err != nil {
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "23505" {
			return fmt.Errorf("create schema %s: %w", s.opts.Schema, err)
		}
	}
	h := fnv.New64a()
	h.Write([]byte("sluice hub migrations " + s.opts.Schema))
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(int64(h.Sum64() >> 1)))
	if err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	db := stdlib.OpenDBFromPool(s.pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub,
		goose.WithSessionLocker(locker),
		goose.WithTableName(s.opts.Schema+".goose_db_version"),
		goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}
	return nil
}

// Version is the schema version the database holds.
func (s *Store) Version(ctx context.Context) (int64, error) {
	var v sql.NullInt64
	err := s.db.QueryRow(ctx, "SELECT max(version_id) FROM goose_db_version WHERE is_applied").Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("hub store: schema version: %w", err)
	}
	return v.Int64, nil
}

// inTx runs f in a transaction and commits when it returns nil.
func (s *Store) inTx(ctx context.Context, f func(pgx.Tx) error) error {
	if tx, ok := s.db.(pgx.Tx); ok {
		return f(tx) // within InTx: its transaction
	}
	return pgx.BeginFunc(ctx, s.db, f)
}

// IsDataError says whether err is a value the store can never hold: a
// text it refuses itself (ErrInvalid), or PostgreSQL refusing it with
// SQLSTATE class 22, data exception (a number out of range, text it
// cannot encode, ...), or class 54, program limit exceeded (a key too
// large for its index: an entry holds at most about 2.7 KB after
// compression). Storing the same value again fails again, so the ingest
// sets its message aside instead of retrying it.
func IsDataError(err error) bool {
	var pe *pgconn.PgError
	return errors.Is(err, ErrInvalid) ||
		errors.As(err, &pe) && (strings.HasPrefix(pe.Code, "22") || strings.HasPrefix(pe.Code, "54"))
}
