package buffer

import (
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
)

// Seal rewrites every rolled WAL file as Parquet segments, oldest first,
// and removes it (or, when it was found damaged, moves it to quarantine).
// Rows already delivered are left out; a file holding only delivered rows is
// removed without sealing. Seal returns at the first failure, leaving the
// failed file and the newer ones in the WAL; a later Seal retries.
func (b *Buffer) Seal() error {
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
func (b *Buffer) pickSeal() (*walFile, []walRec) {
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
		w.state = walSealing
		w.refs++
		// Leave out rows delivered or already sealed (by an earlier,
		// interrupted attempt on this file).
		var recs []walRec
		for _, r := range w.recs {
			if r.last() > b.cursor && !b.coveredBySegment(r.first, r.last()) {
				recs = append(recs, r)
			}
		}
		return w, recs
	}
	return nil, nil
}

// sealFile seals the given records of w, one segment per run of
// consecutive sequences, then removes or quarantines w.
func (b *Buffer) sealFile(w *walFile, recs []walRec, found *[]*CorruptionError) error {
	// New segments count toward the quota once the WAL file they replace
	// stops counting (or the attempt ends), so that sealing never makes
	// the quota look exceeded.
	var added int64
	defer func() { b.quota.used.Add(added) }()
	for len(recs) > 0 {
		n := 1
		for n < len(recs) && recs[n].first == recs[n-1].last()+1 {
			n++
		}
		run := recs[:n]
		e, err := b.writeSegment(w, run)
		var ce *CorruptionError
		if errors.As(err, &ce) {
			// A record went bad since it was written: drop it, seal
			// the rest.
			i := slices.IndexFunc(recs, func(r walRec) bool { return r.off == ce.Offset })
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
		if err := b.man.write(encodeAdd(e)); err != nil {
			return err
		}
		b.mu.Lock()
		i, _ := slices.BinarySearchFunc(b.segs, e.first, func(x segEntry, s uint64) int {
			switch {
			case x.first < s:
				return -1
			case x.first > s:
				return 1
			}
			return 0
		})
		b.segs = slices.Insert(b.segs, i, e)
		b.segBytes += e.bytes
		b.mu.Unlock()
		added += e.bytes
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
				if err := b.man.write(encodeRemove(seqRange{kind: kindData, reason: reasonCorrupt, first: d.LostFirst, last: d.LostLast, rows: d.LostLast - d.LostFirst + 1})); err != nil {
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
func (b *Buffer) writeSegment(w *walFile, run []walRec) (segEntry, error) {
	first, last := run[0].first, run[len(run)-1].last()
	e := segEntry{kind: kindData, first: first, last: last, rows: last - first + 1, written: run[0].wall}
	for _, r := range run {
		e.written = min(e.written, r.wall)
		if r.hasTime {
			if !e.hasTime {
				e.tmin, e.tmax, e.hasTime = r.tmin, r.tmax, true
			}
			e.tmin, e.tmax = min(e.tmin, r.tmin), max(e.tmax, r.tmax)
		}
	}
	rel := e.rel()
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
	cw := &crcWriter{w: f}
	sw := newSegWriter(cw, b.layout, b.opts.Schema, b.codec, first, last)
	for _, r := range run {
		rec, err := b.readWALRecord(w, r)
		if err != nil {
			return e, err
		}
		err = sw.write(rec, r.first, "")
		rec.Release()
		if err != nil {
			return e, fmt.Errorf("buffer: write %s: %w", rel, err)
		}
	}
	if err := sw.close(); err != nil {
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
		return e, fmt.Errorf("buffer: sync %s: %w", segDir, err)
	}
	e.bytes, e.crc = cw.n, cw.crc
	return e, nil
}
