package buffer

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer/disk"
	"github.com/sluice-edge/sluice/engine/buffer/seqset"
)

// Buffer is the durable buffer of one sink: one directory, one schema.
//
// Append may be called from many goroutines. Next, Rewind and Ack are meant
// for one forwarder; Next calls are serialised. Seal, Roll, Expire, Status
// and DeadLetter may be called at any time. Close is idempotent.
type Buffer struct {
	opts      Options
	dir       string
	fs        FS
	arrow     *arrow.Schema
	timeIdx   int
	schemaMsg []byte
	layout    *disk.Layout
	codec     *disk.Codec
	quota     *Quota
	man       *disk.Manifest
	cur       *disk.CursorFile
	marks     *disk.MarkFile
	lock      *dirLock
	log       *slog.Logger
	ctr       counters

	// edge and stream are the identity in effect (see Identity).
	edge, stream string
	// pendingMeta is the meta file still to write before the first
	// append (the disk was full when the buffer opened).
	pendingMeta *disk.Meta

	mu     sync.Mutex
	sealed *sync.Cond // broadcast when a WAL file leaves the sealing state
	closed bool
	failed error // set when an fsync failed; appends are refused

	nextSeq    uint64 // sequence of the next appended row
	visible    uint64 // highest sequence that is durable under the policy
	committed  uint64 // Held: highest sequence readers may see (Commit)
	written    uint64 // WAL writes so far (group-commit generation)
	cursor     uint64
	readPos    uint64
	appends    uint64 // appends so far (idle detection)
	nextNum    uint32
	wals       []*walFile // by number; the last one is active
	active     *walFile   // nil until the first append after open
	segs       []disk.SegEntry
	dead       []disk.SegEntry
	walBytes   int64
	segBytes   int64
	deadBytes  int64
	notify     chan struct{} // closed and replaced when visible advances
	cache      *segCache     // decoded segment being read
	stats      dropStats
	quarantine int // files in quarantine/
	delivered  seqset.Set
	noSpace    bool // the last append failed for lack of space
	sealWarned bool
	unrecorded []*walFile // rolled files whose extent the manifest lacks

	syncMu sync.Mutex
	synced uint64 // generation covered by the last successful sync

	sealMu sync.Mutex // one sealing at a time
	ackMu  sync.Mutex // one Ack at a time
	rmu    sync.Mutex // one Next at a time

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
}

type counters struct {
	rowsIn, bytesIn, rowsDropped, unitsDropped, corruptions, torn, sealed, sealErrors, rowsRead, noSpace *atomic.Int64
}

type dropStats struct {
	rows, units, bytes int64
	corruptions        int64
}

// Open opens (or creates) the buffer in dir, replays its WAL and
// reconciles its segments with the manifest. Damage found on the way is
// quarantined and reported through Options.OnCorruption; it never makes
// Open fail. Open fails on I/O errors, invalid options and, with ErrLocked,
// when another buffer has dir open. Open needs no free disk space for a
// buffer that exists already: on a full disk it opens, delivers and frees
// space; appends wait for room (ErrNoSpace).
func Open(dir string, opts Options) (*Buffer, error) {
	if err := opts.normalize(); err != nil {
		return nil, err
	}
	b := &Buffer{
		opts:    opts,
		dir:     dir,
		fs:      opts.FS,
		arrow:   opts.Schema.Arrow(),
		timeIdx: opts.Schema.TimeIndex(),
		log:     opts.Log.With("buffer", dir),
		notify:  make(chan struct{}),
		kick:    make(chan struct{}, 1),
		codec:   new(disk.Codec),
	}
	b.sealed = sync.NewCond(&b.mu)
	c := opts.Counters
	b.ctr = counters{
		rowsIn: c.Counter("rows_appended"), bytesIn: c.Counter("bytes_appended"),
		rowsDropped: c.Counter("rows_dropped"), unitsDropped: c.Counter("segments_dropped"),
		corruptions: c.Counter("corruptions"), torn: c.Counter("torn_tails"),
		sealed: c.Counter("segments_sealed"), sealErrors: c.Counter("seal_errors"),
		rowsRead: c.Counter("rows_read"), noSpace: c.Counter("no_space_waits"),
	}
	var err error
	if b.schemaMsg, err = disk.SchemaMessage(b.arrow); err != nil {
		return nil, fmt.Errorf("buffer: encode schema: %w", err)
	}
	if b.layout, err = disk.NewLayout(opts.Schema, false); err != nil {
		return nil, err
	}
	if opts.FS == OS {
		if b.lock, err = lockDir(dir, opts.ReadOnly); err != nil {
			return nil, err
		}
	}
	reports, err := b.open()
	if err != nil {
		b.release()
		return nil, err
	}
	b.quota = opts.Quota
	if b.quota == nil {
		b.quota = NewQuota(opts.MaxBytes, opts.Policy, opts.Droppable)
	}
	if !opts.ReadOnly {
		b.quota.join(b, b.walBytes+b.segBytes+b.deadBytes)
		// Salvage damaged WAL files now (so that their reports name the
		// quarantined file); leave healthy rolled files to the sealer so
		// that opening stays fast.
		damaged := false
		for _, w := range b.wals {
			damaged = damaged || len(w.damage) > 0
		}
		if damaged {
			if err := b.Seal(); err != nil {
				b.log.Warn("salvaging a damaged WAL file failed; will retry", "err", err)
			}
		} else if len(b.wals) > 1 {
			b.kick <- struct{}{}
		}
	}
	for _, r := range reports {
		b.reportCorruption(r)
	}
	if opts.ReadOnly {
		return b, nil
	}
	if opts.Fsync != FsyncAlways || !opts.ManualSeal {
		b.stop, b.done = make(chan struct{}), make(chan struct{})
		go b.loop()
	}
	return b, nil
}

