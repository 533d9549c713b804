package buffer

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer/disk"
)

// Quota is a disk budget shared by one or more buffers (docs/format/buffer.md
// section 10). Buffers join it through Options.Quota; a buffer opened
// without one gets a private quota from Options.MaxBytes and Options.Policy.
type Quota struct {
	max       atomic.Int64
	policy    Policy
	droppable func(*engine.Schema) bool
	used      atomic.Int64
	// share is set for a share of the disk (NewShareQuota): joining
	// members bring share of their bytes to the budget, and each member's
	// own policy applies.
	share float64

	mu      sync.Mutex // serialises evictions; guards members
	members []*Buffer
}

// NewQuota returns a quota of maxBytes (0: unlimited) with the given policy
// on full. droppable says which buffers Downsample may evict from; nil means
// DefaultDroppable.
func NewQuota(maxBytes int64, policy Policy, droppable func(*engine.Schema) bool) *Quota {
	if droppable == nil {
		droppable = DefaultDroppable
	}
	q := &Quota{policy: policy, droppable: droppable}
	q.max.Store(maxBytes)
	return q
}

// NewShareQuota returns a quota of share (0..1) of free, the bytes free on
// the file system now, growing by share of the bytes each buffer holds when
// it joins: a budget of that share of what the buffers may use. Each member
// applies its own policy (Options.Policy) to its appends, and only members
// whose own policy allows it are evicted from (drop_oldest: any row;
// downsample: rows droppable says may go).
func NewShareQuota(share float64, free int64, droppable func(*engine.Schema) bool) *Quota {
	q := NewQuota(max(int64(share*float64(free)), 1), RejectNew, droppable)
	q.share = share
	return q
}

// Droppable returns the predicate saying which buffers Downsample may evict
// from.
func (q *Quota) Droppable() func(*engine.Schema) bool { return q.droppable }

// Used returns the bytes used by the member buffers.
func (q *Quota) Used() int64 { return q.used.Load() }

// Max returns the budget in bytes (0: unlimited).
func (q *Quota) Max() int64 { return q.max.Load() }

// Policy returns the policy on full.
func (q *Quota) Policy() Policy { return q.policy }

// DefaultDroppable is the default rule of the Downsample policy: raw data
// may be dropped, alerts and window statistics may not. A schema is kept
// when it is an alert schema (engine.IsAlertSchema) or when it is a
// window-result schema, recognised by timestamp fields named
// "window_start" and "window_end".
func DefaultDroppable(s *engine.Schema) bool {
	if engine.IsAlertSchema(s) {
		return false
	}
	ws, ok1 := s.Lookup("window_start")
	we, ok2 := s.Lookup("window_end")
	if ok1 && ok2 && ws.Type == engine.Timestamp && we.Type == engine.Timestamp {
		return false
	}
	return true
}

func (q *Quota) join(b *Buffer, bytes int64) {
	q.mu.Lock()
	q.members = append(q.members, b)
	q.mu.Unlock()
	if q.share > 0 {
		q.max.Add(int64(q.share * float64(bytes)))
	}
	q.used.Add(bytes)
}

func (q *Quota) leave(b *Buffer) {
	q.mu.Lock()
	q.members = slices.DeleteFunc(q.members, func(x *Buffer) bool { return x == b })
	q.mu.Unlock()
	b.mu.Lock()
	n := b.walBytes + b.segBytes + b.deadBytes
	b.mu.Unlock()
	q.used.Add(-n)
}

