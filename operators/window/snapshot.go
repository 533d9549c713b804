package window

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/statecodec"
)

// State hand-over (engine.Stateful). Snapshot writes everything the step
// holds between batches; Restore reads it into a step built from the same
// configuration for the same input schema, which then continues exactly as
// the step that wrote it would have: same windows, same late rows, same
// alerts.
//
// Format, version 1 (varints are unsigned LEB128 or zigzag signed; floats
// are their 8 bit-pattern bytes, little-endian):
//
//	shape       8 bytes: FNV-64a of the configuration the state depends on
//	watermark   varint wm, scanWm, nextClose, nextEvict
//	late alert  uvarint rows, late; bool raised; [varint since (Unix ns)]
//	keys        uvarint n; per key, null key first, then by name:
//	            byte flags (1 null, 2 idle since, 4 closed end); [string name]
//	            [varint idleSince] [varint closedEnd]
//	            uvarint panes; per pane: start (first: varint; then uvarint
//	            (start-previous)/pane-1), slot
//	            uvarint sessions; per session: start (first: varint; then
//	            uvarint start-previous last-gap), uvarint last-start, slot
//	sources     uvarint n, by source; per source: varint source, mark;
//	            uvarint rows, hit; uvarint n; per key mark: uvarint key
//	            (0 forgotten, 1 keys beyond max_keys, 2+i the i-th key above),
//	            varint max, uvarint seen
//
// A slot (the state of one pane or session) is its row count, then per
// field its count, extremes, special values and exact sums (the fast
// fixed-point tier as it stands and, when used, the chunked sums), per
// first/last field the times and values, and the quantile sketches either
// as the bucket keys of their rows (small windows) or as per-bucket counts
// with zeros trimmed at both ends. Equal states give equal bytes.
const (
	// StateKind is the Kind of the state of a window step.
	StateKind = "window"
	// StateVersion is the version of the state format written and read.
	StateVersion = 1
)

var _ engine.Stateful = (*Operator)(nil)

// Bounds of values read from a state (hostile input). Times beyond
// ±2^62 ms cannot arise from event times; refusing them keeps every sum of
// a time and a window length within int64.
const (
	timeBound = int64(1) << 62
	maxPos    = 2045 // largest lowest-bit position of a finite float64 (units of 2^-1074)
	maxBucket = infIdx
)

// Key flags.
const (
	keyNull   = 1 << iota
	keyIdle   // idleSince follows
	keyClosed // closedEnd follows
)

// hacc flags (the low three bits are the special values).
const (
	hCold   = 1 << (3 + iota)
	hMinMax // mn and mx follow
	hFast   // the fast tier follows
	hKnown  = 7 | hCold | hMinMax | hFast
)

// facc flags (the low three bits are the special values).
const (
	fWideSum = 1 << (3 + iota)
	fWideSq
	fMinMax
	fKnown = 7 | fWideSum | fWideSq | fMinMax
)

// shape hashes what the meaning of a state depends on: window kind and
// lengths, lateness and watermark settings, key and time fields, the
// aggregated fields and their functions. A state of a differently
// configured step is refused.
func (o *Operator) shape() uint64 {
	p := o.p
	w := statecodec.NewWriter(nil)
	w.String(p.kind)
	for _, v := range []int64{p.size, p.step, p.gap, p.offset, p.pane, p.lateness, int64(p.wmKeys), p.wmIdle} {
		w.Varint(v)
	}
	key := ""
	if p.keyCol >= 0 {
		key = o.in.Fields[p.keyCol].Name
	}
	w.Bool(p.keyCol >= 0)
	w.String(key)
	w.String(o.in.Fields[p.timeCol].Name)
	w.Uvarint(uint64(len(p.fields)))
	for _, f := range p.fields {
		w.String(f.name)
		w.Byte(byte(f.typ))
		w.Uvarint(uint64(len(f.funcs)))
		for _, fn := range f.funcs {
			w.Byte(byte(fn.op))
			w.Uvarint(fn.num)
			w.Uvarint(fn.den)
		}
	}
	h := fnv.New64a()
	h.Write(w.Bytes())
	return h.Sum64()
}