// release closes what a failed Open opened.
func (b *Buffer) release() {
	b.codec.Close()
	b.closeFiles()
	if b.man != nil {
		_ = b.man.Close()
	}
	if b.cur != nil {
		_ = b.cur.Close()
	}
	if b.marks != nil {
		_ = b.marks.Close()
	}
	b.lock.unlock()
}

func (b *Buffer) path(rel string) string { return path.Join(b.dir, rel) }

// Schema returns the buffer's schema.
func (b *Buffer) Schema() *engine.Schema { return b.opts.Schema }

// Dir returns the buffer's directory.
func (b *Buffer) Dir() string { return b.dir }

// Identity returns the edge and stream names the buffer's rows are
// published under. They are recorded in the directory when the buffer is
// created. When a buffer is opened with other names (Options.Edge and
// Stream), the new names take effect only if the buffer holds no
// undelivered rows; otherwise the recorded names stay, so that rows
// already stored keep their identities, and a warning says so.
func (b *Buffer) Identity() (edge, stream string) { return b.edge, b.stream }

// Append writes rec to the WAL and returns the sequence of its first row;
// row i of rec has sequence first+i. Append does not take ownership of
// rec. Under FsyncAlways it returns once the record is durable; see
// docs/format/buffer.md 3.4 for the other policies. A record with no rows
// is ignored (first is 0).
//
// Append returns ErrFull when the quota is exhausted and the policy rejects,
// an error wrapping ErrNoSpace when the file system is full, ErrSchema for
// a record of another schema, ErrFailed after an fsync failure, and
// ErrClosed after Close. After ErrFull and ErrNoSpace nothing was stored;
// after other errors the rows may or may not have been stored (at least
// once: a retry may store them twice under new sequences).
func (b *Buffer) Append(rec arrow.RecordBatch) (first uint64, err error) {
	if rec == nil {
		return 0, nil // nothing to store, like an empty record
	}
	n := rec.NumRows()
	if n == 0 {
		return 0, nil
	}
	if n > math.MaxUint32 {
		return 0, fmt.Errorf("buffer: append: %d rows in one record", n)
	}
	if b.opts.ReadOnly {
		return 0, ErrReadOnly
	}
	if s := rec.Schema(); s != b.arrow && !s.Equal(b.arrow) {
		return 0, ErrSchema
	}
	w := disk.RecordBufs.Get().(*disk.AppendWriter)
	defer disk.RecordBufs.Put(w)
	buf, err := disk.EncodeRecord(w, b.schemaMsg, rec)
	if err != nil {
		return 0, err
	}
	meta := disk.RecMeta{Rows: uint32(n), MsgRows: uint32(b.opts.MessageRows)}
	meta.TMin, meta.TMax, meta.HasTime = disk.TimeRange(rec, b.timeIdx)
	meta.Wall = b.opts.Now().UnixMilli()
	size := int64(len(buf))

	drops, err := b.quota.reserve(b, size)
	deliverDrops(drops)
	if err != nil {
		return 0, err
	}
	b.mu.Lock()
	if err := b.appendable(); err != nil {
		b.mu.Unlock()
		b.quota.release(size)
		return 0, err
	}
	if m := b.pendingMeta; m != nil {
		if err := disk.WriteMeta(b.fs, b.dir, m); err != nil {
			b.spaceLocked(err)
			b.mu.Unlock()
			b.quota.release(size)
			return 0, fmt.Errorf("buffer: record the buffer's identity: %w", noSpace(err))
		}
		b.pendingMeta = nil
	}
	var rolled *walFile
	if a := b.active; a == nil || (a.size+size > b.opts.SegmentBytes && len(a.recs) > 0) {
		if rolled, err = b.rollLocked(); err != nil {
			b.spaceLocked(err)
			b.mu.Unlock()
			b.quota.release(size)
			return 0, noSpace(err)
		}
	}
	a := b.active
	meta.First = b.nextSeq
	meta = disk.PutRecHeader(buf, meta)
	if _, err := a.f.WriteAt(buf, a.size); err != nil {
		// Cut the partial record off so that the next one follows the
		// last good record.
		if terr := a.f.Truncate(a.size); terr != nil {
			b.failed = fmt.Errorf("%w: truncate after failed write: %v", ErrFailed, terr)
		}
		b.spaceLocked(err)
		b.mu.Unlock()
		b.quota.release(size)
		b.afterRoll(rolled)
		return 0, fmt.Errorf("buffer: append: %w", noSpace(err))
	}
	b.noSpace = false
	a.recs = append(a.recs, disk.WALRec{Off: a.size, RecMeta: meta})
	a.size += size
	a.dirty = true
	b.walBytes += size
	b.nextSeq += uint64(n)
	b.written++
	b.appends++
	gen := b.written
	if b.opts.Fsync == FsyncNone {
		b.visible = b.nextSeq - 1
		b.wakeLocked()
	}
	b.mu.Unlock()
	b.afterRoll(rolled)
	b.ctr.rowsIn.Add(n)
	b.ctr.bytesIn.Add(size)
	if b.opts.Fsync == FsyncAlways {
		if err := b.syncTo(gen); err != nil {
			return 0, err
		}
	}
	return meta.First, nil
}

