package buffer

import (
	"fmt"
	"slices"
	"sort"

	"github.com/sluice-edge/sluice/engine/buffer/disk"
)

// The two-phase commit of a held buffer (Options.Held; docs/format/
// buffer.md 13): Sync makes what was appended durable and names the last
// row (the sink's Prepare), Commit lets readers have the rows up to a mark
// once the checkpoint holding it is durable, and Rollback forgets the rows
// after a mark when a run recovers from that checkpoint.

// readableLocked returns the highest sequence Next may return.
func (b *Buffer) readableLocked() uint64 {
	if b.opts.Held {
		return min(b.visible, b.committed)
	}
	return b.visible
}

// LastSeq returns the sequence of the last appended row (0 when none).
func (b *Buffer) LastSeq() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.nextSeq - 1
}

// Sync makes every row appended so far durable, whatever the fsync policy,
// and returns the sequence of the last of them (0 when none). It always
// falls on a record boundary. A held sink's Prepare calls it.
func (b *Buffer) Sync() (last uint64, err error) {
	if b.opts.ReadOnly {
		return 0, ErrReadOnly
	}
	b.mu.Lock()
	if err := b.appendable(); err != nil {
		b.mu.Unlock()
		return 0, err
	}
	gen, last := b.written, b.nextSeq-1
	b.mu.Unlock()
	if err := b.syncTo(gen); err != nil {
		return 0, err
	}
	if b.opts.Fsync == FsyncNone {
		// New WAL files were created without syncing their directory.
		if err := b.fs.SyncDir(b.path(disk.WALDir)); err != nil {
			return 0, fmt.Errorf("buffer: sync %s: %w", disk.WALDir, err)
		}
	}
	return last, nil
}

// Committed returns the committed sequence of a held buffer: readers get
// rows up to it.
func (b *Buffer) Committed() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.committed
}

