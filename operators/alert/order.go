package alert

import (
	"fmt"
	"hash/fnv"
	"math"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/eventtime"
	"github.com/sluice-edge/sluice/engine/spec"
	"github.com/sluice-edge/sluice/engine/statecodec"
)

// Evaluation orders (the order field).
const (
	// OrderEventTime evaluates the rows of each asset in event-time order
	// up to the watermark.
	OrderEventTime = "event_time"
	// OrderArrival evaluates rows as they arrive.
	OrderArrival = "arrival"
)

// Bounds of the event-time order.
const (
	// DefaultMaxBufferedRows is the default of max_buffered_rows.
	DefaultMaxBufferedRows = 100_000
	// maxMaxBufferedRows is the largest max_buffered_rows accepted.
	maxMaxBufferedRows = 10_000_000
)

// orderFields are the fields that only the event-time order reads.
var orderFields = []string{"lateness", "watermark_keys", "watermark_idle_rows", "max_buffered_rows"}

// parseOrder reads the order fields: the order defaults to arrival when
// the input is already in event-time order per key (a window step's
// windows), else to event_time.
func (p *plan) parseOrder(cfg *spec.Config, bc engine.BuildContext) spec.Errors {
	var errs spec.Errors
	p.order = OrderEventTime
	if bc.InputKeyOrdered {
		p.order = OrderArrival
	}
	if cfg.Has("order") {
		p.order = cfg.String("order")
	}
	p.lateness = int64(cfg.Duration("lateness") / time.Millisecond)
	var wmErrs spec.Errors
	p.wmKeys, p.wmIdle, wmErrs = eventtime.ParseWatermark(cfg)
	p.maxBuffered = int(min(max(cfg.Int("max_buffered_rows"), math.MinInt32), math.MaxInt32))
	if p.order == OrderArrival {
		for _, f := range orderFields {
			if !cfg.Has(f) {
				continue
			}
			why := "order: arrival"
			if !cfg.Has("order") {
				why = "the input is a window step's windows, already in event-time order per asset (set order: event_time to order them again)"
			}
			errs = append(errs, cfg.Errorf(f, "%s orders rows by event time, but the step evaluates them in arrival order: %s", f, why))
		}
		return errs
	}
	if d := cfg.Duration("lateness"); d < 0 {
		errs = append(errs, cfg.Errorf("lateness", "lateness must not be negative, got %v", d))
	}
	errs = append(errs, wmErrs...)
	if n := cfg.Int("max_buffered_rows"); n < 1 || n > maxMaxBufferedRows {
		errs = append(errs, cfg.Errorf("max_buffered_rows", "max_buffered_rows must be between 1 and %d, got %d", maxMaxBufferedRows, n))
	}
	return errs
}

// bufRec is a record some of whose rows wait in the buffer; it is released
// once none does.
type bufRec struct {
	rec arrow.RecordBatch
	n   int // rows of rec in the buffer
}

// bufRow is a row waiting for the watermark.
type bufRow struct {
	t   int64
	seq uint64 // arrival order
	key string // aliases ref.rec
	ref *bufRec
	row int32
}

// before orders buffered rows: by event time, then asset, then arrival.
func (a *bufRow) before(b *bufRow) bool {
	if a.t != b.t {
		return a.t < b.t
	}
	if a.key != b.key {
		return a.key < b.key
	}
	return a.seq < b.seq
}

// rowHeap is a min-heap of buffered rows (see bufRow.before).
type rowHeap []bufRow

