package window

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/eventtime"
	"github.com/sluice-edge/sluice/engine/spec"
)

// pane is a slice of event time [start, start+plan.pane) of one key. A
// tumbling window is one pane; a hopping window is size/pane panes.
type pane struct {
	start int64
	slot  int32
}

// session is an open session of one key: rows from start to last.
type session struct {
	start, last int64
	slot        int32
}

// keyState is the open state of one key.
type keyState struct {
	name string // owned copy
	null bool   // the null key
	live bool
	// idleSince is the watermark at which the key was first seen without
	// open windows, or math.MinInt64.
	idleSince int64
	panes     []pane    // sorted by start
	sess      []session // sorted by start, separated by at least gap
	// closedEnd is the largest end of a session already emitted.
	closedEnd int64
	// next is the key that followed this one in the input last time, or
	// -1: sources that report their devices in a stable order find the
	// next key with one comparison instead of a map lookup.
	next int32
}

// srcMark is the event-time progress of one source; keyMark one of its
// most advanced keys (see eventtime.SourceMark).
type (
	srcMark = eventtime.SourceMark
	keyMark = eventtime.KeyMark
)

// overflowKid stands, in the progress of a source, for every key the step
// keeps no state for (beyond max_keys): their rows still move the
// watermark, so that the keys of a flood close their windows, go idle and
// are forgotten.
const overflowKid = -2

// item is a window ready to be emitted.
type item struct {
	start, end int64
	kid, slot  int32
}

// Operator is the window step. Create it with New.
type Operator struct {
	p     *plan
	in    *engine.Schema
	ports []engine.Port
	chunk int

	cLate, cNull, cRange, cWindows *atomic.Int64
	cLongKey, cKeyLimit            *atomic.Int64
	nLongKey, nKeyLimit            int64 // refused rows of the batch, added to the counters once

	fd        []fieldDesc
	nsk, nfl  int              // sketches and first/last states per slot
	hot       []hacc           // slot-major: hot[slot*len(fd)+field]
	cold      [][]facc         // per slot: cold sums of its fields, or nil
	dense     []*denseSketches // per slot: its dense sketches, or nil
	fl        []firstLast      // fl[slot*nfl+fieldDesc.fl]
	skLog     [][]int32        // per slot: bucket keys, nsk per row, while not dense
	skDense   []bool           // per slot: values are in the dense sketches
	skf       []int            // sketch index -> field index
	keyBuf    []int32          // scratch for quantiles of a log
	tmpAcc    facc             // scratch of sums
	rowBase   []int32          // per row of a chunk: slot * len(fd), or -1
	stage     []int32          // per row of a chunk: its sketch keys, nsk per row
	slotCount []int64          // rows per slot
	freedAt   []int64          // per slot: watermark when it was freed, or MinInt64
	freeSlots []int32
	fwd       []int32 // merged session slot -> surviving slot, or -1
	pending   []int32 // merged slots to free after the batch
	merged    bool

	keys     []keyState
	freeKeys []int32
	keyIdx   map[string]int32
	nullKid  int32
	prevKid  int32 // key of the last row with a non-null key, or -1

	srcs      []*srcMark
	cur       *srcMark // the source of the batch being processed
	wm        int64    // watermark: windows ending at or before it are closed
	scanWm    int64    // watermark of the last close scan
	nextClose int64    // lower bound of the end of every open window
	nextEvict int64    // watermark at which an idle key can be forgotten next

	rowSlot []int32
	late    []int32
	items   []item
	scratch []int64 // chunk scratch for results
	sChunks []int64
	qChunks []int64
	cmpItem func(a, b item) int

	lateWatch  lateWatch
	rb, lateRB *engine.RecordBuilder
	lastSchema *arrow.Schema // last record schema found equal to the input's
	closed     bool
}

var _ engine.Operator = (*Operator)(nil)

