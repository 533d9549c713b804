// Package eventtime checks the event times a source produces before any step
// sees them, and the values of the columns a thing model bounds. A device whose clock is wrong, or a hostile post, can carry any
// time; one such row would otherwise open windows decades away or, moving
// the watermark, make every later row of every device late. The guard sends
// rows too far ahead of the engine's clock, or too far behind it, to the
// source's errors port with the reason, and counts them.
package eventtime

import (
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/rowexpr"
)

// Defaults of a pipeline's event_time policy.
const (
	DefaultMaxFuture = 10 * time.Minute
	DefaultMaxPast   = 30 * 24 * time.Hour
)

// Counters a guard keeps in its source's counters: rows refused for a time
// ahead of the engine clock, behind it, or outside years 0001-9999, and
// rows refused for a value outside its point's range (Policy.Ranges).
const (
	FutureRows     = "future_time_rows"
	PastRows       = "past_time_rows"
	OutOfRangeRows = "out_of_range_rows"
	ValueRangeRows = "value_range_rows"
)

// Counters lists the counters of rows a guard refuses.
var Counters = []string{FutureRows, PastRows, OutOfRangeRows, ValueRangeRows}

// ErrorsPort is the index of the errors port of a guarded source.
const ErrorsPort = 1

// Policy says which event times a source may produce.
type Policy struct {
	// MaxFuture is how far ahead of the engine's clock an event time may
	// be; 0 sets no bound.
	MaxFuture time.Duration
	// MaxPast is how far behind the engine's clock an event time may be;
	// 0 sets no bound. Rows flagged as history are exempt.
	MaxPast time.Duration
	// HistoryColumn names a bool column whose true rows are history
	// (offline data sent late on purpose) and exempt from MaxPast. A name
	// the schema lacks, or empty, exempts nothing.
	HistoryColumn string
	// Ranges bound the values of numeric (float64 or int64) columns: a
	// row with a value below Min, above Max, or NaN is refused. Nulls
	// pass.
	Ranges []engine.ValueRange
	// Now is the engine's clock (default time.Now).
	Now func() time.Time
}

// rangeCol is a range resolved against the schema.
type rangeCol struct {
	engine.ValueRange
	col   int
	isInt bool
	// The column of the record being checked.
	f *array.Float64
	i *array.Int64
}

// Guard is the operator that applies a Policy to the rows of one source.
// Times outside years 0001-9999 are rejected whatever the policy. Rows
// without a time pass (the steps that need one say so).
type Guard struct {
	p       Policy
	in      *engine.Schema
	timeCol int
	histCol int
	ports   []engine.Port
	errs    *rowexpr.ErrorRows
	keep    []int32
	mem     memory.Allocator
	log     *slog.Logger

	ranges []rangeCol

	cFuture, cPast, cRange, cValue *atomic.Int64
	lastLog                        time.Time
	unlogged                       int64
	closed                         bool
}

var _ engine.Operator = (*Guard)(nil)

