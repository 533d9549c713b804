// Package alert provides the "alert" step: asset-oriented alert rules over
// a stream (typically window statistics), with hold durations in event
// time, hysteresis, per-model rules and per-asset thresholds read from asset
// attributes.
//
// Each rule keeps a small state per asset (inactive, pending since t, or
// raised). Rows are evaluated in arrival order, so the same input gives the
// same alerts — with the same ids — whatever the batch sizes. Evaluating a
// row allocates nothing; raising and clearing build the alert row and render
// its content.
package alert

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/assets"
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
	pending bool  // the condition holds since start, not raised yet
	active  bool  // raised, not cleared
	start   int64 // when the condition started to hold (ms)
	id      string
}

// assetState holds the rule states of one asset (one key value).
type assetState struct {
	key   string
	asset *assets.Asset // nil when the key is not in the assets file
	attrs map[string]any
	rules []state
}

// Operator is the "alert" step.
type Operator struct {
	p        *plan
	in       *engine.Schema
	fr       *rowexpr.Frame
	pipeline string
	step     string

	states map[string]*assetState
	last   *assetState

	rb      *engine.RecordBuilder
	errs    *rowexpr.ErrorRows
	ports   []engine.Port
	data    map[string]any // template data, reused
	allCols []int
	sb      strings.Builder

	cRaised, cCleared, cErr *atomic.Int64
	// skipped counts history rows not evaluated (alert_on_history false).
	skipped           *atomic.Int64
	timeNull, keyNull error
	closed            bool
}

var _ engine.Operator = (*Operator)(nil)

// New builds an alert step for input schema in from a configuration parsed
// with Spec. Configuration errors carry their file:line:col; errors in the
// assets file carry the assets file's positions.
func New(cfg *spec.Config, in *engine.Schema, bc engine.BuildContext) (*Operator, error) {
	p, err := parsePlan(cfg, in, bc.Dir)
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
		p:        p,
		in:       in,
		fr:       p.env.NewFrame(),
		pipeline: bc.Pipeline,
		step:     bc.Name,
		states:   map[string]*assetState{},
		data:     map[string]any{},
		cRaised:  counters.Counter("raised"),
		cCleared: counters.Counter("cleared"),
		cErr:     counters.Counter("error_rows"),
		skipped:  counters.Counter("history_rows_skipped"),
		timeNull: &rowexpr.NullError{Field: in.Fields[p.timeCol].Name},
		rb:       engine.NewRecordBuilder(mem, engine.AlertSchema),
		errs:     rowexpr.NewErrorRows(mem, in),
	}
	for i := range in.Fields {
		o.allCols = append(o.allCols, i)
	}
	if p.keyCol >= 0 {
		o.keyNull = &rowexpr.NullError{Field: in.Fields[p.keyCol].Name}
	}
	o.ports = []engine.Port{{Schema: engine.AlertSchema}, {Name: rowexpr.ErrorPort, Schema: o.errs.Schema()}}
	return o, nil
}

// Outputs returns the main port (alert rows of engine.AlertSchema) and the
// "errors" port.
func (o *Operator) Outputs() []engine.Port { return o.ports }

// Process evaluates the rules on every row of b, in order, and emits the
// alerts raised and cleared by the batch.
func (o *Operator) Process(b engine.Batch, emit engine.PortEmit) error {
	defer b.Release()
	if o.closed {
		return errors.New("alert: Process after Close")
	}
	rec := b.Rec
	if err := o.fr.Bind(rec); err != nil {
		return fmt.Errorf("alert: %w", err)
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
	n := int(rec.NumRows())
	for i := range n {
		if hist != nil && hist.IsValid(i) && hist.Value(i) {
			o.skipped.Add(1)
			continue
		}
		if times.IsNull(i) {
			o.errs.Add(i, "", o.timeNull)
			continue
		}
		t := int64(times.Value(i))
		key := ""
		if keys != nil {
			if keys.IsNull(i) {
				o.errs.Add(i, "", o.keyNull)
				continue
			}
			key = keys.Value(i)
		}
		as := o.lookup(key)
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
			if err := o.eval(r, &as.rules[ri], as, rec, i, t); err != nil {
				o.errs.Add(i, r.prefix, err)
			}
		}
	}
	o.cErr.Add(int64(o.errs.Len()))
	errRec := o.errs.Record(rec)
	out := o.rb.NewRecord()
	if out != nil {
		if err := emit(0, engine.Batch{Rec: out, Source: b.Source}); err != nil {
			if errRec != nil {
				errRec.Release()
			}
			return err
		}
	}
	if errRec != nil {
		return emit(ErrorsPort, engine.Batch{Rec: errRec, Source: b.Source})
	}
	return nil
}

// lookup returns the state of an asset, creating it on first sight. key
// may point into the record; it is copied when stored.
func (o *Operator) lookup(key string) *assetState {
	if o.last != nil && o.last.key == key {
		return o.last
	}
	as, ok := o.states[key]
	if !ok {
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

// eval advances one rule's state on one row.
func (o *Operator) eval(r *rule, st *state, as *assetState, rec arrow.RecordBatch, row int, t int64) error {
	if !st.active {
		ok, err := o.fr.Bool(r.cond)
		if err != nil {
			return err
		}
		if !ok {
			st.pending = false
			return nil
		}
		if !st.pending {
			st.pending, st.start = true, t
		}
		if t-st.start >= r.hold {
			st.pending, st.active = false, true
			st.id = alertID(o.pipeline, o.step, r.name, as.key, st.start)
			o.appendAlert(r, st, as, rec, row, t, engine.AlertRaised)
			o.cRaised.Add(1)
		}
		return nil
	}
	var done bool
	if r.clear != nil {
		c, err := o.fr.Bool(r.clear)
		if err != nil {
			return err
		}
		done = c
	} else {
		ok, err := o.fr.Bool(r.cond)
		if err != nil {
			return err
		}
		done = !ok
	}
	if done {
		o.appendAlert(r, st, as, rec, row, t, engine.AlertCleared)
		st.active, st.id = false, ""
		o.cCleared.Add(1)
	}
	return nil
}

// alertID is the stable id of an alert: a hash of where it comes from and
// when its condition started to hold.
func alertID(pipeline, step, rule, asset string, occur int64) string {
	h := sha256.New()
	for _, s := range []string{pipeline, step, rule, asset} {
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
		if v, err := o.fr.Float64(r.value); err == nil {
			value, hasValue = v, true
		}
	}
	content := o.render(r, as, rec, row, t, value, hasValue)
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
	o.sb.Reset()
	if err := r.content.tmpl.Execute(&o.sb, d); err != nil {
		return "content: " + err.Error()
	}
	s := o.sb.String()
	clear(d)
	return s
}

// Flush emits nothing: raised alerts stay raised until a row clears them,
// and pending conditions are not raised at the end of input.
func (o *Operator) Flush(engine.PortEmit) error { return nil }

// Close releases the step's memory. It is idempotent.
func (o *Operator) Close() error {
	if o.closed {
		return nil
	}
	o.closed = true
	o.rb.Release()
	o.errs.Release()
	o.states, o.last = nil, nil
	return nil
}