// New builds a window operator for input schema in from a configuration
// parsed with Spec. Configuration errors carry their file:line:col.
func New(cfg *spec.Config, in *engine.Schema, bc engine.BuildContext) (*Operator, error) {
	p, err := parsePlan(cfg, in)
	if err != nil {
		return nil, err
	}
	mem := bc.Mem
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	counters := bc.Counters
	if counters == nil {
		counters = engine.NewCounters()
	}
	o := &Operator{
		p:         p,
		in:        in,
		ports:     []engine.Port{{Schema: p.out}, {Name: "late", Schema: in}},
		chunk:     bc.Batch.Normalize().Size,
		cLate:     counters.Counter("late_rows"),
		cNull:     counters.Counter("null_time_rows"),
		cRange:    counters.Counter("out_of_range_rows"),
		cLongKey:  counters.Counter("long_key_rows"),
		cKeyLimit: counters.Counter("key_limit_rows"),
		cWindows:  counters.Counter("windows_emitted"),
		keyIdx:    map[string]int32{},
		nullKid:   -1,
		prevKid:   -1,
		wm:        math.MinInt64,
		scanWm:    math.MinInt64,
		nextClose: math.MaxInt64,
		nextEvict: math.MaxInt64,
		rowBase:   make([]int32, accChunkRows),
		scratch:   make([]int64, tChunks+2),
		sChunks:   make([]int64, sumChunks+2),
		qChunks:   make([]int64, sqChunks+2),
		rb:        engine.NewRecordBuilder(mem, p.out),
		lateRB:    engine.NewRecordBuilder(mem, in),
	}
	log := bc.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	o.lateWatch = lateWatch{threshold: p.lateAlert, asset: bc.Pipeline + "/" + bc.Name, shared: bc.Shared, mem: mem, log: log, now: time.Now, leaders: o.leaders}
	for _, fp := range p.fields {
		o.fd = append(o.fd, newFieldDesc(fp, &o.nsk, &o.nfl))
		if fd := &o.fd[len(o.fd)-1]; fd.sk >= 0 {
			o.skf = append(o.skf, len(o.fd)-1)
		}
	}
	o.stage = make([]int32, accChunkRows*o.nsk)
	if p.keyCol < 0 {
		o.addKey("", false) // the global group, key id 0
	}
	o.cmpItem = func(a, b item) int {
		if c := cmp.Compare(a.end, b.end); c != 0 {
			return c
		}
		if c := cmp.Compare(a.start, b.start); c != 0 {
			return c
		}
		ka, kb := &o.keys[a.kid], &o.keys[b.kid]
		if ka.null != kb.null {
			if ka.null {
				return -1
			}
			return 1
		}
		return strings.Compare(ka.name, kb.name)
	}
	return o, nil
}

// Outputs returns the main port (window rows) and the "late" port (input
// rows that arrived after their windows closed, or without event time).
func (o *Operator) Outputs() []engine.Port { return o.ports }

// Process adds the rows of b to their windows, routes late rows to the late
// port, advances the watermark of b.Source and emits the windows it closes.
func (o *Operator) Process(b engine.Batch, emit engine.PortEmit) error {
	defer b.Release()
	if o.closed {
		return errors.New("window: Process after Close")
	}
	rec := b.Rec
	if rec == nil || rec.NumRows() == 0 {
		return nil
	}
	if sc := rec.Schema(); sc != o.lastSchema {
		if !sc.Equal(o.in.Arrow()) {
			return fmt.Errorf("window: record schema %s does not match the input schema %s", sc, o.in.Arrow())
		}
		o.lastSchema = sc
	}
	n := int(rec.NumRows())
	tcol, ok := rec.Column(o.p.timeCol).(*array.Timestamp)
	if !ok {
		return fmt.Errorf("window: time column %q is %s, not a timestamp", o.in.Time, rec.Column(o.p.timeCol).DataType())
	}
	var keys *array.String
	if o.p.keyCol >= 0 {
		if keys, ok = rec.Column(o.p.keyCol).(*array.String); !ok {
			return fmt.Errorf("window: key column %q is %s, not a string", o.in.Fields[o.p.keyCol].Name, rec.Column(o.p.keyCol).DataType())
		}
	}
	if cap(o.rowSlot) < n {
		o.rowSlot = make([]int32, n)
	}
	slots := o.rowSlot[:n]
	o.late = o.late[:0]
	times := tcol.TimestampValues()
	tv := validityOf(tcol)

	var seen bool
	var nNull, nRange, nKey int
	o.cur = eventtime.SourceOf(&o.srcs, b.Source)
	if o.p.kind == Session {
		seen, nNull, nRange, nKey = o.assignSessions(times, tv, keys, slots)
	} else {
		seen, nNull, nRange, nKey = o.assignPanes(times, tv, keys, slots)
	}
	if o.merged {
		o.resolveMerges(slots)
	}

	for i := range o.fd {
		fd := &o.fd[i]
		col := rec.Column(fd.plan.col)
		fd.vb = validityOf(col)
		switch fd.plan.typ {
		case engine.Float64:
			a, ok := col.(*array.Float64)
			if !ok {
				return fmt.Errorf("window: field %q is %s, not float64", fd.plan.name, col.DataType())
			}
			fd.f64 = a.Float64Values()
		case engine.Int64:
			a, ok := col.(*array.Int64)
			if !ok {
				return fmt.Errorf("window: field %q is %s, not int64", fd.plan.name, col.DataType())
			}
			fd.i64 = a.Int64Values()
		}
	}
	o.accumulate(times, slots)
	for i := range o.fd {
		o.fd[i].f64, o.fd[i].i64, o.fd[i].vb = nil, nil, validity{} // the record is released below
	}

	if nNull > 0 {
		o.cNull.Add(int64(nNull))
	}
	if nRange > 0 {
		o.cRange.Add(int64(nRange))
	}
	if nKey > 0 {
		o.cLongKey.Add(o.nLongKey)
		o.cKeyLimit.Add(o.nKeyLimit)
		o.nLongKey, o.nKeyLimit = 0, 0
	}
	nLate := len(o.late) - nNull - nRange - nKey
	if nLate > 0 {
		o.cLate.Add(int64(nLate))
	}
	o.lateWatch.observe(n-nNull-nRange, nLate)
	var err error
	if seen {
		err = o.advance(emit)
	}
	if len(o.late) > 0 {
		err = errors.Join(err, o.emitLate(rec, b.Source, emit))
	}
	return err
}

