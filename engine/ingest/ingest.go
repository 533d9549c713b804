package ingest

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
)

// DirName is the name of the log's directory in the source's directory
// (<data dir>/<pipeline>/<source>/ingest).
const DirName = "ingest"

// Defaults of Options.
const (
	// DefaultHorizon is the default Options.Horizon.
	DefaultHorizon = 65536
	// DefaultHorizonTime is the default Options.HorizonTime.
	DefaultHorizonTime = 2 * time.Minute
	// DefaultMaxUnsynced is the default Options.MaxUnsynced.
	DefaultMaxUnsynced = 1024
)

// Options configure an ingest log.
type Options struct {
	// Dir is the log's directory, by convention
	// <data dir>/<pipeline>/<source>/ingest (see Dir). Required.
	Dir string
	// Buffer configures the log: Fsync and FsyncInterval, the quota
	// (MaxBytes, Policy, Quota), OnDrop, FS, SegmentBytes and the rest.
	// Under FsyncAlways the log commits in groups (see Source.Run): its
	// buffer is opened with FsyncInterval and no interval, and synced by
	// the source.
	// Schema is the wrapped source's; Mem, Log and Now default to the
	// fields below; Counters defaults to a private set (the log's
	// rows_appended, rows_dropped, ... are not the source's counters).
	Buffer buffer.Options
	// Horizon is how many of the newest logged rows are checked against
	// incoming rows for redeliveries, and how many live rows the check
	// lasts at most; DefaultHorizon when zero, negative to turn the check
	// off. Committed keeps that many rows in the log for the check.
	Horizon int
	// HorizonTime bounds the check in time, from the first live row;
	// DefaultHorizonTime when zero, negative for no bound.
	HorizonTime time.Duration
	// Log receives the log's reports; slog.Default() when nil.
	Log *slog.Logger
	// Mem allocates the records replayed and filtered;
	// memory.DefaultAllocator when nil.
	Mem memory.Allocator
	// Counters, when set, receives "redeliveries" (rows dropped as
	// redelivered), "ingest_rows_logged", "ingest_rows_replayed",
	// "ingest_rows_lost" (rows a checkpoint names that the log no longer
	// holds), "ingest_rows_dropped" (rows the quota policy deleted before a
	// checkpoint covered them), "ingest_full_waits" (appends that had to
	// wait for room) and "ingest_sync_waits" (records that waited because
	// MaxUnsynced records were waiting for their fsync).
	Counters *engine.Counters
	// Now is the clock of HorizonTime; time.Now when nil.
	Now func() time.Time
	// MaxUnsynced bounds, under buffer.FsyncAlways, the records logged
	// and emitted whose Ack waits for the fsync covering them; a record
	// beyond it waits (before it is logged) until a sync completes.
	// DefaultMaxUnsynced when zero or negative.
	MaxUnsynced int
}

// Dir returns the directory of the ingest log of a source:
// <data dir>/<pipeline>/<source>/ingest.
func Dir(dataDir, pipeline, source string) string {
	return filepath.Join(dataDir, pipeline, source, DirName)
}

