// Package alert provides the "alert" step: asset-oriented alert rules over
// a stream (typically window statistics), with hold durations in event
// time, hysteresis, per-model rules and per-asset thresholds read from asset
// attributes.
//
// Each rule keeps a small state per asset (inactive, pending since t, or
// raised). The rows of each asset are evaluated in event-time order up to a
// watermark (engine/eventtime, as in the window step), or in arrival order
// (order: arrival, the default after a window step), so the same input
// gives the same alerts — with the same ids — whatever the batch sizes, and
// in event-time order whatever the arrival order within the lateness. Evaluating a
// row allocates nothing; raising and clearing build the alert row and render
// its content.
package alert

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/assets"
	"github.com/sluice-edge/sluice/engine/eventtime"
	"github.com/sluice-edge/sluice/engine/rowexpr"
	"github.com/sluice-edge/sluice/engine/spec"
)

// ErrorsPort is the index of the "errors" output port.
const ErrorsPort = 1

func init() {
	engine.RegisterOperator(Spec, func(cfg *spec.Config, in *engine.Schema, bc engine.BuildContext) (engine.Operator, error) {
		return New(cfg, in, bc)
	})
}

// state is the state of one rule for one asset.
type state struct {
	pending bool // the condition holds since start, not raised yet
	active  bool // raised, not cleared
	// version is the index in Operator.versions of the rule set version
	// that raised the alert (while active); it fits in the padding after
	// the flags, so versions cost no memory per state.
	version uint32
	start   int64 // when the condition started to hold (ms)
	id      string
}

// assetState holds the rule states of one asset (one key value).
type assetState struct {
	key   string
	asset *assets.Asset // nil when the key is not in the assets file
	attrs map[string]any
	rules []state
	seen  int64 // event time of the asset's latest row (ms)
	// rowSeen is set once the asset has had a row (seen is set).
	rowSeen bool
}

// class orders states for eviction: 0 when every rule is inactive (the
// state is the initial one, forgetting it changes nothing), 1 when a rule
// is pending, 2 when an alert is raised.
func (as *assetState) class() int {
	c := 0
	for i := range as.rules {
		switch {
		case as.rules[i].active:
			return 2
		case as.rules[i].pending:
			c = 1
		}
	}
	return c
}

// Operator is the "alert" step.
type Operator struct {
	p        *plan
	in       *engine.Schema
	fr       *rowexpr.Frame
	edge     string
	pipeline string
	step     string

	states map[string]*assetState
	last   *assetState
	// now is the newest event time seen; lastSweep when idle states were
	// last looked for, rows the rows evaluated since.
	now, lastSweep int64
	rows           int
	scratch        []rankedState // of makeRoom
	f64            []*array.Float64
	log            *slog.Logger
	loggedEvicted  int

	// versions are the rule set versions alerts name, by the index that
	// states and rules keep ("" at 0: none); versionIdx indexes them.
	versions   []string
	versionIdx map[string]uint32
	ruleVer    []uint32 // index of each rule's version

	rb      *engine.RecordBuilder
	errs    *rowexpr.ErrorRows
	ports   []engine.Port
	data    map[string]any // template data, reused
	allCols []int
	out     capWriter

	cRaised, cCleared, cErr *atomic.Int64
	// Evictions: idle inactive states, inactive states and pending
	// conditions forgotten for room, raised alerts forgotten for room.
	cIdle, cFull, cPending, cEvRaised *atomic.Int64
	// Contents cut at max_content, contents whose rendering failed.
	cTrunc, cContentErr *atomic.Int64
	// skipped counts history rows not evaluated (alert_on_history false).
	skipped           *atomic.Int64
	timeNull, keyNull error
	closed            bool

	// The event-time order: the sources' marks, the watermark (rows before
	// it are late), the rows held back and the arrival count that orders
	// them; rows late or evaluated early beyond max_buffered_rows.
	mem     memory.Allocator
	srcs    []*eventtime.SourceMark
	wm      int64
	buf     rowHeap
	seq     uint64
	cLate   *atomic.Int64
	cEarly  *atomic.Int64
	bound   arrow.RecordBatch   // the record the frame is bound to
	errq    []rowErr            // error rows of the batch
	drained []arrow.RecordBatch // records no buffered row needs
}