// Flush emits every open window. Rows that arrive afterwards for the flushed
// windows are late.
func (o *Operator) Flush(emit engine.PortEmit) error {
	if o.closed {
		return nil
	}
	maxEnd, err := o.closeWindows(math.MaxInt64, emit)
	if maxEnd > o.wm {
		o.wm = maxEnd
	}
	o.scanWm = o.wm
	o.nextClose = math.MaxInt64
	return err
}

// Close releases the operator's memory. It is idempotent.
func (o *Operator) Close() error {
	if o.closed {
		return nil
	}
	o.closed = true
	o.rb.Release()
	o.lateRB.Release()
	o.cold, o.dense, o.fl, o.keys, o.keyIdx, o.slotCount = nil, nil, nil, nil, nil, nil
	o.skLog, o.skDense, o.hot, o.freedAt = nil, nil, nil, nil
	return nil
}

// KeyOrderedPort reports that the main port's rows are in event-time order
// per key (engine.KeyOrdered): windows are emitted when the watermark
// passes their end, sorted by end, start and key.
func (o *Operator) KeyOrderedPort(port int) bool { return port == 0 }

var _ engine.KeyOrdered = (*Operator)(nil)

// Watermark returns the operator's watermark (milliseconds since the epoch)
// and whether any row has set it yet.
func (o *Operator) Watermark() (int64, bool) { return o.wm, o.wm != math.MinInt64 }

// keyCache remembers the key of the previous row of a batch.
type keyCache struct {
	last string // aliases the record; valid within one batch
	kid  int32
	ok   bool
}

func (o *Operator) rowKey(keys *array.String, keyNulls bool, r int, kc *keyCache) int32 {
	if keys == nil {
		return 0
	}
	if keyNulls && keys.IsNull(r) {
		if o.nullKid < 0 {
			o.nullKid = o.addKey("", true)
		}
		return o.nullKid
	}
	s := keys.Value(r)
	if kc.ok && s == kc.last {
		return kc.kid
	}
	prev := o.prevKid
	if prev >= 0 {
		if p := o.keys[prev].next; p >= 0 {
			if ks := &o.keys[p]; ks.live && !ks.null && ks.name == s {
				kc.last, kc.kid, kc.ok = s, p, true
				o.prevKid = p
				return p
			}
		}
	}
	kid, ok := o.keyIdx[s]
	if !ok {
		switch {
		case len(s) > o.p.maxKeyBytes:
			o.nLongKey++
			return -1
		case len(o.keyIdx) >= o.p.maxKeys:
			o.nKeyLimit++
			return -1
		}
		kid = o.addKey(strings.Clone(s), false)
	}
	if prev >= 0 {
		o.keys[prev].next = kid
	}
	kc.last, kc.kid, kc.ok = s, kid, true
	o.prevKid = kid
	return kid
}

func (o *Operator) addKey(name string, null bool) int32 {
	var kid int32
	if n := len(o.freeKeys); n > 0 {
		kid = o.freeKeys[n-1]
		o.freeKeys = o.freeKeys[:n-1]
	} else {
		kid = int32(len(o.keys))
		o.keys = append(o.keys, keyState{})
	}
	ks := &o.keys[kid]
	ks.name, ks.null, ks.live, ks.idleSince = name, null, true, math.MinInt64
	ks.panes, ks.sess = ks.panes[:0], ks.sess[:0]
	ks.closedEnd = math.MinInt64
	ks.next = -1
	if !null && o.p.keyCol >= 0 {
		o.keyIdx[name] = kid
	}
	return kid
}

func (o *Operator) newSlot() int32 {
	if n := len(o.freeSlots); n > 0 {
		s := o.freeSlots[n-1]
		o.freeSlots = o.freeSlots[:n-1]
		return s
	}
	s := int32(len(o.slotCount))
	o.slotCount = append(o.slotCount, 0)
	o.freedAt = append(o.freedAt, math.MinInt64)
	o.fwd = append(o.fwd, -1)
	o.growSlot()
	return s
}

