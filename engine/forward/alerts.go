package forward

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
)

// Rules of the alerts buffered sinks raise about themselves.
const (
	// DropAlertRule is the rule of alerts raised for rows a quota or TTL
	// dropped.
	DropAlertRule = "buffer_drop"
	// LossAlertRule is the rule of alerts raised for rows lost to a
	// damaged buffer file.
	LossAlertRule = "buffer_corruption"
	// DiskFullAlertRule is the rule of the alert raised while a sink
	// holds rows back because the disk is full (cleared when appends work
	// again).
	DiskFullAlertRule = "buffer_disk_full"
)

// maxPendingAlerts bounds the alerts a sink keeps in memory while its
// buffer cannot take them.
const maxPendingAlerts = 10000

// router takes the alerts the buffered sinks of one run raise about
// themselves (rows dropped or lost, a full disk) to every sink of the run
// that carries alerts (engine.AlertSchema). An alert a target cannot store
// at once (its quota or the disk full) waits in the target's queue and is
// retried. Sinks carrying alerts close only once the other sinks of the
// run have closed (or a bound has passed), so that alerts raised while
// those drain still reach them.
type router struct {
	mu      sync.Mutex
	targets []*Sink
	others  int           // open sinks that carry no alerts
	idle    chan struct{} // closed and replaced when others drops to 0
}

func routerOf(sh *engine.Shared) *router {
	return engine.AlertRouteOf(sh, func() engine.AlertRoute { return &router{idle: make(chan struct{})} }).(*router)
}

func (r *router) join(s *Sink) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.alert {
		r.targets = append(r.targets, s)
		return
	}
	if r.others == 0 {
		r.idle = make(chan struct{})
	}
	r.others++
}

// leave is called by a sink once it has closed.
func (r *router) leave(s *Sink) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.alert {
		for i, t := range r.targets {
			if t == s {
				r.targets = append(r.targets[:i], r.targets[i+1:]...)
				break
			}
		}
		return
	}
	r.others--
	if r.others == 0 {
		close(r.idle)
	}
}

// othersClosed returns a channel closed once no sink without alerts is
// open.
func (r *router) othersClosed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.others == 0 {
		c := make(chan struct{})
		close(c)
		return c
	}
	return r.idle
}

// Raise hands an alert record to every target, in the target's alert
// schema (a target whose alerts name rule set versions gets a null
// version); it reports how many took it (at once or into their queue).
func (r *router) Raise(rec arrow.RecordBatch) int {
	r.mu.Lock()
	targets := append([]*Sink(nil), r.targets...)
	r.mu.Unlock()
	n := 0
	for _, t := range targets {
		conv, err := engine.AlertRecordAs(t.opts.Mem, rec, t.opts.Schema)
		if err != nil {
			t.log.Error("cannot store an alert", "err", err, "alert", alertText(rec))
			continue
		}
		if t.offerAlert(conv) {
			n++
		}
		conv.Release()
	}
	return n
}

// offerAlert stores an alert record in the sink's buffer, or queues it when
// the buffer has no room now. It reports whether the alert was taken. No
// lock is held while appending: an append may evict rows from another
// buffer whose drop raises an alert here, which then queues behind.
func (s *Sink) offerAlert(rec arrow.RecordBatch) bool {
	s.pendMu.Lock()
	if s.alertsClosed {
		s.pendMu.Unlock()
		return false
	}
	buf := s.alertBuf
	if len(s.pending) > 0 || s.storing || buf == nil {
		// Behind others, or the buffer is still opening: retried by the
		// forwarder.
		s.queueLocked(rec, false)
		s.pendMu.Unlock()
		return true
	}
	full, err := s.storeLocked(buf, rec)
	defer s.pendMu.Unlock()
	switch {
	case err == nil:
		return true
	case full:
		s.queueLocked(rec, true) // it came before what queued meanwhile
		return true
	}
	s.log.Error("cannot store an alert", "err", err, "alert", alertText(rec))
	return false
}