var _ engine.Operator = (*Operator)(nil)

// New builds an alert step for input schema in from a configuration parsed
// with Spec. Configuration errors carry their file:line:col; errors in the
// assets file carry the assets file's positions.
func New(cfg *spec.Config, in *engine.Schema, bc engine.BuildContext) (*Operator, error) {
	p, err := parsePlan(cfg, in, bc)
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
		p:           p,
		in:          in,
		fr:          p.env.NewFrame(),
		edge:        bc.Edge,
		pipeline:    bc.Pipeline,
		step:        bc.Name,
		states:      map[string]*assetState{},
		data:        map[string]any{},
		cRaised:     counters.Counter("raised"),
		cCleared:    counters.Counter("cleared"),
		cErr:        counters.Counter("error_rows"),
		skipped:     counters.Counter("history_rows_skipped"),
		cIdle:       counters.Counter("evicted_idle"),
		cFull:       counters.Counter("evicted_full"),
		cPending:    counters.Counter("evicted_pending"),
		cEvRaised:   counters.Counter("evicted_raised"),
		cTrunc:      counters.Counter("content_truncated"),
		cContentErr: counters.Counter("content_errors"),
		f64:         make([]*array.Float64, len(in.Fields)),
		log:         bc.Log,
		timeNull:    &rowexpr.NullError{Field: in.Fields[p.timeCol].Name},
		errs:        rowexpr.NewErrorRows(mem, in),
		versions:    []string{""},
		versionIdx:  map[string]uint32{"": 0},
		mem:         mem,
		wm:          math.MinInt64,
		cLate:       counters.Counter("late_rows"),
		cEarly:      counters.Counter("evaluated_early"),
	}
	out := engine.AlertSchema
	if p.versioned {
		out = engine.VersionedAlertSchema
	}
	o.rb = engine.NewRecordBuilder(mem, out)
	for _, r := range p.rules {
		o.ruleVer = append(o.ruleVer, o.intern(r.version))
	}
	for i := range in.Fields {
		o.allCols = append(o.allCols, i)
	}
	if p.keyCol >= 0 {
		o.keyNull = &rowexpr.NullError{Field: in.Fields[p.keyCol].Name}
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	o.ports = []engine.Port{{Schema: out}, {Name: rowexpr.ErrorPort, Schema: o.errs.Schema()}}
	return o, nil
}

// intern returns the index of version v in o.versions, adding it.
func (o *Operator) intern(v string) uint32 {
	if i, ok := o.versionIdx[v]; ok {
		return i
	}
	i := uint32(len(o.versions))
	o.versions = append(o.versions, v)
	o.versionIdx[v] = i
	return i
}

// Outputs returns the main port and the "errors" port. The main port has
// engine.VersionedAlertSchema when the step includes rule sets or declares
// rule_set_version, else engine.AlertSchema.
func (o *Operator) Outputs() []engine.Port { return o.ports }

// RuleNames lists the step's rules in evaluation order: its own, then
// those of the rule sets it includes.
func (o *Operator) RuleNames() []string {
	out := make([]string, len(o.p.rules))
	for i, r := range o.p.rules {
		out[i] = r.name
	}
	return out
}