func (o *Operator) freeSlot(s int32) {
	o.slotCount[s] = 0
	o.resetSlot(s)
	o.freeSlots = append(o.freeSlots, s)
	o.freedAt[s] = o.wm
}

// trimFree drops the buffers (sketch log, dense sketches, cold sums) of
// slots that have been free while the watermark moved by retain: in steady
// state free slots are reused within a window or a few, so only the slots
// of a burst that went away are trimmed, and memory returns to what the
// open windows need.
func (o *Operator) trimFree(retain int64) {
	if o.wm == math.MinInt64 {
		return
	}
	for _, s := range o.freeSlots {
		if t := o.freedAt[s]; t != math.MinInt64 && o.wm-t >= retain {
			o.skLog[s], o.dense[s], o.cold[s] = nil, nil, nil
			o.freedAt[s] = math.MinInt64 // trimmed
		}
	}
}

func (o *Operator) mergeSlot(dst, src int32) {
	o.slotCount[dst] += o.slotCount[src]
	o.mergeState(dst, src)
}

// alignDown returns the largest window start <= x.
func (o *Operator) alignDown(x int64) int64 {
	return floorDiv(x-o.p.offset, o.p.step)*o.p.step + o.p.offset
}

// alignUp returns the smallest window start >= x.
func (o *Operator) alignUp(x int64) int64 {
	a := o.alignDown(x)
	if a < x {
		a += o.p.step
	}
	return a
}

// assignPanes finds the pane slot of every row (tumbling and hopping).
// Late rows and rows without time get slot -1 and are listed in o.late.
func (o *Operator) assignPanes(times []arrow.Timestamp, tv validity, keys *array.String, slots []int32) (seen bool, nNull, nRange, nKey int) {
	g, off, size, wm := o.p.pane, o.p.offset, o.p.size, o.wm
	topCap := 2 * o.p.wmKeys
	keyNulls := keys != nil && keys.NullN() > 0
	var kc keyCache
	paneLo, paneHi, paneLatestEnd := int64(1), int64(0), int64(0)
	cKid, cPs, cSlot := int32(-1), int64(0), int32(0)
	times = times[:len(slots)]
	for r := range slots {
		if !tv.valid(r) {
			o.toLate(slots, r)
			nNull++
			continue
		}
		t := int64(times[r])
		if !engine.ValidEventTime(t) {
			o.toLate(slots, r)
			nRange++
			continue
		}
		seen = true
		if t < paneLo || t >= paneHi {
			paneLo = floorDiv(t-off, g)*g + off
			paneHi = paneLo + g
			paneLatestEnd = o.alignDown(paneLo) + size
		}
		if paneLatestEnd <= wm {
			o.toLate(slots, r)
			continue
		}
		kid := o.rowKey(keys, keyNulls, r, &kc)
		if !o.observe(kid, t, topCap) {
			o.toLate(slots, r)
			nKey++ // counted by rowKey
			continue
		}
		if kid != cKid || paneLo != cPs {
			cSlot = o.paneSlot(kid, paneLo)
			cKid, cPs = kid, paneLo
		}
		slots[r] = cSlot
		o.slotCount[cSlot]++
	}
	return seen, nNull, nRange, nKey
}

// leaders names the most advanced keys of every source (the keys the
// watermark follows), most advanced first.
func (o *Operator) leaders() string {
	var marks []keyMark
	for _, m := range o.srcs {
		marks = append(marks, m.Top...)
	}
	slices.SortFunc(marks, func(a, b keyMark) int { return cmp.Compare(b.Max, a.Max) })
	var names []string
	for _, m := range marks[:min(len(marks), o.p.wmKeys+1)] {
		switch {
		case m.Kid == overflowKid:
			names = append(names, "keys beyond max_keys")
		case m.Kid < 0 || !o.keys[m.Kid].live:
			names = append(names, "a key since forgotten")
		case o.keys[m.Kid].null:
			names = append(names, "the null key")
		default:
			names = append(names, fmt.Sprintf("%q", o.keys[m.Kid].name))
		}
		names[len(names)-1] += " at " + engine.FormatEventTime(m.Max)
	}
	if len(names) == 0 {
		return "no key"
	}
	return strings.Join(names, ", ")
}

// toLate sends row r to the late port.
func (o *Operator) toLate(slots []int32, r int) {
	slots[r] = -1
	o.late = append(o.late, int32(r))
}

// observe counts a row of key kid at time t in the progress of the current
// source; it reports false for a row whose key was refused (kid < 0),
// which counts as the overflow key.
func (o *Operator) observe(kid int32, t int64, topCap int) bool {
	if kid < 0 {
		o.cur.Observe(overflowKid, t, topCap)
		return false
	}
	o.cur.Observe(kid, t, topCap)
	return true
}