// storeLocked appends an alert record and hands it to the live lane. It
// is called with pendMu held and releases it while appending (storing
// says so); full reports a buffer without room now.
func (s *Sink) storeLocked(buf *buffer.Buffer, rec arrow.RecordBatch) (full bool, err error) {
	s.storing = true
	s.pendMu.Unlock()
	first, err := buf.Append(rec)
	if err == nil {
		s.handOff(first, rec)
	}
	s.pendMu.Lock()
	s.storing = false
	s.stored.Broadcast()
	return errors.Is(err, buffer.ErrFull) || errors.Is(err, buffer.ErrNoSpace), err
}

// queueLocked keeps rec (retained) for a later retry, at the front or the
// back of the queue.
func (s *Sink) queueLocked(rec arrow.RecordBatch, front bool) {
	if len(s.pending) >= maxPendingAlerts {
		old := s.pending[0]
		s.log.Error("too many alerts waiting for room; the oldest is lost", "alert", alertText(old))
		old.Release()
		s.pending = s.pending[1:]
	}
	rec.Retain()
	if front {
		s.pending = append([]arrow.RecordBatch{rec}, s.pending...)
	} else {
		s.pending = append(s.pending, rec)
	}
	s.npending.Store(int64(len(s.pending)))
}

// retryAlerts stores queued alerts, oldest first, while the buffer takes
// them.
func (s *Sink) retryAlerts() {
	if s.npending.Load() == 0 {
		return
	}
	for {
		s.pendMu.Lock()
		buf := s.alertBuf
		if len(s.pending) == 0 || s.storing || buf == nil {
			s.pendMu.Unlock()
			return
		}
		rec := s.pending[0]
		s.pending = s.pending[1:]
		full, err := s.storeLocked(buf, rec)
		if full {
			s.pending = append([]arrow.RecordBatch{rec}, s.pending...)
		} else {
			if err != nil {
				s.log.Error("cannot store an alert", "err", err, "alert", alertText(rec))
			}
			rec.Release()
		}
		s.npending.Store(int64(len(s.pending)))
		s.pendMu.Unlock()
		if err != nil {
			return
		}
	}
}

// dropPending logs and releases the alerts still queued at close; the
// sink takes no alert after it.
func (s *Sink) dropPending() {
	s.pendMu.Lock()
	defer s.pendMu.Unlock()
	s.alertsClosed = true
	for s.storing { // an append in flight finishes first
		s.stored.Wait()
	}
	for _, rec := range s.pending {
		s.log.Error("an alert could not be stored before the sink closed", "alert", alertText(rec))
		rec.Release()
	}
	s.pending = nil
	s.npending.Store(0)
}

func alertText(rec arrow.RecordBatch) string {
	for i, f := range rec.Schema().Fields() {
		if c, ok := rec.Column(i).(*array.String); ok && f.Name == "content" && c.Len() > 0 {
			return c.Value(0)
		}
	}
	return ""
}

// asset is what the sink's alerts are about: its edge and stream.
func (s *Sink) asset() string { return s.opts.Edge + "/" + s.opts.Stream }

// raise builds the record of a and routes it; with no sink carrying
// alerts, it says so in the log.
func (s *Sink) raise(a engine.EngineAlert) {
	a.Asset = s.asset()
	rec := a.Record(s.opts.Mem)
	defer rec.Release()
	if n := s.router.Raise(rec); n == 0 {
		s.ctr.unrouted.Add(1)
		s.log.Error("no sink carries alerts: this alert stays in the log only", "rule", a.Rule, "state", a.State, "content", a.Content)
		return
	}
	s.ctr.dropAlerts.Add(1)
	s.m.alertsRaised.Inc()
}

