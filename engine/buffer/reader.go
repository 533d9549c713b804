package buffer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluice-edge/sluice/engine/buffer/disk"
)

// Entry is a run of consecutive rows read from the buffer.
type Entry struct {
	// First is the sequence of the first row; row i has sequence First+i.
	First uint64
	// Rec holds the rows. The caller owns it and must Release it.
	Rec arrow.RecordBatch
	// Starts lists, in order, the sequences at which a message starts
	// (docs/format/buffer.md 2); Starts[0] is First. An entry always ends
	// where a message ends. Starts is nil for rows stored without message
	// boundaries (format version 1).
	Starts []uint64
	// Sealed is true for rows read from a Parquet segment (backlog) and
	// false for rows read from the WAL.
	Sealed bool
}

// Last returns the sequence of the last row.
func (e Entry) Last() uint64 { return e.First + uint64(e.Rec.NumRows()) - 1 }

// segCache holds the decoded segment being read.
type segCache struct {
	first, last uint64
	rec         arrow.RecordBatch
	starts      []uint64 // message starts; nil without boundaries
}

// Next returns the next rows in sequence order, starting after the cursor
// (or where the previous Next stopped): first from segments, then from the
// WAL. It returns only rows that are durable under the fsync policy, and
// whole messages. When nothing is available it waits until rows are
// appended or ctx is done (returning ctx.Err()); with a done ctx it is a
// poll. Rows that were dropped or lost are skipped (they have been
// reported); a damaged segment found while reading is quarantined and
// reported through Options.OnCorruption, and Next continues after it.
// Next returns ErrClosed after Close.
func (b *Buffer) Next(ctx context.Context) (Entry, error) {
	b.rmu.Lock()
	defer b.rmu.Unlock()
	for {
		e, wait, err := b.tryNext()
		if err != nil || e.Rec != nil {
			return e, err
		}
		if wait == nil {
			continue
		}
		select {
		case <-ctx.Done():
			return Entry{}, ctx.Err()
		case <-wait:
		}
	}
}

// where a sequence is found
type location struct {
	seg   *disk.SegEntry
	wal   *walFile
	rec   disk.WALRec
	first uint64 // first sequence available at or after pos
}

// locateLocked finds the unit holding pos, or the first unit after it.
func (b *Buffer) locateLocked(pos uint64) (location, bool) {
	i, _ := slices.BinarySearchFunc(b.segs, pos, func(e disk.SegEntry, s uint64) int {
		if e.Last < s {
			return -1
		}
		return 1
	})
	if i < len(b.segs) {
		e := b.segs[i]
		return location{seg: &e, first: max(pos, e.First)}, true
	}
	for _, w := range b.wals {
		j, _ := slices.BinarySearchFunc(w.recs, pos, func(r disk.WALRec, s uint64) int {
			if r.Last() < s {
				return -1
			}
			return 1
		})
		if j < len(w.recs) {
			r := w.recs[j]
			return location{wal: w, rec: r, first: max(pos, r.First)}, true
		}
	}
	return location{}, false
}