// paneSlot returns the slot of key kid's pane starting at ps, opening it
// when needed.
func (o *Operator) paneSlot(kid int32, ps int64) int32 {
	ks := &o.keys[kid]
	i := len(ks.panes)
	for i > 0 {
		p := ks.panes[i-1]
		if p.start == ps {
			return p.slot
		}
		if p.start < ps {
			break
		}
		i--
	}
	slot := o.newSlot()
	ks.panes = slices.Insert(ks.panes, i, pane{start: ps, slot: slot})
	ks.idleSince = math.MinInt64
	if e := o.alignUp(ps-o.p.size+1) + o.p.size; e < o.nextClose {
		o.nextClose = e
	}
	return slot
}

// assignSessions finds the session slot of every row, opening, extending
// and merging sessions.
func (o *Operator) assignSessions(times []arrow.Timestamp, tv validity, keys *array.String, slots []int32) (seen bool, nNull, nRange, nKey int) {
	gap, wm := o.p.gap, o.wm
	topCap := 2 * o.p.wmKeys
	keyNulls := keys != nil && keys.NullN() > 0
	var kc keyCache
	cKid, cStart, cLast, cSlot := int32(-1), int64(0), int64(0), int32(0)
	times = times[:len(slots)]
	for r := range slots {
		if !tv.valid(r) {
			o.toLate(slots, r)
			nNull++
			continue
		}
		t := int64(times[r])
		if !engine.ValidEventTime(t) {
			o.toLate(slots, r)
			nRange++
			continue
		}
		seen = true
		kid := o.rowKey(keys, keyNulls, r, &kc)
		if !o.observe(kid, t, topCap) {
			o.toLate(slots, r)
			nKey++ // counted by rowKey
			continue
		}
		if kid == cKid && t >= cStart && t <= cLast {
			slots[r] = cSlot
			o.slotCount[cSlot]++
			continue
		}
		if t < o.keys[kid].closedEnd {
			o.toLate(slots, r)
			continue
		}
		s, ok := o.sessionFor(kid, t, t+gap <= wm)
		if !ok {
			o.toLate(slots, r)
			continue
		}
		cKid, cStart, cLast, cSlot = kid, s.start, s.last, s.slot
		slots[r] = cSlot
		o.slotCount[cSlot]++
	}
	return seen, nNull, nRange, nKey
}

// sessionFor adds time t to key kid's sessions and returns the session that
// now holds it. A row within gap of two sessions merges them. A row that
// joins no open session and whose own session would already be closed
// (closed true) is late: sessionFor returns false.
func (o *Operator) sessionFor(kid int32, t int64, closed bool) (session, bool) {
	gap := o.p.gap
	ks := &o.keys[kid]
	ss := ks.sess
	i := 0
	for i < len(ss) && t >= ss[i].last+gap {
		i++
	}
	if i < len(ss) && t > ss[i].start-gap {
		s := &ss[i]
		s.start = min(s.start, t)
		s.last = max(s.last, t)
		if i+1 < len(ss) && t > ss[i+1].start-gap {
			nx := ss[i+1]
			s.last = max(s.last, nx.last)
			o.mergeSlot(s.slot, nx.slot)
			o.fwd[nx.slot] = s.slot
			o.pending = append(o.pending, nx.slot)
			o.merged = true
			ks.sess = slices.Delete(ss, i+1, i+2)
		}
		return ks.sess[i], true
	}
	if closed {
		return session{}, false
	}
	slot := o.newSlot()
	ns := session{start: t, last: t, slot: slot}
	ks.sess = slices.Insert(ss, i, ns)
	ks.idleSince = math.MinInt64
	if e := t + gap; e < o.nextClose {
		o.nextClose = e
	}
	return ns, true
}

// resolveMerges points rows at the surviving slot of merged sessions and
// frees the merged-away slots.
func (o *Operator) resolveMerges(slots []int32) {
	for r, s := range slots {
		if s < 0 {
			continue
		}
		for o.fwd[s] >= 0 {
			s = o.fwd[s]
		}
		slots[r] = s
	}
	for _, s := range o.pending {
		o.fwd[s] = -1
		o.freeSlot(s)
	}
	o.pending = o.pending[:0]
	o.merged = false
}

// advance raises the mark of the source of the current batch to what its
// most advanced keys have reached, recomputes the operator watermark and
// emits the windows it closes.
func (o *Operator) advance(emit engine.PortEmit) error {
	if t, ok := o.cur.Mark(o.p.wmKeys, o.p.wmIdle); ok {
		o.cur.Max = max(o.cur.Max, t)
	}
	w, ok := eventtime.StepWatermark(o.srcs, o.p.lateness)
	if !ok || w <= o.wm {
		return nil
	}
	o.wm = w
	if w < o.nextClose {
		if w >= o.nextEvict {
			// No window is due, but idle keys are: forget them, so that
			// new keys find room.
			o.evictIdle()
		}
		return nil
	}
	_, err := o.closeWindows(w, emit)
	return err
}