// Process evaluates the rules on the rows of b and emits the alerts raised
// and cleared. In arrival order it evaluates every row, in order; in
// event-time order it holds the rows back until the watermark passes them
// and evaluates those it passes by event time, asset and arrival, sending
// rows older than the watermark to the errors port.
func (o *Operator) Process(b engine.Batch, emit engine.PortEmit) error {
	defer b.Release()
	if o.closed {
		return errors.New("alert: Process after Close")
	}
	rec := b.Rec
	if err := o.bind(rec); err != nil {
		return err
	}
	times := rec.Column(o.p.timeCol).(*array.Timestamp)
	var keys *array.String
	if o.p.keyCol >= 0 {
		keys = rec.Column(o.p.keyCol).(*array.String)
	}
	var hist *array.Boolean
	if o.p.histCol >= 0 {
		hist = rec.Column(o.p.histCol).(*array.Boolean)
	}
	ordered := o.p.order == OrderEventTime
	if !ordered && len(o.buf) > 0 {
		// Rows a step in event-time order handed over: they come first.
		o.release(math.MaxInt64)
		if err := o.bind(rec); err != nil {
			return err
		}
	}
	var cur *eventtime.SourceMark
	var ref *bufRec
	if ordered {
		cur = eventtime.SourceOf(&o.srcs, b.Source)
	}
	topCap := 2 * o.p.wmKeys
	lastKey, lastKid := "", int32(-1)
	n := int(rec.NumRows())
	for i := range n {
		if hist != nil && hist.IsValid(i) && hist.Value(i) {
			o.skipped.Add(1)
			continue
		}
		if times.IsNull(i) {
			o.rowError(rec, i, "", o.timeNull)
			continue
		}
		t := int64(times.Value(i))
		key := ""
		if keys != nil {
			if keys.IsNull(i) {
				o.rowError(rec, i, "", o.keyNull)
				continue
			}
			key = keys.Value(i)
			if len(key) > o.p.maxKeyBytes {
				o.rowError(rec, i, "", fmt.Errorf("asset key of %d bytes, longer than max_key_bytes (%d)", len(key), o.p.maxKeyBytes))
				continue
			}
		}
		if !ordered {
			o.evalRow(rec, i, key, t)
			continue
		}
		if as, ok := o.states[key]; ok && as.rowSeen && t < as.seen {
			o.cLate.Add(1)
			o.rowError(rec, i, "", earlyError(t, as.seen))
			continue
		}
		if lastKid < 0 || key != lastKey {
			lastKey, lastKid = key, kid(key)
		}
		cur.Observe(lastKid, t, topCap)
		if t < o.wm {
			// Behind the watermark (an asset that lags the others), but
			// after every row of its asset evaluated so far: the rows of
			// its asset still held back are all at or after the
			// watermark, so evaluating it now keeps the asset's order.
			o.evalRow(rec, i, key, t)
			continue
		}
		if ref == nil {
			ref = &bufRec{rec: rec}
			rec.Retain()
		}
		ref.n++
		o.buf.push(bufRow{t: t, seq: o.seq, key: key, ref: ref, row: int32(i)})
		o.seq++
	}
	if ordered {
		if t, ok := cur.Mark(o.p.wmKeys, o.p.wmIdle); ok {
			cur.Max = max(cur.Max, t)
		}
		if w, ok := eventtime.StepWatermark(o.srcs, o.p.lateness); ok && w > o.wm {
			o.wm = w
		}
		o.release(o.wm)
		for len(o.buf) > o.p.maxBuffered {
			o.evalBuffered(o.buf.pop())
			o.cEarly.Add(1)
		}
	}
	o.sweep()
	return o.emitOut(b.Source, emit)
}

// bind makes rec the record that rows are evaluated from.
func (o *Operator) bind(rec arrow.RecordBatch) error {
	if err := o.fr.Bind(rec); err != nil {
		return fmt.Errorf("alert: %w", err)
	}
	for _, c := range o.p.floatCols {
		o.f64[c], _ = rec.Column(c).(*array.Float64)
	}
	o.bound = rec
	return nil
}

// release evaluates the buffered rows up to event time upTo, in order.
func (o *Operator) release(upTo int64) {
	for len(o.buf) > 0 && o.buf[0].t <= upTo {
		o.evalBuffered(o.buf.pop())
	}
}

// evalBuffered evaluates a row taken from the buffer.
func (o *Operator) evalBuffered(r bufRow) {
	rec := r.ref.rec
	if rec != o.bound {
		if err := o.bind(rec); err != nil {
			// The record was bound when it arrived; it cannot fail now.
			o.rowError(rec, int(r.row), "", err)
			return
		}
	}
	o.evalRow(rec, int(r.row), r.key, r.t)
	if r.ref.n--; r.ref.n == 0 {
		// Released once the batch's errors are out (they read it).
		o.drained = append(o.drained, rec)
	}
}