// tryNext returns an entry, or a channel to wait on, or neither (retry).
func (b *Buffer) tryNext() (Entry, <-chan struct{}, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return Entry{}, nil, ErrClosed
	}
	pos := max(b.readPos, b.cursor+1)
	if c := b.cache; c != nil && (pos < c.first || pos > c.last) {
		c.rec.Release()
		b.cache = nil
	}
	limit := b.readableLocked()
	if pos > limit {
		ch := b.notify
		b.mu.Unlock()
		return Entry{}, ch, nil
	}
	if c := b.cache; c != nil {
		e := b.sliceCacheLocked(pos)
		b.mu.Unlock()
		return e, nil, nil
	}
	loc, ok := b.locateLocked(pos)
	if !ok || loc.first > limit {
		ch := b.notify
		b.mu.Unlock()
		return Entry{}, ch, nil
	}
	if loc.first > pos {
		b.readPos = loc.first // skip rows dropped or lost
		pos = loc.first
	}
	if loc.seg != nil {
		e := *loc.seg
		b.mu.Unlock()
		rec, starts, err := b.loadSegment(e)
		if err != nil {
			return Entry{}, nil, err
		}
		b.mu.Lock()
		if rec != nil {
			if b.cache != nil {
				b.cache.rec.Release()
			}
			b.cache = &segCache{first: e.First, last: e.Last, rec: rec, starts: starts}
		}
		b.mu.Unlock()
		return Entry{}, nil, nil // retry: slices the cache or moves on
	}
	w, r := loc.wal, loc.rec
	if r.Last() > limit {
		// Held: a record is read whole once committed.
		ch := b.notify
		b.mu.Unlock()
		return Entry{}, ch, nil
	}
	w.refs++
	b.mu.Unlock()
	rec, err := b.readWALRecord(w, r)
	b.mu.Lock()
	b.unrefLocked(w)
	b.mu.Unlock()
	if err != nil {
		var ce *CorruptionError
		if errors.As(err, &ce) {
			b.walRecordCorrupt(w, r, ce)
			b.reportCorruption(ce)
			return Entry{}, nil, nil
		}
		return Entry{}, nil, err
	}
	e := Entry{First: r.First, Rec: rec}
	if pos > r.First {
		e = Entry{First: pos, Rec: rec.NewSlice(int64(pos-r.First), rec.NumRows())}
		rec.Release()
	}
	e.Starts = r.Starts(nil, e.First, e.Last())
	if len(e.Starts) == 0 || e.Starts[0] != e.First {
		// Reading from inside a message (only after damage): the rest
		// of it is a message of its own.
		e.Starts = append([]uint64{e.First}, e.Starts...)
	}
	b.mu.Lock()
	b.readPos = e.Last() + 1
	b.mu.Unlock()
	b.ctr.rowsRead.Add(e.Rec.NumRows())
	return e, nil, nil
}

// sliceCacheLocked returns the next entry of the cached segment from pos:
// about ReadRows rows, ending where a message ends.
func (b *Buffer) sliceCacheLocked(pos uint64) Entry {
	c := b.cache
	lo := int64(pos - c.first)
	n := int64(c.last - c.first + 1)
	hi := min(lo+int64(b.opts.ReadRows), n)
	var starts []uint64
	if c.starts != nil {
		// Messages starting in (pos, pos+ReadRows]: cut before the last
		// of them, or after the one message when it is longer.
		i, _ := slices.BinarySearch(c.starts, pos+1)
		j, _ := slices.BinarySearch(c.starts, c.first+uint64(hi))
		switch {
		case hi == n:
		case j > i && c.starts[j-1] > pos:
			if j < len(c.starts) && c.starts[j] == c.first+uint64(hi) {
				break // the cut falls on a boundary
			}
			hi = int64(c.starts[j-1] - c.first)
		default:
			// One message longer than ReadRows: take all of it.
			if j < len(c.starts) {
				hi = int64(c.starts[j] - c.first)
			} else {
				hi = n
			}
		}
		starts = disk.StartsWithin(c.starts, pos, c.first+uint64(hi)-1)
	}
	e := Entry{First: pos, Rec: c.rec.NewSlice(lo, hi), Sealed: true, Starts: starts}
	b.readPos = e.Last() + 1
	b.ctr.rowsRead.Add(hi - lo)
	return e
}

