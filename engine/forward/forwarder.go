package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/disk"
	"github.com/sluice-edge/sluice/engine/buffer/seqset"
	"github.com/sluice-edge/sluice/engine/outbound"
)

// errPublishTimeout is the error of a publish call that outlived
// PublishTimeout; it is transient.
var errPublishTimeout = errors.New("forward: publish timed out")

// run is a backlog run: consecutive rows read from the buffer that still
// need publishing.
type run struct {
	first    uint64
	rec      arrow.RecordBatch
	starts   []uint64 // message starts (nil: the rows carry none)
	sealed   bool
	attempts int  // permanent rejections of the head message
	single   bool // publish one message at a time (after a permanent error)
}

func (r *run) last() uint64 { return r.first + uint64(r.rec.NumRows()) - 1 }

// forwarder is the only caller of the publisher. All its state belongs to
// its goroutine.
type forwarder struct {
	s   *Sink
	buf *buffer.Buffer
	pub *outbound.Publisher
	enc *outbound.Encoder
	ctx context.Context // cancelled on hard stop
	// liveStarts is the scratch list of message starts of a live batch.
	liveStarts []uint64
	poll       context.Context // already done: makes Next a poll
	log        *slog.Logger
	rng        *rand.Rand

	cursor uint64     // durable delivery cursor
	done   seqset.Set // rows above the cursor needing no more publishing

	// backlog lane
	bpos     uint64 // next sequence the backlog lane looks at
	limit    uint64 // the backlog lane owns sequences below limit
	overread bool   // Next returned rows at or above limit
	runs     []*run
	tokens   float64
	refilled time.Time

	// live lane
	liveOpen bool
	liveNext uint64 // next sequence expected from Write

	liveFrom uint64 // rows at or above were written while the link was up
	linkUp   bool
	backoff  time.Duration
	retryAt  time.Time
	inflight chan error // a publish call that outlived its timeout
	closing  bool

	lastAck    time.Time
	rateStart  time.Time
	rateRows   int64
	downLogged bool
}

func newForwarder(s *Sink, ctx context.Context) *forwarder {
	poll, cancel := context.WithCancel(context.Background())
	cancel()
	enc := s.pub.Encoder(s.opts.Edge, s.opts.Stream)
	enc.Mem = s.opts.Mem
	return &forwarder{
		s: s, buf: s.buf, pub: s.pub, enc: enc, ctx: ctx, poll: poll, log: s.log,
		rng:     rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x5eed)),
		backoff: s.opts.RetryMin,
	}
}

func (f *forwarder) run() {
	defer close(f.s.done)
	defer f.releaseRuns()
	f.start()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	closingC := f.s.closing
	for {
		if f.ctx.Err() != nil {
			f.ack(true)
			return
		}
		if !f.closing {
			select {
			case <-closingC:
				f.closing, closingC = true, nil
			default:
			}
		}
		if f.s.live != nil {
			select {
			case it := <-f.s.live:
				f.handleLive(it)
				continue
			default:
			}
		}
		if f.s.overflow.Swap(false) {
			f.closeLane("live queue full")
		}
		f.s.retryAlerts()
		now := time.Now()
		f.s.settleDiskFull(now, false)
		f.updateRate(now)
		progressed, delay := f.backlogStep()
		if progressed {
			continue
		}
		f.ack(true)
		if f.closing && f.drained() {
			return
		}
		var timer <-chan time.Time
		var t *time.Timer
		if delay > 0 {
			t = time.NewTimer(delay)
			timer = t.C
		}
		select {
		case <-f.ctx.Done():
		case <-f.s.wake:
		case it := <-f.s.live: // nil channel without a live lane
			f.handleLive(it)
		case <-timer:
		case <-tick.C:
		case <-closingC:
			f.closing, closingC = true, nil
		}
		if t != nil {
			t.Stop()
		}
	}
}

func (f *forwarder) start() {
	f.cursor = f.buf.Cursor()
	f.bpos = f.cursor + 1
	next := f.buf.NextSeq()
	f.liveFrom = next // rows from before this start are backfill
	f.linkUp = true
	f.limit = math.MaxUint64
	f.lastAck = time.Now()
	f.rateStart = time.Now()
	f.refilled = time.Now()
	f.tokens = f.burst()
	if f.s.liveOn {
		f.openLane(next)
	}
}

// openLane makes the live lane own every sequence from at on.
func (f *forwarder) openLane(at uint64) {
	if f.overread {
		f.rewind()
	}
	f.liveOpen, f.liveNext, f.limit = true, at, at
	f.s.m.laneOpen.Set(1)
}