// evalRow evaluates the rules on row i of rec, the bound record: asset
// key, event time t.
func (o *Operator) evalRow(rec arrow.RecordBatch, i int, key string, t int64) {
	as := o.lookup(key)
	o.rows++
	// gap is the event time since the asset's previous row (0 for its
	// first one and rows out of order); it restarts holds with a max_gap.
	gap := int64(0)
	if as.rowSeen && t > as.seen {
		if gap = t - as.seen; gap < 0 {
			gap = math.MaxInt64 // overflowed
		}
	}
	if !as.rowSeen || t > as.seen {
		as.seen, as.rowSeen = t, true
	}
	if t > o.now {
		o.now = t
	}
	o.fr.Row(i)
	if o.p.assetVar >= 0 {
		o.fr.SetString(o.p.assetVar, as.key)
	}
	if o.p.attrVar >= 0 {
		o.fr.SetMap(o.p.attrVar, as.attrs)
	}
	for ri, r := range o.p.rules {
		if r.model != nil && (as.asset == nil || as.asset.Model != r.model) {
			continue
		}
		if err := o.eval(ri, &as.rules[ri], as, rec, i, t, gap); err != nil {
			o.rowError(rec, i, r.prefix, err)
		}
	}
}

// rowErr is a row of the errors port waiting for its batch's end.
type rowErr struct {
	rec    arrow.RecordBatch
	row    int
	prefix string
	err    error
}

// rowError sends row i of rec to the errors port with the reason prefix
// and err.
func (o *Operator) rowError(rec arrow.RecordBatch, i int, prefix string, err error) {
	o.errq = append(o.errq, rowErr{rec: rec, row: i, prefix: prefix, err: err})
}

// emitOut emits the alert rows and the error rows of the batch, then
// releases the records no buffered row needs.
func (o *Operator) emitOut(src int, emit engine.PortEmit) error {
	var err error
	if out := o.rb.NewRecord(); out != nil {
		err = emit(0, engine.Batch{Rec: out, Source: src})
	}
	// Error rows, one record per input record, in row order.
	for len(o.errq) > 0 {
		rec := o.errq[0].rec
		rest := o.errq[:0]
		var mine []rowErr
		for _, e := range o.errq {
			if e.rec == rec {
				mine = append(mine, e)
			} else {
				rest = append(rest, e)
			}
		}
		slices.SortStableFunc(mine, func(a, b rowErr) int { return cmp.Compare(a.row, b.row) })
		for _, e := range mine {
			o.errs.Add(e.row, e.prefix, e.err)
		}
		clear(o.errq[len(rest):])
		o.errq = rest
		o.cErr.Add(int64(o.errs.Len()))
		errRec := o.errs.Record(rec)
		if errRec == nil {
			continue
		}
		if err != nil {
			errRec.Release()
			continue
		}
		err = emit(ErrorsPort, engine.Batch{Rec: errRec, Source: src})
	}
	for _, rec := range o.drained {
		if rec == o.bound {
			o.bound = nil
		}
		rec.Release()
	}
	clear(o.drained)
	o.drained = o.drained[:0]
	return err
}

// lookup returns the state of an asset, creating it on first sight. key
// may point into the record; it is copied when stored.
func (o *Operator) lookup(key string) *assetState {
	if o.last != nil && o.last.key == key {
		return o.last
	}
	as, ok := o.states[key]
	if !ok {
		if len(o.states) >= o.p.maxKeys {
			o.makeRoom()
		}
		as = &assetState{key: strings.Clone(key), rules: make([]state, len(o.p.rules))}
		if o.p.catalog != nil {
			if a, ok := o.p.catalog.Asset(key); ok {
				as.asset, as.attrs = a, a.Attrs
			}
		}
		o.states[as.key] = as
	}
	o.last = as
	return as
}