// New returns a guard for rows of schema in.
func New(p Policy, in *engine.Schema, bc engine.BuildContext) (*Guard, error) {
	if p.MaxFuture < 0 || p.MaxPast < 0 {
		return nil, fmt.Errorf("event_time: bounds must not be negative")
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	mem := bc.Mem
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	counters := bc.Counters
	if counters == nil {
		counters = engine.NewCounters()
	}
	log := bc.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Guard{
		p: p, in: in, timeCol: in.TimeIndex(), histCol: -1, mem: mem, log: log,
		cFuture: counters.Counter(FutureRows),
		cPast:   counters.Counter(PastRows),
		cRange:  counters.Counter(OutOfRangeRows),
		cValue:  counters.Counter(ValueRangeRows),
	}
	for _, r := range p.Ranges {
		f, ok := in.Lookup(r.Column)
		switch {
		case !ok:
			return nil, fmt.Errorf("range of %s: no column %q", r.Point, r.Column)
		case f.Type != engine.Float64 && f.Type != engine.Int64:
			return nil, fmt.Errorf("range of %s: column %q is %s, not a number", r.Point, r.Column, f.Type)
		case math.IsNaN(r.Min) || math.IsNaN(r.Max) || r.Min > r.Max:
			return nil, fmt.Errorf("range of %s: bounds [%g, %g] are not a range", r.Point, r.Min, r.Max)
		}
		g.ranges = append(g.ranges, rangeCol{ValueRange: r, col: in.Index(r.Column), isInt: f.Type == engine.Int64})
	}
	if p.HistoryColumn != "" {
		if f, ok := in.Lookup(p.HistoryColumn); ok && f.Type == engine.Bool {
			g.histCol = in.Index(p.HistoryColumn)
		}
	}
	g.errs = rowexpr.NewErrorRows(mem, in)
	g.ports = []engine.Port{{Schema: in}, {Name: rowexpr.ErrorPort, Schema: g.errs.Schema()}}
	return g, nil
}

// Outputs returns the main port (rows whose time passed) and the errors
// port (rows rejected, with the reason).
func (g *Guard) Outputs() []engine.Port { return g.ports }

// Process passes b on unchanged when every row's time is acceptable, and
// splits it otherwise.
func (g *Guard) Process(b engine.Batch, emit engine.PortEmit) error {
	if b.Rec == nil || b.Rec.NumRows() == 0 {
		return emit(0, b)
	}
	n := int(b.Rec.NumRows())
	now := g.p.Now().UnixMilli()
	t := g.times(b.Rec, now)
	// Ranges are checked row by row only when some value of a column
	// looks out of range (nulls may hold anything): rarely.
	checkRanges := false
	for i := range g.ranges {
		checkRanges = g.ranges[i].bind(b.Rec.Column(g.ranges[i].col)) || checkRanges
	}
	bad := 0
	for r := 0; r < n; r++ {
		if t.col != nil && !t.ok(r) {
			bad++
			g.errs.Add(r, "", g.reject(int64(t.values[r]), now))
			continue
		}
		if !checkRanges {
			continue
		}
		for i := range g.ranges {
			rc := &g.ranges[i]
			v, ok := rc.value(r)
			if !ok || v >= rc.Min && v <= rc.Max {
				continue
			}
			bad++
			g.cValue.Add(1)
			g.errs.Add(r, "", rc.reason(v))
			break
		}
	}
	if bad == 0 {
		return emit(0, b)
	}
	// List the kept rows in a second pass: rejections are rare.
	g.keep = g.keep[:0]
	rejected := g.errs.Rows()
	j := 0
	for r := 0; r < n; r++ {
		if j < len(rejected) && int(rejected[j]) == r {
			j++
			continue
		}
		g.keep = append(g.keep, int32(r))
	}
	g.logRejected(bad)
	errRec := g.errs.Record(b.Rec)
	var main arrow.RecordBatch
	if len(g.keep) > 0 {
		rb := engine.NewRecordBuilder(g.mem, g.in)
		rowexpr.AppendRows(rb, b.Rec, g.keep)
		main = rb.NewRecord()
		rb.Release()
	}
	b.Release()
	if main != nil {
		if err := emit(0, engine.Batch{Rec: main, Source: b.Source}); err != nil {
			errRec.Release()
			return err
		}
	}
	return emit(ErrorsPort, engine.Batch{Rec: errRec, Source: b.Source})
}

// timeCheck is the time column of one record and its bounds.
type timeCheck struct {
	col    *array.Timestamp // nil: no time to check
	values []arrow.Timestamp
	lo, hi int64
	hist   *array.Boolean
}

// times returns the check of rec's event times against the policy.
func (g *Guard) times(rec arrow.RecordBatch, now int64) timeCheck {
	if g.timeCol < 0 {
		return timeCheck{}
	}
	tcol, ok := rec.Column(g.timeCol).(*array.Timestamp)
	if !ok {
		return timeCheck{}
	}
	c := timeCheck{col: tcol, values: tcol.TimestampValues(), hi: int64(math.MaxInt64), lo: int64(math.MinInt64)}
	if g.p.MaxFuture > 0 {
		c.hi = now + g.p.MaxFuture.Milliseconds()
	}
	if g.p.MaxPast > 0 {
		c.lo = now - g.p.MaxPast.Milliseconds()
	}
	// Times outside years 0001-9999 are refused whatever the policy.
	c.lo, c.hi = max(c.lo, engine.MinEventTime), min(c.hi, engine.MaxEventTime)
	if g.histCol >= 0 {
		c.hist, _ = rec.Column(g.histCol).(*array.Boolean)
	}
	return c
}

// ok reports whether row r's time passes.
func (c *timeCheck) ok(r int) bool {
	t := int64(c.values[r])
	if t >= c.lo && t <= c.hi || c.col.IsNull(r) {
		return true
	}
	// History is old on purpose.
	return t < c.lo && t >= engine.MinEventTime && c.hist != nil && c.hist.IsValid(r) && c.hist.Value(r)
}

// bind points the range at the column of the record being checked and
// reports whether some value of it, null or not, is out of range.
func (rc *rangeCol) bind(col arrow.Array) bool {
	rc.f, rc.i = nil, nil
	if rc.isInt {
		rc.i, _ = col.(*array.Int64)
		if rc.i == nil {
			return false
		}
		for _, v := range rc.i.Int64Values() {
			if f := float64(v); f < rc.Min || f > rc.Max {
				return true
			}
		}
		return false
	}
	rc.f, _ = col.(*array.Float64)
	if rc.f == nil {
		return false
	}
	for _, v := range rc.f.Float64Values() {
		if !(v >= rc.Min && v <= rc.Max) {
			return true
		}
	}
	return false
}

// value reads the bound column's value at row r; ok is false for a null.
func (rc *rangeCol) value(r int) (float64, bool) {
	switch {
	case rc.f != nil:
		return rc.f.Value(r), rc.f.IsValid(r)
	case rc.i != nil:
		return float64(rc.i.Value(r)), rc.i.IsValid(r)
	}
	return 0, false
}

// reason says why a value is out of its range.
func (rc *rangeCol) reason(v float64) error {
	bounds := "[" + bound(rc.Min) + ", " + bound(rc.Max) + "]"
	if math.IsNaN(v) {
		return fmt.Errorf("%s: value NaN is not a number (range %s of point %s)", rc.Column, bounds, rc.Point)
	}
	return fmt.Errorf("%s: value %s is outside the range %s of point %s", rc.Column, strconv.FormatFloat(v, 'g', -1, 64), bounds, rc.Point)
}

func bound(f float64) string {
	switch {
	case math.IsInf(f, -1):
		return "-inf"
	case math.IsInf(f, 1):
		return "+inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// reject counts a rejected time and returns the reason.
func (g *Guard) reject(t, now int64) error {
	switch {
	case !engine.ValidEventTime(t):
		g.cRange.Add(1)
		return fmt.Errorf("event time %s is outside years 0001-9999", strconv.FormatInt(t, 10))
	case t > now:
		g.cFuture.Add(1)
		return fmt.Errorf("event time %s is %s ahead of the engine clock (event_time.max_future %s)",
			engine.FormatEventTime(t), span(t-now), g.p.MaxFuture)
	default:
		g.cPast.Add(1)
		return fmt.Errorf("event time %s is %s behind the engine clock (event_time.max_past %s)",
			engine.FormatEventTime(t), span(now-t), g.p.MaxPast)
	}
}

// logRejected logs rejections at most once a minute, with the count of
// those not logged.
func (g *Guard) logRejected(n int) {
	now := g.p.Now()
	g.unlogged += int64(n)
	if now.Sub(g.lastLog) < time.Minute {
		return
	}
	g.lastLog = now
	g.log.Warn("event times or values out of bounds: rows sent to the errors port",
		"rows", g.unlogged, FutureRows, g.cFuture.Load(), PastRows, g.cPast.Load(), OutOfRangeRows, g.cRange.Load(), ValueRangeRows, g.cValue.Load())
	g.unlogged = 0
}

// span renders a positive duration in milliseconds for people.
func span(ms int64) string {
	const day = 24 * 3600 * 1000
	if ms >= 2*day {
		return strconv.FormatInt(ms/day, 10) + " days"
	}
	return (time.Duration(ms) * time.Millisecond).Round(time.Second).String()
}

// Flush does nothing: the guard holds no rows.
func (g *Guard) Flush(engine.PortEmit) error { return nil }

// Close releases the guard. It is idempotent.
func (g *Guard) Close() error {
	if !g.closed {
		g.closed = true
		g.errs.Release()
	}
	return nil
}
