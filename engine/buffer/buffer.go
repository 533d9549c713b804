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
	layout    *segLayout
	codec     *zstdCodec
	quota     *Quota
	man       *manifest
	log       *slog.Logger
	ctr       counters

	mu     sync.Mutex
	sealed *sync.Cond // broadcast when a WAL file leaves the sealing state
	closed bool
	failed error // set when an fsync failed; appends are refused

	nextSeq    uint64 // sequence of the next appended row
	visible    uint64 // highest sequence readers may see
	written    uint64 // WAL writes so far (group-commit generation)
	cursor     uint64
	readPos    uint64
	appends    uint64 // appends so far (idle detection)
	nextNum    uint32
	wals       []*walFile // by number; the last one is active
	active     *walFile
	segs       []segEntry // data segments, sorted by first
	dead       []segEntry // dead-letter segments, sorted by first
	walBytes   int64
	segBytes   int64
	deadBytes  int64
	notify     chan struct{} // closed and replaced when visible advances
	cache      *segCache     // decoded segment being read
	stats      dropStats
	quarantine int // files in quarantine/

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
	rowsIn, bytesIn, rowsDropped, unitsDropped, corruptions, torn, sealed, sealErrors, rowsRead *atomic.Int64
}

type dropStats struct {
	rows, units, bytes int64
	corruptions        int64
}

// Open opens (or creates) the buffer in dir, replays its WAL and
// reconciles its segments with the manifest. Damage found on the way is
// quarantined and reported through Options.OnCorruption; it never makes
// Open fail. Open fails on I/O errors and invalid options.
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
		codec:   new(zstdCodec),
	}
	b.sealed = sync.NewCond(&b.mu)
	c := opts.Counters
	b.ctr = counters{
		rowsIn: c.Counter("rows_appended"), bytesIn: c.Counter("bytes_appended"),
		rowsDropped: c.Counter("rows_dropped"), unitsDropped: c.Counter("segments_dropped"),
		corruptions: c.Counter("corruptions"), torn: c.Counter("torn_tails"),
		sealed: c.Counter("segments_sealed"), sealErrors: c.Counter("seal_errors"),
		rowsRead: c.Counter("rows_read"),
	}
	var err error
	if b.schemaMsg, err = schemaMessage(b.arrow); err != nil {
		return nil, fmt.Errorf("buffer: encode schema: %w", err)
	}
	if b.layout, err = newSegLayout(opts.Schema, false); err != nil {
		return nil, err
	}
	reports, err := b.open()
	if err != nil {
		b.codec.close()
		b.closeFiles()
		if b.man != nil {
			_ = b.man.close()
		}
		return nil, err
	}
	b.quota = opts.Quota
	if b.quota == nil {
		b.quota = NewQuota(opts.MaxBytes, opts.Policy, opts.Droppable)
	}
	b.quota.join(b, b.walBytes+b.segBytes+b.deadBytes)
	for _, r := range reports {
		b.reportCorruption(r)
	}
	// Salvage damaged WAL files now; leave healthy rolled files to the
	// sealer so that opening stays fast.
	damaged := false
	for _, w := range b.wals {
		damaged = damaged || len(w.damage) > 0
	}
	if damaged {
		if err := b.Seal(); err != nil {
			b.log.Warn("sealing on open failed; will retry", "err", err)
		}
	} else if len(b.wals) > 1 {
		b.kick <- struct{}{}
	}
	if opts.Fsync == FsyncInterval || !opts.ManualSeal {
		b.stop, b.done = make(chan struct{}), make(chan struct{})
		go b.loop()
	}
	return b, nil
}

func (b *Buffer) path(rel string) string { return path.Join(b.dir, rel) }

// Schema returns the buffer's schema.
func (b *Buffer) Schema() *engine.Schema { return b.opts.Schema }

// Dir returns the buffer's directory.
func (b *Buffer) Dir() string { return b.dir }

// Append writes rec to the WAL and returns the sequence of its first row;
// row i of rec has sequence first+i. Append does not take ownership of
// rec. Under FsyncAlways it returns once the record is durable; see
// docs/format/buffer.md 3.4 for the other policies. A record with no rows
// is ignored (first is 0).
//
// Append returns ErrFull when the quota is exhausted and the policy rejects,
// ErrSchema for a record of another schema, ErrFailed after an fsync
// failure, and ErrClosed after Close. When Append returns an error the rows
// may or may not have been stored (at least once: a retry may store them
// twice under new sequences).
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
	if s := rec.Schema(); s != b.arrow && !s.Equal(b.arrow) {
		return 0, ErrSchema
	}
	w := recordBufs.Get().(*appendWriter)
	defer recordBufs.Put(w)
	buf, err := encodeRecord(w, b.schemaMsg, rec)
	if err != nil {
		return 0, err
	}
	meta := recMeta{rows: uint32(n)}
	meta.tmin, meta.tmax, meta.hasTime = timeRange(rec, b.timeIdx)
	meta.wall = b.opts.Now().UnixMilli()
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
	if a := b.active; a.size+size > b.opts.SegmentBytes && len(a.recs) > 0 {
		if err := b.rollLocked(); err != nil {
			b.mu.Unlock()
			b.quota.release(size)
			return 0, err
		}
	}
	a := b.active
	meta.first = b.nextSeq
	meta = putRecHeader(buf, meta)
	if _, err := a.f.WriteAt(buf, a.size); err != nil {
		// Cut the partial record off so that the next one follows the
		// last good record.
		if terr := a.f.Truncate(a.size); terr != nil {
			b.failed = fmt.Errorf("%w: truncate after failed write: %v", ErrFailed, terr)
		}
		b.mu.Unlock()
		b.quota.release(size)
		return 0, fmt.Errorf("buffer: append: %w", err)
	}
	a.recs = append(a.recs, walRec{off: a.size, recMeta: meta})
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
	b.ctr.rowsIn.Add(n)
	b.ctr.bytesIn.Add(size)
	if b.opts.Fsync == FsyncAlways {
		if err := b.syncTo(gen); err != nil {
			return 0, err
		}
	}
	return meta.first, nil
}