// eval advances one rule's state on one row of time t, gap after the
// asset's previous row.
func (o *Operator) eval(ri int, st *state, as *assetState, rec arrow.RecordBatch, row int, t, gap int64) error {
	r := o.p.rules[ri]
	if !st.active {
		if err := o.finite(r.condF, row); err != nil {
			return err
		}
		ok, err := o.fr.Bool(r.cond)
		if err != nil {
			return err
		}
		if !ok {
			st.pending = false
			return nil
		}
		if !st.pending || r.maxGap > 0 && gap > r.maxGap {
			// A gap longer than max_gap restarts the hold: the rows
			// missing in it did not show the condition holding.
			st.pending, st.start = true, t
		}
		if t-st.start >= r.hold {
			st.pending, st.active = false, true
			st.id = alertID(o.edge, o.pipeline, o.step, r.name, as.key, st.start)
			st.version = o.ruleVer[ri]
			o.appendAlert(r, st, as, rec, row, t, engine.AlertRaised)
			o.cRaised.Add(1)
		}
		return nil
	}
	var done bool
	if err := o.finite(r.clearF, row); err != nil {
		return err
	}
	if r.clear != nil {
		c, err := o.fr.Bool(r.clear)
		if err != nil {
			return err
		}
		done = c
	} else {
		if err := o.finite(r.condF, row); err != nil {
			return err
		}
		ok, err := o.fr.Bool(r.cond)
		if err != nil {
			return err
		}
		done = !ok
	}
	if done {
		o.appendAlert(r, st, as, rec, row, t, engine.AlertCleared)
		st.active, st.id, st.version = false, "", 0
		o.cCleared.Add(1)
	}
	return nil
}