// loadSegment reads and verifies a segment. It returns a nil record when
// the segment went away meanwhile or was found damaged (and handled).
func (b *Buffer) loadSegment(e disk.SegEntry) (arrow.RecordBatch, []uint64, error) {
	rel := e.Rel()
	data, err := disk.ReadFile(b.fs, b.path(rel))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			b.mu.Lock()
			_, still := b.findSegLocked(e.First)
			b.mu.Unlock()
			if !still {
				return nil, nil, nil // delivered or dropped meanwhile
			}
			b.segmentCorrupt(e, &CorruptionError{Segment: rel, Offset: -1, Reason: "listed in the manifest but missing"}, false)
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("buffer: read %s: %w", rel, err)
	}
	switch {
	case int64(len(data)) != e.Bytes:
		b.segmentCorrupt(e, &CorruptionError{Segment: rel, Offset: -1, Reason: fmt.Sprintf("size %d, manifest says %d", len(data), e.Bytes)}, true)
		return nil, nil, nil
	case disk.CRC(data) != e.CRC:
		b.segmentCorrupt(e, &CorruptionError{Segment: rel, Offset: -1, Reason: "file checksum mismatch"}, true)
		return nil, nil, nil
	}
	rec, starts, err := disk.ReadSegment(data, b.opts.Schema, b.opts.Mem, e.First, e.Last)
	if err != nil {
		b.segmentCorrupt(e, &CorruptionError{Segment: rel, Offset: -1, Reason: "unreadable segment", Err: err}, true)
		return nil, nil, nil
	}
	return rec, starts, nil
}

func (b *Buffer) findSegLocked(first uint64) (int, bool) {
	return slices.BinarySearchFunc(b.segs, first, bySegFirst)
}

// segmentCorrupt quarantines a damaged data segment found while reading,
// records the loss and reports it.
func (b *Buffer) segmentCorrupt(e disk.SegEntry, r *CorruptionError, present bool) {
	b.mu.Lock()
	i, ok := b.findSegLocked(e.First)
	if !ok {
		b.mu.Unlock()
		return
	}
	b.segs = slices.Delete(b.segs, i, i+1)
	b.segBytes -= e.Bytes
	cursor := b.cursor
	b.mu.Unlock()
	if !b.opts.ReadOnly {
		b.quota.used.Add(-e.Bytes)
	}
	if e.Last > cursor {
		r.LostFirst, r.LostLast = max(e.First, cursor+1), e.Last
	}
	if !b.opts.ReadOnly {
		if present {
			r.Quarantined, r.Err = b.moveToQuarantine(e.Rel(), "seg")
		}
		reason := disk.ReasonCorrupt
		if !present {
			reason = disk.ReasonMissing
		}
		if err := b.man.Write(disk.EncodeRemove(disk.Removed{Kind: disk.KindData, Reason: reason, First: e.First, Last: e.Last, Rows: e.Rows})); err != nil {
			b.log.Error("cannot record a lost segment in the manifest", "err", err)
		}
	}
	b.reportCorruption(r)
}

// readWALRecord reads and decodes one WAL record.
func (b *Buffer) readWALRecord(w *walFile, r disk.WALRec) (arrow.RecordBatch, error) {
	payload := make([]byte, r.Length)
	if _, err := w.f.ReadAt(payload, r.Off+disk.RecHeaderSize); err != nil {
		return nil, fmt.Errorf("buffer: read %s: %w", w.rel, err)
	}
	if disk.CRC(payload) != r.PCRC {
		return nil, &CorruptionError{Segment: w.rel, Offset: r.Off, Reason: "bad payload checksum", LostFirst: r.First, LostLast: r.Last()}
	}
	rec, err := disk.DecodeRecord(payload, b.arrow, b.opts.Mem)
	if err != nil {
		return nil, &CorruptionError{Segment: w.rel, Offset: r.Off, Reason: "undecodable payload", Err: err, LostFirst: r.First, LostLast: r.Last()}
	}
	return rec, nil
}

// walRecordCorrupt drops a WAL record found damaged after it was written.
// The file is quarantined (and the loss recorded) when it is sealed. The
// caller reports ce once it holds no lock.
func (b *Buffer) walRecordCorrupt(w *walFile, r disk.WALRec, ce *CorruptionError) {
	b.mu.Lock()
	defer b.mu.Unlock()
	w.recs = slices.DeleteFunc(w.recs, func(x disk.WALRec) bool { return x.Off == r.Off })
	w.damage = append(w.damage, ce)
	if w == b.active && !b.opts.ReadOnly {
		// Stop appending to a damaged file.
		b.active.state = walRolled
		b.active = nil
		w.refs--
	}
}