// Snapshot returns the state of the step: open windows with every
// aggregate, watermarks, key bookkeeping and the late-rows alert. Call it
// between batches, before Flush.
func (o *Operator) Snapshot() (*engine.State, error) {
	if o.closed {
		return nil, fmt.Errorf("window: Snapshot after Close")
	}
	var kids []int32
	for kid := range o.keys {
		if o.keys[kid].live {
			kids = append(kids, int32(kid))
		}
	}
	slices.SortFunc(kids, func(a, b int32) int {
		ka, kb := &o.keys[a], &o.keys[b]
		if ka.null != kb.null {
			if ka.null {
				return -1
			}
			return 1
		}
		return strings.Compare(ka.name, kb.name)
	})
	code := make([]uint64, len(o.keys)) // kid -> key mark code
	for i, kid := range kids {
		code[kid] = uint64(i) + 2
	}

	w := statecodec.NewWriter(make([]byte, 0, o.sizeHint(len(kids))))
	w.Uint64(o.shape())
	w.Varint(o.wm)
	w.Varint(o.scanWm)
	w.Varint(o.nextClose)
	w.Varint(o.nextEvict)
	lw := &o.lateWatch
	w.Uvarint(uint64(lw.rows))
	w.Uvarint(uint64(lw.late))
	w.Bool(lw.raised)
	if lw.raised {
		w.Varint(lw.since.UnixNano())
	}

	w.Uvarint(uint64(len(kids)))
	for _, kid := range kids {
		ks := &o.keys[kid]
		var flags byte
		if ks.null {
			flags |= keyNull
		}
		if ks.idleSince != math.MinInt64 {
			flags |= keyIdle
		}
		if ks.closedEnd != math.MinInt64 {
			flags |= keyClosed
		}
		w.Byte(flags)
		if !ks.null {
			w.String(ks.name)
		}
		if flags&keyIdle != 0 {
			w.Varint(ks.idleSince)
		}
		if flags&keyClosed != 0 {
			w.Varint(ks.closedEnd)
		}
		w.Uvarint(uint64(len(ks.panes)))
		for i, p := range ks.panes {
			if i == 0 {
				w.Varint(p.start)
			} else {
				w.Uvarint(uint64((p.start-ks.panes[i-1].start)/o.p.pane - 1))
			}
			o.writeSlot(w, p.slot)
		}
		w.Uvarint(uint64(len(ks.sess)))
		for i, s := range ks.sess {
			if i == 0 {
				w.Varint(s.start)
			} else {
				w.Uvarint(uint64(s.start - ks.sess[i-1].last - o.p.gap))
			}
			w.Uvarint(uint64(s.last - s.start))
			o.writeSlot(w, s.slot)
		}
	}

	srcs := slices.Clone(o.srcs)
	slices.SortFunc(srcs, func(a, b *srcMark) int { return cmp.Compare(a.Src, b.Src) })
	w.Uvarint(uint64(len(srcs)))
	for _, m := range srcs {
		w.Varint(int64(m.Src))
		w.Varint(m.Max)
		w.Uvarint(uint64(m.Rows))
		w.Uvarint(uint64(m.Hit))
		w.Uvarint(uint64(len(m.Top)))
		for _, e := range m.Top {
			switch {
			case e.Kid == overflowKid:
				w.Uvarint(1)
			case e.Kid < 0:
				w.Uvarint(0)
			default:
				w.Uvarint(code[e.Kid])
			}
			w.Varint(e.Max)
			w.Uvarint(uint64(e.Seen))
		}
	}
	return &engine.State{Kind: StateKind, Version: StateVersion, Data: w.Bytes()}, nil
}

