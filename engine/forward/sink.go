package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/disk"
	"github.com/sluice-edge/sluice/engine/outbound"
)

// Options configure a buffered sink. Schema, Edge, Stream and Dir are
// required; FromConfig fills them from a sink's configuration.
type Options struct {
	// Schema is the schema of the rows written.
	Schema *engine.Schema
	// Edge and Stream name the rows in message IDs. A buffer keeps the
	// names its rows were stored under (buffer.Buffer.Identity).
	Edge, Stream string
	// Dir is the buffer directory. One directory belongs to one sink: the
	// buffer takes a lock on it.
	Dir string
	// Buffer holds the buffer settings: Fsync, FsyncInterval, SegmentBytes,
	// MaxBytes, Policy, Droppable, Quota, TTL, TTLBy, FS, Now, IdleSeal.
	// Schema, Log, Counters, Mem, Edge, Stream and MessageRows are set by
	// New; OnDrop and OnCorruption, when set, are called after the sink's
	// own handling.
	Buffer buffer.Options
	// DiskShare, when above 0 and Buffer.Quota is nil, bounds the buffer
	// by that share of the free space of its file system (measured when
	// it opens): with DiskShared, one quota for every sink of the run
	// that asks for it (the default when max_bytes is not set).
	DiskShare  float64
	DiskShared bool

	// Held makes the sink hold its output back for a checkpointing
	// pipeline (FromConfig sets it from engine.BuildContext.Checkpoints):
	// its buffer is opened held (buffer.Options.Held), the forwarder reads
	// only rows a Commit released, and the live lane is off. See Sink.Prepare.
	Held bool

	// Mode is LiveFirst (default) or FIFO.
	Mode Mode
	// BackfillRate caps backlog rows per second in LiveFirst mode (0: no
	// cap).
	BackfillRate float64
	// MaxAttempts is how often a permanently rejected message is tried
	// before its rows are dead-lettered.
	MaxAttempts int
	// RetryMin and RetryMax bound the exponential backoff between retries.
	RetryMin, RetryMax time.Duration
	// PublishTimeout is the longest wait for one publish call.
	PublishTimeout time.Duration
	// DrainTimeout is how long Close keeps publishing; negative: not at
	// all.
	DrainTimeout time.Duration
	// LiveQueue is the number of batches the live lane holds in memory.
	LiveQueue int
	// DiskFullClearAfter is how long appends must go through after the
	// last one refused for want of space before the disk-full alert
	// clears (default DefaultDiskFullClearAfter).
	DiskFullClearAfter time.Duration

	// Labels name the sink in metrics (pipeline and sink by default).
	Labels map[string]string
	// Log, Counters, Mem and Shared as in engine.BuildContext. Sinks
	// sharing Shared route their alerts (drops, losses, a full disk) to
	// the sinks among them that carry alerts.
	Log      *slog.Logger
	Counters *engine.Counters
	Mem      memory.Allocator
	Shared   *engine.Shared
	// OnDelivered, when set, is called by the forwarder after every
	// confirmed publish (tests and tools use it).
	OnDelivered func(Delivery)
}

// Delivery describes rows the broker confirmed.
type Delivery struct {
	// First and Last bound the sequences published.
	First, Last uint64
	// Live is true for the live lane; Backfill is the flag the messages
	// carried.
	Live, Backfill bool
	// Latency is the time from Write to confirmation (live lane only).
	Latency time.Duration
}

