package window_test

import (
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/spec"
	"github.com/sluice-edge/sluice/operators/window"
)

// testSchema is the input of most tests.
var testSchema = engine.MustSchema([]engine.Field{
	{Name: "time", Type: engine.Timestamp},
	{Name: "asset", Type: engine.String},
	{Name: "power", Type: engine.Float64},
	{Name: "wind", Type: engine.Float64},
	{Name: "status", Type: engine.Int64},
	{Name: "label", Type: engine.String},
}, "time", "asset")

const (
	colTime = iota
	colAsset
	colPower
	colWind
	colStatus
	colLabel
)

// fullAggs exercises every function.
const fullAggs = `
aggregates:
  power: [count, sum, avg, min, max, stddev, first, last, p50, p95, p99]
  status: [sum, avg, min, max, first, last]
  wind: [avg, stddev, p999]
  label: [count]
`

func parseCfg(t testing.TB, src string) (*spec.Config, error) {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	cfg, errs := window.Spec.Parse("test.yaml", &doc)
	if len(errs) > 0 {
		return nil, errs
	}
	return cfg, nil
}

func newOp(t testing.TB, src string, in *engine.Schema, mem memory.Allocator, counters *engine.Counters) *window.Operator {
	t.Helper()
	cfg, err := parseCfg(t, src)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	op, err := window.New(cfg, in, engine.BuildContext{Mem: mem, Counters: counters, Batch: engine.BatchPolicy{Size: 100}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return op
}

// feed runs batches (each with its source) through a fresh operator and
// returns what it emitted, checking that every byte of Arrow memory is
// released.
type batchIn struct {
	rows   []enginetest.Row
	source int
}

func run(t testing.TB, src string, in *engine.Schema, batches []batchIn) (*enginetest.Collector, *engine.Counters) {
	t.Helper()
	return runMem(t, true, src, in, batches)
}

// runMem is run with a choice of allocator: the checked allocator records a
// stack trace per allocation, which is slow for thousands of tiny batches.
func runMem(t testing.TB, checked bool, src string, in *engine.Schema, batches []batchIn) (*enginetest.Collector, *engine.Counters) {
	t.Helper()
	var mem interface {
		memory.Allocator
		AssertSize(t memory.TestingT, sz int)
	} = memory.NewCheckedAllocator(memory.NewGoAllocator())
	if !checked {
		mem = uncheckedAlloc{memory.NewGoAllocator()}
	}
	counters := engine.NewCounters()
	op := newOp(t, src, in, mem, counters)
	col := enginetest.NewCollector()
	for _, b := range batches {
		rec := enginetest.Record(mem, in, b.rows...)
		if err := op.Process(engine.Batch{Rec: rec, Source: b.source}, col.Emit); err != nil {
			t.Fatalf("Process: %v", err)
		}
	}
	if err := op.Flush(col.Emit); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if err := op.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	mem.AssertSize(t, 0)
	return col, counters
}

// encodeRows renders rows as bytes: floats with strconv 'g' -1, so two
// encodings are equal only when every value is bit-identical (NaN aside).
func encodeRows(rows []enginetest.Row) []byte {
	var b []byte
	for _, r := range rows {
		b = append(b, '[')
		for i, v := range r {
			if i > 0 {
				b = append(b, ',')
			}
			switch x := v.(type) {
			case nil:
				b = append(b, "null"...)
			case float64:
				b = strconv.AppendFloat(b, x, 'g', -1, 64)
				if x == 0 && math.Signbit(x) {
					b = append(b, "(-)"...)
				}
			case int64:
				b = strconv.AppendInt(b, x, 10)
			case string:
				b = strconv.AppendQuote(b, x)
			case bool:
				b = strconv.AppendBool(b, x)
			default:
				panic("unexpected value")
			}
		}
		b = append(b, "]\n"...)
	}
	return b
}

// ---- Naive reference -----------------------------------------------------

// refKey identifies a reference window.
type refKey struct {
	key        any // string or nil
	start, end int64
}

type refWindow struct {
	refKey
	rows []enginetest.Row
}

// refWindows assigns rows to windows the simple way: tumbling and hopping
// by enumerating every window of every row, sessions by sorting a key's
// rows and cutting at gaps. Rows without time are skipped.
func refWindows(rows []enginetest.Row, kind string, size, step, gap, offset int64, keyed bool) []refWindow {
	byKey := map[any][]enginetest.Row{}
	var keys []any
	for _, r := range rows {
		if r[colTime] == nil {
			continue
		}
		var k any
		if keyed {
			k = r[colAsset]
		}
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], r)
	}
	var out []refWindow
	for _, k := range keys {
		rs := byKey[k]
		switch kind {
		case window.Session:
			slices.SortStableFunc(rs, func(a, b enginetest.Row) int { return int(tm(a) - tm(b)) })
			cur := refWindow{refKey: refKey{key: k, start: tm(rs[0])}}
			last := tm(rs[0])
			for _, r := range rs {
				if tm(r)-last >= gap {
					cur.end = last + gap
					out = append(out, cur)
					cur = refWindow{refKey: refKey{key: k, start: tm(r)}}
				}
				cur.rows = append(cur.rows, r)
				last = tm(r)
			}
			cur.end = last + gap
			out = append(out, cur)
		default:
			m := map[int64]*refWindow{}
			for _, r := range rs {
				t := tm(r)
				// every start s = offset + k*step with s <= t < s+size
				first := offset + ceilDiv(t-size+1-offset, step)*step
				for s := first; s <= t; s += step {
					w := m[s]
					if w == nil {
						w = &refWindow{refKey: refKey{key: k, start: s, end: s + size}}
						m[s] = w
					}
					w.rows = append(w.rows, r)
				}
			}
			for _, w := range m {
				out = append(out, *w)
			}
		}
	}
	slices.SortFunc(out, func(a, b refWindow) int {
		if a.end != b.end {
			return cmpInt(a.end, b.end)
		}
		if a.start != b.start {
			return cmpInt(a.start, b.start)
		}
		if a.key == nil || b.key == nil {
			if a.key == nil && b.key != nil {
				return -1
			}
			if b.key == nil && a.key != nil {
				return 1
			}
			return 0
		}
		return strings.Compare(a.key.(string), b.key.(string))
	})
	return out
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func ceilDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a > 0) == (b > 0) {
		q++
	}
	return q
}