// sizeHint estimates the size of a snapshot of keys keys, so that it is
// written without growing its buffer more than once.
func (o *Operator) sizeHint(keys int) int {
	n := 64 + keys*24 + len(o.srcs)*(24+o.p.wmKeys*24)
	perSlot := 4 + len(o.fd)*48 + o.nfl*34 + 1
	for s := range o.slotCount {
		if o.slotCount[s] == 0 {
			continue // free: an open pane or session has a row
		}
		n += perSlot + 3*len(o.skLog[s])
		if o.skDense[s] {
			for i := range o.dense[s].sk {
				k := &o.dense[s].sk[i]
				n += 2*(len(k.pos.counts)+len(k.neg.counts)) + 8
			}
		}
	}
	return n
}

// writeSlot writes the aggregates of slot s.
func (o *Operator) writeSlot(w *statecodec.Writer, s int32) {
	nf := len(o.fd)
	w.Uvarint(uint64(o.slotCount[s]))
	for f := range o.fd {
		i := int(s)*nf + f
		h := &o.hot[i]
		flags := h.special
		if h.cold {
			flags |= hCold
		}
		hasMinMax := math.Float64bits(h.mn) != math.Float64bits(math.Inf(1)) || math.Float64bits(h.mx) != math.Float64bits(math.Inf(-1))
		if hasMinMax {
			flags |= hMinMax
		}
		if h.base != noBase {
			flags |= hFast
		}
		w.Byte(flags)
		w.Uvarint(uint64(h.n))
		if hasMinMax {
			w.Float64(h.mn)
			w.Float64(h.mx)
		}
		if h.base != noBase {
			w.Uvarint(uint64(h.base))
			w.Uvarint(uint64(h.fadds))
			for _, v := range []uint64{h.s0, h.s1, h.q0, h.q1, h.q2} {
				w.Uvarint(v)
			}
		}
		if h.cold {
			writeFacc(w, o.coldAcc(i))
		}
	}
	for j := range o.nfl {
		f := &o.fl[int(s)*o.nfl+j]
		if f.ft == math.MaxInt64 && f.lt == math.MinInt64 {
			w.Byte(0)
			continue
		}
		w.Byte(1)
		w.Varint(f.ft)
		w.Varint(f.lt)
		w.Float64(f.fv)
		w.Float64(f.lv)
	}
	if o.nsk == 0 {
		return
	}
	if !o.skDense[s] {
		w.Byte(0)
		log := o.skLog[s]
		w.Uvarint(uint64(len(log) / o.nsk))
		for _, k := range log {
			w.Varint(int64(k))
		}
		return
	}
	w.Byte(1)
	for i := range o.dense[s].sk {
		k := &o.dense[s].sk[i]
		writeSide(w, k, &k.pos, false)
		writeSide(w, k, &k.neg, true)
		w.Uvarint(k.zero)
	}
}

// writeSide writes one side of a sketch as the bucket index of its first
// non-zero count and the counts up to its last one.
func writeSide(w *statecodec.Writer, k *sketch, d *dense, neg bool) {
	lo, hi := 0, len(d.counts)
	for lo < hi && k.count(d, lo, neg) == 0 {
		lo++
	}
	for hi > lo && k.count(d, hi-1, neg) == 0 {
		hi--
	}
	if lo == hi {
		w.Uvarint(0)
		w.Uvarint(0)
		return
	}
	w.Uvarint(uint64(d.base) + uint64(lo))
	w.Uvarint(uint64(hi - lo))
	for i := lo; i < hi; i++ {
		w.Uvarint(k.count(d, i, neg))
	}
}

// writeFacc writes chunked exact sums.
func writeFacc(w *statecodec.Writer, a *facc) {
	flags := a.special | a.mode<<3
	hasMinMax := math.Float64bits(a.mn) != math.Float64bits(math.Inf(1)) || math.Float64bits(a.mx) != math.Float64bits(math.Inf(-1))
	if hasMinMax {
		flags |= fMinMax
	}
	w.Byte(flags)
	w.Uvarint(uint64(a.n))
	if hasMinMax {
		w.Float64(a.mn)
		w.Float64(a.mx)
	}
	w.Uvarint(uint64(a.adds))
	w.Varint(int64(a.sumBase))
	w.Varint(int64(a.sqBase))
	writeChunks(w, a.sum[:])
	writeChunks(w, a.sq[:])
	if a.mode&wideSum != 0 {
		writeChunks(w, a.wide.sum[:])
	}
	if a.mode&wideSq != 0 {
		writeChunks(w, a.wide.sq[:])
	}
}