// Sink is a buffered cloud-bound sink: Write appends to the durable buffer
// and a forwarder goroutine publishes the buffer through the publisher.
// Write may be called from one goroutine at a time (the graph's sink
// goroutine); Close is idempotent.
type Sink struct {
	opts   Options
	buf    *buffer.Buffer
	pub    *outbound.Publisher
	m      *metrics
	log    *slog.Logger
	ctr    sinkCounters
	alert  bool // the sink carries alerts (engine.IsAlertSchema)
	router *router

	liveOn   bool // the live lane is in use (LiveFirst and a suitable fsync policy)
	live     chan liveItem
	overflow atomic.Bool
	wake     chan struct{}
	closing  chan struct{}
	stopFwd  context.CancelFunc
	done     chan struct{}

	// alerts waiting for room in this sink's buffer
	pendMu       sync.Mutex
	pending      []arrow.RecordBatch
	storing      bool           // an alert is being appended
	stored       sync.Cond      // signalled (L: pendMu) when storing ends
	alertBuf     *buffer.Buffer // buf, once open, for alert appends
	alertsClosed bool
	npending     atomic.Int64

	// the disk-full episode (fullMu): the alert is raised at the first
	// append refused for want of space and cleared once appends have
	// gone through for DiskFullClearAfter, so that a disk on the edge of
	// full raises one alert, not one per batch
	fullMu    sync.Mutex
	fullSince time.Time   // its start; zero: no episode
	fullLast  time.Time   // the last refused append
	fullRoom  atomic.Bool // an append went through since then

	closeOnce sync.Once
	closeErr  error
}

type sinkCounters struct {
	published, backfilled, pubErrors, deadRows, dropAlerts, fullWaits, laneClosed, unrouted *atomic.Int64
}

// liveItem is a durable batch handed from Write to the live lane.
type liveItem struct {
	first uint64
	rec   arrow.RecordBatch
	at    time.Time
}