// Rewind makes the next Next start again right after the cursor, for
// example after a publish failed.
func (b *Buffer) Rewind() {
	b.mu.Lock()
	b.readPos = b.cursor + 1
	b.mu.Unlock()
}

// Seek makes the next Next return rows from seq on (or from after the
// cursor, whichever is later): a reader that needs only the tail of the
// buffer skips the rest without reading it.
func (b *Buffer) Seek(seq uint64) {
	b.mu.Lock()
	b.readPos = max(seq, b.cursor+1)
	b.mu.Unlock()
}

// Cursor returns the highest delivered sequence (0 when none).
func (b *Buffer) Cursor() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cursor
}

// NextSeq returns the sequence the next appended row will get (the same as
// Status().NextSeq, without computing the rest of the status).
func (b *Buffer) NextSeq() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.nextSeq
}

// MarkDelivered records that rows first..last, above the cursor, were
// delivered (the cursor waits for the rows below them). A drop then
// reports only rows that were not. It does not move the cursor.
func (b *Buffer) MarkDelivered(first, last uint64) {
	b.mu.Lock()
	if last > b.cursor {
		b.delivered.Add(max(first, b.cursor+1), last)
	}
	b.mu.Unlock()
}

// Ack records that every row with a sequence up to seq has been delivered.
// The cursor is durable when Ack returns (one in-place write and one fsync,
// which needs no free space); then segments and WAL files holding only
// delivered rows are deleted. Acking a sequence at or below the cursor
// does nothing; acking beyond the last appended row is an error.
func (b *Buffer) Ack(seq uint64) error {
	if b.opts.ReadOnly {
		return ErrReadOnly
	}
	b.ackMu.Lock()
	defer b.ackMu.Unlock()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	if seq <= b.cursor {
		b.mu.Unlock()
		return nil
	}
	if seq >= b.nextSeq {
		next := b.nextSeq
		b.mu.Unlock()
		return fmt.Errorf("buffer: ack %d beyond the last appended sequence %d", seq, next-1)
	}
	b.mu.Unlock()
	if err := b.cur.Store(seq); err != nil {
		return err
	}
	b.mu.Lock()
	b.cursor = seq
	b.man.SetCursor(seq)
	b.delivered.Trim(seq)
	if b.readPos <= seq {
		b.readPos = seq + 1
	}
	b.mu.Unlock()
	return b.reclaim()
}

// reclaim deletes segments and rolled WAL files at or below the cursor.
func (b *Buffer) reclaim() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var first error
	n := 0
	for _, e := range b.segs {
		if e.Last > b.cursor {
			break
		}
		if err := b.fs.Remove(b.path(e.Rel())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			first = fmt.Errorf("buffer: remove %s: %w", e.Rel(), err)
			break
		}
		b.man.Forget(disk.KindData, e.First)
		b.segBytes -= e.Bytes
		b.quota.used.Add(-e.Bytes)
		n++
	}
	b.segs = slices.Delete(b.segs, 0, n)
	for _, w := range slices.Clone(b.wals) {
		if w.state != walRolled || w.lastSeq() > b.cursor || len(w.damage) > 0 {
			continue
		}
		if err := b.removeWALLocked(w, 0); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Starts appends to dst the message starts of rows first..first+rows-1
// appended in one batch (Options.MessageRows), as Next reports them.
func (b *Buffer) Starts(dst []uint64, first uint64, rows int) []uint64 {
	if rows <= 0 {
		return dst
	}
	m := disk.RecMeta{First: first, Rows: uint32(rows), MsgRows: uint32(b.opts.MessageRows)}
	return m.Starts(dst, first, m.Last())
}
