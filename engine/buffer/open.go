package buffer

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"

	"github.com/sluice-edge/sluice/engine/buffer/disk"
	"github.com/sluice-edge/sluice/engine/buffer/seqset"
)

// open builds the state from disk: it reads the directory once
// (disk.Scan, the same reading the operations tools use) and then carries
// out what the reading found (docs/format/buffer.md 9). It runs before the
// buffer is shared.
func (b *Buffer) open() ([]*CorruptionError, error) {
	fsys := b.fs
	ro := b.opts.ReadOnly
	if !ro {
		for _, d := range []string{"", disk.WALDir, disk.SegDir, disk.DeadDir, disk.QuarantineDir} {
			if err := fsys.MkdirAll(b.path(d), 0o755); err != nil {
				return nil, fmt.Errorf("buffer: create %s: %w", b.path(d), err)
			}
		}
		if err := fsys.SyncDir(b.dir); err != nil {
			return nil, fmt.Errorf("buffer: sync %s: %w", b.dir, err)
		}
	}
	d, err := disk.Scan(fsys, b.dir, disk.ScanOptions{})
	if err != nil {
		return nil, err
	}
	b.quarantine = len(d.Quarantine)
	if !ro {
		for _, t := range d.Temp {
			if err := fsys.Remove(b.path(t)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("buffer: remove %s: %w", t, err)
			}
		}
	}
	if err := b.openIdentity(d); err != nil {
		return nil, err
	}

	var reports []*CorruptionError
	cursor := d.Cursor
	if ce := d.CursorState.Damage; ce != nil {
		if !ro {
			ce.Quarantined, ce.Err = b.moveToQuarantine(disk.CursorName, "cursor")
		}
		reports = append(reports, ce)
	}
	b.cursor = cursor
	if !ro {
		if b.cur, err = disk.OpenCursorFile(fsys, b.dir, d.CursorState); err != nil {
			return nil, err
		}
		if b.marks, err = disk.OpenMarkFile(fsys, b.dir, d.Mark); err != nil {
			// Marks only check what a crash may have cut; go on without.
			b.log.Warn("cannot open the sync mark file; cut WAL files will go unnoticed until it opens", "err", err)
			b.marks = nil
		}
	}
	if d.Manifest.Problem != "" {
		ce := &CorruptionError{Segment: disk.ManifestName, Offset: d.Manifest.Offset, Reason: d.Manifest.Problem}
		if !ro {
			// Keep a copy of the damaged manifest; its valid prefix is used.
			ce.Quarantined, ce.Err = b.copyToQuarantine(disk.ManifestName, "manifest")
		}
		reports = append(reports, ce)
	}
	if d.Manifest.TornTail {
		b.ctr.torn.Add(1)
	}
	if ro {
		b.man = disk.ReadOnlyManifest(d.Manifest)
	} else if b.man, err = disk.OpenManifest(fsys, b.dir, d.Manifest); err != nil {
		return nil, err
	}
	man := b.man
	man.SetCursor(cursor)

	// WAL files.
	present := map[uint32]bool{}
	for i := range d.WAL {
		ws := &d.WAL[i]
		b.nextNum = max(b.nextNum, ws.Num)
		if ws.NoHeader {
			if !ro {
				if err := fsys.Remove(b.path(ws.Path)); err != nil {
					return nil, fmt.Errorf("buffer: remove %s: %w", ws.Path, err)
				}
			}
			continue
		}
		flag := os.O_RDWR
		if ro {
			flag = os.O_RDONLY
		}
		f, err := fsys.OpenFile(b.path(ws.Path), flag, 0)
		if err != nil {
			return nil, fmt.Errorf("buffer: open %s: %w", ws.Path, err)
		}
		present[ws.Num] = true
		res := &ws.Scan
		w := &walFile{num: ws.Num, rel: ws.Path, f: f, base: res.Base, size: ws.Bytes, recs: res.Recs, state: walRolled,
			damage: ws.Damage, syncedSize: ws.Bytes}
		w.syncedNext = w.next()
		b.wals = append(b.wals, w)
		if ws.TornAt >= 0 && len(ws.Damage) == 0 && !ro {
			if err := f.Truncate(ws.TornAt); err != nil {
				return nil, fmt.Errorf("buffer: truncate %s: %w", ws.Path, err)
			}
			if err := f.Sync(); err != nil {
				return nil, fmt.Errorf("buffer: sync %s: %w", ws.Path, err)
			}
			w.size, w.syncedSize = ws.TornAt, ws.TornAt
			b.ctr.torn.Add(1)
			// Expected after a crash during a write; under FsyncAlways
			// the torn record was never acknowledged (it lies past what
			// the sync mark recorded).
			b.log.Warn("truncated a torn WAL tail", "file", ws.Path, "offset", ws.TornAt,
				"first", res.TornFirst, "last", res.TornLast, "bytes", ws.TornBytes)
		}
		reports = append(reports, ws.Damage...)
	}
	b.nextNum = max(b.nextNum, d.MaxWALNum) + 1
	// WAL files the manifest or the sync mark record but that are gone.
	for _, ce := range d.Missing {
		if err := man.Write(disk.EncodeRemove(disk.Removed{Kind: disk.KindData, Reason: disk.ReasonMissing,
			First: ce.LostFirst, Last: ce.LostLast, Rows: ce.LostLast - ce.LostFirst + 1})); err != nil {
			return nil, err
		}
		reports = append(reports, ce)
	}
	for num := range d.Manifest.WALs {
		if !present[num] {
			man.ForgetWAL(num)
		}
	}

	// Reconcile segment files with the manifest.
	walCover := d.WALCover()
	for _, kind := range []disk.SegKind{disk.KindData, disk.KindDead} {
		states := d.Segments
		if kind == disk.KindDead {
			states = d.DeadLetters
		}
		for _, st := range states {
			rel, e := st.Path, st.Entry
			switch st.State {
			case disk.SegDelivered:
				if st.Present && !ro {
					if err := fsys.Remove(b.path(rel)); err != nil && !errors.Is(err, fs.ErrNotExist) {
						return nil, fmt.Errorf("buffer: remove %s: %w", rel, err)
					}
				}
				man.Forget(kind, e.First)
				continue
			case disk.SegUnlisted:
				// An interrupted seal, a dropped segment that reappeared,
				// or an entry the manifest lost.
				if kind == disk.KindData && (st.CoveredWAL || st.Removed) {
					if !ro {
						if err := fsys.Remove(b.path(rel)); err != nil && !errors.Is(err, fs.ErrNotExist) {
							return nil, fmt.Errorf("buffer: remove %s: %w", rel, err)
						}
					}
					continue
				}
				e, r, err := b.adopt(kind, rel, e.First, e.Last)
				if err != nil {
					return nil, err
				}
				if r != nil {
					reports = append(reports, r)
					continue
				}
				b.addSegLocked(e)
			case disk.SegMissing:
				r := &CorruptionError{Segment: rel, Offset: -1, Reason: "listed in the manifest but missing"}
				if kind == disk.KindData && !st.CoveredWAL {
					r.LostFirst, r.LostLast = max(e.First, cursor+1), e.Last
				}
				if err := man.Write(disk.EncodeRemove(disk.Removed{Kind: kind, Reason: disk.ReasonMissing, First: e.First, Last: e.Last, Rows: e.Rows})); err != nil {
					return nil, err
				}
				reports = append(reports, r)
			case disk.SegBadSize:
				r := &CorruptionError{Segment: rel, Offset: -1, Reason: fmt.Sprintf("size %d, manifest says %d", st.DiskBytes, e.Bytes)}
				if err := b.quarantineSegment(e, r, walCover); err != nil {
					return nil, err
				}
				reports = append(reports, r)
			default:
				b.addSegLocked(e)
			}
		}
	}

	// Drop WAL records that segments, drops or the cursor already cover.
	b.nextSeq = d.NextSeq
	kept := b.wals[:0]
	for _, w := range b.wals {
		w.recs = slices.DeleteFunc(w.recs, func(r disk.WALRec) bool {
			return r.Last() <= cursor || b.sealedOrRemoved(r)
		})
		if len(w.recs) == 0 && len(w.damage) == 0 && !ro {
			_ = w.f.Close()
			if err := fsys.Remove(b.path(w.rel)); err != nil {
				return nil, fmt.Errorf("buffer: remove %s: %w", w.rel, err)
			}
			man.ForgetWAL(w.num)
			continue
		}
		kept = append(kept, w)
	}
	b.wals = kept
	if d.Unbounded {
		b.nextSeq += disk.SeqJump
	}
	for _, w := range b.wals {
		b.walBytes += w.size
	}
	if !ro {
		// The replayed records are durable from here on.
		if b.opts.Fsync != FsyncNone {
			for _, w := range b.wals {
				if err := w.f.Sync(); err != nil {
					return nil, fmt.Errorf("buffer: sync %s: %w", w.rel, err)
				}
			}
		}
		// Continue the newest file when it is healthy, else start one (or,
		// when the disk has no room for it now, at the first append).
		if n := len(b.wals); n > 0 {
			w := b.wals[n-1]
			if len(w.damage) == 0 && w.size < b.opts.SegmentBytes && w.next() == b.nextSeq {
				w.state, w.refs = walActive, 1
				b.active = w
			}
		}
		if b.active == nil {
			if _, err := b.rollLocked(); err != nil {
				if !disk.IsNoSpace(err) {
					return nil, err
				}
				b.log.Warn("disk full: the write-ahead log starts when space returns", "err", err)
			}
		}
		// Every rolled file's extent is in the manifest (recorded only once
		// the file and its directory entry are synced, whatever the policy).
		if b.opts.Fsync == FsyncNone && len(b.wals) > 0 {
			if err := fsys.SyncDir(b.path(disk.WALDir)); err != nil {
				return nil, fmt.Errorf("buffer: sync %s: %w", disk.WALDir, err)
			}
		}
		for _, w := range b.wals {
			if w != b.active && len(w.damage) == 0 {
				if x, ok := d.Manifest.WALs[w.num]; !ok || x.Base != w.base || x.Next != w.next() || x.Size != w.size {
					if b.opts.Fsync == FsyncNone {
						if err := w.f.Sync(); err != nil {
							return nil, fmt.Errorf("buffer: sync %s: %w", w.rel, err)
						}
					}
					if err := man.Write(disk.EncodeWAL(disk.WALExtent{Num: w.num, Base: w.base, Next: w.next(), Size: w.size})); err != nil {
						b.log.Warn("cannot record a WAL file in the manifest", "file", w.rel, "err", err)
					}
				}
			}
		}
		if m, ok := b.markLocked(false); ok {
			b.writeMark(m)
		}
		if err := man.Compact(b.nextSeq); err != nil {
			// The log goes on uncompacted (a full disk has no room for
			// the new file).
			b.log.Warn("cannot compact the manifest", "err", err)
		}
	}
	b.visible = b.nextSeq - 1
	b.readPos = cursor + 1
	// Rows delivered or sealed were committed (only committed rows are
	// sealed); the rest waits for Commit.
	b.committed = cursor
	if n := len(b.segs); n > 0 {
		b.committed = max(b.committed, b.segs[n-1].Last)
	}
	return reports, nil
}