// New opens the buffer in opts.Dir and starts the forwarder publishing
// through pub. The sink owns pub from then on and closes it in Close (also
// when New fails).
func New(pub *outbound.Publisher, opts Options) (*Sink, error) {
	if err := opts.normalize(); err != nil {
		_ = pub.Close()
		return nil, err
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Counters == nil {
		opts.Counters = engine.NewCounters()
	}
	if opts.Mem == nil {
		opts.Mem = memory.DefaultAllocator
	}
	s := &Sink{
		m:       newMetrics(),
		opts:    opts,
		pub:     pub,
		log:     opts.Log.With("edge", opts.Edge, "stream", opts.Stream),
		alert:   engine.IsAlertSchema(opts.Schema),
		router:  routerOf(opts.Shared),
		wake:    make(chan struct{}, 1),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	s.stored.L = &s.pendMu
	c := opts.Counters
	s.ctr = sinkCounters{
		published: c.Counter("rows_published"), backfilled: c.Counter("rows_backfilled"),
		pubErrors: c.Counter("publish_errors"), deadRows: c.Counter("rows_dead_lettered"),
		dropAlerts: c.Counter("drop_alerts"), fullWaits: c.Counter("full_waits"),
		laneClosed: c.Counter("live_lane_closed"), unrouted: c.Counter("alerts_unrouted"),
	}
	bo := opts.Buffer
	bo.Schema, bo.Log, bo.Counters, bo.Mem = opts.Schema, s.log, opts.Counters, opts.Mem
	bo.Edge, bo.Stream, bo.MessageRows = opts.Edge, opts.Stream, max(pub.BatchRows, 0)
	bo.Held = opts.Held
	if bo.Quota == nil && opts.DiskShare > 0 {
		q, err := shareQuota(opts)
		if err != nil {
			_ = pub.Close()
			return nil, err
		}
		bo.Quota = q
	}
	userDrop, userCorrupt := bo.OnDrop, bo.OnCorruption
	bo.OnDrop = func(d buffer.Drop) {
		s.dropped(d)
		if userDrop != nil {
			userDrop(d)
		}
	}
	bo.OnCorruption = func(ce *buffer.CorruptionError) {
		s.lost(ce)
		if userCorrupt != nil {
			userCorrupt(ce)
		}
	}
	// Join the route before the buffer opens: corruption found on open
	// raises alerts.
	s.router.join(s)
	buf, err := buffer.Open(opts.Dir, bo)
	if err != nil {
		s.dropPending()
		s.router.leave(s)
		_ = pub.Close()
		return nil, fmt.Errorf("forward: open buffer: %w", err)
	}
	s.buf = buf
	s.pendMu.Lock()
	s.alertBuf = buf
	s.pendMu.Unlock()
	if edge, stream := buf.Identity(); edge != opts.Edge || stream != opts.Stream {
		// The buffer keeps the identity its rows were stored under.
		s.opts.Edge, s.opts.Stream = edge, stream
		s.log = opts.Log.With("edge", edge, "stream", stream)
	}
	// The live lane publishes rows from memory as soon as Append returned.
	// Under fsync "interval" rows are not durable then, and publishing
	// them could hand out an ID that a power loss makes the buffer issue
	// again for other rows; such sinks forward in sequence order only.
	// A held sink publishes only committed rows, which the backlog lane
	// reads.
	s.liveOn = opts.Mode == LiveFirst && bo.Fsync != buffer.FsyncInterval && !opts.Held
	if opts.Mode == LiveFirst && !s.liveOn && !opts.Held {
		s.log.Info("live_first needs fsync always or none; forwarding in fifo order")
	}
	if s.liveOn {
		s.live = make(chan liveItem, opts.LiveQueue)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stopFwd = cancel
	f := newForwarder(s, ctx)
	go f.run()
	return s, nil
}

type shareKey struct{ fs string }

// deviceOf names the file system of path (the path itself when the system
// does not tell).
func deviceOf(path string) string {
	if dev, ok := disk.DeviceID(path); ok {
		return fmt.Sprintf("dev:%d", dev)
	}
	return path
}

// shareQuota returns the quota of a disk share: the run's (DiskShared) or
// the buffer's own, sized by the free space of the buffer's file system.
func shareQuota(opts Options) (*buffer.Quota, error) {
	parent := filepath.Dir(filepath.Clean(opts.Dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	free, err := disk.FreeBytes(parent)
	if err != nil {
		return nil, fmt.Errorf("forward: free space of %s (set buffer.max_bytes): %w", parent, err)
	}
	create := func() any { return buffer.NewShareQuota(opts.DiskShare, free, opts.Buffer.Droppable) }
	if !opts.DiskShared {
		return create().(*buffer.Quota), nil
	}
	// One default quota per file system of the run: key by the device of
	// the parent directory when the system tells it.
	key := shareKey{fs: deviceOf(parent)}
	return opts.Shared.Get(key, create).(*buffer.Quota), nil
}

// CarriesAlerts reports whether the sink carries alerts
// (engine.IsAlertSchema): the alerts the engine raises about itself go
// through it.
func (s *Sink) CarriesAlerts() bool { return s.alert }

// Buffer returns the sink's buffer (for status and tools).
func (s *Sink) Buffer() *buffer.Buffer { return s.buf }

// TTL returns the TTL of the sink's buffer (0: none) and what it
// measures.
func (s *Sink) TTL() (time.Duration, buffer.TTLBasis) { return s.opts.Buffer.TTL, s.opts.Buffer.TTLBy }

// Publisher returns the sink's publisher.
func (s *Sink) Publisher() *outbound.Publisher { return s.pub }

// ErrClosing is returned by Write when the sink closes while the write waits
// for space.
var ErrClosing = errors.New("forward: sink closing")

// Write appends the batch to the buffer and returns once it is stored under
// the fsync policy; it releases the record. When the quota or the disk is
// full it waits (backpressure) until space frees, ctx is done or the sink
// closes; it never drops rows.
func (s *Sink) Write(ctx context.Context, b engine.Batch) error {
	defer b.Release()
	return s.append(ctx, b.Rec)
}

func (s *Sink) append(ctx context.Context, rec arrow.RecordBatch) error {
	if rec == nil || rec.NumRows() == 0 {
		return nil
	}
	wait := time.Millisecond
	var since time.Time
	var diskFull bool
	for {
		first, err := s.buf.Append(rec)
		if err == nil {
			if diskFull {
				s.log.Info("disk has room again: new rows are stored", "held_back_for", time.Since(since).Round(time.Millisecond).String())
			}
			s.fullRoom.Store(true)
			s.handOff(first, rec)
			return nil
		}
		noSpace := errors.Is(err, buffer.ErrNoSpace)
		if !noSpace && !errors.Is(err, buffer.ErrFull) {
			return fmt.Errorf("forward: append: %w", err)
		}
		if since.IsZero() {
			since = time.Now()
			s.ctr.fullWaits.Add(1)
			s.m.fullWaits.Inc()
			if !noSpace {
				s.log.Warn("buffer quota full: holding new rows back until delivered rows free space", "rows", rec.NumRows())
			}
		}
		if noSpace {
			// Logged by the buffer; raise it where it is watched.
			diskFull = true
			s.noRoom(err)
		}
		// Delivered rows in the active log file are reclaimed only once
		// it is rolled (or, on a full disk, emptied in place); ask the
		// forwarder to advance the cursor now.
		_ = s.buf.Roll()
		s.kick()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("forward: buffer full: %w", ctx.Err())
		case <-s.closing:
			t.Stop()
			return ErrClosing
		case <-t.C:
		}
		wait = min(wait*2, 200*time.Millisecond)
	}
}

// handOff gives a durable batch to the live lane (or just wakes the
// forwarder).
func (s *Sink) handOff(first uint64, rec arrow.RecordBatch) {
	if s.liveOn {
		rec.Retain()
		select {
		case s.live <- liveItem{first: first, rec: rec, at: time.Now()}:
		default:
			rec.Release()
			s.overflow.Store(true)
		}
	}
	s.kick()
}

func (s *Sink) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Close stops the forwarder after it published what it could within the
// drain timeout (bounded by ctx), then closes the publisher and the buffer.
// Undelivered rows stay in the buffer for the next start. A sink carrying
// alerts first waits (within the drain timeout and ctx) for the run's
// other buffered sinks to close, so that what they raise while draining
// reaches it — unless it closes in a release switch (engine.InSwitch),
// where the others keep running. It is idempotent.
func (s *Sink) Close(ctx context.Context) error {
	s.closeOnce.Do(func() { s.closeErr = s.close(ctx) })
	return s.closeErr
}

func (s *Sink) close(ctx context.Context) error {
	drain := max(s.opts.DrainTimeout, 0)
	// An episode whose appends go through again ends with the sink (the
	// alert sinks are still open).
	s.settleDiskFull(time.Now(), true)
	if s.alert && !engine.InSwitch(ctx) {
		t := time.NewTimer(drain + time.Second)
		select {
		case <-s.router.othersClosed():
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	close(s.closing)
	t := time.NewTimer(drain)
	select {
	case <-s.done:
	case <-t.C:
	case <-ctx.Done():
	}
	t.Stop()
	s.stopFwd()
	<-s.done
	s.retryAlerts()
	s.dropPending()
	err := s.pub.Close()
	if s.live != nil {
		for {
			select {
			case it := <-s.live:
				it.rec.Release()
				continue
			default:
			}
			break
		}
	}
	if cerr := s.buf.Close(); cerr != nil && err == nil {
		err = cerr
	}
	s.router.leave(s)
	return err
}

// Left describes what a closed sink left in its buffer.
type Left struct {
	Edge, Stream string
	Dir          string
	// Rows and Bytes are the undelivered rows and the bytes of the files
	// holding them.
	Rows, Bytes int64
}

// Left returns what is undelivered in the buffer now (after Close: what
// the next start sends).
func (s *Sink) Left() Left {
	st := s.buf.Status()
	return Left{Edge: s.opts.Edge, Stream: s.opts.Stream, Dir: s.opts.Dir, Rows: st.BacklogRows, Bytes: st.BacklogBytes}
}