// closeWindows emits every window ending at or before upTo, sorted by
// (end, start, key), frees their state and evicts idle keys. It returns the
// largest end emitted.
func (o *Operator) closeWindows(upTo int64, emit engine.PortEmit) (int64, error) {
	prev := o.scanWm
	o.scanWm = upTo
	o.items = o.items[:0]
	next := int64(math.MaxInt64)
	for kid := range o.keys {
		if !o.keys[kid].live {
			continue
		}
		switch {
		case o.p.kind == Session:
			next = min(next, o.closeSessions(int32(kid), upTo))
		case o.p.pane == o.p.size:
			next = min(next, o.closeTumbling(int32(kid), upTo))
		default:
			next = min(next, o.closeHopping(int32(kid), prev, upTo))
		}
	}
	o.nextClose = next
	maxEnd := int64(math.MinInt64)
	var err error
	if len(o.items) > 0 {
		slices.SortFunc(o.items, o.cmpItem)
		maxEnd = o.items[len(o.items)-1].end
		err = o.emitItems(emit)
		for _, it := range o.items {
			o.freeSlot(it.slot)
		}
		o.cWindows.Add(int64(len(o.items)))
		o.items = o.items[:0]
	}
	o.evictIdle()
	o.trimFree(4 * (2*max(o.p.size, o.p.gap) + o.p.lateness)) // four times the retention of idle keys
	return maxEnd, err
}

func (o *Operator) closeTumbling(kid int32, upTo int64) int64 {
	ks := &o.keys[kid]
	size := o.p.size
	i := 0
	for ; i < len(ks.panes); i++ {
		p := ks.panes[i]
		if p.start+size > upTo {
			break
		}
		o.items = append(o.items, item{start: p.start, end: p.start + size, kid: kid, slot: p.slot})
	}
	if i > 0 {
		ks.panes = ks.panes[:copy(ks.panes, ks.panes[i:])]
	}
	if len(ks.panes) > 0 {
		return ks.panes[0].start + size
	}
	return math.MaxInt64
}

func (o *Operator) closeHopping(kid int32, prev, upTo int64) int64 {
	size, step := o.p.size, o.p.step
	// Windows ending in (prev, upTo] are due; earlier ones were emitted.
	lowest := int64(math.MinInt64)
	if prev != math.MinInt64 {
		lowest = o.alignUp(prev - size + 1)
	}
	ks := &o.keys[kid]
	from := lowest // the next window start not yet emitted for this key
	done := false
	for _, p := range ks.panes {
		if done {
			break
		}
		s := max(o.alignUp(p.start-size+1), from)
		for last := o.alignDown(p.start); s <= last; s += step {
			end := s + size
			if end > upTo {
				done = true
				break
			}
			slot := o.newSlot()
			for _, q := range o.keys[kid].panes {
				if q.start >= s && q.start < end {
					o.mergeSlot(slot, q.slot)
				}
			}
			o.items = append(o.items, item{start: s, end: end, kid: kid, slot: slot})
			from = s + step
		}
	}
	ks = &o.keys[kid]
	i := 0
	for ; i < len(ks.panes) && o.alignDown(ks.panes[i].start)+size <= upTo; i++ {
		o.freeSlot(ks.panes[i].slot)
	}
	if i > 0 {
		ks.panes = ks.panes[:copy(ks.panes, ks.panes[i:])]
	}
	if len(ks.panes) == 0 {
		return math.MaxInt64
	}
	s := max(o.alignUp(ks.panes[0].start-size+1), o.alignUp(upTo-size+1))
	return s + size
}

func (o *Operator) closeSessions(kid int32, upTo int64) int64 {
	ks := &o.keys[kid]
	gap := o.p.gap
	i := 0
	for ; i < len(ks.sess); i++ {
		s := ks.sess[i]
		end := s.last + gap
		if end > upTo {
			break
		}
		o.items = append(o.items, item{start: s.start, end: end, kid: kid, slot: s.slot})
		ks.closedEnd = max(ks.closedEnd, end)
	}
	if i > 0 {
		ks.sess = ks.sess[:copy(ks.sess, ks.sess[i:])]
	}
	if len(ks.sess) > 0 {
		return ks.sess[0].last + gap
	}
	return math.MaxInt64
}