// writeChunks writes chunks with the zeros at both ends trimmed: the
// index of the first non-zero one, the count, the values.
func writeChunks(w *statecodec.Writer, c []int64) {
	lo, hi := 0, len(c)
	for lo < hi && c[lo] == 0 {
		lo++
	}
	for hi > lo && c[hi-1] == 0 {
		hi--
	}
	if lo == hi {
		lo, hi = 0, 0
	}
	w.Uvarint(uint64(lo))
	w.Uvarint(uint64(hi - lo))
	for _, v := range c[lo:hi] {
		w.Varint(v)
	}
}

// Restore replaces the state of the step with s, written by Snapshot of a
// step with the same configuration and input schema. The state is read as
// hostile input: a state of another kind, version or configuration, or one
// that is truncated or malformed, is refused with an error and the step
// keeps its own state.
func (o *Operator) Restore(s *engine.State) error {
	if err := engine.CheckState(s, StateKind, StateVersion); err != nil {
		return fmt.Errorf("window: restore: %w", err)
	}
	if o.closed {
		return fmt.Errorf("window: Restore after Close")
	}
	t, err := o.decode(s.Data)
	if err != nil {
		return fmt.Errorf("window: restore: %w", err)
	}
	o.install(t)
	return nil
}

// decoded is a state read by decode, ready to install: a scratch operator
// holding the slots, keys and watermarks, and the late-alert counts.
type decoded struct {
	op              *Operator
	lateRows, nLate int64
	raised          bool
	since           time.Time
	wmState         [4]int64 // wm, scanWm, nextClose, nextEvict
	srcs            []*srcMark
	keys            []keyState
	keyIdx          map[string]int32
	nullKid         int32
}