// dropped handles a drop reported by the buffer: metrics, counters and,
// when the dropped rows were not themselves alerts or statistics the
// droppable predicate protects, an alert to the sinks carrying alerts. The
// buffer has already logged it and counted it in rows_dropped.
func (s *Sink) dropped(d buffer.Drop) {
	s.m.dropped.WithLabelValues(d.Reason).Add(float64(d.Rows))
	// The rule the buffer evicted by: the shared quota's, else its own.
	droppable := s.opts.Buffer.Droppable
	if q := s.opts.Buffer.Quota; q != nil {
		droppable = q.Droppable()
	}
	if droppable == nil {
		droppable = buffer.DefaultDroppable
	}
	if s.alert || !droppable(s.opts.Schema) {
		// Alerts (or protected statistics) were dropped: raising an alert
		// about it into an alert buffer could evict more alerts. Counted
		// and logged only.
		return
	}
	now := time.Now()
	s.raise(engine.EngineAlert{
		ID:   engine.EngineAlertID(DropAlertRule, s.asset(), fmt.Sprintf("%d-%d", d.First, d.Last)),
		Rule: DropAlertRule, Severity: "major", Type: "data_loss",
		Content: fmt.Sprintf("%s buffer of %s/%s %s", d.Reason, s.opts.Edge, s.opts.Stream, d.String()),
		Value:   float64(d.Rows), State: engine.AlertRaised, Occur: now,
	})
}

// lost handles rows lost to a damaged buffer file.
func (s *Sink) lost(ce *buffer.CorruptionError) {
	if ce.LostFirst == 0 {
		return
	}
	rows, rng := float64(0), fmt.Sprintf("%d-", ce.LostFirst)
	if ce.LostLast >= ce.LostFirst {
		rows = float64(ce.LostLast - ce.LostFirst + 1)
		rng = fmt.Sprintf("%d-%d", ce.LostFirst, ce.LostLast)
	}
	s.raise(engine.EngineAlert{
		ID:   engine.EngineAlertID(LossAlertRule, s.asset(), rng),
		Rule: LossAlertRule, Severity: "major", Type: "data_loss",
		Content: fmt.Sprintf("buffer of %s/%s lost rows %s to a damaged file: %s", s.opts.Edge, s.opts.Stream, rng, ce.Error()),
		Value:   rows, State: engine.AlertRaised, Occur: time.Now(),
	})
}

// noRoom notes an append refused for want of space: it opens a disk-full
// episode (raising the alert) or extends the open one.
func (s *Sink) noRoom(cause error) {
	now := time.Now()
	s.fullMu.Lock()
	open := !s.fullSince.IsZero()
	if !open {
		s.fullSince = now
	}
	s.fullLast = now
	s.fullRoom.Store(false)
	since := s.fullSince
	s.fullMu.Unlock()
	if !open {
		s.diskFull(since, true, cause)
	}
}

// settleDiskFull clears the disk-full alert when appends have gone through
// since the last refusal and that was DiskFullClearAfter ago (or at once,
// with force). The forwarder calls it on every pass.
func (s *Sink) settleDiskFull(now time.Time, force bool) {
	s.fullMu.Lock()
	if s.fullSince.IsZero() || !s.fullRoom.Load() || (!force && now.Sub(s.fullLast) < s.opts.DiskFullClearAfter) {
		s.fullMu.Unlock()
		return
	}
	since := s.fullSince
	s.fullSince = time.Time{}
	s.fullMu.Unlock()
	s.diskFull(since, false, nil)
}

// diskFull raises (full) or clears the disk-full alert of an episode that
// started at since.
func (s *Sink) diskFull(since time.Time, full bool, cause error) {
	a := engine.EngineAlert{
		ID:   engine.EngineAlertID(DiskFullAlertRule, s.asset(), strconv.FormatInt(since.UnixMilli(), 10)),
		Rule: DiskFullAlertRule, Severity: "critical", Type: "resource", Occur: since, State: engine.AlertRaised,
		Content: fmt.Sprintf("disk of the %s/%s buffer (%s) is full: new rows are held back until space frees", s.opts.Edge, s.opts.Stream, s.opts.Dir),
	}
	if !full {
		a.State, a.Recover = engine.AlertCleared, time.Now()
		a.Content = fmt.Sprintf("disk of the %s/%s buffer has room again after %s", s.opts.Edge, s.opts.Stream, a.Recover.Sub(since).Round(time.Second))
	} else if cause != nil {
		a.Content += ": " + cause.Error()
	}
	s.raise(a)
}