func (b *Buffer) appendable() error {
	if b.closed {
		return ErrClosed
	}
	return b.failed
}

// rollLocked starts a new active WAL file. The previous one becomes
// rolled and is handed to the sealer.
func (b *Buffer) rollLocked() error {
	num := b.nextNum
	rel := path.Join(walDir, walName(num))
	f, err := b.fs.OpenFile(b.path(rel), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("buffer: create %s: %w", rel, err)
	}
	fail := func(err error) error {
		_ = f.Close()
		_ = b.fs.Remove(b.path(rel))
		return fmt.Errorf("buffer: create %s: %w", rel, err)
	}
	hdr := walHeader(b.nextSeq)
	if _, err := f.WriteAt(hdr, 0); err != nil {
		return fail(err)
	}
	if b.opts.Fsync != FsyncNone {
		if err := f.Sync(); err != nil {
			return fail(err)
		}
		if err := b.fs.SyncDir(b.path(walDir)); err != nil {
			return fail(err)
		}
	}
	b.nextNum++
	w := &walFile{num: num, rel: rel, f: f, base: b.nextSeq, size: walHeaderSize, state: walActive, refs: 1}
	if old := b.active; old != nil {
		old.state = walRolled
		old.refs--
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
	b.wals = append(b.wals, w)
	b.active = w
	b.walBytes += walHeaderSize
	if b.quota != nil {
		b.quota.used.Add(walHeaderSize)
	}
	return nil
}

// syncTo returns once WAL generation gen is durable. Concurrent callers
// share one fsync: whoever holds syncMu syncs every dirty file, covering
// everything written before it started.
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
	var files []*walFile
	for _, w := range b.wals {
		if w.dirty {
			w.dirty = false
			w.refs++
			files = append(files, w)
		}
	}
	b.mu.Unlock()
	var err error
	for _, w := range files {
		if e := w.f.Sync(); e != nil && err == nil {
			err = fmt.Errorf("%w: fsync %s: %v", ErrFailed, w.rel, e)
		}
	}
	b.mu.Lock()
	for _, w := range files {
		b.unrefLocked(w)
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
	if seq > b.visible {
		b.visible = seq
		b.wakeLocked()
	}
	b.mu.Unlock()
	return nil
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
	b.walBytes -= w.size
	b.quota.used.Add(replaced - w.size)
	if w.refs == 0 {
		_ = w.f.Close()
	}
}

// Roll closes the active WAL file for appends (when it holds records) so
// that Seal rewrites it, and starts a new one.
func (b *Buffer) Roll() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.appendable(); err != nil {
		return err
	}
	if len(b.active.recs) == 0 {
		return nil
	}
	return b.rollLocked()
}

// loop runs background fsyncs, sealing, idle rolls and TTL checks.
func (b *Buffer) loop() {
	defer close(b.done)
	var syncC, tickC <-chan time.Time
	if b.opts.Fsync == FsyncInterval {
		t := time.NewTicker(b.opts.FsyncInterval)
		defer t.Stop()
		syncC = t.C
	}
	if !b.opts.ManualSeal {
		period := time.Second
		if b.opts.IdleSeal > 0 {
			period = min(period, b.opts.IdleSeal/2)
		}
		t := time.NewTicker(max(period, time.Millisecond))
		defer t.Stop()
		tickC = t.C
	}
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
			if b.opts.ManualSeal {
				continue
			}
			if err := b.Seal(); err != nil && !errors.Is(err, ErrClosed) {
				b.log.Warn("sealing failed; will retry", "err", err)
			}
		case now := <-tickC:
			b.mu.Lock()
			appends, pending := b.appends, b.active != nil && len(b.active.recs) > 0
			b.mu.Unlock()
			if appends != lastAppends || !pending {
				lastAppends, idleSince = appends, now
			} else if b.opts.IdleSeal > 0 && now.Sub(idleSince) >= b.opts.IdleSeal {
				_ = b.Roll()
				idleSince = now
			}
			if err := b.Seal(); err != nil && !errors.Is(err, ErrClosed) {
				b.log.Warn("sealing failed; will retry", "err", err)
			}
			if _, err := b.Expire(); err != nil && !errors.Is(err, ErrClosed) {
				b.log.Warn("TTL check failed", "err", err)
			}
		}
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
	b.sealMu.Lock()
	defer b.sealMu.Unlock()
	var err error
	b.codec.close()
	if b.opts.Fsync != FsyncNone {
		if e := b.syncTo(gen); e != nil && !errors.Is(e, ErrFailed) {
			err = e
		}
	}
	b.rmu.Lock()
	defer b.rmu.Unlock()
	b.mu.Lock()
	b.closeFiles()
	if b.cache != nil {
		b.cache.rec.Release()
		b.cache = nil
	}
	b.mu.Unlock()
	if b.man != nil {
		if e := b.man.close(); e != nil && err == nil {
			err = e
		}
	}
	b.quota.leave(b)
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