// Source is a live source wrapped with its ingest log. It implements
// engine.Source, engine.Replayable and engine.Syncer, and passes engine.LiveSource,
// engine.RangedSource and engine.Resumer through to the wrapped source
// (answering as a source that does not implement them when it does not).
// Close it once the pipeline is done with it, after the last Committed.
type Source struct {
	inner engine.Source
	buf   *buffer.Buffer
	log   *slog.Logger
	mem   memory.Allocator
	now   func() time.Time
	seed  maphash.Seed

	horizon     int
	horizonTime time.Duration

	// from is the last sequence not to replay; guarded by runMu until Run
	// starts.
	runMu   sync.Mutex
	from    uint64
	started bool

	pos atomic.Uint64

	// While the replay catches up (catchingUp, under modeMu), records of
	// the wrapped source are only logged; direct is set once they go
	// straight into the graph.
	modeMu     sync.Mutex
	catchingUp bool
	liveLast   uint64 // the last row the wrapped source logged while catching up
	direct     atomic.Bool

	ackMu     sync.Mutex
	committed uint64 // highest position committed
	acked     uint64 // highest sequence acknowledged to the log
	closed    bool
	closeErr  error // what Close met making the log durable and closing it

	room chan struct{} // kicked when Committed frees room

	// Group commit (under buffer.FsyncAlways): records logged and emitted
	// wait in unsynced for the syncer's fsync, then their Acks complete
	// in order. slots bounds them; syncFailed is closed when a sync
	// failed (syncErr says why) and nothing is acknowledged any more.
	group      bool
	unsynced   chan *engine.Ack
	slots      chan struct{}
	syncFailed chan struct{}
	syncErr    error

	// The redelivery check; the Run goroutine's.
	set      map[uint64]int32
	seen     int
	deadline time.Time
	hashes   []uint64
	rowBuf   []byte

	redeliveries, logged, replayed, lost, dropped, fullWaits, syncWaits *atomic.Int64
}