// closeLane hands every row the live lane did not publish to the backlog
// lane.
func (f *forwarder) closeLane(reason string) {
	if !f.liveOpen {
		return
	}
	f.liveOpen, f.liveNext, f.limit = false, 0, math.MaxUint64
	if f.overread {
		f.rewind()
	}
	f.s.ctr.laneClosed.Add(1)
	f.s.m.laneOpen.Set(0)
	f.log.Debug("live lane closed; the backlog lane takes over", "reason", reason)
}

// rewind makes the backlog lane read again from the cursor.
func (f *forwarder) rewind() {
	f.releaseRuns()
	f.buf.Rewind()
	f.bpos = f.cursor + 1
	f.overread = false
}

func (f *forwarder) releaseRuns() {
	for _, r := range f.runs {
		r.rec.Release()
	}
	f.runs = nil
}

// handleLive publishes a batch handed over by Write, if the live lane owns
// it.
func (f *forwarder) handleLive(it liveItem) {
	defer it.rec.Release()
	last := it.first + uint64(it.rec.NumRows()) - 1
	if !f.liveOpen || last < f.liveNext {
		return // the backlog lane owns it
	}
	if it.first != f.liveNext {
		f.closeLane("rows reached the buffer without passing the live lane")
		return
	}
	f.liveNext = last + 1
	f.liveStarts = f.buf.Starts(f.liveStarts[:0], it.first, int(it.rec.NumRows()))
	msgs, err := f.enc.Encode(outbound.Entry{Rec: it.rec, First: it.first, Starts: f.liveStarts, Schema: f.s.opts.Schema})
	if err == nil {
		err = f.publish(msgs)
	}
	if err != nil {
		if !f.pub.IsPermanent(err) {
			f.transient(err)
		} else {
			f.countError("permanent", err)
		}
		f.closeLane("live publish failed")
		return
	}
	f.succeeded()
	f.delivered(it.first, last, true, false, time.Since(it.at))
}

// backlogStep reads or publishes one backlog run. It reports whether it
// made progress and, if not, how long to wait at most (0: until woken).
func (f *forwarder) backlogStep() (bool, time.Duration) {
	now := time.Now()
	if now.Before(f.retryAt) {
		return false, f.retryAt.Sub(now)
	}
	if len(f.runs) == 0 {
		if f.bpos >= f.limit {
			return false, 0
		}
		e, err := f.buf.Next(f.poll)
		switch {
		case err == nil:
			f.take(e)
			return true, 0
		case errors.Is(err, context.Canceled):
			// Caught up with what is durable.
			if f.s.liveOn && !f.liveOpen && f.linkUp && !f.closing {
				f.openLane(max(f.buf.NextSeq(), f.bpos))
			}
			return false, 0
		case errors.Is(err, buffer.ErrClosed):
			return false, 0
		default:
			f.log.Error("reading the buffer failed; retrying", "err", err)
			f.retryAt = now.Add(f.s.opts.RetryMin)
			return false, f.s.opts.RetryMin
		}
	}
	r := f.runs[0]
	// Backlog rows are backfill when they were read from a sealed segment,
	// written before the link came back, or published while the live lane
	// is open (live rows with higher sequences may already have left).
	backfill := r.sealed || r.first < f.liveFrom || f.liveOpen
	if backfill {
		if wait := f.rateWait(now); wait > 0 {
			return false, wait
		}
	}
	msgs, err := f.enc.Encode(outbound.Entry{Rec: r.rec, First: r.first, Starts: r.starts, Backfill: backfill, Schema: f.s.opts.Schema})
	if err != nil {
		// Rows the encoder cannot turn into a message never will be.
		f.deadLetter(r, r.first, r.last(), fmt.Errorf("encode: %w", err))
		return true, 0
	}
	if r.single && len(msgs) > 1 {
		msgs = msgs[:1]
	}
	err = f.publish(msgs)
	if err == nil {
		last := r.last()
		if r.single {
			_, last = msgRange(msgs[0], r)
		}
		f.succeeded()
		r.attempts = 0
		f.delivered(r.first, last, false, backfill, 0)
		if backfill {
			f.tokens -= float64(last - r.first + 1)
		}
		f.advance(r, last)
		return true, 0
	}
	if !f.pub.IsPermanent(err) {
		f.transient(err)
		return false, f.retryAt.Sub(time.Now())
	}
	f.countError("permanent", err)
	if len(msgs) > 1 {
		// Find the rejected message: publish one at a time.
		r.single = true
		return true, 0
	}
	r.attempts++
	if r.attempts >= f.s.opts.MaxAttempts {
		lo, hi := msgRange(msgs[0], r)
		f.deadLetter(r, lo, hi, err)
		return true, 0
	}
	f.retryAt = now.Add(f.s.opts.RetryMin)
	return false, f.s.opts.RetryMin
}