// alertID is the stable id of an alert: a hash of where it comes from
// (the edge, so that ids are unique across a fleet whose edges run the
// same pipelines on assets of the same names; the pipeline, step, rule and
// asset) and when its condition started to hold. It is the first 16 bytes
// of the SHA-256 of each of edge, pipeline, step, rule and asset as
// "<length in bytes>:<text>", then the occur time in Unix milliseconds in
// decimal, as 32 hex digits (see docs/alert.md).
func alertID(edge, pipeline, step, rule, asset string, occur int64) string {
	h := sha256.New()
	for _, s := range []string{edge, pipeline, step, rule, asset} {
		h.Write([]byte(strconv.Itoa(len(s))))
		h.Write([]byte{':'})
		h.Write([]byte(s))
	}
	h.Write([]byte(strconv.FormatInt(occur, 10)))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// appendAlert appends one alert row for a state change at row (time t).
func (o *Operator) appendAlert(r *rule, st *state, as *assetState, rec arrow.RecordBatch, row int, t int64, change string) {
	value, hasValue := 0.0, false
	if r.value != nil {
		if v, err := o.fr.Float64(r.value); err == nil && !math.IsNaN(v) && !math.IsInf(v, 0) {
			value, hasValue = v, true
		}
	}
	o.appendRow(r, st, as, t, o.render(r, as, rec, row, t, value, hasValue), value, hasValue, change)
}

// appendRow appends one alert row of rule r on asset as for a state
// change (engine.AlertRaised or engine.AlertCleared) at time t, with the
// rendered content and the rule's value when hasValue.
func (o *Operator) appendRow(r *rule, st *state, as *assetState, t int64, content string, value float64, hasValue bool, change string) {
	rb := o.rb
	rb.Timestamp(0).Append(arrow.Timestamp(t))
	rb.String(1).Append(st.id)
	rb.String(2).Append(as.key)
	rb.String(3).Append(r.name)
	rb.String(4).Append(r.severity)
	rb.String(5).Append(r.typ)
	rb.String(6).Append(content)
	if hasValue {
		rb.Float64(7).Append(value)
	} else {
		rb.Float64(7).AppendNull()
	}
	rb.Timestamp(8).Append(arrow.Timestamp(st.start))
	if change == engine.AlertCleared {
		rb.Timestamp(9).Append(arrow.Timestamp(t))
	} else {
		rb.Timestamp(9).AppendNull()
	}
	rb.String(10).Append(change)
	if len(rb.Columns) > 11 {
		// The version that raised the alert, also on its clear row.
		if v := o.versions[st.version]; v != "" {
			rb.String(11).Append(v)
		} else {
			rb.String(11).AppendNull()
		}
	}
	rb.RowDone()
}

// render renders the rule's content template on a row. The data holds the
// columns the template reads (every column if it passes the row on) and
// the names of templateNames.
func (o *Operator) render(r *rule, as *assetState, rec arrow.RecordBatch, row int, t int64, value float64, hasValue bool) string {
	d := o.data
	clear(d)
	cols := r.content.cols
	if r.content.all {
		cols = o.allCols
	}
	for _, c := range cols {
		f := o.in.Fields[c]
		col := rec.Column(c)
		if col.IsNull(row) {
			d[f.Name] = nil
			continue
		}
		switch a := col.(type) {
		case *array.Float64:
			d[f.Name] = a.Value(row)
		case *array.Int64:
			d[f.Name] = a.Value(row)
		case *array.String:
			d[f.Name] = a.Value(row)
		case *array.Boolean:
			d[f.Name] = a.Value(row)
		case *array.Timestamp:
			d[f.Name] = time.UnixMilli(int64(a.Value(row))).UTC()
		}
	}
	d["asset"] = as.key
	d["rule"] = r.name
	d["severity"] = r.severity
	d["type"] = r.typ
	d["time"] = time.UnixMilli(t).UTC()
	d["attr"] = as.attrs
	if hasValue {
		d["value"] = value
	} else {
		d["value"] = nil
	}
	c := &r.content
	c.b.reset(c.limit)
	o.out.buf, o.out.limit = o.out.buf[:0], c.limit
	err := c.tmpl.Execute(&o.out, d)
	clear(d)
	switch {
	case err == nil:
		return string(o.out.buf)
	case errors.Is(err, errContentFull):
		o.cTrunc.Add(1)
		return truncate(o.out.buf, c.limit)
	}
	o.cContentErr.Add(1)
	msg := "content: " + err.Error()
	if len(msg) > c.limit {
		return truncate([]byte(msg), c.limit)
	}
	return msg
}

// Flush evaluates the rows held back for the watermark, in order, and
// emits their alerts; rows that arrive afterwards older than the newest of
// them are late. Raised alerts stay raised until a row clears them, and
// pending conditions are not raised at the end of input.
func (o *Operator) Flush(emit engine.PortEmit) error {
	if o.closed || len(o.buf) == 0 {
		return nil
	}
	for len(o.buf) > 0 {
		r := o.buf.pop()
		o.wm = max(o.wm, r.t)
		o.evalBuffered(r)
	}
	return o.emitOut(0, emit)
}

// Close releases the step's memory, with the rows still held back. It is
// idempotent.
func (o *Operator) Close() error {
	if o.closed {
		return nil
	}
	o.closed = true
	o.rb.Release()
	o.errs.Release()
	o.dropBuffer()
	o.states, o.last = nil, nil
	return nil
}

// dropBuffer releases the records of the rows held back and forgets them.
func (o *Operator) dropBuffer() {
	for _, r := range o.buf {
		if r.ref.n--; r.ref.n == 0 {
			r.ref.rec.Release()
		}
	}
	clear(o.buf)
	o.buf = o.buf[:0]
	for _, rec := range o.drained {
		rec.Release()
	}
	clear(o.drained)
	o.drained = o.drained[:0]
	clear(o.errq)
	o.errq = o.errq[:0]
	o.bound = nil
}

// finiteError is the error of a rule that reads a NaN or an infinity.
type finiteError struct {
	field string
	v     float64
}

func (e *finiteError) Error() string {
	return fmt.Sprintf("field %s is not a finite number (%v)", e.field, e.v)
}

// finite returns an error when one of the float64 columns cols holds a
// NaN or an infinity at row: comparisons with those say nothing about the
// asset, so they neither raise nor clear.
func (o *Operator) finite(cols []int, row int) error {
	for _, c := range cols {
		a := o.f64[c]
		if a == nil || a.IsNull(row) {
			continue // a null is the expression's error
		}
		if v := a.Value(row); math.IsNaN(v) || math.IsInf(v, 0) {
			return &finiteError{field: o.in.Fields[c].Name, v: v}
		}
	}
	return nil
}

// sweep forgets the assets with no alert pending or raised and no row for
// key_idle. It runs once key_idle of event time has passed since the last
// sweep and at least a quarter as many rows as there are states have been
// evaluated, so that its cost per row stays constant.
func (o *Operator) sweep() {
	if o.now-o.lastSweep < o.p.idle || o.rows < len(o.states)/4 {
		return
	}
	o.lastSweep, o.rows = o.now, 0
	for k, as := range o.states {
		if o.now-as.seen >= o.p.idle && as.class() == 0 {
			o.forget(k, as)
			o.cIdle.Add(1)
		}
	}
}

// forget drops the state of an asset.
func (o *Operator) forget(key string, as *assetState) {
	delete(o.states, key)
	if o.last == as {
		o.last = nil
	}
}

// maxLoggedEvictions is how many forgotten raised alerts are logged one by
// one; later ones are logged as a count per eviction round.
const maxLoggedEvictions = 10

// rankedState is an asset state with its class (see assetState.class),
// worked out once per makeRoom.
type rankedState struct {
	class int
	as    *assetState
}

// makeRoom forgets a sixteenth of max_keys states (at least one), the
// least harmful first: states with every rule inactive, then pending
// conditions, then raised alerts, each class by age of the latest row.
// Evicting in rounds keeps the cost per new asset constant.
func (o *Operator) makeRoom() {
	need := len(o.states) - o.p.maxKeys + max(1, o.p.maxKeys/16)
	all := o.scratch[:0]
	for _, as := range o.states {
		all = append(all, rankedState{class: as.class(), as: as})
	}
	slices.SortFunc(all, func(a, b rankedState) int {
		if c := a.class - b.class; c != 0 {
			return c
		}
		if c := cmp.Compare(a.as.seen, b.as.seen); c != 0 {
			return c
		}
		return strings.Compare(a.as.key, b.as.key)
	})
	unlogged := 0
	for _, r := range all[:min(need, len(all))] {
		as := r.as
		switch r.class {
		case 0:
			o.cFull.Add(1)
		case 1:
			o.cPending.Add(1)
		default:
			for ri := range as.rules {
				st := &as.rules[ri]
				if !st.active {
					continue
				}
				o.cEvRaised.Add(1)
				if o.loggedEvicted < maxLoggedEvictions {
					o.loggedEvicted++
					o.log.Warn("forgetting a raised alert to stay within max_keys: it gets no clear row",
						"id", st.id, "asset", as.key, "rule", o.p.rules[ri].name,
						"occur_time", time.UnixMilli(st.start).UTC(), "max_keys", o.p.maxKeys)
				} else {
					unlogged++
				}
			}
		}
		o.forget(as.key, as)
	}
	if unlogged > 0 {
		o.log.Warn("forgot more raised alerts to stay within max_keys: they get no clear row",
			"alerts", unlogged, "evicted_raised", o.cEvRaised.Load(), "max_keys", o.p.maxKeys)
	}
	clear(all)
	clear(all) // no pointers kept to forgotten states
	o.scratch = all[:0]
}

// Defaults of the state bounds.
const (
	// DefaultMaxKeys is the default of max_keys: the most assets the step
	// keeps rule states for.
	DefaultMaxKeys = 100_000
	// maxMaxKeys is the largest max_keys accepted.
	maxMaxKeys = 10_000_000
	// DefaultMaxKeyBytes is the default of max_key_bytes: the longest
	// asset key.
	DefaultMaxKeyBytes = 256
	// maxMaxKeyBytes is the largest max_key_bytes accepted.
	maxMaxKeyBytes = 1 << 16
)