// openIdentity reads or records the buffer's meta file.
func (b *Buffer) openIdentity(d *disk.Dir) error {
	want := [2]string{b.opts.Edge, b.opts.Stream}
	empty := d.NextSeq <= d.Cursor+1
	sameSchema := true
	if d.Meta == nil && !empty && d.WALSchema != nil && !slices.Equal(d.WALSchema.Fields, b.opts.Schema.Fields) {
		return fmt.Errorf("buffer: %s holds undelivered rows of schema [%s], not [%s]; deliver or export them first, or use another directory", b.dir, d.WALSchema, b.opts.Schema)
	}
	if d.Meta != nil {
		b.edge, b.stream = d.Meta.Edge, d.Meta.Stream
		if s, err := d.Meta.StreamSchema(); err == nil && !slices.Equal(s.Fields, b.opts.Schema.Fields) {
			if !empty {
				return fmt.Errorf("buffer: %s holds undelivered rows of schema [%s], not [%s]; deliver or export them first, or use another directory", b.dir, s, b.opts.Schema)
			}
			sameSchema = false
		}
	}
	if b.opts.ReadOnly || (d.Meta != nil && sameSchema && (want == [2]string{} || want == [2]string{b.edge, b.stream})) {
		if b.edge == "" && b.stream == "" {
			b.edge, b.stream = want[0], want[1]
		}
		return nil
	}
	if want == [2]string{} {
		want = [2]string{b.edge, b.stream}
	}
	if d.Meta != nil && !empty && want != [2]string{b.edge, b.stream} {
		b.log.Warn("the buffer holds undelivered rows under another identity; they keep it (message IDs never change), the configured one applies once the buffer is empty",
			"recorded_edge", b.edge, "recorded_stream", b.stream, "configured_edge", want[0], "configured_stream", want[1])
		return nil
	}
	m, err := disk.NewMeta(b.opts.Schema, want[0], want[1], b.opts.Now())
	if err != nil {
		return err
	}
	if err := disk.WriteMeta(b.fs, b.dir, m); err != nil {
		if !disk.IsNoSpace(err) {
			return err
		}
		// No row is appended under an identity or schema the meta
		// file does not record: the first append writes it, and
		// waits (disk full) until it can.
		b.log.Warn("cannot record the buffer's identity yet: the disk is full; appends wait until it is recorded", "err", err)
		b.pendingMeta = m
	}
	if d.Meta != nil && (b.edge != want[0] || b.stream != want[1]) {
		b.log.Info("buffer identity changed", "edge", want[0], "stream", want[1], "was_edge", b.edge, "was_stream", b.stream)
	}
	b.edge, b.stream = want[0], want[1]
	return nil
}

