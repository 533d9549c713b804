package buffer

import (
	"errors"
	"fmt"
	"os"
	"path"
	"slices"

	"github.com/sluice-edge/sluice/engine/buffer/disk"
)

// Seal rewrites every rolled WAL file as Parquet segments, oldest first,
// and removes it (or, when it was found damaged, moves it to quarantine).
// Rows already delivered are left out; a file holding only delivered rows is
// removed without sealing. Seal returns at the first failure, leaving the
// failed file and the newer ones in the WAL; a later Seal retries.
func (b *Buffer) Seal() error {
	if b.opts.ReadOnly {
		return nil
	}
	b.sealMu.Lock()
	defer b.sealMu.Unlock()
	for {
		w, recs := b.pickSeal()
		if w == nil {
			return nil
		}
		var found []*CorruptionError
		err := b.sealFile(w, recs, &found)
		b.mu.Lock()
		if w.state == walSealing {
			w.state = walRolled
		}
		b.unrefLocked(w)
		b.sealed.Broadcast()
		b.mu.Unlock()
		for _, ce := range found {
			b.reportCorruption(ce)
		}
		if err != nil {
			b.ctr.sealErrors.Add(1)
			return err
		}
	}
}

// pickSeal marks the oldest rolled WAL file as sealing and returns it with
// the records still to seal.
func (b *Buffer) pickSeal() (*walFile, []disk.WALRec) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, nil
	}
	for _, w := range b.wals {
		if w.state == walActive {
			return nil, nil
		}
		if w.state != walRolled {
			continue
		}
		if b.uncommitted(w) {
			// Uncommitted rows are never sealed: a rollback may still
			// forget them. Files are sealed in order; wait for Commit.
			return nil, nil
		}
		w.state = walSealing
		w.refs++
		// Leave out rows delivered or already sealed (by an earlier,
		// interrupted attempt on this file).
		var recs []disk.WALRec
		for _, r := range w.recs {
			if r.Last() > b.cursor && !b.coveredBySegment(r.First, r.Last()) {
				recs = append(recs, r)
			}
		}
		return w, recs
	}
	return nil, nil
}

// sealFile seals the given records of w, one segment per run of
// consecutive sequences, then removes or quarantines w.
func (b *Buffer) sealFile(w *walFile, recs []disk.WALRec, found *[]*CorruptionError) error {
	// New segments count toward the quota once the WAL file they replace
	// stops counting (or the attempt ends), so that sealing never makes
	// the quota look exceeded.
	var added int64
	defer func() { b.quota.used.Add(added) }()
	for len(recs) > 0 {
		n := 1
		for n < len(recs) && recs[n].First == recs[n-1].Last()+1 {
			n++
		}
		run := recs[:n]
		e, err := b.writeSegment(w, run)
		var ce *CorruptionError
		if errors.As(err, &ce) {
			// A record went bad since it was written: drop it, seal
			// the rest.
			i := slices.IndexFunc(recs, func(r disk.WALRec) bool { return r.Off == ce.Offset })
			if i < 0 {
				return err
			}
			b.walRecordCorrupt(w, recs[i], ce)
			*found = append(*found, ce)
			recs = slices.Delete(recs, i, i+1)
			continue
		}
		if err != nil {
			return err
		}
		if err := b.man.Write(disk.EncodeAdd(e)); err != nil {
			return err
		}
		b.mu.Lock()
		b.addSegLocked(e)
		b.mu.Unlock()
		added += e.Bytes
		b.ctr.sealed.Add(1)
		recs = recs[n:]
	}
	b.mu.Lock()
	damage := w.damage
	b.mu.Unlock()
	if len(damage) == 0 {
		b.mu.Lock()
		err := b.removeWALLocked(w, added)
		if err == nil {
			added = 0
		}
		b.mu.Unlock()
		if err != nil {
			return err
		}
	} else {
		// Record what the damage lost, then move the file aside.
		for _, d := range damage {
			if d.LostFirst != 0 && d.LostLast != 0 {
				if err := b.man.Write(disk.EncodeRemove(disk.Removed{Kind: disk.KindData, Reason: disk.ReasonCorrupt, First: d.LostFirst, Last: d.LostLast, Rows: d.LostLast - d.LostFirst + 1})); err != nil {
					return err
				}
			}
		}
		q, err := b.moveToQuarantine(w.rel, "wal")
		if err != nil {
			return fmt.Errorf("buffer: quarantine %s: %w", w.rel, err)
		}
		for _, d := range damage {
			if d.Quarantined == "" {
				d.Quarantined = q
			}
		}
		b.mu.Lock()
		b.forgetWALLocked(w, added)
		added = 0
		b.mu.Unlock()
	}
	return b.reclaim()
}

// writeSegment publishes one segment holding the records of run (which
// carry consecutive sequences): tmp file, fsync, rename, fsync directory.
func (b *Buffer) writeSegment(w *walFile, run []disk.WALRec) (disk.SegEntry, error) {
	first, last := run[0].First, run[len(run)-1].Last()
	e := disk.SegEntry{Kind: disk.KindData, First: first, Last: last, Rows: last - first + 1, Written: run[0].Wall}
	for _, r := range run {
		e.Written = min(e.Written, r.Wall)
		if r.HasTime {
			if !e.HasTime {
				e.TMin, e.TMax, e.HasTime = r.TMin, r.TMax, true
			}
			e.TMin, e.TMax = min(e.TMin, r.TMin), max(e.TMax, r.TMax)
		}
	}
	rel := e.Rel()
	tmp := b.path(rel) + ".tmp"
	f, err := b.fs.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return e, fmt.Errorf("buffer: create %s: %w", tmp, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = b.fs.Remove(tmp)
		}
	}()
	cw := &disk.CRCWriter{W: f}
	sw := disk.NewSegWriter(cw, b.layout, b.codec, first, last, nil)
	var starts []uint64
	for _, r := range run {
		rec, err := b.readWALRecord(w, r)
		if err != nil {
			return e, err
		}
		starts = r.Starts(starts[:0], r.First, r.Last())
		err = sw.Write(rec, r.First, starts, "")
		rec.Release()
		if err != nil {
			return e, fmt.Errorf("buffer: write %s: %w", rel, err)
		}
	}
	if err := sw.Close(); err != nil {
		return e, fmt.Errorf("buffer: write %s: %w", rel, err)
	}
	if err := f.Sync(); err != nil {
		return e, fmt.Errorf("buffer: sync %s: %w", rel, err)
	}
	ok = true
	if err := f.Close(); err != nil {
		_ = b.fs.Remove(tmp)
		return e, fmt.Errorf("buffer: close %s: %w", rel, err)
	}
	if err := b.fs.Rename(tmp, b.path(rel)); err != nil {
		_ = b.fs.Remove(tmp)
		return e, fmt.Errorf("buffer: publish %s: %w", rel, err)
	}
	if err := b.fs.SyncDir(path.Dir(b.path(rel))); err != nil {
		return e, fmt.Errorf("buffer: sync %s: %w", disk.SegDir, err)
	}
	e.Bytes, e.CRC = cw.N, cw.CRC
	return e, nil
}