// take turns an entry read from the buffer into runs of rows that still
// need publishing.
func (f *forwarder) take(e buffer.Entry) {
	first, last := e.First, e.Last()
	if first > f.bpos {
		// The buffer skipped rows it dropped or lost (and reported).
		f.done.Add(f.bpos, min(first, f.limit)-1)
	}
	if first >= f.limit {
		e.Rec.Release()
		f.overread = true
		f.bpos = f.limit
		return
	}
	rec := e.Rec
	if last >= f.limit {
		rec = e.Rec.NewSlice(0, int64(f.limit-first))
		e.Rec.Release()
		f.overread = true
		last = f.limit - 1
	}
	f.bpos = last + 1
	for _, sp := range f.done.Missing(first, last) {
		f.runs = append(f.runs, &run{
			first: sp.Lo, sealed: e.Sealed, starts: disk.StartsWithin(e.Starts, sp.Lo, sp.Hi),
			rec: rec.NewSlice(int64(sp.Lo-first), int64(sp.Hi-first+1)),
		})
	}
	rec.Release()
}

// advance drops the rows up to last from the head run.
func (f *forwarder) advance(r *run, last uint64) {
	if last >= r.last() {
		r.rec.Release()
		f.runs = f.runs[1:]
		return
	}
	k := int64(last - r.first + 1)
	rest := r.rec.NewSlice(k, r.rec.NumRows())
	r.rec.Release()
	r.starts = disk.StartsWithin(r.starts, last+1, r.last())
	r.rec, r.first = rest, last+1
}

// msgRange returns the sequences a message holds (the whole run when its
// metadata is unreadable).
func msgRange(m *message.Message, r *run) (uint64, uint64) {
	lo, err1 := strconv.ParseUint(m.Metadata.Get(outbound.MetaFirstSeq), 10, 64)
	hi, err2 := strconv.ParseUint(m.Metadata.Get(outbound.MetaLastSeq), 10, 64)
	if err1 != nil || err2 != nil || lo != r.first || hi < lo || hi > r.last() {
		return r.first, r.last()
	}
	return lo, hi
}

// deadLetter moves rows lo..hi (the head of r) to the dead-letter segment.
func (f *forwarder) deadLetter(r *run, lo, hi uint64, cause error) {
	rec := r.rec.NewSlice(int64(lo-r.first), int64(hi-r.first+1))
	err := f.buf.DeadLetter(lo, rec, cause)
	rec.Release()
	if err != nil {
		f.log.Error("cannot write the dead-letter segment; retrying", "err", err, "first", lo, "last", hi)
		f.retryAt = time.Now().Add(f.s.opts.RetryMin)
		return
	}
	n := hi - lo + 1
	f.s.ctr.deadRows.Add(int64(n))
	f.s.m.deadRows.Add(float64(n))
	f.log.Error("rows rejected permanently moved to the dead-letter segment", "first", lo, "last", hi, "rows", n,
		"attempts", r.attempts, "err", cause)
	r.attempts = 0
	f.done.Add(lo, hi)
	f.advance(r, hi)
	f.ack(false)
}

// publish makes one publish call, waiting at most PublishTimeout. A call
// that outlives it keeps running; the next call waits for it first, so
// calls never overlap.
func (f *forwarder) publish(msgs []*message.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if f.inflight != nil {
		select {
		case <-f.inflight:
			f.inflight = nil
		case <-f.ctx.Done():
			return f.ctx.Err()
		}
	}
	ch := make(chan error, 1)
	start := time.Now()
	go func() { ch <- f.pub.Publish(f.pub.Topic, msgs...) }()
	t := time.NewTimer(f.s.opts.PublishTimeout)
	defer t.Stop()
	select {
	case err := <-ch:
		f.s.m.publishTime.Observe(time.Since(start).Seconds())
		return err
	case <-t.C:
		f.inflight = ch
		return errPublishTimeout
	case <-f.ctx.Done():
		f.inflight = ch
		return f.ctx.Err()
	}
}