// decode reads a state into a scratch operator with the configuration of
// o, leaving o untouched.
func (o *Operator) decode(data []byte) (*decoded, error) {
	r := statecodec.NewReader(data)
	if sh := r.Uint64(); r.Err() == nil && sh != o.shape() {
		return nil, fmt.Errorf("the state is of a step with another configuration (shape %016x, this step %016x)", sh, o.shape())
	}
	t := &Operator{p: o.p, fd: o.fd, nsk: o.nsk, nfl: o.nfl}
	d := &decoded{op: t, keyIdx: map[string]int32{}, nullKid: -1}
	d.wmState[0] = readMark(r, math.MinInt64, "watermark")
	d.wmState[1] = readMark(r, math.MinInt64, "scan watermark")
	d.wmState[2] = readMark(r, math.MaxInt64, "next close")
	d.wmState[3] = readMark(r, math.MaxInt64, "next eviction")
	d.lateRows = int64(r.Uint(lateBlock-1, "late-alert block rows"))
	d.nLate = int64(r.Uint(uint64(d.lateRows), "late rows of the block"))
	if d.raised = r.Bool(); d.raised {
		d.since = time.Unix(0, r.Varint())
	}

	p := o.p
	keyed := p.keyCol >= 0
	limit := 1
	if keyed {
		limit = p.maxKeys + 1 // the null key is not counted in max_keys
	}
	n := r.Count(limit, 3, "keys")
	if !keyed && r.Err() == nil && n != 1 {
		r.Failf("%d keys for a step without key, want 1", n)
	}
	d.keys = make([]keyState, 0, n)
	t.reserveSlots(n) // most keys hold one window
	var prev *keyState
	for kid := range n {
		if r.Err() != nil {
			break
		}
		ks := keyState{live: true, idleSince: math.MinInt64, closedEnd: math.MinInt64, next: -1}
		flags := r.Byte()
		if flags&^(keyNull|keyIdle|keyClosed) != 0 {
			r.Failf("key flags %#x", flags)
		}
		ks.null = flags&keyNull != 0
		if ks.null {
			if !keyed {
				r.Failf("null key in a step without key")
			}
		} else {
			ks.name = r.String(p.maxKeyBytes, "key")
		}
		switch {
		case !keyed && ks.name != "":
			r.Failf("key %q in a step without key", ks.name)
		case prev != nil && (ks.null || !prev.null && ks.name <= prev.name):
			r.Failf("keys out of order or repeated") // the null key first, then by name
		}
		if flags&keyIdle != 0 {
			ks.idleSince = r.Int(-timeBound, timeBound, "idle since")
		}
		if flags&keyClosed != 0 {
			ks.closedEnd = r.Int(-timeBound, timeBound, "closed end")
		}
		d.readPanes(r, &ks)
		d.readSessions(r, &ks)
		if r.Err() != nil {
			break
		}
		d.keys = append(d.keys, ks)
		prev = &d.keys[len(d.keys)-1]
		switch {
		case ks.null:
			d.nullKid = int32(kid)
		case keyed:
			d.keyIdx[ks.name] = int32(kid)
		}
	}

	ns := r.Count(math.MaxInt32, 5, "sources")
	d.srcs = make([]*srcMark, 0, ns)
	capTop := 2 * p.wmKeys
	for range ns {
		if r.Err() != nil {
			break
		}
		m := &srcMark{}
		src := r.Varint()
		if len(d.srcs) > 0 && src <= int64(d.srcs[len(d.srcs)-1].Src) {
			r.Failf("source %d out of order or repeated", src)
		}
		m.Src = int(src)
		m.Max = readMark(r, math.MinInt64, "source mark")
		m.Rows = int64(r.Uint(math.MaxInt64, "source rows"))
		hit := r.Uint(uint64(capTop), "source hit")
		nt := r.Count(capTop, 3, "key marks")
		if r.Err() == nil && hit >= uint64(max(nt, 1)) {
			r.Failf("source hit %d of %d key marks", hit, nt)
		}
		m.Hit = int(hit)
		m.Top = make([]keyMark, 0, capTop)
		for range nt {
			c := r.Uint(uint64(len(d.keys))+1, "key of a key mark")
			e := keyMark{Kid: int32(c) - 2, Max: r.Int(-timeBound, timeBound, "key mark"), Seen: int64(r.Uint(uint64(m.Rows), "key mark row"))}
			if c == 0 {
				e.Kid = -1
			} else if c == 1 {
				e.Kid = overflowKid
			}
			m.Top = append(m.Top, e)
		}
		d.srcs = append(d.srcs, m)
	}
	if err := r.Done(); err != nil {
		return nil, err
	}
	return d, nil
}

// readMark reads a watermark-like time: sentinel or within ±timeBound.
func readMark(r *statecodec.Reader, sentinel int64, what string) int64 {
	v := r.Varint()
	if v != sentinel && (v < -timeBound || v > timeBound) {
		r.Failf("%s %d out of range", what, v)
		return sentinel
	}
	return v
}

// reserveSlots makes room for n slots in an operator without slots.
func (o *Operator) reserveSlots(n int) {
	o.hot = make([]hacc, 0, n*len(o.fd))
	o.fl = make([]firstLast, 0, n*o.nfl)
	o.cold = make([][]facc, 0, n)
	o.dense = make([]*denseSketches, 0, n)
	o.skLog = make([][]int32, 0, n)
	o.skDense = make([]bool, 0, n)
	o.slotCount = make([]int64, 0, n)
	o.freedAt = make([]int64, 0, n)
	o.fwd = make([]int32, 0, n)
}