// spaceLocked counts and logs (once per episode) an append refused for
// lack of space.
func (b *Buffer) spaceLocked(err error) {
	if !disk.IsNoSpace(err) {
		return
	}
	b.ctr.noSpace.Add(1)
	if !b.noSpace {
		b.noSpace = true
		b.log.Error("disk full: appends wait until delivered rows free space", "err", err)
	}
}

func (b *Buffer) appendable() error {
	if b.closed {
		return ErrClosed
	}
	return b.failed
}

// rollLocked starts a new active WAL file and returns the previous one,
// which is now rolled and handed to the sealer; the caller passes it to
// afterRoll once it holds no lock.
func (b *Buffer) rollLocked() (*walFile, error) {
	num := b.nextNum
	rel := path.Join(disk.WALDir, disk.WALName(num))
	f, err := b.fs.OpenFile(b.path(rel), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			// A leftover of an earlier run: take the next number.
			b.nextNum++
		}
		return nil, fmt.Errorf("buffer: create %s: %w", rel, err)
	}
	fail := func(err error) (*walFile, error) {
		_ = f.Close()
		_ = b.fs.Remove(b.path(rel))
		return nil, fmt.Errorf("buffer: create %s: %w", rel, err)
	}
	hdr := disk.WALHeader(b.nextSeq)
	if _, err := f.WriteAt(hdr, 0); err != nil {
		return fail(err)
	}
	if b.opts.Fsync != FsyncNone {
		if err := f.Sync(); err != nil {
			return fail(err)
		}
		if err := b.fs.SyncDir(b.path(disk.WALDir)); err != nil {
			return fail(err)
		}
	}
	b.nextNum++
	w := &walFile{num: num, rel: rel, f: f, base: b.nextSeq, size: disk.WALHeaderSize, state: walActive, refs: 1,
		syncedSize: disk.WALHeaderSize, syncedNext: b.nextSeq}
	old := b.active
	if old != nil {
		// The appender's reference now belongs to recordRolled.
		old.state = walRolled
		b.unrecorded = append(b.unrecorded, old)
	}
	b.wals = append(b.wals, w)
	b.active = w
	b.walBytes += disk.WALHeaderSize
	if b.quota != nil {
		b.quota.used.Add(disk.WALHeaderSize)
	}
	return old, nil
}

