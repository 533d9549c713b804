// Package eventtime checks the event times a source produces before any step
// sees them. A device whose clock is wrong, or a hostile post, can carry any
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
// ahead of the engine clock, behind it, or outside years 0001-9999.
const (
	FutureRows     = "future_time_rows"
	PastRows       = "past_time_rows"
	OutOfRangeRows = "out_of_range_rows"
)

// Counters lists the counters of rows a guard refuses.
var Counters = []string{FutureRows, PastRows, OutOfRangeRows}

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
	// Now is the engine's clock (default time.Now).
	Now func() time.Time
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

	cFuture, cPast, cRange *atomic.Int64
	lastLog                time.Time
	unlogged               int64
	closed                 bool
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
	if g.timeCol < 0 || b.Rec == nil || b.Rec.NumRows() == 0 {
		return emit(0, b)
	}
	tcol, ok := b.Rec.Column(g.timeCol).(*array.Timestamp)
	if !ok {
		return emit(0, b)
	}
	now := g.p.Now().UnixMilli()
	hi, lo := int64(math.MaxInt64), int64(math.MinInt64)
	if g.p.MaxFuture > 0 {
		hi = now + g.p.MaxFuture.Milliseconds()
	}
	if g.p.MaxPast > 0 {
		lo = now - g.p.MaxPast.Milliseconds()
	}
	// Times outside years 0001-9999 are refused whatever the policy.
	lo, hi = max(lo, engine.MinEventTime), min(hi, engine.MaxEventTime)
	var hist *array.Boolean
	if g.histCol >= 0 {
		hist, _ = b.Rec.Column(g.histCol).(*array.Boolean)
	}
	times := tcol.TimestampValues()
	n := len(times)
	bad := 0
	for r := 0; r < n; r++ {
		t := int64(times[r])
		if t >= lo && t <= hi || tcol.IsNull(r) {
			continue
		}
		if t < lo && t >= engine.MinEventTime && hist != nil && hist.IsValid(r) && hist.Value(r) {
			continue // history is old on purpose
		}
		bad++
		g.errs.Add(r, "", g.reject(t, now))
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
	g.log.Warn("event times out of bounds: rows sent to the errors port",
		"rows", g.unlogged, FutureRows, g.cFuture.Load(), PastRows, g.cPast.Load(), OutOfRangeRows, g.cRange.Load())
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