func tm(r enginetest.Row) int64 { return r[colTime].(int64) }

// values returns the non-null values of column c as float64.
func values(rows []enginetest.Row, c int) []float64 {
	var out []float64
	for _, r := range rows {
		switch v := r[c].(type) {
		case float64:
			out = append(out, v)
		case int64:
			out = append(out, float64(v))
		}
	}
	return out
}

// exactSum is the exact sum correctly rounded (math/big).
func exactSum(xs []float64) float64 {
	acc := new(big.Float).SetPrec(4000)
	for _, x := range xs {
		acc.Add(acc, new(big.Float).SetPrec(4000).SetFloat64(x))
	}
	f, _ := acc.Float64()
	return f
}

func naiveStddev(xs []float64) float64 {
	var m float64
	for _, x := range xs {
		m += x
	}
	m /= float64(len(xs))
	var s float64
	for _, x := range xs {
		s += (x - m) * (x - m)
	}
	return math.Sqrt(s / float64(len(xs)-1))
}

// nearestRank is the exact nearest-rank quantile q of xs.
func nearestRank(xs []float64, q float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	r := int(math.Ceil(q * float64(len(s))))
	if r < 1 {
		r = 1
	}
	return s[r-1]
}

// firstLast returns the values at the smallest and largest time, ties by
// value (smallest for first, largest for last).
func firstLast(rows []enginetest.Row, c int) (float64, float64) {
	var ft, lt int64
	var fv, lv float64
	have := false
	for _, r := range rows {
		var v float64
		switch x := r[c].(type) {
		case float64:
			v = x
		case int64:
			v = float64(x)
		default:
			continue
		}
		t := tm(r)
		if !have {
			ft, lt, fv, lv, have = t, t, v, v, true
			continue
		}
		if t < ft || (t == ft && v < fv) {
			ft, fv = t, v
		}
		if t > lt || (t == lt && v > lv) {
			lt, lv = t, v
		}
	}
	return fv, lv
}

func relClose(got, want, tol float64) bool {
	if got == want {
		return true
	}
	return math.Abs(got-want) <= tol*math.Max(math.Abs(want), math.Abs(got))
}

type uncheckedAlloc struct{ memory.Allocator }

func (uncheckedAlloc) AssertSize(memory.TestingT, int) {}
