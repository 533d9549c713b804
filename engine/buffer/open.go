package buffer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
)

// open builds the state from disk. It runs before the buffer is shared.
func (b *Buffer) open() ([]*CorruptionError, error) {
	fsys := b.fs
	for _, d := range []string{"", walDir, segDir, deadDir, quarantineDir} {
		if err := fsys.MkdirAll(b.path(d), 0o755); err != nil {
			return nil, fmt.Errorf("buffer: create %s: %w", b.path(d), err)
		}
	}
	if err := fsys.SyncDir(b.dir); err != nil {
		return nil, fmt.Errorf("buffer: sync %s: %w", b.dir, err)
	}
	for _, d := range []string{"", segDir, deadDir} {
		names, err := fsys.ReadDir(b.path(d))
		if err != nil {
			return nil, fmt.Errorf("buffer: list %s: %w", b.path(d), err)
		}
		for _, n := range names {
			if strings.HasSuffix(n, ".tmp") {
				if err := fsys.Remove(b.path(path.Join(d, n))); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return nil, fmt.Errorf("buffer: remove %s: %w", n, err)
				}
			}
		}
	}
	q, err := fsys.ReadDir(b.path(quarantineDir))
	if err != nil {
		return nil, fmt.Errorf("buffer: list quarantine: %w", err)
	}
	b.quarantine = len(q)

	var reports []*CorruptionError
	cursor, cerr, err := loadCursor(fsys, b.dir)
	if err != nil {
		return nil, err
	}
	if cerr != nil {
		cerr.Quarantined, cerr.Err = b.moveToQuarantine(cursorName, "cursor")
		reports = append(reports, cerr)
	}
	b.cursor = cursor

	man, merr, torn, err := openManifest(fsys, b.dir)
	if err != nil {
		return nil, err
	}
	b.man = man
	man.cursor = cursor
	if merr != nil {
		// Keep a copy of the damaged manifest; its valid prefix is in man.
		merr.Quarantined, merr.Err = b.copyToQuarantine(manifestName, "manifest")
		reports = append(reports, merr)
	}
	if torn {
		b.ctr.torn.Add(1)
	}

	// Replay the WAL.
	names, err := fsys.ReadDir(b.path(walDir))
	if err != nil {
		return nil, fmt.Errorf("buffer: list wal: %w", err)
	}
	unbounded := false
	floor := uint64(0) // highest base sequence seen in file headers
	for _, n := range names {
		num, ok := parseWALName(n)
		if !ok {
			continue
		}
		b.nextNum = max(b.nextNum, num)
		rel := path.Join(walDir, n)
		data, err := readFile(fsys, b.path(rel))
		if err != nil {
			return nil, fmt.Errorf("buffer: read %s: %w", rel, err)
		}
		res := scanWAL(data, rel)
		if res.noHeader {
			if err := fsys.Remove(b.path(rel)); err != nil {
				return nil, fmt.Errorf("buffer: remove %s: %w", rel, err)
			}
			continue
		}
		f, err := fsys.OpenFile(b.path(rel), os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("buffer: open %s: %w", rel, err)
		}
		w := &walFile{num: num, rel: rel, f: f, base: res.base, size: int64(len(data)), recs: res.recs, state: walRolled, damage: res.damage}
		b.wals = append(b.wals, w)
		if res.tornAt >= 0 && len(res.damage) == 0 {
			if err := f.Truncate(res.tornAt); err != nil {
				return nil, fmt.Errorf("buffer: truncate %s: %w", rel, err)
			}
			if err := f.Sync(); err != nil {
				return nil, fmt.Errorf("buffer: sync %s: %w", rel, err)
			}
			w.size = res.tornAt
			b.ctr.torn.Add(1)
			// Expected after a crash during a write; under FsyncAlways
			// the torn record was never acknowledged.
			b.log.Warn("truncated a torn WAL tail", "file", rel, "offset", res.tornAt,
				"first", res.tornFirst, "last", res.tornLast, "bytes", int64(len(data))-res.tornAt)
		}
		floor = max(floor, res.base)
		unbounded = unbounded || res.unbounded
		reports = append(reports, res.damage...)
	}

	// Reconcile segment files with the manifest.
	walCover := b.walCoverage()
	for _, kind := range []segKind{kindData, kindDead} {
		dir := segDir
		if kind == kindDead {
			dir = deadDir
		}
		names, err := fsys.ReadDir(b.path(dir))
		if err != nil {
			return nil, fmt.Errorf("buffer: list %s: %w", dir, err)
		}
		present := map[uint64]string{}
		for _, n := range names {
			first, last, ok := parseSegName(n)
			if !ok {
				continue
			}
			rel := path.Join(dir, n)
			e, listed := man.live[segKey{kind, first}]
			if listed && e.last == last {
				present[first] = rel
				continue
			}
			// Not listed: an interrupted seal, a delivered or dropped
			// segment that reappeared, or an entry the manifest lost.
			if kind == kindData && (last <= cursor || walCover.contains(first, last) || man.removedContains(first, last)) {
				if err := fsys.Remove(b.path(rel)); err != nil {
					return nil, fmt.Errorf("buffer: remove %s: %w", rel, err)
				}
				continue
			}
			r, err := b.adopt(kind, rel, first, last)
			if err != nil {
				return nil, err
			}
			if r != nil {
				reports = append(reports, r)
			} else {
				present[first] = rel
			}
		}
		for _, e := range sortedEntries(man.live, kind) {
			rel := e.rel()
			if _, ok := present[e.first]; !ok {
				if kind == kindData && e.last <= cursor {
					man.forget(kind, e.first)
					continue
				}
				r := &CorruptionError{Segment: rel, Offset: -1, Reason: "listed in the manifest but missing"}
				if kind == kindData && !walCover.contains(e.first, e.last) {
					r.LostFirst, r.LostLast = max(e.first, cursor+1), e.last
				}
				if err := man.write(encodeRemove(seqRange{kind: kind, reason: reasonMissing, first: e.first, last: e.last, rows: e.rows})); err != nil {
					return nil, err
				}
				reports = append(reports, r)
				continue
			}
			fi, err := fsys.Stat(b.path(rel))
			if err != nil {
				return nil, fmt.Errorf("buffer: stat %s: %w", rel, err)
			}
			if kind == kindData && e.last <= cursor {
				if err := fsys.Remove(b.path(rel)); err != nil {
					return nil, fmt.Errorf("buffer: remove %s: %w", rel, err)
				}
				man.forget(kind, e.first)
				continue
			}
			if fi.Size() != e.bytes {
				r := &CorruptionError{Segment: rel, Offset: -1, Reason: fmt.Sprintf("size %d, manifest says %d", fi.Size(), e.bytes)}
				if err := b.quarantineSegment(e, r, walCover); err != nil {
					return nil, err
				}
				reports = append(reports, r)
				continue
			}
			if kind == kindData {
				b.segs = append(b.segs, e)
				b.segBytes += e.bytes
			} else {
				b.dead = append(b.dead, e)
				b.deadBytes += e.bytes
			}
		}
	}

	// Drop WAL records that segments, drops or the cursor already cover.
	b.nextSeq = max(cursor+1, man.high, floor, 1)
	for _, e := range b.segs {
		b.nextSeq = max(b.nextSeq, e.last+1)
	}
	for _, r := range man.removed {
		b.nextSeq = max(b.nextSeq, r.last+1)
	}
	kept := b.wals[:0]
	for _, w := range b.wals {
		b.nextSeq = max(b.nextSeq, w.lastSeq()+1)
		w.recs = slices.DeleteFunc(w.recs, func(r walRec) bool {
			return r.last() <= cursor || b.coveredBySegment(r.first, r.last()) || man.removedContains(r.first, r.last())
		})
		if len(w.recs) == 0 && len(w.damage) == 0 {
			_ = w.f.Close()
			if err := fsys.Remove(b.path(w.rel)); err != nil {
				return nil, fmt.Errorf("buffer: remove %s: %w", w.rel, err)
			}
			continue
		}
		kept = append(kept, w)
	}
	b.wals = kept
	if unbounded {
		b.nextSeq += seqJump
	}
	// The replayed records are durable from here on.
	if b.opts.Fsync != FsyncNone {
		for _, w := range b.wals {
			if err := w.f.Sync(); err != nil {
				return nil, fmt.Errorf("buffer: sync %s: %w", w.rel, err)
			}
		}
	}
	for _, w := range b.wals {
		b.walBytes += w.size
	}
	b.nextNum++
	// Continue the newest file when it is healthy, else start one.
	if n := len(b.wals); n > 0 {
		w := b.wals[n-1]
		next := w.base
		if len(w.recs) > 0 {
			next = w.lastSeq() + 1
		}
		if len(w.damage) == 0 && w.size < b.opts.SegmentBytes && next == b.nextSeq {
			w.state, w.refs = walActive, 1
			b.active = w
		}
	}
	if b.active == nil {
		if err := b.rollLocked(); err != nil {
			return nil, err
		}
	}
	b.visible = b.nextSeq - 1
	b.readPos = cursor + 1
	if err := man.compact(b.nextSeq); err != nil {
		return nil, err
	}
	return reports, nil
}

