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
	// Index is the row's index in the slice given to InsertRows (the
	// record's in the slice given to ApplyAlerts).
	Index int
	Err   error
}

func (e *RowError) Error() string { return fmt.Sprintf("row %d: %v", e.Index, e.Err) }

// Unwrap returns the reason.
func (e *RowError) Unwrap() error { return e.Err }

// Inserted is what InsertRows did with its rows.
type Inserted struct {
	// New counts the rows stored in telemetry.
	New int64
	// Conflicts counts the rows kept in telemetry_conflicts: rows whose
	// key (edge, stream, seq) telemetry holds with another event time,
	// asset or values, each content counted once however often it comes.
	Conflicts int64
	// ConflictRanges are those rows' keys, one range per edge and stream.
	ConflictRanges []ConflictRange
}

// ConflictRange are the keys of the conflicting rows of one edge's
// stream in one InsertRows call.
type ConflictRange struct {
	Edge, Stream string
	// First and Last are the least and greatest sequence; Rows counts
	// the rows between them that conflicted.
	First, Last uint64
	Rows        int64
}

// InsertRows stores rows in batches of Options.BatchRows, each one
// transaction that COPYs the batch into a session-local table and moves it
// with INSERT … ON CONFLICT DO NOTHING, and reports how many were new.
// A row whose key is stored already is a redelivery when its event time,
// asset and values are those stored (its message id and backfill flag
// aside), and changes nothing; otherwise it is a conflict, the row of an
// edge that sent the sequence again with other data (its buffer was
// reset), and is kept in telemetry_conflicts, once per content, with
// the stored row left as it is. A batch with no conflict costs no more
// than the insert; one with rows already held, one more look-up of them.
// Rows are checked first: a row with an id field PostgreSQL cannot store
// (NUL, invalid UTF-8, too long), a sequence beyond int64 or values that
// do not encode or encode to more than Options.MaxValueBytes fails the
// call with a *RowError before anything is stored. A database error may
// leave earlier batches stored; calling again with the same rows is safe.
func (s *Store) InsertRows(ctx context.Context, rows []Row) (Inserted, error) {
	values := make([][]byte, len(rows))
	for i, r := range rows {
		if err := s.checkTexts("msg id", r.MsgID, "edge", r.Edge, "stream", r.Stream, "asset", r.Asset); err != nil {
			return Inserted{}, fmt.Errorf("hub store: insert rows: %w", &RowError{Index: i, Err: err})
		}
		if r.Seq > math.MaxInt64 {
			return Inserted{}, fmt.Errorf("hub store: insert rows: %w", &RowError{Index: i, Err: fmt.Errorf("seq %d out of range", r.Seq)})
		}
		v := r.Values
		if v == nil {
			v = map[string]any{}
		}
		cv, _ := clean(v)
		b, err := json.Marshal(cv)
		if err != nil {
			return Inserted{}, fmt.Errorf("hub store: insert rows: %w", &RowError{Index: i, Err: fmt.Errorf("values: %w", err)})
		}
		if len(b) > s.opts.MaxValueBytes {
			return Inserted{}, fmt.Errorf("hub store: insert rows: %w", &RowError{Index: i,
				Err: fmt.Errorf("values: %d bytes, more than %d", len(b), s.opts.MaxValueBytes)})
		}
		values[i] = b
	}
	var total Inserted
	for start := 0; start < len(rows); start += s.opts.BatchRows {
		end := min(start+s.opts.BatchRows, len(rows))
		err := s.insertBatch(ctx, rows[start:end], values[start:end], &total)
		if err != nil {
			return total, fmt.Errorf("hub store: insert rows %d-%d: %w", start, end-1, err)
		}
	}
	return total, nil
}

// insertBatch copies rows into a temporary table of the session, moves
// the new ones into telemetry and, when some were not new, keeps those
// whose content differs from the stored row in telemetry_conflicts, in one
// transaction; it adds what it did to total once committed.
func (s *Store) insertBatch(ctx context.Context, rows []Row, values [][]byte, total *Inserted) error {
	var (
		n       int64
		ranges  []ConflictRange
		clashes int64
	)
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		n, ranges, clashes = 0, nil, 0
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
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		if n == int64(len(rows)) {
			return nil // all new: nothing can conflict
		}
		// The rows not inserted meet a stored row of their key (stored
		// before, by another instance, or earlier in this batch). Those of
		// other content are kept, once per content: the digest covers the
		// event time to the microsecond, the asset and the values.
		ranges, clashes, err = s.keepConflicts(ctx, tx)
		return err
	})
	if err == nil {
		total.New += n
		total.Conflicts += clashes
		total.ConflictRanges = mergeRanges(total.ConflictRanges, ranges)
	}
	return err
}

// mergeRanges adds add to rs, one range per edge and stream.
func mergeRanges(rs, add []ConflictRange) []ConflictRange {
next:
	for _, a := range add {
		for i := range rs {
			if r := &rs[i]; r.Edge == a.Edge && r.Stream == a.Stream {
				r.First, r.Last, r.Rows = min(r.First, a.First), max(r.Last, a.Last), r.Rows+a.Rows
				continue next
			}
		}
		rs = append(rs, a)
	}
	return rs
}

// keepConflicts stores the rows of hub_rows_in whose key telemetry holds
// with another content in telemetry_conflicts, and returns their keys by
// edge and stream and how many there were.
func (s *Store) keepConflicts(ctx context.Context, tx pgx.Tx) ([]ConflictRange, int64, error) {
	rs, err := tx.Query(ctx, `
WITH kept AS (
  INSERT INTO telemetry_conflicts
    (edge, stream, seq, digest, msg_id, asset, time, backfill, "values", stored_msg_id, received_at)
  SELECT i.edge, i.stream, i.seq,
         md5(jsonb_build_array(i.asset, (extract(epoch FROM i.time) * 1000000)::int8, i."values")::text),
         i.msg_id, i.asset, i.time, i.backfill, i."values", t.msg_id, $1
  FROM hub_rows_in i JOIN telemetry t USING (edge, stream, seq)
  WHERE (i.time, i.asset, i."values") IS DISTINCT FROM (t.time, t.asset, t."values")
  ON CONFLICT (edge, stream, seq, digest) DO NOTHING
  RETURNING edge, stream, seq
)
SELECT edge, stream, min(seq), max(seq), count(*) FROM kept GROUP BY edge, stream ORDER BY edge, stream`, s.opts.Now())
	if err != nil {
		return nil, 0, err
	}
	var (
		out   []ConflictRange
		total int64
	)
	for rs.Next() {
		var (
			c           ConflictRange
			first, last int64
		)
		if err := rs.Scan(&c.Edge, &c.Stream, &first, &last, &c.Rows); err != nil {
			rs.Close()
			return nil, 0, err
		}
		c.First, c.Last = uint64(first), uint64(last)
		total += c.Rows
		out = append(out, c)
	}
	rs.Close()
	return out, total, rs.Err()
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
			kchanged := strings.IndexByte(k, 0) >= 0
			if !changed && !kchanged {
				continue
			}
			if out == nil {
				out = make(map[string]any, len(x))
				for k2, e2 := range x {
					out[k2] = e2
				}
			}
			ck := k
			if kchanged {
				ck = strings.ReplaceAll(k, "\x00", "\uFFFD")
			}
			delete(out, k)
			out[ck] = ce
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
