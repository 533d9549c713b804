package buffer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
)

// Entry is a run of consecutive rows read from the buffer.
type Entry struct {
	// First is the sequence of the first row; row i has sequence First+i.
	First uint64
	// Rec holds the rows. The caller owns it and must Release it.
	Rec arrow.RecordBatch
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
}

// Next returns the next rows in sequence order, starting after the cursor
// (or where the previous Next stopped): first from segments, then from the
// WAL. It returns only rows that are durable under the fsync policy. When
// nothing is available it waits until rows are appended or ctx is done
// (returning ctx.Err()); with a done ctx it is a poll. Rows that were
// dropped or lost are skipped (they have been reported); a damaged segment
// found while reading is quarantined and reported through
// Options.OnCorruption, and Next continues after it. Next returns ErrClosed
// after Close.
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
	seg   *segEntry
	wal   *walFile
	rec   walRec
	first uint64 // first sequence available at or after pos
}

// locateLocked finds the unit holding pos, or the first unit after it.
func (b *Buffer) locateLocked(pos uint64) (location, bool) {
	i, _ := slices.BinarySearchFunc(b.segs, pos, func(e segEntry, s uint64) int {
		if e.last < s {
			return -1
		}
		return 1
	})
	if i < len(b.segs) {
		e := b.segs[i]
		return location{seg: &e, first: max(pos, e.first)}, true
	}
	for _, w := range b.wals {
		j, _ := slices.BinarySearchFunc(w.recs, pos, func(r walRec, s uint64) int {
			if r.last() < s {
				return -1
			}
			return 1
		})
		if j < len(w.recs) {
			r := w.recs[j]
			return location{wal: w, rec: r, first: max(pos, r.first)}, true
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
	if pos > b.visible {
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
	if !ok || loc.first > b.visible {
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
		rec, err := b.loadSegment(e)
		if err != nil {
			return Entry{}, nil, err
		}
		b.mu.Lock()
		if rec != nil {
			if b.cache != nil {
				b.cache.rec.Release()
			}
			b.cache = &segCache{first: e.first, last: e.last, rec: rec}
		}
		b.mu.Unlock()
		return Entry{}, nil, nil // retry: slices the cache or moves on
	}
	w, r := loc.wal, loc.rec
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
	e := Entry{First: r.first, Rec: rec}
	if pos > r.first {
		e = Entry{First: pos, Rec: rec.NewSlice(int64(pos-r.first), rec.NumRows())}
		rec.Release()
	}
	b.mu.Lock()
	b.readPos = e.Last() + 1
	b.mu.Unlock()
	b.ctr.rowsRead.Add(e.Rec.NumRows())
	return e, nil, nil
}

func (b *Buffer) sliceCacheLocked(pos uint64) Entry {
	c := b.cache
	lo := int64(pos - c.first)
	hi := min(lo+int64(b.opts.ReadRows), int64(c.last-c.first+1))
	e := Entry{First: pos, Rec: c.rec.NewSlice(lo, hi), Sealed: true}
	b.readPos = e.Last() + 1
	b.ctr.rowsRead.Add(hi - lo)
	return e
}

// loadSegment reads and verifies a segment. It returns nil, nil when the
// segment went away meanwhile or was found damaged (and handled).
func (b *Buffer) loadSegment(e segEntry) (arrow.RecordBatch, error) {
	rel := e.rel()
	data, err := readFile(b.fs, b.path(rel))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			b.mu.Lock()
			_, still := b.findSegLocked(e.first)
			b.mu.Unlock()
			if !still {
				return nil, nil // delivered or dropped meanwhile
			}
			b.segmentCorrupt(e, &CorruptionError{Segment: rel, Offset: -1, Reason: "listed in the manifest but missing"}, false)
			return nil, nil
		}
		return nil, fmt.Errorf("buffer: read %s: %w", rel, err)
	}
	switch {
	case int64(len(data)) != e.bytes:
		b.segmentCorrupt(e, &CorruptionError{Segment: rel, Offset: -1, Reason: fmt.Sprintf("size %d, manifest says %d", len(data), e.bytes)}, true)
		return nil, nil
	case crc(data) != e.crc:
		b.segmentCorrupt(e, &CorruptionError{Segment: rel, Offset: -1, Reason: "file checksum mismatch"}, true)
		return nil, nil
	}
	rec, err := readSegment(data, b.layout, b.opts.Schema, b.opts.Mem, e.first, e.last)
	if err != nil {
		b.segmentCorrupt(e, &CorruptionError{Segment: rel, Offset: -1, Reason: "unreadable segment", Err: err}, true)
		return nil, nil
	}
	return rec, nil
}

func (b *Buffer) findSegLocked(first uint64) (int, bool) {
	return slices.BinarySearchFunc(b.segs, first, func(e segEntry, s uint64) int {
		switch {
		case e.first < s:
			return -1
		case e.first > s:
			return 1
		}
		return 0
	})
}

// segmentCorrupt quarantines a damaged data segment found while reading,
// records the loss and reports it.
func (b *Buffer) segmentCorrupt(e segEntry, r *CorruptionError, present bool) {
	b.mu.Lock()
	i, ok := b.findSegLocked(e.first)
	if !ok {
		b.mu.Unlock()
		return
	}
	b.segs = slices.Delete(b.segs, i, i+1)
	b.segBytes -= e.bytes
	cursor := b.cursor
	b.mu.Unlock()
	b.quota.used.Add(-e.bytes)
	if present {
		r.Quarantined, r.Err = b.moveToQuarantine(e.rel(), "seg")
	}
	if e.last > cursor {
		r.LostFirst, r.LostLast = max(e.first, cursor+1), e.last
	}
	reason := uint8(reasonCorrupt)
	if !present {
		reason = reasonMissing
	}
	if err := b.man.write(encodeRemove(seqRange{kind: kindData, reason: reason, first: e.first, last: e.last, rows: e.rows})); err != nil {
		b.log.Error("cannot record a lost segment in the manifest", "err", err)
	}
	b.reportCorruption(r)
}

// readWALRecord reads and decodes one WAL record.
func (b *Buffer) readWALRecord(w *walFile, r walRec) (arrow.RecordBatch, error) {
	payload := make([]byte, r.length)
	if _, err := w.f.ReadAt(payload, r.off+recHeaderSize); err != nil {
		return nil, fmt.Errorf("buffer: read %s: %w", w.rel, err)
	}
	if crc(payload) != r.pcrc {
		return nil, &CorruptionError{Segment: w.rel, Offset: r.off, Reason: "bad payload checksum", LostFirst: r.first, LostLast: r.last()}
	}
	rec, err := decodeRecord(payload, b.arrow, b.opts.Mem)
	if err != nil {
		return nil, &CorruptionError{Segment: w.rel, Offset: r.off, Reason: "undecodable payload", Err: err, LostFirst: r.first, LostLast: r.last()}
	}
	return rec, nil
}

// walRecordCorrupt drops a WAL record found damaged after it was written.
// The file is quarantined (and the loss recorded) when it is sealed. The
// caller reports ce once it holds no lock.
func (b *Buffer) walRecordCorrupt(w *walFile, r walRec, ce *CorruptionError) {
	b.mu.Lock()
	w.recs = slices.DeleteFunc(w.recs, func(x walRec) bool { return x.off == r.off })
	w.damage = append(w.damage, ce)
	if w == b.active {
		// Stop appending to a damaged file.
		if err := b.rollLocked(); err != nil {
			b.log.Error("cannot roll a damaged WAL file", "err", err)
		}
	}
	b.mu.Unlock()
}

// Rewind makes the next Next start again right after the cursor, for
// example after a publish failed.
func (b *Buffer) Rewind() {
	b.mu.Lock()
	b.readPos = b.cursor + 1
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

// Ack records that every row with a sequence up to seq has been delivered.
// The cursor is durable when Ack returns; then segments and WAL files
// holding only delivered rows are deleted. Acking a sequence at or below
// the cursor does nothing; acking beyond the last appended row is an
// error.
func (b *Buffer) Ack(seq uint64) error {
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
	if err := storeCursor(b.fs, b.dir, seq); err != nil {
		return err
	}
	b.mu.Lock()
	b.cursor = seq
	b.man.setCursor(seq)
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
		if e.last > b.cursor {
			break
		}
		if err := b.fs.Remove(b.path(e.rel())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			first = fmt.Errorf("buffer: remove %s: %w", e.rel(), err)
			break
		}
		b.man.forget(kindData, e.first)
		b.segBytes -= e.bytes
		b.quota.used.Add(-e.bytes)
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