// readPanes reads the panes of a key (tumbling and hopping).
func (d *decoded) readPanes(r *statecodec.Reader, ks *keyState) {
	p := d.op.p
	n := r.Count(math.MaxInt32, 2, "panes")
	if n > 0 && p.kind == Session {
		r.Failf("panes in a session step")
		return
	}
	var start int64
	for i := range n {
		if r.Err() != nil {
			return
		}
		if i == 0 {
			start = r.Int(engine.MinEventTime-p.pane, engine.MaxEventTime, "pane start")
			if floorMod(start-p.offset, p.pane) != 0 {
				r.Failf("pane start %d not aligned", start)
			}
		} else {
			k := r.Uint(uint64((engine.MaxEventTime-start)/p.pane), "pane distance")
			start += (int64(k) + 1) * p.pane
		}
		slot := d.readSlot(r)
		ks.panes = append(ks.panes, pane{start: start, slot: slot})
	}
}

// readSessions reads the sessions of a key.
func (d *decoded) readSessions(r *statecodec.Reader, ks *keyState) {
	p := d.op.p
	n := r.Count(math.MaxInt32, 3, "sessions")
	if n > 0 && p.kind != Session {
		r.Failf("sessions in a %s step", p.kind)
		return
	}
	var last int64
	for i := range n {
		if r.Err() != nil {
			return
		}
		var start int64
		if i == 0 {
			start = r.Int(engine.MinEventTime, engine.MaxEventTime, "session start")
		} else {
			k := r.Uint(uint64(max(engine.MaxEventTime-last-p.gap, 0)), "session distance")
			start = last + p.gap + int64(k)
			if start > engine.MaxEventTime {
				r.Failf("session start %d out of range", start)
				return
			}
		}
		last = start + int64(r.Uint(uint64(engine.MaxEventTime-start), "session length"))
		slot := d.readSlot(r)
		ks.sess = append(ks.sess, session{start: start, last: last, slot: slot})
	}
}

// readSlot reads the aggregates of one slot into a new slot of the
// scratch operator.
func (d *decoded) readSlot(r *statecodec.Reader) int32 {
	t := d.op
	s := t.newSlot()
	nf := len(t.fd)
	t.slotCount[s] = int64(r.Uint(math.MaxInt64, "slot rows"))
	for f := range t.fd {
		i := int(s)*nf + f
		h := &t.hot[i]
		flags := r.Byte()
		if flags&^hKnown != 0 {
			r.Failf("field flags %#x", flags)
			return s
		}
		h.special = flags & 7
		h.cold = flags&hCold != 0
		h.n = int64(r.Uint(math.MaxInt64, "values"))
		if flags&hMinMax != 0 {
			h.mn, h.mx = r.Float64(), r.Float64()
		}
		if flags&hFast != 0 {
			h.base = int16(r.Uint(maxPos, "fast base"))
			h.fadds = uint32(r.Uint(uint64(fastMaxAdds), "fast additions"))
			h.s0, h.s1, h.q0, h.q1, h.q2 = r.Uvarint(), r.Uvarint(), r.Uvarint(), r.Uvarint(), r.Uvarint()
		}
		if h.cold {
			readFacc(r, t.coldAcc(i))
		}
	}
	for j := range t.nfl {
		f := &t.fl[int(s)*t.nfl+j]
		if !r.Bool() {
			continue
		}
		f.ft = r.Int(engine.MinEventTime, engine.MaxEventTime, "first time")
		f.lt = r.Int(engine.MinEventTime, engine.MaxEventTime, "last time")
		f.fv, f.lv = r.Float64(), r.Float64()
	}
	if t.nsk == 0 || r.Err() != nil {
		return s
	}
	switch form := r.Byte(); form {
	case 0:
		rows := r.Count(logRows-1, t.nsk, "logged rows")
		log := make([]int32, rows*t.nsk)
		for j := range log {
			k := r.Varint()
			if k != noKey && (k < -(maxBucket+1) || k > maxBucket+1) {
				r.Failf("bucket key %d", k)
				return s
			}
			log[j] = int32(k)
		}
		t.skLog[s] = log
	case 1:
		ds := t.denseOf(s)
		for i := range ds.sk {
			k := &ds.sk[i]
			readSide(r, k, &k.pos, false, &ds.ar)
			readSide(r, k, &k.neg, true, &ds.ar)
			k.zero = r.Uvarint()
		}
		t.skDense[s] = true
	default:
		r.Failf("sketch form %d", form)
	}
	return s
}