func (h *rowHeap) push(r bufRow) {
	*h = append(*h, r)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !s[i].before(&s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *rowHeap) pop() bufRow {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s[n] = bufRow{}
	s = s[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && s[r].before(&s[l]) {
			m = r
		}
		if !s[m].before(&s[i]) {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// kid identifies an asset key in the watermark's marks: a hash, so that
// marks need no asset state (two keys of one hash count as one asset).
func kid(key string) int32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int32(h.Sum32() & math.MaxInt32)
}

// earlyError is the reason of a row older than a row of its asset that
// was evaluated already (early, beyond max_buffered_rows, or by a step
// that evaluated in arrival order).
func earlyError(t, seen int64) error {
	return fmt.Errorf("late: event time %s is before the asset's latest evaluated row at %s", engine.FormatEventTime(t), engine.FormatEventTime(seen))
}

// writeOrder appends the event-time order state: the watermark, the
// sources' marks and the buffered rows in evaluation order.
func (o *Operator) writeOrder(w *statecodec.Writer) {
	w.Varint(o.wm)
	w.Uvarint(uint64(len(o.srcs)))
	for _, m := range o.srcs {
		w.Varint(int64(m.Src))
		w.Varint(m.Max)
		w.Uvarint(uint64(m.Rows))
		w.Uvarint(uint64(m.Hit))
		w.Uvarint(uint64(len(m.Top)))
		for _, e := range m.Top {
			w.Varint(int64(e.Kid))
			w.Varint(e.Max)
			w.Uvarint(uint64(e.Seen))
		}
	}
	rows := o.sortedBuffer()
	w.Uvarint(uint64(len(rows)))
	for _, r := range rows {
		rec, i := r.ref.rec, int(r.row)
		for c, f := range o.in.Fields {
			col := rec.Column(c)
			if col.IsNull(i) {
				w.Byte(0)
				continue
			}
			w.Byte(1)
			switch f.Type {
			case engine.Float64:
				w.Float64(col.(*array.Float64).Value(i))
			case engine.Int64:
				w.Varint(col.(*array.Int64).Value(i))
			case engine.String:
				w.String(col.(*array.String).Value(i))
			case engine.Bool:
				w.Bool(col.(*array.Boolean).Value(i))
			case engine.Timestamp:
				w.Varint(int64(col.(*array.Timestamp).Value(i)))
			}
		}
	}
}

// sortedBuffer returns the buffered rows in evaluation order.
func (o *Operator) sortedBuffer() []bufRow {
	h := append(rowHeap(nil), o.buf...)
	out := make([]bufRow, 0, len(h))
	for len(h) > 0 {
		out = append(out, h.pop())
	}
	return out
}

// orderState is the event-time order state read from a snapshot.
type orderState struct {
	wm   int64
	srcs []*eventtime.SourceMark
	rec  arrow.RecordBatch // the buffered rows, in order; nil for none
}

// maxStateSources bounds the sources a state may declare.
const maxStateSources = 1 << 16

// maxStringBytes bounds a string value of a buffered row in a state.
const maxStringBytes = 1 << 30

// readOrder reads the event-time order state written by writeOrder. The
// record it returns holds the buffered rows; the caller releases it.
func (o *Operator) readOrder(r *statecodec.Reader) orderState {
	st := orderState{wm: r.Varint()}
	ns := r.Count(maxStateSources, 5, "sources")
	for range ns {
		if r.Err() != nil {
			break
		}
		m := eventtime.NewSourceMark(int(r.Int(math.MinInt32, math.MaxInt32, "source")))
		m.Max = r.Varint()
		m.Rows = int64(r.Uint(math.MaxInt64, "source rows"))
		m.Hit = int(r.Uint(2*eventtime.MaxWatermarkKeys, "source hit"))
		nt := r.Count(2*eventtime.MaxWatermarkKeys, 3, "key marks")
		for range nt {
			e := eventtime.KeyMark{Kid: int32(r.Int(math.MinInt32, math.MaxInt32, "key mark")), Max: r.Varint()}
			e.Seen = int64(r.Uint(uint64(m.Rows), "key mark row"))
			m.Top = append(m.Top, e)
		}
		for _, p := range st.srcs {
			if p.Src == m.Src {
				r.Failf("source %d repeated", m.Src)
			}
		}
		st.srcs = append(st.srcs, m)
	}
	n := r.Count(maxMaxBufferedRows, len(o.in.Fields), "buffered rows")
	if n == 0 || r.Err() != nil {
		return st
	}
	rb := engine.NewRecordBuilder(o.mem, o.in)
	defer rb.Release()
	for range n {
		if r.Err() != nil {
			break
		}
		for c, f := range o.in.Fields {
			b := rb.Columns[c]
			switch r.Byte() {
			case 0:
				if c == o.p.timeCol || c == o.p.keyCol {
					r.Failf("buffered row without %s", f.Name)
				}
				b.AppendNull()
				continue
			case 1:
			default:
				r.Failf("buffered value flag")
			}
			switch f.Type {
			case engine.Float64:
				b.(*array.Float64Builder).Append(r.Float64())
			case engine.Int64:
				b.(*array.Int64Builder).Append(r.Varint())
			case engine.String:
				limit := maxStringBytes
				if c == o.p.keyCol {
					limit = o.p.maxKeyBytes
				}
				b.(*array.StringBuilder).Append(r.String(limit, f.Name))
			case engine.Bool:
				b.(*array.BooleanBuilder).Append(r.Bool())
			case engine.Timestamp:
				b.(*array.TimestampBuilder).Append(arrow.Timestamp(r.Varint()))
			}
		}
		rb.RowDone()
	}
	rec := rb.NewRecord()
	if r.Err() != nil {
		rec.Release()
		return st
	}
	st.rec = rec
	return st
}

// restoreOrder replaces the step's event-time order state with st, whose
// record it takes.
func (o *Operator) restoreOrder(st orderState) {
	o.dropBuffer()
	o.wm, o.srcs, o.seq = st.wm, st.srcs, 0
	if st.rec == nil {
		return
	}
	ref := &bufRec{rec: st.rec}
	times := st.rec.Column(o.p.timeCol).(*array.Timestamp)
	var keys *array.String
	if o.p.keyCol >= 0 {
		keys = st.rec.Column(o.p.keyCol).(*array.String)
	}
	for i := range int(st.rec.NumRows()) {
		key := ""
		if keys != nil {
			key = keys.Value(i)
		}
		ref.n++
		o.buf.push(bufRow{t: int64(times.Value(i)), seq: o.seq, key: key, ref: ref, row: int32(i)})
		o.seq++
	}
}