// afterRoll has the extent of a file just rolled recorded: by the background
// loop when there is one (its fsync would hold the appender up under the
// interval and none policies), else at once.
func (b *Buffer) afterRoll(old *walFile) {
	if old == nil {
		return
	}
	if b.stop == nil {
		b.recordPending()
		return
	}
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// recordPending records the extents of the rolled files that lack one.
func (b *Buffer) recordPending() {
	b.mu.Lock()
	files := b.unrecorded
	b.unrecorded = nil
	b.mu.Unlock()
	for _, w := range files {
		b.recordRolled(w)
	}
}

// recordRolled makes a rolled WAL file durable and records its extent in
// the manifest, so that a later cut of the file is found (docs/format/
// buffer.md 3.5). It releases the reference rollLocked took.
func (b *Buffer) recordRolled(w *walFile) {
	defer func() {
		b.mu.Lock()
		b.unrefLocked(w)
		b.mu.Unlock()
	}()
	b.mu.Lock()
	gone := w.state == walRemoved
	size, next, dirty, synced := w.size, w.next(), w.dirty, w.syncedSize
	b.mu.Unlock()
	if gone {
		return
	}
	if dirty || synced < size {
		if err := w.f.Sync(); err != nil {
			b.log.Warn("cannot sync a rolled WAL file; its extent is not recorded", "file", w.rel, "err", err)
			return
		}
	}
	if b.opts.Fsync == FsyncNone {
		// Under the other policies the file's entry was synced when it
		// was created; a recorded extent of a file a power loss took
		// away would read as a loss.
		if err := b.fs.SyncDir(b.path(disk.WALDir)); err != nil {
			b.log.Warn("cannot sync the WAL directory; a rolled file's extent is not recorded", "file", w.rel, "err", err)
			return
		}
	}
	b.mu.Lock()
	w.syncedSize, w.syncedNext = max(w.syncedSize, size), max(w.syncedNext, next)
	b.mu.Unlock()
	if err := b.man.Write(disk.EncodeWAL(disk.WALExtent{Num: w.num, Base: w.base, Next: next, Size: size})); err != nil {
		b.log.Warn("cannot record a rolled WAL file in the manifest", "file", w.rel, "err", err)
	}
	// Sealed, delivered or dropped meanwhile: the record is moot, keep it
	// out of the manifest's state (compaction drops it).
	b.mu.Lock()
	if w.state == walRemoved {
		b.man.ForgetWAL(w.num)
	}
	b.mu.Unlock()
}

// syncTo returns once WAL generation gen is durable. Concurrent callers
// share one fsync: whoever holds syncMu syncs every dirty file, covering
// everything written before it started. Then it updates the sync mark.
func (b *Buffer) syncTo(gen uint64) error {
	b.syncMu.Lock()
	defer b.syncMu.Unlock()
	b.mu.Lock()
	if b.failed != nil {
		err := b.failed
		b.mu.Unlock()
		return err
	}
	if b.synced >= gen {
		b.mu.Unlock()
		return nil
	}
	target, seq := b.written, b.nextSeq-1
	type pending struct {
		w    *walFile
		size int64
		next uint64
	}
	var files []pending
	for _, w := range b.wals {
		if w.dirty {
			w.dirty = false
			w.refs++
			files = append(files, pending{w, w.size, w.next()})
		}
	}
	b.mu.Unlock()
	var err error
	for _, p := range files {
		if e := p.w.f.Sync(); e != nil && err == nil {
			err = fmt.Errorf("%w: fsync %s: %v", ErrFailed, p.w.rel, e)
		}
	}
	b.mu.Lock()
	for _, p := range files {
		if err == nil {
			p.w.syncedSize, p.w.syncedNext = max(p.w.syncedSize, p.size), max(p.w.syncedNext, p.next)
		}
		b.unrefLocked(p.w)
	}
	if err != nil {
		if b.failed == nil {
			b.failed = err
		}
		b.mu.Unlock()
		b.log.Error("WAL fsync failed; appends are refused until reopen", "err", err)
		return err
	}
	b.synced = target
	mark, ok := b.markLocked(false)
	if seq > b.visible {
		b.visible = seq
		b.wakeLocked()
	}
	b.mu.Unlock()
	if ok {
		b.writeMark(mark)
	}
	return nil
}

// markLocked returns the sync mark of the active file: its synced extent,
// or (written) what is written to it.
func (b *Buffer) markLocked(written bool) (disk.Mark, bool) {
	a := b.active
	if a == nil || b.marks == nil {
		return disk.Mark{}, false
	}
	if written {
		return disk.Mark{Num: a.num, Base: a.base, Next: a.next(), Size: a.size}, true
	}
	return disk.Mark{Num: a.num, Base: a.base, Next: a.syncedNext, Size: a.syncedSize}, true
}

func (b *Buffer) writeMark(m disk.Mark) {
	if err := b.marks.Write(m); err != nil && !errors.Is(err, os.ErrClosed) {
		b.log.Warn("cannot write the sync mark", "err", err)
	}
}

func (b *Buffer) wakeLocked() {
	close(b.notify)
	b.notify = make(chan struct{})
}

func (b *Buffer) unrefLocked(w *walFile) {
	w.refs--
	if w.refs == 0 && w.state == walRemoved {
		_ = w.f.Close()
	}
}

// removeWALLocked removes a WAL file from the state and the directory.
// replaced is the size of the segments that replace it: the quota changes
// by replaced minus the file's size in one step.
func (b *Buffer) removeWALLocked(w *walFile, replaced int64) error {
	if err := b.fs.Remove(b.path(w.rel)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("buffer: remove %s: %w", w.rel, err)
	}
	b.forgetWALLocked(w, replaced)
	return nil
}

// forgetWALLocked drops a WAL file that is no longer in wal/.
func (b *Buffer) forgetWALLocked(w *walFile, replaced int64) {
	w.state = walRemoved
	b.wals = slices.DeleteFunc(b.wals, func(x *walFile) bool { return x == w })
	if b.active == w {
		b.active = nil
	}
	b.walBytes -= w.size
	b.quota.used.Add(replaced - w.size)
	b.man.ForgetWAL(w.num)
	if w.refs == 0 {
		_ = w.f.Close()
	}
}

// Roll closes the active WAL file for appends (when it holds records) so
// that Seal rewrites it, and starts a new one. When every row of the
// active file is delivered and nobody reads it, the file is emptied in
// place instead, which needs no free space.
func (b *Buffer) Roll() error {
	if b.opts.ReadOnly {
		return ErrReadOnly
	}
	b.mu.Lock()
	if err := b.appendable(); err != nil {
		b.mu.Unlock()
		return err
	}
	a := b.active
	if a == nil || len(a.recs) == 0 {
		b.mu.Unlock()
		return nil
	}
	if a.lastSeq() <= b.cursor && a.refs == 1 && len(a.damage) == 0 {
		err := b.resetActiveLocked()
		b.mu.Unlock()
		return err
	}
	old, err := b.rollLocked()
	b.mu.Unlock()
	b.afterRoll(old)
	return noSpace(err)
}

// resetActiveLocked empties the active WAL file, whose rows are all
// delivered, in place: it is cut back to its header, which then names the
// next sequence.
func (b *Buffer) resetActiveLocked() error {
	a := b.active
	// The mark first says the file holds nothing, so that a crash between
	// the steps below never reads as a cut (its rows are delivered anyway).
	if b.marks != nil {
		b.writeMark(disk.Mark{Num: a.num, Base: a.base, Next: a.base, Size: disk.WALHeaderSize})
	}
	if err := a.f.Truncate(disk.WALHeaderSize); err != nil {
		return fmt.Errorf("buffer: reset %s: %w", a.rel, err)
	}
	if _, err := a.f.WriteAt(disk.WALHeader(b.nextSeq), 0); err != nil {
		b.failed = fmt.Errorf("%w: reset %s: %v", ErrFailed, a.rel, err)
		return b.failed
	}
	if err := a.f.Sync(); err != nil {
		b.failed = fmt.Errorf("%w: reset %s: %v", ErrFailed, a.rel, err)
		return b.failed
	}
	freed := a.size - disk.WALHeaderSize
	b.walBytes -= freed
	b.quota.used.Add(-freed)
	a.recs, a.size, a.base, a.dirty = nil, disk.WALHeaderSize, b.nextSeq, false
	a.syncedSize, a.syncedNext = disk.WALHeaderSize, b.nextSeq
	if m, ok := b.markLocked(false); ok {
		b.writeMark(m)
	}
	return nil
}

// loop runs background fsyncs, sealing, idle rolls, TTL checks and sync
// marks.
func (b *Buffer) loop() {
	defer close(b.done)
	var syncC, tickC <-chan time.Time
	if b.opts.Fsync == FsyncInterval {
		t := time.NewTicker(b.opts.FsyncInterval)
		defer t.Stop()
		syncC = t.C
	}
	period := time.Second
	if b.opts.IdleSeal > 0 {
		period = min(period, b.opts.IdleSeal/2)
	}
	t := time.NewTicker(max(period, time.Millisecond))
	defer t.Stop()
	tickC = t.C
	var lastAppends uint64
	var idleSince time.Time
	for {
		select {
		case <-b.stop:
			return
		case <-syncC:
			b.mu.Lock()
			gen := b.written
			b.mu.Unlock()
			_ = b.syncTo(gen)
		case <-b.kick:
			b.recordPending()
			if b.opts.ManualSeal {
				continue
			}
			b.sealLogged()
		case now := <-tickC:
			if b.opts.Fsync == FsyncNone {
				// Nothing is synced: mark what is written, so that a
				// process crash followed by a cut is still found.
				b.mu.Lock()
				m, ok := b.markLocked(true)
				b.mu.Unlock()
				if ok {
					b.writeMark(m)
				}
			}
			if b.opts.ManualSeal {
				continue
			}
			b.mu.Lock()
			appends, pending := b.appends, b.active != nil && len(b.active.recs) > 0
			b.mu.Unlock()
			if appends != lastAppends || !pending {
				lastAppends, idleSince = appends, now
			} else if b.opts.IdleSeal > 0 && now.Sub(idleSince) >= b.opts.IdleSeal {
				_ = b.Roll()
				idleSince = now
			}
			b.sealLogged()
			if _, err := b.Expire(); err != nil && !errors.Is(err, ErrClosed) {
				b.log.Warn("TTL check failed", "err", err)
			}
		}
	}
}

// sealLogged seals in the background; a failure for lack of space is
// logged once until sealing works again.
func (b *Buffer) sealLogged() {
	err := b.Seal()
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case err == nil:
		if b.sealWarned {
			b.log.Info("sealing works again")
		}
		b.sealWarned = false
	case errors.Is(err, ErrClosed):
	case disk.IsNoSpace(err):
		if !b.sealWarned {
			b.log.Warn("sealing postponed: the disk is full; rows stay in the WAL and are delivered from there", "err", err)
		}
		b.sealWarned = true
	default:
		b.log.Warn("sealing failed; will retry", "err", err)
	}
}