// evictIdle forgets keys that have had no open window while the watermark
// advanced by two window lengths (gaps for sessions) plus the lateness, and
// whose history can no longer decide whether a row is late. Keys that
// report now and then keep their state; keys that went away free it.
func (o *Operator) evictIdle() {
	if o.p.keyCol < 0 || o.wm == math.MinInt64 {
		return
	}
	wm := o.wm
	retain := 2*max(o.p.size, o.p.gap) + o.p.lateness
	next := int64(math.MaxInt64)
	for kid := range o.keys {
		ks := &o.keys[kid]
		if !ks.live || len(ks.panes) > 0 || len(ks.sess) > 0 {
			continue
		}
		if ks.idleSince == math.MinInt64 {
			ks.idleSince = wm
		}
		at := ks.idleSince + retain
		if o.p.kind == Session {
			at = max(at, ks.closedEnd+o.p.gap)
		}
		if wm < at || ks.idleSince == wm {
			next = min(next, at)
			continue
		}
		if ks.null {
			o.nullKid = -1
		} else {
			delete(o.keyIdx, ks.name)
		}
		for _, m := range o.srcs {
			for i := range m.Top {
				if m.Top[i].Kid == int32(kid) {
					m.Top[i].Kid = -1 // its time still counts; the id may be reused
				}
			}
		}
		ks.live, ks.name = false, ""
		o.freeKeys = append(o.freeKeys, int32(kid))
	}
	o.nextEvict = next
}

// emitItems builds the output rows of o.items (already sorted) and emits
// them in records of at most o.chunk rows.
func (o *Operator) emitItems(emit engine.PortEmit) error {
	rb := o.rb
	keyed := o.p.keyCol >= 0
	var errs error
	for i, it := range o.items {
		if rb.Rows() == 0 {
			rb.Reserve(min(len(o.items)-i, o.chunk)) // one allocation per column and record
		}
		rb.Timestamp(0).Append(arrow.Timestamp(it.start))
		rb.Timestamp(1).Append(arrow.Timestamp(it.end))
		if keyed {
			ks := &o.keys[it.kid]
			if ks.null {
				rb.String(2).AppendNull()
			} else {
				rb.String(2).Append(ks.name)
			}
		}
		rb.Int64(o.p.countCol).Append(o.slotCount[it.slot])
		for i := range o.fd {
			o.appendField(i, it.slot)
		}
		rb.RowDone()
		if rb.Rows() >= o.chunk {
			errs = errors.Join(errs, emit(0, engine.Batch{Rec: rb.NewRecord()}))
		}
	}
	if rec := rb.NewRecord(); rec != nil {
		errs = errors.Join(errs, emit(0, engine.Batch{Rec: rec}))
	}
	return errs
}

// appendField appends the aggregates of one field of one slot.
func (o *Operator) appendField(fi int, slot int32) {
	rb := o.rb
	fd := &o.fd[fi]
	idx := int(slot)*len(o.fd) + fi
	a := &o.hot[idx]
	var sum float64
	var sa *facc // exact sums when needed, from o.sums
	haveSum := false
	var keys []int32
	haveKeys := false
	for _, fn := range fd.plan.funcs {
		if fn.op == opCount {
			rb.Int64(fn.col).Append(a.n)
			continue
		}
		fb := rb.Float64(fn.col)
		if a.n == 0 || (fn.op == opStddev && a.n < 2) {
			fb.AppendNull()
			continue
		}
		var v float64
		switch fn.op {
		case opSum, opAvg:
			if !haveSum {
				sum, haveSum = o.fieldSum(idx, &sa), true
			}
			v = sum
			if fn.op == opAvg {
				v = sum / float64(a.n)
			}
		case opMin, opMax:
			v = a.mn
			if fn.op == opMax {
				v = a.mx
			}
			if a.special&specNaN != 0 {
				v = math.NaN()
			}
		case opStddev:
			if !haveSum {
				sum, haveSum = o.fieldSum(idx, &sa), true
			}
			v = o.fieldStddev(idx, sum, &sa)
		case opFirst:
			v = o.fl[int(slot)*o.nfl+fd.fl].fv
		case opLast:
			v = o.fl[int(slot)*o.nfl+fd.fl].lv
		case opQuantile:
			if a.special&specNaN != 0 {
				v = math.NaN()
			} else {
				v = o.quantile(slot, fd, fn, a, &keys, &haveKeys)
			}
		}
		fb.Append(v)
	}
}

// sumValue returns the correctly rounded sum, or the IEEE result of the
// special values seen.
func (o *Operator) sumValue(a *facc) float64 {
	switch {
	case a.special&specNaN != 0 || a.special&(specPosInf|specNegInf) == specPosInf|specNegInf:
		return math.NaN()
	case a.special&specPosInf != 0:
		return math.Inf(1)
	case a.special&specNegInf != 0:
		return math.Inf(-1)
	}
	var small [accChunks + 1]int64
	c, off := a.chunksOf(false, &small, o.zeroed(sumChunks+2))
	if c == nil {
		return 0
	}
	return chunkValue(c, 32*off-1074)
}