// Wrap opens (or creates) the ingest log in opts.Dir and returns src
// wrapped with it. The log's schema is src's. Before Run, Position is the
// last logged sequence: a Run not told otherwise by ResumeAt replays
// nothing.
func Wrap(src engine.Source, opts Options) (*Source, error) {
	if src == nil {
		return nil, errors.New("ingest: no source")
	}
	if opts.Dir == "" {
		return nil, errors.New("ingest: no directory")
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Mem == nil {
		opts.Mem = memory.DefaultAllocator
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	// The log is read only by a recovery's replay, never forwarded: its
	// WAL files are deleted once a checkpoint covers them and are not
	// worth rewriting as Parquet segments (which cost more CPU than
	// logging itself).
	opts.Buffer.ManualSeal = true
	if opts.Horizon == 0 {
		opts.Horizon = DefaultHorizon
	}
	if opts.HorizonTime == 0 {
		opts.HorizonTime = DefaultHorizonTime
	}
	ctr := opts.Counters
	if ctr == nil {
		ctr = engine.NewCounters()
	}
	s := &Source{
		inner:       src,
		log:         opts.Log.With("ingest", opts.Dir),
		mem:         opts.Mem,
		now:         opts.Now,
		seed:        maphash.MakeSeed(),
		horizon:     max(opts.Horizon, 0),
		horizonTime: opts.HorizonTime,
		room:        make(chan struct{}, 1),

		redeliveries: ctr.Counter("redeliveries"),
		logged:       ctr.Counter("ingest_rows_logged"),
		replayed:     ctr.Counter("ingest_rows_replayed"),
		lost:         ctr.Counter("ingest_rows_lost"),
		dropped:      ctr.Counter("ingest_rows_dropped"),
		fullWaits:    ctr.Counter("ingest_full_waits"),
		syncWaits:    ctr.Counter("ingest_sync_waits"),
	}
	bo := opts.Buffer
	if bo.Fsync == buffer.FsyncAlways {
		// Group commit: appends do not wait for their fsync; the syncer
		// (or a checkpoint's Sync) makes them durable before the sender
		// is acknowledged. The interval policy with no interval syncs
		// only when asked, and still makes the log durable as it opens
		// and closes and each WAL file as it is created.
		s.group = true
		bo.Fsync, bo.FsyncInterval = buffer.FsyncInterval, 1<<62
		k := opts.MaxUnsynced
		if k <= 0 {
			k = DefaultMaxUnsynced
		}
		s.unsynced = make(chan *engine.Ack, k)
		s.slots = make(chan struct{}, k)
		s.syncFailed = make(chan struct{})
	}
	bo.Schema = src.Schema()
	bo.ReadOnly, bo.Held = false, false
	if bo.Mem == nil {
		bo.Mem = opts.Mem
	}
	if bo.Log == nil {
		bo.Log = opts.Log
	}
	if bo.Now == nil {
		bo.Now = opts.Now
	}
	onDrop := bo.OnDrop
	bo.OnDrop = func(d buffer.Drop) {
		s.dropped.Add(d.Rows)
		if onDrop != nil {
			onDrop(d)
		}
	}
	buf, err := buffer.Open(opts.Dir, bo)
	if err != nil {
		return nil, fmt.Errorf("ingest: open the log: %w", err)
	}
	s.buf = buf
	s.acked = buf.Cursor()
	s.committed = s.acked
	s.from = buf.NextSeq() - 1
	s.pos.Store(s.from)
	return s, nil
}

// Unwrap returns the wrapped source.
func (s *Source) Unwrap() engine.Source { return s.inner }

// Buffer returns the ingest log (for status and tools).
func (s *Source) Buffer() *buffer.Buffer { return s.buf }

// Schema is the wrapped source's schema.
func (s *Source) Schema() *engine.Schema { return s.inner.Schema() }

// Live passes engine.LiveSource through; false when the wrapped source
// does not implement it.
func (s *Source) Live() (live bool, history string) {
	if l, ok := s.inner.(engine.LiveSource); ok {
		return l.Live()
	}
	return false, ""
}

// Ranges passes engine.RangedSource through; nil when the wrapped source
// does not implement it.
func (s *Source) Ranges() []engine.ValueRange {
	if r, ok := s.inner.(engine.RangedSource); ok {
		return r.Ranges()
	}
	return nil
}

// Resuming passes engine.Resumer through; false when the wrapped source
// does not implement it.
func (s *Source) Resuming() bool {
	if r, ok := s.inner.(engine.Resumer); ok {
		return r.Resuming()
	}
	return false
}

// Position returns the log sequence of the last row emitted (before Run:
// where Run starts), as decimal digits.
func (s *Source) Position() []byte {
	return strconv.AppendUint(nil, s.pos.Load(), 10)
}

// ParsePosition returns the log sequence a position names.
func ParsePosition(pos []byte) (uint64, error) {
	n, err := strconv.ParseUint(string(pos), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("ingest: bad position %q: %w", pos, err)
	}
	return n, nil
}

// ResumeAt makes Run replay the rows logged after pos before it runs the
// wrapped source. Rows after pos the log no longer holds (deleted by an
// older checkpoint's Committed, dropped by the quota, or lost to a power
// loss under a relaxed fsync policy) are reported and counted in
// "ingest_rows_lost".
func (s *Source) ResumeAt(pos []byte) error {
	p, err := ParsePosition(pos)
	if err != nil {
		return err
	}
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.started {
		return errors.New("ingest: ResumeAt after Run")
	}
	cursor, last := s.buf.Cursor(), s.buf.NextSeq()-1
	switch {
	case p < cursor:
		s.lost.Add(int64(cursor - p))
		s.log.Error("the log no longer holds rows after the checkpoint's position: they are lost",
			"position", p, "log_starts_after", cursor, "rows", cursor-p)
	case p > last:
		s.lost.Add(int64(p - last))
		s.log.Error("the log ends before the checkpoint's position (rows lost in a power loss under a relaxed fsync policy?); new rows continue the log",
			"position", p, "log_ends_at", last, "rows", p-last)
	}
	s.from = p
	s.pos.Store(p)
	return nil
}

// Committed lets the log delete the rows at or before pos, except the
// newest Options.Horizon rows, kept for the redelivery check.
func (s *Source) Committed(pos []byte) {
	p, err := ParsePosition(pos)
	if err != nil {
		s.log.Warn("ignoring a committed position", "err", err)
		return
	}
	s.ackMu.Lock()
	s.committed = max(s.committed, p)
	s.ackMu.Unlock()
	s.trim(false)
}

// trim acknowledges to the log what is committed; unless all, it keeps the
// newest Horizon rows. It reports whether the cursor moved.
func (s *Source) trim(all bool) bool {
	s.ackMu.Lock()
	defer s.ackMu.Unlock()
	if s.closed {
		return false
	}
	last := s.buf.NextSeq() - 1
	to := min(s.committed, last)
	if !all {
		if keep := uint64(s.horizon); last > keep {
			to = min(to, last-keep)
		} else {
			to = 0
		}
	}
	if to <= s.acked {
		return false
	}
	if err := s.buf.Ack(to); err != nil {
		if !errors.Is(err, buffer.ErrClosed) {
			s.log.Warn("cannot delete committed rows from the log", "err", err)
		}
		return false
	}
	s.acked = to
	select {
	case s.room <- struct{}{}:
	default:
	}
	return true
}

// Sync makes every row logged so far durable, whatever the fsync policy,
// so that a checkpoint never names a position the log could lose (see
// engine.Syncer). The engine calls it before it saves a checkpoint.
func (s *Source) Sync() error {
	s.ackMu.Lock()
	closed, err := s.closed, s.closeErr
	s.ackMu.Unlock()
	if closed {
		// Close made the log durable (a relay closes its source when the
		// source returns, before the graph's last checkpoint).
		return err
	}
	if _, err := s.buf.Sync(); err != nil {
		if errors.Is(err, buffer.ErrClosed) {
			return s.Sync()
		}
		return fmt.Errorf("ingest: sync the log: %w", err)
	}
	return nil
}

// Close closes the log. Committed after Close does nothing. It is
// idempotent.
func (s *Source) Close() error {
	s.ackMu.Lock()
	defer s.ackMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	// Durable whatever the policy: a checkpoint taken after Close names
	// what the log held (see Sync).
	if _, err := s.buf.Sync(); err != nil && !errors.Is(err, buffer.ErrClosed) {
		s.closeErr = fmt.Errorf("ingest: sync the log: %w", err)
	}
	if err := s.buf.Close(); err != nil && s.closeErr == nil {
		s.closeErr = err
	}
	return s.closeErr
}

// Run replays the rows logged after the position (see ResumeAt), then runs
// the wrapped source, logging each record it emits before acknowledging
// its input and emitting it into the graph.
//
// When there is a log to replay, the wrapped source starts at once beside
// the replay: what it delivers meanwhile is logged (and acknowledged once
// durable) but enters the graph behind the replayed rows, read back from
// the log, so the graph sees every row in log order — as it would have
// without the restart — while the sender's input is taken off its hands
// within moments of the start (a broker bounds what it queues for a
// subscriber that does not read). Once the replay has caught up with the
// log, records go straight into the graph again.
func (s *Source) Run(ctx context.Context, emit engine.Emit) error {
	s.runMu.Lock()
	if s.started {
		s.runMu.Unlock()
		return errors.New("ingest: Run called twice")
	}
	s.started = true
	from := s.from
	s.runMu.Unlock()

	if err := s.loadHorizon(ctx); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return nil
	}
	end := s.buf.NextSeq() - 1 // what was logged before this run
	replay := from < end
	s.modeMu.Lock()
	s.catchingUp = replay
	s.modeMu.Unlock()

	var synced chan struct{}
	if s.group {
		synced = make(chan struct{})
		go func() {
			defer close(synced)
			s.syncer()
		}()
	}
	innerCtx, stopInner := context.WithCancel(ctx)
	defer stopInner()
	innerDone := make(chan error, 1)
	go func() {
		innerDone <- s.inner.Run(innerCtx, func(rec arrow.RecordBatch, ack *engine.Ack) error {
			return s.live(innerCtx, emit, rec, ack)
		})
	}()
	var err error
	if replay {
		if err = s.catchUp(ctx, emit, from, end); err != nil {
			stopInner()
		}
	}
	if ierr := <-innerDone; err == nil {
		err = ierr
	}
	if s.group {
		// The records still waiting are synced and acknowledged.
		close(s.unsynced)
		<-synced
		if err == nil && s.syncErr != nil {
			err = s.syncErr
		}
	}
	if errors.Is(err, engine.ErrStopped) || errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}

// syncer makes the log durable for the records waiting in unsynced and
// completes their Acks, in order: one fsync covers every record that
// waits when it starts. After a failed fsync it acknowledges nothing.
func (s *Source) syncer() {
	var batch []*engine.Ack
	for {
		a, ok := <-s.unsynced
		if !ok {
			return
		}
		batch = append(batch[:0], a)
		open := true
	drain:
		for {
			select {
			case a, ok := <-s.unsynced:
				if !ok {
					open = false
					break drain
				}
				batch = append(batch, a)
			default:
				break drain
			}
		}
		if _, err := s.buf.Sync(); err != nil {
			s.syncErr = fmt.Errorf("ingest: sync the log: %w", err)
			s.log.Error("the log cannot be made durable: the source stops, its input unacknowledged", "err", err)
			close(s.syncFailed)
			return
		}
		for i, a := range batch {
			a.Done()
			batch[i] = nil
			<-s.slots
		}
		if !open {
			return
		}
	}
}

// loadHorizon takes the hashes of the newest Horizon rows of the log, the
// rows a broker may deliver again (see Options.Horizon). It reads only
// those rows.
func (s *Source) loadHorizon(ctx context.Context) error {
	last := s.buf.NextSeq() - 1
	if s.horizon <= 0 || last == 0 {
		return nil
	}
	poll, cancel := context.WithCancel(ctx)
	cancel()
	s.buf.Seek(last - min(last-1, uint64(s.horizon)-1))
	s.hashes = s.hashes[:0]
	for {
		e, err := s.buf.Next(poll)
		if errors.Is(err, context.Canceled) {
			break
		}
		if err != nil {
			return fmt.Errorf("ingest: read the log's tail: %w", err)
		}
		s.hashes = s.hashRows(e.Rec, s.hashes)
		e.Rec.Release()
	}
	if len(s.hashes) == 0 {
		return nil
	}
	s.set = make(map[uint64]int32, len(s.hashes))
	for _, h := range s.hashes {
		s.set[h]++
	}
	s.log.Info("checking incoming rows for redeliveries of logged ones", "rows", len(s.hashes))
	return nil
}

// catchUp emits the logged rows after from in log order (those up to end
// were logged before this run: they count as replayed), including those
// the wrapped source logs meanwhile, until it has emitted the whole log;
// then it lets the wrapped source's records go straight into the graph.
func (s *Source) catchUp(ctx context.Context, emit engine.Emit, from, end uint64) error {
	s.buf.Seek(from + 1)
	poll, cancel := context.WithCancel(ctx)
	cancel()
	emitted := from
	for {
		e, err := s.buf.Next(poll)
		if errors.Is(err, context.Canceled) {
			s.modeMu.Lock()
			if s.liveLast <= emitted {
				// Caught up: nothing logged is left to emit.
				s.catchingUp = false
				s.modeMu.Unlock()
				s.log.Info("the replay has caught up with the log; records go straight into the pipeline again", "replayed", s.replayed.Load())
				return nil
			}
			s.modeMu.Unlock()
			// Logged by the wrapped source but not readable yet (its
			// fsync is running): wait for it.
			if e, err = s.buf.Next(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("ingest: replay: %w", err)
			}
		} else if err != nil {
			return fmt.Errorf("ingest: replay: %w", err)
		}
		last := e.Last()
		if last <= emitted {
			e.Rec.Release()
			continue
		}
		rec := e.Rec
		if e.First <= emitted {
			rec = e.Rec.NewSlice(int64(emitted+1-e.First), e.Rec.NumRows())
			e.Rec.Release()
		}
		first := last - uint64(rec.NumRows()) + 1
		s.pos.Store(last)
		if err := emit(rec, nil); err != nil {
			return err
		}
		emitted = last
		if first <= end {
			s.replayed.Add(int64(min(last, end) - first + 1))
		}
	}
}

// live handles one record of the wrapped source.
func (s *Source) live(ctx context.Context, emit engine.Emit, rec arrow.RecordBatch, ack *engine.Ack) error {
	if rec.NumRows() == 0 {
		rec.Release()
		ack.Done()
		return nil
	}
	if s.set != nil {
		if rec = s.dropRedelivered(rec); rec == nil {
			ack.Done()
			return nil
		}
	}
	if !s.direct.Load() {
		s.modeMu.Lock()
		if s.catchingUp {
			// The replay emits it, in log order, once it gets there.
			defer s.modeMu.Unlock()
			first, err := s.logOnly(ctx, rec, ack)
			if err != nil {
				return err
			}
			s.liveLast = first + uint64(rec.NumRows()) - 1
			rec.Release()
			return nil
		}
		s.direct.Store(true)
		s.modeMu.Unlock()
	}
	first, err := s.logOnly(ctx, rec, ack)
	if err != nil {
		return err
	}
	s.pos.Store(first + uint64(rec.NumRows()) - 1)
	return emit(rec, nil)
}

// logOnly appends rec to the log and hands its Ack to the syncer (or
// completes it). It releases rec only on error.
func (s *Source) logOnly(ctx context.Context, rec arrow.RecordBatch, ack *engine.Ack) (uint64, error) {
	if s.group {
		if err := s.slot(ctx); err != nil {
			rec.Release()
			return 0, err
		}
	}
	first, err := s.appendWait(ctx, rec)
	if err != nil {
		if s.group {
			<-s.slots
		}
		rec.Release()
		return 0, err
	}
	s.logged.Add(rec.NumRows())
	if s.group {
		// Has a slot: never blocks.
		s.unsynced <- ack
	} else {
		ack.Done()
	}
	return first, nil
}

// slot waits until fewer than MaxUnsynced records wait for their fsync and
// takes a place among them.
func (s *Source) slot(ctx context.Context) error {
	select {
	case <-s.syncFailed:
		return s.syncErr
	default:
	}
	select {
	case s.slots <- struct{}{}:
		return nil
	default:
	}
	s.syncWaits.Add(1)
	select {
	case <-s.syncFailed:
		return s.syncErr
	case <-ctx.Done():
		return ctx.Err()
	case s.slots <- struct{}{}:
		return nil
	}
}

// appendWait appends rec to the log; while the log is full it waits for
// room (a checkpoint's Committed, or other buffers of a shared quota
// freeing theirs) or for ctx.
func (s *Source) appendWait(ctx context.Context, rec arrow.RecordBatch) (uint64, error) {
	waiting := false
	delay := 10 * time.Millisecond
	for {
		first, err := s.buf.Append(rec)
		if err == nil {
			if waiting {
				s.log.Info("the log has room again; the source goes on")
			}
			return first, nil
		}
		if !errors.Is(err, buffer.ErrFull) && !errors.Is(err, buffer.ErrNoSpace) {
			return 0, fmt.Errorf("ingest: log: %w", err)
		}
		// The rows kept for the redelivery check give way first; a WAL
		// file whose rows are all deleted is emptied in place.
		if s.trim(true) {
			if err := s.buf.Roll(); err != nil && !errors.Is(err, buffer.ErrNoSpace) {
				return 0, fmt.Errorf("ingest: log: %w", err)
			}
			continue
		}
		if !waiting {
			waiting = true
			s.fullWaits.Add(1)
			s.log.Warn("the log is full: the source waits (its input is not acknowledged) until a checkpoint frees room", "err", err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, ctx.Err()
		case <-s.room:
		case <-t.C:
		}
		t.Stop()
		delay = min(2*delay, time.Second)
	}
}