// readSide reads one side of a sketch.
func readSide(r *statecodec.Reader, k *sketch, d *dense, neg bool, ar *arena) {
	base := r.Uint(maxBucket, "bucket")
	n := r.Count(int(maxBucket+1-base), 1, "buckets")
	if n == 0 || r.Err() != nil {
		return
	}
	d.base, d.counts = int32(base), ar.alloc(n)
	for i := range d.counts {
		c := r.Uvarint()
		d.counts[i] = uint16(c)
		if c>>16 != 0 {
			k.carry(d.base+int32(i), neg, c>>16<<16)
		}
	}
}

// readFacc reads chunked exact sums.
func readFacc(r *statecodec.Reader, a *facc) {
	flags := r.Byte()
	if flags&^fKnown != 0 {
		r.Failf("sum flags %#x", flags)
		return
	}
	a.special = flags & 7
	a.mode = flags >> 3 & (wideSum | wideSq)
	a.n = int64(r.Uint(math.MaxInt64, "values"))
	if flags&fMinMax != 0 {
		a.mn, a.mx = r.Float64(), r.Float64()
	}
	a.adds = uint32(r.Uint(carryEvery-1, "additions"))
	a.sumBase = readBase(r, a.mode&wideSum != 0, sumChunks-accChunks)
	a.sqBase = readBase(r, a.mode&wideSq != 0, sqChunks-accChunks)
	// A window sum without base (empty or wide) holds no chunks.
	readChunks(r, a.sum[:], a.sumBase != noBase)
	readChunks(r, a.sq[:], a.sqBase != noBase)
	if a.mode != 0 && a.wide == nil {
		a.wide = new(wideAcc)
	}
	if a.mode&wideSum != 0 {
		readChunks(r, a.wide.sum[:], true)
	}
	if a.mode&wideSq != 0 {
		readChunks(r, a.wide.sq[:], true)
	}
}

// readBase reads the base chunk of a window sum: noBase for a wide or
// empty sum, else at most hi.
func readBase(r *statecodec.Reader, wide bool, hi int64) int16 {
	v := r.Varint()
	switch {
	case v == noBase:
	case wide:
		r.Failf("window base %d of a wide sum", v)
	case v < 0 || v > hi:
		r.Failf("window base %d outside [0, %d]", v, hi)
	}
	return int16(v)
}

// readChunks reads chunks written by writeChunks into c; with used false
// they must all be zero.
func readChunks(r *statecodec.Reader, c []int64, used bool) {
	lo := r.Uint(uint64(len(c)), "first chunk")
	n := r.Count(len(c)-int(lo), 1, "chunks")
	if n > 0 && !used {
		r.Failf("chunks of an unused sum window")
		return
	}
	for i := range n {
		c[int(lo)+i] = r.Varint()
	}
}

// install moves a decoded state into o.
func (o *Operator) install(d *decoded) {
	t := d.op
	o.hot, o.cold, o.dense, o.fl = t.hot, t.cold, t.dense, t.fl
	o.skLog, o.skDense = t.skLog, t.skDense
	o.slotCount, o.freedAt, o.fwd = t.slotCount, t.freedAt, t.fwd
	o.freeSlots, o.pending, o.merged = nil, nil, false
	o.keys, o.freeKeys, o.keyIdx = d.keys, nil, d.keyIdx
	o.nullKid, o.prevKid = d.nullKid, -1
	o.srcs, o.cur = d.srcs, nil
	o.wm, o.scanWm, o.nextClose, o.nextEvict = d.wmState[0], d.wmState[1], d.wmState[2], d.wmState[3]
	lw := &o.lateWatch
	lw.rows, lw.late, lw.raised = d.lateRows, d.nLate, d.raised
	if d.raised {
		lw.since = d.since
	}
}