// bySegFirst orders segments by first sequence, for binary searches.
func bySegFirst(e disk.SegEntry, first uint64) int { return cmp.Compare(e.First, first) }

// coveredBySegment reports whether a live data segment holds [first, last].
func (b *Buffer) coveredBySegment(first, last uint64) bool { return disk.Covers(b.segs, first, last) }

// addSegLocked adds a listed segment to the state, in order.
func (b *Buffer) addSegLocked(e disk.SegEntry) {
	list, bytes := &b.segs, &b.segBytes
	if e.Kind == disk.KindDead {
		list, bytes = &b.dead, &b.deadBytes
	}
	i, _ := slices.BinarySearchFunc(*list, e.First, bySegFirst)
	*list = slices.Insert(*list, i, e)
	*bytes += e.Bytes
}

// adopt validates a segment file the manifest does not list and lists it,
// or quarantines it. It returns the corruption found, if any.
func (b *Buffer) adopt(kind disk.SegKind, rel string, first, last uint64) (disk.SegEntry, *CorruptionError, error) {
	data, err := disk.ReadFile(b.fs, b.path(rel))
	if err != nil {
		return disk.SegEntry{}, nil, fmt.Errorf("buffer: read %s: %w", rel, err)
	}
	rec, _, rerr := disk.ReadSegment(data, b.opts.Schema, b.opts.Mem, first, last)
	if rerr != nil {
		r := &CorruptionError{Segment: rel, Offset: -1, Reason: "unlisted segment is unreadable", Err: rerr}
		if kind == disk.KindData {
			r.LostFirst, r.LostLast = max(first, b.cursor+1), last
		}
		if b.opts.ReadOnly {
			return disk.SegEntry{}, r, nil
		}
		r.Quarantined, _ = b.moveToQuarantine(rel, quarantinePrefix(kind))
		if kind == disk.KindData {
			if err := b.man.Write(disk.EncodeRemove(disk.Removed{Kind: kind, Reason: disk.ReasonCorrupt, First: first, Last: last, Rows: last - first + 1})); err != nil {
				return disk.SegEntry{}, nil, err
			}
		}
		return disk.SegEntry{}, r, nil
	}
	e := disk.SegEntry{Kind: kind, First: first, Last: last, Rows: last - first + 1, Bytes: int64(len(data)), CRC: disk.CRC(data), Written: b.opts.Now().UnixMilli()}
	if b.timeIdx >= 0 {
		e.TMin, e.TMax, e.HasTime = disk.TimeRange(rec, b.timeIdx)
	}
	rec.Release()
	if b.opts.ReadOnly {
		return e, nil, nil
	}
	if err := b.man.Write(disk.EncodeAdd(e)); err != nil {
		return disk.SegEntry{}, nil, err
	}
	b.log.Warn("adopted a segment the manifest did not list", "file", rel)
	return e, nil, nil
}