// Close stops background work, makes the WAL durable (unless the policy is
// FsyncNone) and closes the files. Blocked Next calls return ErrClosed. It
// is idempotent.
func (b *Buffer) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.wakeLocked()
	gen := b.written
	b.mu.Unlock()
	if b.stop != nil {
		close(b.stop)
		<-b.done
	}
	if !b.opts.ReadOnly {
		b.recordPending()
	}
	b.sealMu.Lock()
	defer b.sealMu.Unlock()
	var err error
	b.codec.Close()
	if b.opts.Fsync != FsyncNone && !b.opts.ReadOnly {
		if e := b.syncTo(gen); e != nil && !errors.Is(e, ErrFailed) {
			err = e
		}
	}
	b.rmu.Lock()
	defer b.rmu.Unlock()
	b.mu.Lock()
	if m, ok := b.markLocked(b.opts.Fsync == FsyncNone); ok {
		b.writeMark(m)
	}
	b.closeFiles()
	if b.cache != nil {
		b.cache.rec.Release()
		b.cache = nil
	}
	b.mu.Unlock()
	if b.marks != nil {
		_ = b.marks.Sync()
		_ = b.marks.Close()
	}
	if b.cur != nil {
		_ = b.cur.Close()
	}
	if b.man != nil {
		if e := b.man.Close(); e != nil && err == nil {
			err = e
		}
	}
	if !b.opts.ReadOnly {
		b.quota.leave(b)
	}
	b.lock.unlock()
	return err
}

func (b *Buffer) closeFiles() {
	for _, w := range b.wals {
		if w.state != walRemoved {
			w.state = walRemoved
			_ = w.f.Close()
		}
	}
}
