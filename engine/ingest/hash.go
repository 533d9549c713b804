package ingest

import (
	"encoding/binary"
	"hash/maphash"
	"math"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// hashRows appends to dst the hash of every column of each row of rec: a
// row read back from the log hashes like the row that was appended.
func (s *Source) hashRows(rec arrow.RecordBatch, dst []uint64) []uint64 {
	n := int(rec.NumRows())
	cols := rec.Columns()
	buf := s.rowBuf
	for i := range n {
		buf = buf[:0]
		for _, c := range cols {
			buf = appendCell(buf, c, i)
		}
		dst = append(dst, maphash.Bytes(s.seed, buf))
	}
	s.rowBuf = buf
	return dst
}

// appendCell appends an unambiguous encoding of row i of column c: a
// null marker, or a type tag and the value (strings with their length).
func appendCell(b []byte, c arrow.Array, i int) []byte {
	if c.IsNull(i) {
		return append(b, 0)
	}
	switch a := c.(type) {
	case *array.Float64:
		return binary.LittleEndian.AppendUint64(append(b, 1), math.Float64bits(a.Value(i)))
	case *array.Int64:
		return binary.LittleEndian.AppendUint64(append(b, 2), uint64(a.Value(i)))
	case *array.Timestamp:
		return binary.LittleEndian.AppendUint64(append(b, 3), uint64(a.Value(i)))
	case *array.Boolean:
		if a.Value(i) {
			return append(b, 4, 1)
		}
		return append(b, 4, 0)
	case *array.String:
		v := a.Value(i)
		b = binary.AppendUvarint(append(b, 5), uint64(len(v)))
		return append(b, v...)
	default:
		v := c.ValueStr(i)
		b = binary.AppendUvarint(append(b, 6), uint64(len(v)))
		return append(b, v...)
	}
}

// dropRedelivered removes from rec the rows whose hashes are in the
// redelivery set, taking each from the set once, and closes the check when
// its bounds are reached. It returns rec itself when no row is a
// redelivery, nil when every row is (rec is released), else a new record
// of the other rows (rec is released).
func (s *Source) dropRedelivered(rec arrow.RecordBatch) arrow.RecordBatch {
	if s.horizonTime > 0 {
		switch now := s.now(); {
		case s.seen == 0:
			s.deadline = now.Add(s.horizonTime)
		case !now.Before(s.deadline):
			s.closeCheck()
			return rec
		}
	}
	n := int(rec.NumRows())
	s.hashes = s.hashRows(rec, s.hashes[:0])
	var keep []bool
	dups := 0
	for i, h := range s.hashes {
		c, ok := s.set[h]
		if !ok {
			continue
		}
		if c <= 1 {
			delete(s.set, h)
		} else {
			s.set[h] = c - 1
		}
		if keep == nil {
			keep = make([]bool, n)
			for j := range keep {
				keep[j] = true
			}
		}
		keep[i] = false
		dups++
	}
	s.seen += n
	s.redeliveries.Add(int64(dups))
	if len(s.set) == 0 || s.seen >= s.horizon {
		s.closeCheck()
	}
	switch dups {
	case 0:
		return rec
	case n:
		rec.Release()
		return nil
	}
	out, err := s.keepRows(rec, keep)
	if err != nil {
		// Only for lack of memory: better the redeliveries twice than
		// the new rows lost.
		s.log.Error("cannot assemble the rows left after redeliveries; emitting the redeliveries too", "err", err)
		return rec
	}
	rec.Release()
	return out
}

// closeCheck ends the redelivery check and lets its set and scratch
// buffers go (the hashes of the whole horizon, kept since loadHorizon).
func (s *Source) closeCheck() {
	k := 0
	for _, c := range s.set {
		k += int(c)
	}
	s.log.Info("redelivery check closed", "redeliveries", s.redeliveries.Load(), "live_rows", s.seen,
		"logged_rows_not_seen_again", k)
	s.set, s.hashes, s.rowBuf = nil, nil, nil
}

// keepRows returns a new record of the rows of rec whose keep is true (at
// least one).
func (s *Source) keepRows(rec arrow.RecordBatch, keep []bool) (arrow.RecordBatch, error) {
	type run struct{ lo, hi int64 }
	var runs []run
	rows := int64(0)
	for i := 0; i < len(keep); {
		if !keep[i] {
			i++
			continue
		}
		j := i
		for j < len(keep) && keep[j] {
			j++
		}
		runs = append(runs, run{int64(i), int64(j)})
		rows += int64(j - i)
		i = j
	}
	if len(runs) == 1 {
		return rec.NewSlice(runs[0].lo, runs[0].hi), nil
	}
	cols := make([]arrow.Array, rec.NumCols())
	parts := make([]arrow.Array, len(runs))
	for c := range cols {
		for k, r := range runs {
			parts[k] = array.NewSlice(rec.Column(c), r.lo, r.hi)
		}
		col, err := array.Concatenate(parts, s.mem)
		for _, p := range parts {
			p.Release()
		}
		if err != nil {
			for _, done := range cols[:c] {
				done.Release()
			}
			return nil, err
		}
		cols[c] = col
	}
	out := array.NewRecordBatch(rec.Schema(), cols, rows)
	for _, c := range cols {
		c.Release()
	}
	return out, nil
}
