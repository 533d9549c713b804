package store

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Row is one telemetry row an edge sent. Edge, Stream and Seq are its key:
// the same row redelivered, re-batched or backfilled is stored once.
type Row struct {
	// MsgID is the id of the message that carried the row
	// ("edge/stream/seq" or "edge/stream/first-last").
	MsgID  string
	Edge   string
	Stream string
	// Seq is the row's sequence in its stream on its edge.
	Seq   uint64
	Asset string
	// Time is the row's event time.
	Time time.Time
	// Backfill is true for a row sent after an outage.
	Backfill bool
	// Values are the row's measure points. Strings, numbers, booleans,
	// nil, and maps and slices of them. NaN and ±Inf are stored as JSON
	// null; NUL characters in strings (and keys) become U+FFFD, as
	// invalid UTF-8 does.
	Values map[string]any
}

// RowError is a row InsertRows refused; no row of the call was stored.
type RowError struct {
	// Index is the row's index in the slice given to InsertRows.
	Index int
	Err   error
}

func (e *RowError) Error() string { return fmt.Sprintf("row %d: %v", e.Index, e.Err) }

// Unwrap returns the reason.
func (e *RowError) Unwrap() error { return e.Err }

// InsertRows stores rows in batches of Options.BatchRows, each one
// transaction that COPYs the batch into a session-local table and moves it
// with INSERT … ON CONFLICT DO NOTHING, and reports how many were new.
// Rows are checked first: a row with an id field PostgreSQL cannot store
// (NUL, invalid UTF-8, too long), a sequence beyond int64 or values that
// do not encode or encode to more than Options.MaxValueBytes fails the
// call with a *RowError before anything is stored. A database error may
// leave earlier batches stored; calling again with the same rows is safe.
func (s *Store) InsertRows(ctx context.Context, rows []Row) (int64, error) {
	values := make([][]byte, len(rows))
	for i, r := range rows {
		if err := s.checkTexts("msg id", r.MsgID, "edge", r.Edge, "stream", r.Stream, "asset", r.Asset); err != nil {
			return 0, fmt.Errorf("hub store: insert rows: %w", &RowError{Index: i, Err: err})
		}
		if r.Seq > math.MaxInt64 {
			return 0, fmt.Errorf("hub store: insert rows: %w", &RowError{Index: i, Err: fmt.Errorf("seq %d out of range", r.Seq)})
		}
		v := r.Values
		if v == nil {
			v = map[string]any{}
		}
		cv, _ := clean(v)
		b, err := json.Marshal(cv)
		if err != nil {
			return 0, fmt.Errorf("hub store: insert rows: %w", &RowError{Index: i, Err: fmt.Errorf("values: %w", err)})
		}
		if len(b) > s.opts.MaxValueBytes {
			return 0, fmt.Errorf("hub store: insert rows: %w", &RowError{Index: i,
				Err: fmt.Errorf("values: %d bytes, more than %d", len(b), s.opts.MaxValueBytes)})
		}
		values[i] = b
	}
	var total int64
	for start := 0; start < len(rows); start += s.opts.BatchRows {
		end := min(start+s.opts.BatchRows, len(rows))
		n, err := s.insertBatch(ctx, rows[start:end], values[start:end])
		if err != nil {
			return total, fmt.Errorf("hub store: insert rows %d-%d: %w", start, end-1, err)
		}
		total += n
	}
	return total, nil
}

// insertBatch copies rows into a temporary table of the session and
// moves the new ones into telemetry, in one transaction.
func (s *Store) insertBatch(ctx context.Context, rows []Row, values [][]byte) (int64, error) {
	var n int64
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS hub_rows_in (
  edge text, stream text, seq int8, msg_id text, asset text, time timestamptz, backfill bool, "values" jsonb
) ON COMMIT DELETE ROWS`); err != nil {
			return err
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"hub_rows_in"},
			[]string{"edge", "stream", "seq", "msg_id", "asset", "time", "backfill", "values"},
			pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
				r := &rows[i]
				return []any{r.Edge, r.Stream, int64(r.Seq), r.MsgID, r.Asset, r.Time, r.Backfill, values[i]}, nil
			}))
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `
INSERT INTO telemetry (edge, stream, seq, msg_id, asset, time, backfill, "values")
SELECT edge, stream, seq, msg_id, asset, time, backfill, "values" FROM hub_rows_in
ON CONFLICT (edge, stream, seq) DO NOTHING`)
		n = tag.RowsAffected()
		return err
	})
	return n, err
}

// clean returns v with what JSON or jsonb cannot hold replaced: NaN and
// ±Inf by null, NUL characters by U+FFFD, and whether it changed
// anything. It copies only what it changes.
func clean(v any) (any, bool) {
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, true
		}
	case float32:
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil, true
		}
	case string:
		if strings.IndexByte(x, 0) >= 0 {
			return strings.ReplaceAll(x, "\x00", "\uFFFD"), true
		}
	case map[string]any:
		var out map[string]any
		for k, e := range x {
			ce, changed := clean(e)
			ck, kchanged := clean(k)
			if !changed && !kchanged {
				continue
			}
			if out == nil {
				out = make(map[string]any, len(x))
				for k2, e2 := range x {
					out[k2] = e2
				}
			}
			delete(out, k)
			out[ck.(string)] = ce
		}
		if out != nil {
			return out, true
		}
	case []any:
		var out []any
		for i, e := range x {
			ce, changed := clean(e)
			if !changed {
				continue
			}
			if out == nil {
				out = append([]any(nil), x...)
			}
			out[i] = ce
		}
		if out != nil {
			return out, true
		}
	}
	return v, false
}