func (f *forwarder) countError(kind string, err error) {
	if errors.Is(err, errPublishTimeout) {
		kind = "timeout"
	}
	f.s.ctr.pubErrors.Add(1)
	f.s.m.pubErrors.WithLabelValues(kind).Inc()
	if kind == "permanent" {
		f.log.Warn("publish rejected permanently", "err", err)
	}
}

// transient records a failure retrying can fix: the link is down until a
// publish succeeds; rows written meanwhile are backfill.
func (f *forwarder) transient(err error) {
	f.countError("transient", err)
	if f.ctx.Err() != nil {
		return
	}
	if f.linkUp || !f.downLogged {
		f.log.Warn("publish failed; buffering and retrying with backoff", "err", err)
		f.downLogged = true
	} else {
		f.log.Debug("publish failed again", "err", err, "backoff", f.backoff)
	}
	f.linkUp = false
	f.s.m.linkUp.Set(0)
	f.liveFrom = math.MaxUint64
	f.closeLane("link down")
	// Full jitter around the current backoff: [backoff/2, backoff].
	d := f.backoff/2 + time.Duration(f.rng.Int64N(int64(f.backoff/2)+1))
	f.retryAt = time.Now().Add(d)
	f.backoff = min(f.backoff*2, f.s.opts.RetryMax)
}

// succeeded records a confirmed publish; the first after an outage marks
// the moment the link came back.
func (f *forwarder) succeeded() {
	f.backoff = f.s.opts.RetryMin
	if f.linkUp {
		return
	}
	f.linkUp, f.downLogged = true, false
	f.s.m.linkUp.Set(1)
	next := f.buf.NextSeq()
	f.liveFrom = next
	f.log.Info("link back; live rows go first, the backlog drains beside them", "backlog_from", f.cursor+1, "live_from", next)
	if f.s.liveOn && !f.liveOpen && !f.closing {
		f.openLane(next)
	}
}

// delivered records confirmed rows and advances the cursor when due.
func (f *forwarder) delivered(first, last uint64, live, backfill bool, latency time.Duration) {
	n := int64(last - first + 1)
	f.done.Add(first, last)
	f.buf.MarkDelivered(first, last)
	f.s.ctr.published.Add(n)
	lane := "backlog"
	if live {
		lane = "live"
		f.s.m.liveLatency.Observe(latency.Seconds())
	} else {
		f.rateRows += n
	}
	if backfill {
		f.s.ctr.backfilled.Add(n)
	}
	f.s.m.published.WithLabelValues(lane).Add(float64(n))
	if h := f.s.opts.OnDelivered; h != nil {
		h(Delivery{First: first, Last: last, Live: live, Backfill: backfill, Latency: latency})
	}
	f.ack(false)
}

// ack advances the durable cursor over the delivered prefix: at once when
// forced, otherwise at most every 50 ms (each Ack costs an fsync).
func (f *forwarder) ack(force bool) {
	p := f.done.Prefix(f.cursor)
	if p <= f.cursor || (!force && time.Since(f.lastAck) < 50*time.Millisecond) {
		return
	}
	if err := f.buf.Ack(p); err != nil {
		if !errors.Is(err, buffer.ErrClosed) {
			f.log.Error("cannot advance the delivery cursor", "err", err, "seq", p)
		}
		return
	}
	f.cursor = p
	f.done.Trim(p)
	f.lastAck = time.Now()
}

// drained reports whether every appended row is delivered.
func (f *forwarder) drained() bool {
	return f.cursor+1 >= f.buf.NextSeq()
}

func (f *forwarder) burst() float64 {
	r := f.s.opts.BackfillRate
	if r <= 0 {
		return 0
	}
	return max(r/10, 1)
}

// rateWait returns how long the backlog lane must wait for the backfill
// rate cap (live_first only).
func (f *forwarder) rateWait(now time.Time) time.Duration {
	r := f.s.opts.BackfillRate
	if r <= 0 || f.s.opts.Mode != LiveFirst {
		return 0
	}
	f.tokens = min(f.tokens+now.Sub(f.refilled).Seconds()*r, f.burst())
	f.refilled = now
	if f.tokens > 0 {
		return 0
	}
	return time.Duration(-f.tokens/r*float64(time.Second)) + time.Millisecond
}

func (f *forwarder) updateRate(now time.Time) {
	if d := now.Sub(f.rateStart); d >= time.Second {
		f.s.m.drainRate.Set(float64(f.rateRows) / d.Seconds())
		f.rateStart, f.rateRows = now, 0
	}
}