// Commit lets readers of a held buffer have every row up to seq (a mark
// Sync returned, once the checkpoint holding it is durable). The committed
// sequence only rises: a seq at or below it does nothing. It is kept in
// memory; after a reopen the owner commits the mark of its newest
// checkpoint again. Commit returns an error wrapping ErrMark for a buffer
// not opened Held, a seq past the last appended row, or one inside a WAL
// record.
func (b *Buffer) Commit(seq uint64) error {
	if !b.opts.Held {
		return fmt.Errorf("%w: commit %d: the buffer is not held", ErrMark, seq)
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	if seq <= b.committed {
		b.mu.Unlock()
		return nil
	}
	if err := b.checkMarkLocked(seq); err != nil {
		b.mu.Unlock()
		return fmt.Errorf("commit: %w", err)
	}
	b.committed = seq
	b.wakeLocked()
	b.mu.Unlock()
	// Rolled files it covers may be sealed now.
	if b.stop != nil {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// checkMarkLocked checks that seq may be a mark: not past the last appended
// row, and not inside a WAL record.
func (b *Buffer) checkMarkLocked(seq uint64) error {
	if seq >= b.nextSeq {
		return fmt.Errorf("%w: %d is past the last stored row %d", ErrMark, seq, b.nextSeq-1)
	}
	for _, w := range b.wals {
		if len(w.recs) == 0 || seq >= w.lastSeq() {
			continue
		}
		// The first record ending at or after seq is the only one that
		// may hold it.
		i := sort.Search(len(w.recs), func(i int) bool { return w.recs[i].Last() >= seq })
		if r := w.recs[i]; r.First <= seq && seq < r.Last() {
			return fmt.Errorf("%w: %d is inside the record of rows %d-%d", ErrMark, seq, r.First, r.Last())
		}
	}
	return nil
}

// Rollback forgets every row of a held buffer after seq, so that the next
// Append continues at seq+1: the WAL is cut at the record boundary after
// seq and newer WAL files are removed, durably (a crash at any point
// leaves the buffer as it was or rolled back; calling Rollback again
// finishes it). It is called once a run recovers from a checkpoint, before
// any Append of the run. Rows after seq were never readable (they were not
// committed), so their sequences are handed out again.
//
// It returns an error wrapping ErrMark for a buffer not opened Held, a seq
// below the committed sequence (rows that may have been delivered or
// sealed), past the last appended row, or inside a WAL record.
func (b *Buffer) Rollback(seq uint64) error {
	if b.opts.ReadOnly {
		return ErrReadOnly
	}
	if !b.opts.Held {
		return fmt.Errorf("%w: roll back to %d: the buffer is not held", ErrMark, seq)
	}
	// Rolled files record their extent before anything is cut.
	b.recordPending()
	b.sealMu.Lock()
	defer b.sealMu.Unlock()
	b.syncMu.Lock()
	defer b.syncMu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.appendable(); err != nil {
		return err
	}
	if seq < b.committed {
		return fmt.Errorf("%w: roll back to %d: rows up to %d are committed (they may have left)", ErrMark, seq, b.committed)
	}
	if seq == b.nextSeq-1 {
		return nil
	}
	if err := b.checkMarkLocked(seq); err != nil {
		return fmt.Errorf("roll back: %w", err)
	}
	if n := len(b.segs); n > 0 && b.segs[n-1].Last > seq {
		return fmt.Errorf("%w: roll back to %d: rows up to %d are sealed", ErrMark, seq, b.segs[n-1].Last)
	}

	// The plan: cut keeps its records up to seq, the files in gone hold
	// only rows after it (or none, above it).
	var cut *walFile
	var keep int
	var gone []*walFile
	for _, w := range b.wals {
		i := slices.IndexFunc(w.recs, func(r disk.WALRec) bool { return r.First > seq })
		switch {
		case i < 0 && (len(w.recs) > 0 || w.base <= seq):
			// Nothing after seq.
		case i <= 0:
			gone = append(gone, w)
		default:
			cut, keep = w, i
		}
	}

	// 1. The sync mark stops naming more than what stays, durably: a
	// mark left naming a removed file would read as a loss.
	mark := disk.Mark{Num: b.nextNum - 1, Base: seq + 1, Next: seq + 1, Size: disk.WALHeaderSize}
	var size int64
	if cut != nil {
		size = cut.recs[keep].Off
		mark = disk.Mark{Num: cut.num, Base: cut.base, Next: seq + 1, Size: size}
	}
	if b.marks != nil && (cut != nil || len(gone) > 0) {
		if err := b.marks.Write(mark); err != nil {
			return fmt.Errorf("buffer: roll back: write the sync mark: %w", err)
		}
		if err := b.marks.Sync(); err != nil {
			return fmt.Errorf("buffer: roll back: sync the sync mark: %w", err)
		}
	}
	// 2. The manifest forgets everything from seq+1 on (one atomic
	// rewrite); the cut file is recorded as rolled at its new extent.
	var set []disk.WALExtent
	if cut != nil {
		set = append(set, disk.WALExtent{Num: cut.num, Base: cut.base, Next: seq + 1, Size: size})
	}
	nums := make([]uint32, 0, len(gone))
	for _, w := range gone {
		nums = append(nums, w.num)
	}
	if err := b.man.Truncate(seq+1, set, nums); err != nil {
		return fmt.Errorf("buffer: roll back: %w", noSpace(err))
	}
	// 3. Cut and remove the files. A crash before this is done leaves
	// rows after seq on disk that the manifest no longer accounts for:
	// they are replayed on open and cut by the next Rollback.
	if cut != nil {
		if err := cut.f.Truncate(size); err != nil {
			b.failed = fmt.Errorf("%w: roll back: truncate %s: %v", ErrFailed, cut.rel, err)
			return b.failed
		}
		if err := cut.f.Sync(); err != nil {
			b.failed = fmt.Errorf("%w: roll back: sync %s: %v", ErrFailed, cut.rel, err)
			return b.failed
		}
		freed := cut.size - size
		cut.recs = cut.recs[:keep]
		cut.size, cut.dirty = size, false
		cut.syncedSize, cut.syncedNext = size, seq+1
		b.walBytes -= freed
		b.quota.used.Add(-freed)
		if cut == b.active {
			// Its extent is in the manifest now: it is rolled, and the
			// next Append starts a new file at seq+1.
			cut.state = walRolled
			cut.refs--
			b.active = nil
		}
	}
	for _, w := range gone {
		if w == b.active {
			w.refs-- // the appender's reference
		}
		if err := b.removeWALLocked(w, 0); err != nil {
			b.failed = fmt.Errorf("%w: roll back: %v", ErrFailed, err)
			return b.failed
		}
	}
	if len(gone) > 0 {
		if err := b.fs.SyncDir(b.path(disk.WALDir)); err != nil {
			b.failed = fmt.Errorf("%w: roll back: sync %s: %v", ErrFailed, disk.WALDir, err)
			return b.failed
		}
	}
	// Damage reported in rows after seq is moot: those rows are gone.
	for _, w := range b.wals {
		w.damage = slices.DeleteFunc(w.damage, func(d *CorruptionError) bool { return d.LostFirst > seq })
		for _, d := range w.damage {
			if d.LostLast > seq {
				d.LostLast = seq
			}
		}
	}
	b.nextSeq = seq + 1
	b.visible = min(b.visible, seq)
	b.readPos = min(b.readPos, seq+1)
	b.log.Info("rolled back rows after the checkpoint", "seq", seq, "files_removed", len(gone), "file_cut", cut != nil)
	return nil
}
