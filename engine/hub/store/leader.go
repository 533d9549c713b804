package store

import (
	"context"
	"fmt"
	"hash/fnv"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Leader is a PostgreSQL session advisory lock held on a connection of its
// own: while it is held, no other instance sharing the database holds the
// same one. The lock ends with the session, so an instance that dies or
// loses its connection gives it up.
type Leader struct {
	conn *pgxpool.Conn
	key  int64
}

// leaderKey is the advisory lock key of job name in the store's schema.
func (s *Store) leaderKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("sluice hub leader " + s.opts.Schema + " " + name))
	return int64(h.Sum64() >> 1)
}

// TryLead takes the lock of job name when no one holds it: it returns nil
// and no error when another session holds it.
func (s *Store) TryLead(ctx context.Context, name string) (*Leader, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("hub store: leader %s: %w", name, err)
	}
	key := s.leaderKey(name)
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		conn.Release()
		return nil, fmt.Errorf("hub store: leader %s: %w", name, err)
	}
	if !ok {
		conn.Release()
		return nil, nil
	}
	return &Leader{conn: conn, key: key}, nil
}

// Check says whether the lock is still held: its session answers.
func (l *Leader) Check(ctx context.Context) error {
	if err := l.conn.Ping(ctx); err != nil {
		return fmt.Errorf("hub store: leader lock lost: %w", err)
	}
	return nil
}

// Release gives the lock up and returns the connection. When the unlock
// fails the connection is closed, which ends the session and its lock.
func (l *Leader) Release(ctx context.Context) {
	if _, err := l.conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, l.key); err != nil {
		_ = l.conn.Conn().Close(ctx)
	}
	l.conn.Release()
}