// zeroed returns n zeroed scratch chunks.
func (o *Operator) zeroed(n int) []int64 {
	if cap(o.scratch) < n {
		o.scratch = make([]int64, n)
	}
	c := o.scratch[:n]
	clear(c)
	return c
}

// stddev returns the sample standard deviation. With m the rounded mean,
// sum((x-m)^2) = Q - 2mS + n*m^2 is formed exactly from the exact sums S
// and Q and rounded once, so the result does not depend on the order of
// the values and does not suffer cancellation.
func (o *Operator) stddev(a *facc, sum float64) float64 {
	if a.special != 0 || isInf(sum) {
		return math.NaN()
	}
	nf := float64(a.n)
	m := sum / nf
	// S in units of 2^-1074, Q in units of 2^-2148, both from chunk off.
	var sSmall, qSmall [accChunks + 1]int64
	s, sOff := a.chunksOf(false, &sSmall, o.sChunks[:sumChunks+2])
	if s != nil {
		normalize(s)
	}
	q, qOff := a.chunksOf(true, &qSmall, o.qChunks[:sqChunks+2])
	mb := math.Float64bits(m)
	mm, pm := split(mb)
	// T collects Q - 2mS + n*m^2 from chunk lo on.
	lo, hi := qOff, qOff+len(q)
	if q == nil {
		lo, hi = math.MaxInt, 0
	}
	if m != 0 {
		lo = min(lo, (32*sOff+int(pm)+1)>>5, 2*int(pm)>>5)
		hi = max(hi, (32*(sOff+len(s))+int(pm)+1+128)>>5+2, (2*int(pm)+192)>>5+2)
	}
	if hi <= lo {
		return 0
	}
	var tSmall [48]int64
	var t []int64
	if n := hi - lo + 2; n <= len(tSmall) {
		t = tSmall[:n]
	} else {
		lo, t = 0, o.zeroed(tChunks)
	}
	for i, v := range q {
		t[qOff+i-lo] += v
	}
	if m != 0 {
		mneg := mb>>63 != 0
		base := int(pm) + 1 - 32*lo
		// -2*m*S: chunk j of S times m sits at bit 32j + pm + 1.
		for j, sj := range s {
			if sj == 0 {
				continue
			}
			neg := !mneg // the factor -2
			u := uint64(sj)
			if sj < 0 {
				u, neg = uint64(-sj), !neg
			}
			h, l := bits.Mul64(u, mm)
			pos := 32*(sOff+j) + base
			addAt(t, l, pos, neg)
			addAt(t, h, pos+64, neg)
		}
		// n*m^2 at bit 2*pm.
		mh, ml := bits.Mul64(mm, mm)
		n := uint64(a.n)
		h1, l1 := bits.Mul64(n, ml)
		h2, l2 := bits.Mul64(n, mh)
		pos := 2*int(pm) - 32*lo
		addAt(t, l1, pos, false)
		addAt(t, h1, pos+64, false)
		addAt(t, l2, pos+64, false)
		addAt(t, h2, pos+128, false)
	}
	// Rescale by an even power of two when T would leave the normal
	// float64 range (values beyond about 1e150 or below 1e-150), so
	// that the root is still exact-then-rounded.
	top := len(t) - 1
	for top > 0 && t[top] == 0 {
		top--
	}
	shift := 0
	switch e := 32*(lo+top+1) - 2148; {
	case e > 900:
		shift = -600
	case e < -900:
		shift = 600
	}
	v := chunkValue(t, 32*lo-2148+shift)
	if v < 0 {
		v = 0
	}
	return scale2(math.Sqrt(v/(nf-1)), -shift/2)
}

// emitLate copies the rows listed in o.late to the late port.
func (o *Operator) emitLate(rec arrow.RecordBatch, src int, emit engine.PortEmit) error {
	rb := o.lateRB
	for c, f := range o.in.Fields {
		col := rec.Column(c)
		b := rb.Columns[c]
		for _, r32 := range o.late {
			r := int(r32)
			if col.IsNull(r) {
				b.AppendNull()
				continue
			}
			switch f.Type {
			case engine.Float64:
				b.(*array.Float64Builder).Append(col.(*array.Float64).Value(r))
			case engine.Int64:
				b.(*array.Int64Builder).Append(col.(*array.Int64).Value(r))
			case engine.String:
				b.(*array.StringBuilder).Append(col.(*array.String).Value(r))
			case engine.Bool:
				b.(*array.BooleanBuilder).Append(col.(*array.Boolean).Value(r))
			case engine.Timestamp:
				b.(*array.TimestampBuilder).Append(col.(*array.Timestamp).Value(r))
			}
		}
	}
	for range o.late {
		rb.RowDone()
	}
	o.late = o.late[:0]
	return emit(LatePort, engine.Batch{Rec: rb.NewRecord(), Source: src})
}