func (q *Quota) tryAdd(n int64) bool {
	limit := q.max.Load()
	for {
		u := q.used.Load()
		if limit > 0 && u+n > limit {
			return false
		}
		if q.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

func (q *Quota) release(n int64) { q.used.Add(-n) }

// pendingDrop is a drop to report once no lock is held.
type pendingDrop struct {
	b *Buffer
	d Drop
}

func deliverDrops(ds []pendingDrop) {
	for _, p := range ds {
		p.b.reportDrop(p.d)
	}
}

// reserve accounts n more bytes for b, evicting per policy when they do not
// fit.
func (q *Quota) reserve(b *Buffer, n int64) ([]pendingDrop, error) {
	if q.tryAdd(n) {
		return nil, nil
	}
	policy := q.policy
	if q.share > 0 {
		policy = b.opts.Policy
	}
	if policy == RejectNew {
		if q.overQuota(b, policy) {
			q.used.Add(n)
			return nil, nil
		}
		return nil, ErrFull
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	var drops []pendingDrop
	for !q.tryAdd(n) {
		v := q.victimLocked(policy)
		if v == nil {
			if q.overQuota(b, policy) {
				q.used.Add(n)
				return drops, nil
			}
			return drops, ErrFull
		}
		d, ok, err := v.dropOldest()
		if err != nil {
			return drops, err
		}
		if ok {
			drops = append(drops, pendingDrop{v, d})
		}
	}
	return drops, nil
}

// victimLocked picks the member whose oldest evictable unit is the oldest,
// for an append under policy.
func (q *Quota) victimLocked(policy Policy) *Buffer {
	var best *Buffer
	var bestAge int64
	for _, m := range q.members {
		if policy == Downsample && !q.droppable(m.opts.Schema) {
			continue
		}
		if q.share > 0 && (m.opts.Policy == RejectNew || m.opts.Policy == Downsample && !q.droppable(m.opts.Schema)) {
			continue // its own policy keeps its rows
		}
		age, ok := m.oldestUnit()
		if ok && (best == nil || age < bestAge) {
			best, bestAge = m, age
		}
	}
	return best
}

// Drop describes rows deleted without delivery.
type Drop struct {
	// Reason is "quota" or "ttl".
	Reason string
	// Policy is the quota policy that dropped (for Reason "quota").
	Policy Policy
	// Segment is the deleted file, relative to the buffer directory.
	Segment string
	// First and Last bound the undelivered sequences dropped.
	First, Last uint64
	// Rows is the number of undelivered rows dropped; Bytes the size of
	// the deleted file.
	Rows  int64
	Bytes int64
	// MinTime and MaxTime bound the event times of the file's rows (zero
	// when unknown).
	MinTime, MaxTime time.Time
}

func (d Drop) String() string {
	return fmt.Sprintf("dropped %d rows (sequences %d-%d, %d bytes, %s) by %s", d.Rows, d.First, d.Last, d.Bytes, d.Segment, d.Reason)
}

// unit is a droppable group of rows: a data segment, a rolled WAL file or a
// dead-letter segment.
type unit struct {
	seg  *disk.SegEntry
	wal  *walFile
	dead *disk.SegEntry
}

// oldestUnit returns the oldest append time of b's oldest evictable unit.
func (b *Buffer) oldestUnit() (int64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	u, ok := b.oldestLocked()
	if !ok {
		return 0, false
	}
	if u.seg != nil {
		return u.seg.Written, true
	}
	return u.wal.recs[0].Wall, true
}

func (b *Buffer) oldestLocked() (unit, bool) {
	if b.closed {
		return unit{}, false
	}
	if len(b.segs) > 0 {
		return unit{seg: &b.segs[0]}, true
	}
	for _, w := range b.wals {
		if w.state == walActive || b.uncommitted(w) {
			break // never evicted: the active file, uncommitted rows
		}
		if w.state != walRemoved && len(w.recs) > 0 {
			return unit{wal: w}, true
		}
	}
	return unit{}, false
}

// uncommitted reports whether a WAL file holds rows a Held buffer has not
// committed: they are neither evicted nor expired (a rollback may still
// forget them, a replay write them again).
func (b *Buffer) uncommitted(w *walFile) bool {
	return b.opts.Held && w.lastSeq() > b.committed
}

// overQuota reports whether an append to a Held buffer that does not fit
// the quota, and for which the policy found nothing to evict, is admitted
// anyway: when only a Commit could make room. Waiting would hold the
// checkpoint barrier behind the append, and the Commit that lets rows
// leave (and be evicted) comes only after the barrier has passed: a
// deadlock. When the policy may evict b's rows, what is left of them is
// uncommitted or in the active file, so it is admitted. Otherwise (reject
// new, or rows downsample keeps) it is admitted once b has no committed
// row left to deliver; until then the forwarder frees space by delivering
// them. So the quota is exceeded by at most the rows of one open epoch
// (plus, under an evicting policy, the active WAL file) per held buffer
// (docs/format/buffer.md 13).
func (q *Quota) overQuota(b *Buffer, policy Policy) bool {
	if !b.opts.Held {
		return false
	}
	if policy == DropOldest || policy == Downsample && q.droppable(b.opts.Schema) {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.committed <= b.cursor
}

// dropOldest deletes b's oldest evictable unit for the quota.
func (b *Buffer) dropOldest() (Drop, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		u, ok := b.oldestLocked()
		if !ok {
			return Drop{}, false, nil
		}
		if u.wal != nil && u.wal.state == walSealing {
			b.sealed.Wait()
			continue
		}
		d, err := b.dropLocked(u, disk.ReasonQuota)
		return d, err == nil && d.Rows > 0, err
	}
}

// sealedOrRemoved reports whether a WAL record's rows are held by a live
// segment or recorded as removed (a partly sealed file, a drop before):
// dropping its file drops nothing of them.
func (b *Buffer) sealedOrRemoved(r disk.WALRec) bool {
	return b.coveredBySegment(r.First, r.Last()) || b.man.RemovedContains(r.First, r.Last())
}

// dropLocked deletes one unit: the loss is recorded in the manifest first,
// then the file is removed.
func (b *Buffer) dropLocked(u unit, reason disk.Reason) (Drop, error) {
	d := Drop{Reason: "quota", Policy: b.quota.policy}
	if reason == disk.ReasonTTL {
		d.Reason = "ttl"
	}
	kind := disk.KindData
	var first, last uint64
	var tmin, tmax int64
	var hasTime bool
	switch {
	case u.seg != nil:
		e := *u.seg
		first, last, tmin, tmax, hasTime = e.First, e.Last, e.TMin, e.TMax, e.HasTime
		d.Segment, d.Bytes = e.Rel(), e.Bytes
	case u.dead != nil:
		e := *u.dead
		kind = disk.KindDead
		first, last, tmin, tmax, hasTime = e.First, e.Last, e.TMin, e.TMax, e.HasTime
		d.Segment, d.Bytes = e.Rel(), e.Bytes
	default:
		w := u.wal
		first, last = w.recs[0].First, w.lastSeq()
		for _, r := range w.recs {
			if b.sealedOrRemoved(r) {
				continue
			}
			if r.HasTime {
				if !hasTime {
					tmin, tmax, hasTime = r.TMin, r.TMax, true
				}
				tmin, tmax = min(tmin, r.TMin), max(tmax, r.TMax)
			}
		}
		d.Segment, d.Bytes = w.rel, w.size
	}
	if kind == disk.KindData {
		first = max(first, b.cursor+1)
	}
	d.First, d.Last = first, last
	// above counts the rows above the cursor; d.Rows those of them not
	// delivered either (the live lane may have sent rows the cursor has
	// not reached yet): only those are lost.
	var above int64
	switch {
	case u.wal != nil:
		for _, r := range u.wal.recs {
			if r.Last() >= first && !b.sealedOrRemoved(r) {
				lo := max(r.First, first)
				above += int64(r.Last() - lo + 1)
				d.Rows += int64(r.Last()-lo+1) - int64(b.delivered.Count(lo, r.Last()))
			}
		}
	case last >= first && kind == disk.KindData:
		above = int64(last - first + 1)
		d.Rows = above - int64(b.delivered.Count(first, last))
	case last >= first:
		above = int64(last - first + 1)
		d.Rows = above
	}
	if above == 0 {
		// Everything in it was delivered: reclaim, nothing is lost.
		if u.wal != nil {
			return Drop{}, b.removeWALLocked(u.wal, 0)
		}
		if err := b.fs.Remove(b.path(d.Segment)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return Drop{}, err
		}
		if i, ok := b.findSegLocked(u.seg.First); ok {
			b.man.Forget(disk.KindData, u.seg.First)
			b.segs = slices.Delete(b.segs, i, i+1)
			b.segBytes -= u.seg.Bytes
			b.quota.used.Add(-u.seg.Bytes)
		}
		return Drop{}, nil
	}
	if hasTime {
		d.MinTime, d.MaxTime = time.UnixMilli(tmin).UTC(), time.UnixMilli(tmax).UTC()
	}
	rr := disk.Removed{Kind: kind, Reason: reason, First: first, Last: last, Rows: uint64(d.Rows)}
	if kind == disk.KindDead {
		rr.Reason = disk.ReasonDeadPurged
		rr.First = u.dead.First
	}
	if err := b.man.Write(disk.EncodeRemove(rr)); err != nil {
		return Drop{}, err
	}
	switch {
	case u.seg != nil:
		e := *u.seg
		if err := b.fs.Remove(b.path(e.Rel())); err != nil {
			b.log.Warn("cannot remove a dropped segment", "file", e.Rel(), "err", err)
		}
		if i, ok := b.findSegLocked(e.First); ok {
			b.segs = slices.Delete(b.segs, i, i+1)
			b.segBytes -= e.Bytes
			b.quota.used.Add(-e.Bytes)
		}
	case u.dead != nil:
		e := *u.dead
		if err := b.fs.Remove(b.path(e.Rel())); err != nil {
			b.log.Warn("cannot remove a dropped segment", "file", e.Rel(), "err", err)
		}
		b.dead = slices.DeleteFunc(b.dead, func(x disk.SegEntry) bool { return x.First == e.First })
		b.deadBytes -= e.Bytes
		b.quota.used.Add(-e.Bytes)
	default:
		if err := b.removeWALLocked(u.wal, 0); err != nil {
			b.log.Warn("cannot remove a dropped WAL file", "file", u.wal.rel, "err", err)
		}
	}
	if kind == disk.KindData && d.Rows > 0 {
		b.stats.rows += d.Rows
		b.stats.units++
		b.stats.bytes += d.Bytes
	}
	return d, nil
}

func (b *Buffer) reportDrop(d Drop) {
	b.ctr.rowsDropped.Add(d.Rows)
	b.ctr.unitsDropped.Add(1)
	b.log.Warn("buffer dropped undelivered rows", "reason", d.Reason, "policy", d.Policy.String(), "file", d.Segment,
		"first", d.First, "last", d.Last, "rows", d.Rows, "bytes", d.Bytes)
	if b.opts.OnDrop != nil {
		b.opts.OnDrop(d)
	}
}

// Expire drops the segments, rolled WAL files and dead-letter segments
// older than the TTL (Options.TTL, Options.TTLBy; dead letters by age) and
// returns what it dropped (also reported through Options.OnDrop).
func (b *Buffer) Expire() ([]Drop, error) {
	if b.opts.TTL <= 0 || b.opts.ReadOnly {
		return nil, nil
	}
	now := b.opts.Now()
	limit := now.Add(-b.opts.TTL).UnixMilli()
	expired := func(hasTime bool, tmax, written int64) bool {
		if b.opts.TTLBy == ByEventTime {
			return hasTime && tmax < limit
		}
		return written < limit
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, ErrClosed
	}
	var drops []Drop
	var err error
	for i := 0; i < len(b.segs) && err == nil; {
		e := b.segs[i]
		if !expired(e.HasTime, e.TMax, e.Written) {
			i++
			continue
		}
		var d Drop
		if d, err = b.dropLocked(unit{seg: &e}, disk.ReasonTTL); err == nil && d.Rows > 0 {
			drops = append(drops, d)
		}
	}
	for _, w := range slices.Clone(b.wals) {
		if err != nil || w.state != walRolled || len(w.recs) == 0 || b.uncommitted(w) {
			continue
		}
		hasTime, tmax, written := false, int64(0), w.recs[0].Wall
		for _, r := range w.recs {
			if r.HasTime {
				tmax = max(tmax, r.TMax)
				if !hasTime {
					tmax = r.TMax
				}
				hasTime = true
			}
			written = min(written, r.Wall)
		}
		if expired(hasTime, tmax, written) {
			var d Drop
			if d, err = b.dropLocked(unit{wal: w}, disk.ReasonTTL); err == nil && d.Rows > 0 {
				drops = append(drops, d)
			}
		}
	}
	for _, e := range slices.Clone(b.dead) {
		if err == nil && e.Written < limit {
			var d Drop
			if d, err = b.dropLocked(unit{dead: &e}, disk.ReasonTTL); err == nil {
				drops = append(drops, d)
			}
		}
	}
	b.mu.Unlock()
	for _, d := range drops {
		b.reportDrop(d)
	}
	return drops, err
}