// walCoverage returns the sequence ranges held by valid WAL records.
func (b *Buffer) walCoverage() ranges {
	var rs ranges
	for _, w := range b.wals {
		for _, r := range w.recs {
			rs = rs.add(r.first, r.last())
		}
	}
	return rs
}

// coveredBySegment reports whether a live data segment holds [first, last].
func (b *Buffer) coveredBySegment(first, last uint64) bool {
	i, _ := slices.BinarySearchFunc(b.segs, first, func(e segEntry, s uint64) int {
		switch {
		case e.last < s:
			return -1
		case e.first > s:
			return 1
		}
		return 0
	})
	return i < len(b.segs) && b.segs[i].first <= first && last <= b.segs[i].last
}

// ranges is a list of closed sequence ranges.
type ranges [][2]uint64

func (rs ranges) add(first, last uint64) ranges {
	// Records arrive in order: extend the last range when adjacent.
	if n := len(rs); n > 0 && rs[n-1][0] <= first && first <= rs[n-1][1]+1 {
		rs[n-1][1] = max(rs[n-1][1], last)
		return rs
	}
	return append(rs, [2]uint64{first, last})
}

func (rs ranges) contains(first, last uint64) bool {
	for _, r := range rs {
		if r[0] <= first && last <= r[1] {
			return true
		}
	}
	return false
}