// quarantineSegment moves a damaged listed segment aside and records the
// loss in the manifest.
func (b *Buffer) quarantineSegment(e disk.SegEntry, r *CorruptionError, walCover seqset.Set) error {
	if e.Kind == disk.KindData && !walCover.ContainsRange(e.First, e.Last) && e.Last > b.cursor {
		r.LostFirst, r.LostLast = max(e.First, b.cursor+1), e.Last
	}
	if b.opts.ReadOnly {
		return nil
	}
	r.Quarantined, r.Err = b.moveToQuarantine(e.Rel(), quarantinePrefix(e.Kind))
	return b.man.Write(disk.EncodeRemove(disk.Removed{Kind: e.Kind, Reason: disk.ReasonCorrupt, First: e.First, Last: e.Last, Rows: e.Rows}))
}

// quarantinePrefix is the name prefix of a quarantined segment file.
func quarantinePrefix(k disk.SegKind) string {
	if k == disk.KindDead {
		return "dead"
	}
	return "seg"
}

// moveToQuarantine renames rel into quarantine/ and returns the new name.
func (b *Buffer) moveToQuarantine(rel, prefix string) (string, error) {
	names, err := b.fs.ReadDir(b.path(disk.QuarantineDir))
	if err != nil {
		return "", err
	}
	base := prefix + "-" + path.Base(rel)
	name := base
	for i := 1; slices.Contains(names, name); i++ {
		name = fmt.Sprintf("%s.%d", base, i)
	}
	dst := path.Join(disk.QuarantineDir, name)
	if err := b.fs.Rename(b.path(rel), b.path(dst)); err != nil {
		return "", err
	}
	if err := b.fs.SyncDir(b.path(disk.QuarantineDir)); err != nil {
		return dst, err
	}
	if err := b.fs.SyncDir(path.Dir(b.path(rel))); err != nil {
		return dst, err
	}
	b.mu.Lock()
	b.quarantine++
	b.mu.Unlock()
	return dst, nil
}

// copyToQuarantine copies rel into quarantine/ (used for the manifest,
// which is then rewritten in place).
func (b *Buffer) copyToQuarantine(rel, prefix string) (string, error) {
	data, err := disk.ReadFile(b.fs, b.path(rel))
	if err != nil {
		return "", err
	}
	dst := path.Join(disk.QuarantineDir, fmt.Sprintf("%s-%d", prefix, b.opts.Now().UnixNano()))
	if err := disk.WriteFileAtomic(b.fs, b.path(dst), data); err != nil {
		return "", err
	}
	b.quarantine++
	return dst, nil
}

func (b *Buffer) reportCorruption(r *CorruptionError) {
	b.ctr.corruptions.Add(1)
	b.mu.Lock()
	b.stats.corruptions++
	b.mu.Unlock()
	b.log.Error("corrupt buffer file", "file", r.Segment, "offset", r.Offset, "reason", r.Reason,
		"quarantined", r.Quarantined, "lost_first", r.LostFirst, "lost_last", r.LostLast, "err", r.Err)
	if b.opts.OnCorruption != nil {
		b.opts.OnCorruption(r)
	}
}