func sortedEntries(m map[segKey]segEntry, kind segKind) []segEntry {
	var out []segEntry
	for k, e := range m {
		if k.kind == kind {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b segEntry) int {
		switch {
		case a.first < b.first:
			return -1
		case a.first > b.first:
			return 1
		}
		return 0
	})
	return out
}

// adopt validates a segment file the manifest does not list and lists it,
// or quarantines it. It returns the corruption found, if any.
func (b *Buffer) adopt(kind segKind, rel string, first, last uint64) (*CorruptionError, error) {
	data, err := readFile(b.fs, b.path(rel))
	if err != nil {
		return nil, fmt.Errorf("buffer: read %s: %w", rel, err)
	}
	l := b.layout
	if kind == kindDead {
		if l, err = newSegLayout(b.opts.Schema, true); err != nil {
			return nil, err
		}
	}
	rec, rerr := readSegment(data, l, b.opts.Schema, b.opts.Mem, first, last)
	if rerr != nil {
		r := &CorruptionError{Segment: rel, Offset: -1, Reason: "unlisted segment is unreadable", Err: rerr}
		if kind == kindData {
			r.LostFirst, r.LostLast = max(first, b.cursor+1), last
		}
		r.Quarantined, _ = b.moveToQuarantine(rel, string(kindPrefix(kind)))
		if kind == kindData {
			if err := b.man.write(encodeRemove(seqRange{kind: kind, reason: reasonCorrupt, first: first, last: last, rows: last - first + 1})); err != nil {
				return nil, err
			}
		}
		return r, nil
	}
	e := segEntry{kind: kind, first: first, last: last, rows: last - first + 1, bytes: int64(len(data)), crc: crc(data), written: b.opts.Now().UnixMilli()}
	if b.timeIdx >= 0 {
		e.tmin, e.tmax, e.hasTime = timeRange(rec, b.timeIdx)
	}
	rec.Release()
	if err := b.man.write(encodeAdd(e)); err != nil {
		return nil, err
	}
	b.log.Warn("adopted a segment the manifest did not list", "file", rel)
	return nil, nil
}

func kindPrefix(k segKind) string {
	if k == kindDead {
		return "dead"
	}
	return "seg"
}

// quarantineSegment moves a damaged listed segment aside and records the
// loss in the manifest.
func (b *Buffer) quarantineSegment(e segEntry, r *CorruptionError, walCover ranges) error {
	r.Quarantined, r.Err = b.moveToQuarantine(e.rel(), kindPrefix(e.kind))
	if e.kind == kindData && !walCover.contains(e.first, e.last) && e.last > b.cursor {
		r.LostFirst, r.LostLast = max(e.first, b.cursor+1), e.last
	}
	return b.man.write(encodeRemove(seqRange{kind: e.kind, reason: reasonCorrupt, first: e.first, last: e.last, rows: e.rows}))
}

// moveToQuarantine renames rel into quarantine/ and returns the new name.
func (b *Buffer) moveToQuarantine(rel, prefix string) (string, error) {
	names, err := b.fs.ReadDir(b.path(quarantineDir))
	if err != nil {
		return "", err
	}
	base := prefix + "-" + path.Base(rel)
	name := base
	for i := 1; slices.Contains(names, name); i++ {
		name = fmt.Sprintf("%s.%d", base, i)
	}
	dst := path.Join(quarantineDir, name)
	if err := b.fs.Rename(b.path(rel), b.path(dst)); err != nil {
		return "", err
	}
	if err := b.fs.SyncDir(b.path(quarantineDir)); err != nil {
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
	data, err := readFile(b.fs, b.path(rel))
	if err != nil {
		return "", err
	}
	dst := path.Join(quarantineDir, fmt.Sprintf("%s-%d", prefix, b.opts.Now().UnixNano()))
	if err := writeFileAtomic(b.fs, b.path(dst), data); err != nil {
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
