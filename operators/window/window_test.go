package window_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/spec"
	"github.com/sluice-edge/sluice/operators/window"
)

// genRows makes n rows for nkeys keys over span milliseconds starting at t0,
// sorted by time. Times repeat (ties for first/last), values mix
// magnitudes and signs, and some values, keys and labels are null.
func genRows(rng *rand.Rand, n, nkeys int, t0, span int64) []enginetest.Row {
	rows := make([]enginetest.Row, n)
	for i := range rows {
		t := t0 + rng.Int64N(span)
		if i > 0 && rng.IntN(8) == 0 {
			t = rows[i-1][colTime].(int64) // a tie
		}
		var key any = fmt.Sprintf("wtg-%03d", rng.IntN(nkeys))
		if rng.IntN(200) == 0 {
			key = nil
		}
		var power any = 1500 + 300*rng.NormFloat64()
		switch rng.IntN(20) {
		case 0:
			power = nil
		case 1:
			power = -rng.Float64() * 1e-3
		case 2:
			power = rng.Float64() * 1e9
		case 3:
			power = 0.0
		}
		var label any = "ok"
		if rng.IntN(5) == 0 {
			label = nil
		}
		rows[i] = enginetest.Row{t, key, power, math.Ldexp(rng.Float64(), rng.IntN(40)-20), int64(rng.IntN(1000) - 100), label}
	}
	slices.SortStableFunc(rows, func(a, b enginetest.Row) int { return cmpInt(tm(a), tm(b)) })
	return rows
}

// chunk splits rows into batches of random sizes 1..maxSize.
func chunk(rng *rand.Rand, rows []enginetest.Row, maxSize int, sources int) []batchIn {
	var out []batchIn
	for len(rows) > 0 {
		n := min(len(rows), 1+rng.IntN(maxSize))
		out = append(out, batchIn{rows: rows[:n], source: rng.IntN(sources)})
		rows = rows[n:]
	}
	return out
}

type kindCase struct {
	name                    string
	cfg                     string
	kind                    string
	size, step, gap, offset int64
	keyed                   bool
}

var kindCases = []kindCase{
	{name: "tumbling", cfg: "kind: tumbling\nsize: 10s", kind: window.Tumbling, size: 10000, step: 10000, keyed: true},
	{name: "tumbling-offset", cfg: "size: 10s\noffset: 3s", kind: window.Tumbling, size: 10000, step: 10000, offset: 3000, keyed: true},
	{name: "tumbling-global", cfg: "size: 7s\nkey: none", kind: window.Tumbling, size: 7000, step: 7000},
	{name: "hopping", cfg: "kind: hopping\nsize: 10s\nstep: 5s", kind: window.Hopping, size: 10000, step: 5000, keyed: true},
	{name: "hopping-nondividing", cfg: "kind: hopping\nsize: 10s\nstep: 4s\noffset: 1s", kind: window.Hopping, size: 10000, step: 4000, offset: 1000, keyed: true},
	{name: "hopping-equal", cfg: "kind: hopping\nsize: 6s\nstep: 6s", kind: window.Hopping, size: 6000, step: 6000, keyed: true},
	{name: "session", cfg: "kind: session\ngap: 2s", kind: window.Session, gap: 2000, keyed: true},
	{name: "session-global", cfg: "kind: session\ngap: 500ms\nkey: none", kind: window.Session, gap: 500},
}

// TestAgainstReference checks every kind and aggregate against a naive,
// independent computation.
func TestAgainstReference(t *testing.T) {
	for _, kc := range kindCases {
		t.Run(kc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(len(kc.name))))
			rows := genRows(rng, 6000, 12, 1_700_000_000_000, 120_000)
			if kc.kind == window.Session {
				// Spread rows so that sessions form and break.
				rows = genRows(rng, 3000, 12, 1_700_000_000_000, 600_000)
			}
			col, _ := run(t, kc.cfg+fullAggs, testSchema, chunk(rng, rows, 700, 1))
			if n := len(col.Port(window.LatePort)); n != 0 {
				t.Fatalf("%d late rows for in-order input", n)
			}
			out := col.Port(0)
			ref := refWindows(rows, kc.kind, kc.size, kc.step, kc.gap, kc.offset, kc.keyed)
			op := newOp(t, kc.cfg+fullAggs, testSchema, memory.NewGoAllocator(), nil)
			schema := op.Outputs()[0].Schema
			op.Close()
			checkRef(t, out, schema, ref, kc.keyed)
		})
	}
}

func checkRef(t *testing.T, out []enginetest.Row, schema *engine.Schema, ref []refWindow, keyed bool) {
	t.Helper()
	if len(out) != len(ref) {
		t.Fatalf("%d windows, reference %d", len(out), len(ref))
	}
	inCol := map[string]int{"power": colPower, "wind": colWind, "status": colStatus, "label": colLabel}
	for i, w := range ref {
		got := out[i]
		where := fmt.Sprintf("window %d (key %v, %d..%d)", i, w.key, w.start, w.end)
		if got[0] != w.start || got[1] != w.end {
			t.Fatalf("%s: got window %v..%v", where, got[0], got[1])
		}
		c := 2
		if keyed {
			if got[2] != w.key {
				t.Fatalf("%s: got key %v", where, got[2])
			}
			c = 3
		}
		if got[c] != int64(len(w.rows)) {
			t.Fatalf("%s: count %v, want %d", where, got[c], len(w.rows))
		}
		for j := c + 1; j < len(schema.Fields); j++ {
			name := schema.Fields[j].Name
			field, fn, _ := strings.Cut(name, "_")
			ci := inCol[field]
			xs := values(w.rows, ci)
			g := got[j]
			if fn == "count" {
				want := 0
				for _, r := range w.rows {
					if r[ci] != nil {
						want++
					}
				}
				if g != int64(want) {
					t.Errorf("%s %s: %v, want %d", where, name, g, want)
				}
				continue
			}
			if len(xs) == 0 || (fn == "stddev" && len(xs) < 2) {
				if g != nil {
					t.Errorf("%s %s: %v, want null", where, name, g)
				}
				continue
			}
			v, ok := g.(float64)
			if !ok {
				t.Errorf("%s %s: %v (%T), want a float", where, name, g, g)
				continue
			}
			switch fn {
			case "sum":
				if want := exactSum(xs); v != want {
					t.Errorf("%s %s: %v, exact %v", where, name, v, want)
				}
			case "avg":
				if want := exactSum(xs) / float64(len(xs)); !relClose(v, want, 1e-9) {
					t.Errorf("%s %s: %v, want %v", where, name, v, want)
				}
			case "min":
				if want := slices.Min(xs); v != want {
					t.Errorf("%s %s: %v, want %v", where, name, v, want)
				}
			case "max":
				if want := slices.Max(xs); v != want {
					t.Errorf("%s %s: %v, want %v", where, name, v, want)
				}
			case "stddev":
				if want := naiveStddev(xs); !relClose(v, want, 1e-9) {
					t.Errorf("%s %s: %v, want %v", where, name, v, want)
				}
			case "first", "last":
				f, l := firstLast(w.rows, ci)
				want := f
				if fn == "last" {
					want = l
				}
				if v != want {
					t.Errorf("%s %s: %v, want %v", where, name, v, want)
				}
			default: // quantiles
				var q float64
				switch fn {
				case "p50":
					q = 0.5
				case "p95":
					q = 0.95
				case "p99":
					q = 0.99
				case "p999":
					q = 0.999
				default:
					t.Fatalf("unexpected column %s", name)
				}
				want := nearestRank(xs, q)
				if math.Abs(v-want) > window.QuantileRelError*math.Abs(want) {
					t.Errorf("%s %s: %v, exact %v, relative error %.3g > %.3g", where, name, v, want, math.Abs(v-want)/math.Abs(want), window.QuantileRelError)
				}
			}
		}
	}
}

// TestMetamorphic feeds the same rows in many arrival orders (shuffled
// within the allowed lateness, random batch sizes 1..5000, several sources
// interleaved) and requires output bytes identical to the sorted,
// single-batch run.
func TestMetamorphic(t *testing.T) {
	const lateness = 5000
	for _, kc := range kindCases {
		t.Run(kc.name, func(t *testing.T) {
			cfg := kc.cfg + "\nlateness: 5s" + fullAggs
			rng := rand.New(rand.NewPCG(7, uint64(len(kc.name))))
			span := int64(150_000)
			if kc.kind == window.Session {
				span = 700_000
			}
			rows := genRows(rng, 8000, 40, 1_700_000_000_000, span)
			wantCol, _ := run(t, cfg, testSchema, []batchIn{{rows: rows}})
			want := encodeRows(wantCol.Port(0))
			if len(wantCol.Port(0)) < 20 {
				t.Fatalf("only %d windows", len(wantCol.Port(0)))
			}
			for trial, maxBatch := range []int{3, 20, 300, 2000, 5000} {
				shuffled := shuffleWithin(rng, rows, lateness)
				batches := chunk(rng, shuffled, maxBatch, 1+trial%3)
				col, counters := runMem(t, false, cfg, testSchema, batches)
				if n := len(col.Port(window.LatePort)); n != 0 {
					t.Fatalf("trial %d: %d late rows within lateness", trial, n)
				}
				if c := counters.Snapshot()["late_rows"]; c != 0 {
					t.Fatalf("trial %d: late_rows = %d", trial, c)
				}
				if got := encodeRows(col.Port(0)); string(got) != string(want) {
					t.Fatalf("trial %d (batches up to %d, %d sources): output differs from the sorted single-batch run\n%s",
						trial, maxBatch, 1+trial%3, firstDiff(got, want))
				}
			}
		})
	}
}

// shuffleWithin reorders rows so that no row arrives after the largest time
// seen so far minus lateness has passed its own time: each row's arrival
// rank is its time plus a random delay below lateness.
func shuffleWithin(rng *rand.Rand, rows []enginetest.Row, lateness int64) []enginetest.Row {
	type arr struct {
		at  int64
		row enginetest.Row
	}
	a := make([]arr, len(rows))
	for i, r := range rows {
		a[i] = arr{at: tm(r) + rng.Int64N(lateness), row: r}
	}
	slices.SortStableFunc(a, func(x, y arr) int { return cmpInt(x.at, y.at) })
	out := make([]enginetest.Row, len(a))
	for i := range a {
		out[i] = a[i].row
	}
	return out
}

func firstDiff(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := range min(len(g), len(w)) {
		if g[i] != w[i] {
			return fmt.Sprintf("row %d:\n got  %s\n want %s", i, g[i], w[i])
		}
	}
	return fmt.Sprintf("%d rows, want %d", len(g), len(w))
}

// TestLateRows checks routing and counting of late rows and rows without
// time.
func TestLateRows(t *testing.T) {
	row := func(ts any, key string, p float64) enginetest.Row {
		return enginetest.Row{ts, key, p, nil, nil, nil}
	}
	tests := []struct {
		name     string
		cfg      string
		batches  []batchIn
		wantLate []enginetest.Row
		late     int64
		nullTime int64
		windows  int
	}{
		{
			name: "tumbling",
			cfg:  "size: 10s",
			batches: []batchIn{
				{rows: []enginetest.Row{row(int64(1000), "a", 1), row(int64(15000), "a", 2)}},
				{rows: []enginetest.Row{row(int64(3000), "a", 3), row(nil, "a", 4), row(int64(12000), "a", 5)}},
			},
			wantLate: []enginetest.Row{row(int64(3000), "a", 3), row(nil, "a", 4)},
			late:     1, nullTime: 1, windows: 2,
		},
		{
			name: "within-lateness",
			cfg:  "size: 10s\nlateness: 5s",
			batches: []batchIn{
				{rows: []enginetest.Row{row(int64(1000), "a", 1), row(int64(14000), "a", 2)}},
				{rows: []enginetest.Row{row(int64(9000), "a", 3)}},
				{rows: []enginetest.Row{row(int64(30000), "a", 3)}},
				{rows: []enginetest.Row{row(int64(19999), "a", 4), row(int64(25000), "a", 5)}},
			},
			wantLate: []enginetest.Row{row(int64(19999), "a", 4)},
			late:     1, windows: 4,
		},
		{
			name: "hopping-partly-open",
			cfg:  "kind: hopping\nsize: 10s\nstep: 5s\nwatermark_keys: 1",
			batches: []batchIn{
				{rows: []enginetest.Row{row(int64(1000), "a", 1), row(int64(11000), "b", 2)}},
				// 6000 is in [0,10) (closed) and [5000,15000) (open): not late.
				{rows: []enginetest.Row{row(int64(6000), "a", 3), row(int64(4000), "a", 4)}},
			},
			wantLate: []enginetest.Row{row(int64(4000), "a", 4)},
			late:     1, windows: 5,
		},
		{
			name: "session",
			cfg:  "kind: session\ngap: 2s\nwatermark_keys: 1",
			batches: []batchIn{
				{rows: []enginetest.Row{row(int64(1000), "a", 1), row(int64(10000), "b", 2)}},
				// a's session [1000, 1000] closed at 3000 <= 10000; 2500 would
				// join it: late. 9000 within gap of nothing, own session
				// would end 11000 > 10000: not late.
				{rows: []enginetest.Row{row(int64(2500), "a", 3), row(int64(9000), "a", 4), row(int64(7000), "c", 5)}},
			},
			wantLate: []enginetest.Row{row(int64(2500), "a", 3), row(int64(7000), "c", 5)},
			late:     2, windows: 3,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			col, counters := run(t, tc.cfg+"\naggregates: {power: [sum]}", testSchema, tc.batches)
			if got := col.Port(window.LatePort); string(encodeRows(got)) != string(encodeRows(tc.wantLate)) {
				t.Errorf("late port:\n%s\nwant\n%s", encodeRows(got), encodeRows(tc.wantLate))
			}
			snap := counters.Snapshot()
			if snap["late_rows"] != tc.late || snap["null_time_rows"] != tc.nullTime {
				t.Errorf("counters %v, want late_rows=%d null_time_rows=%d", snap, tc.late, tc.nullTime)
			}
			if n := len(col.Port(0)); n != tc.windows {
				t.Errorf("%d windows, want %d:\n%s", n, tc.windows, encodeRows(col.Port(0)))
			}
			// No row is lost: every input row is in a window or on the late port.
			in, counted := 0, int64(0)
			for _, b := range tc.batches {
				in += len(b.rows)
			}
			out := col.Port(0)
			if tc.name != "hopping-partly-open" {
				for _, r := range out {
					counted += r[3].(int64)
				}
				if int(counted)+len(col.Port(window.LatePort)) != in {
					t.Errorf("%d rows in windows + %d late != %d input rows", counted, len(col.Port(window.LatePort)), in)
				}
			}
		})
	}
}

// TestSessionMerge checks that a row bridging two sessions merges them,
// within one batch and across batches.
func TestSessionMerge(t *testing.T) {
	r := func(ts int64, p float64) enginetest.Row { return enginetest.Row{ts, "a", p, nil, nil, nil} }
	cfg := "kind: session\ngap: 10s\nlateness: 1m\naggregates: {power: [sum, min, max, first, last]}"
	tests := []struct {
		name    string
		batches []batchIn
		want    string
	}{
		{
			name:    "one-batch",
			batches: []batchIn{{rows: []enginetest.Row{r(0, 1), r(18000, 2), r(9000, 4), r(40000, 8)}}},
			want:    "[0,28000,\"a\",3,7,1,4,1,2]\n[40000,50000,\"a\",1,8,8,8,8,8]\n",
		},
		{
			name: "across-batches",
			batches: []batchIn{
				{rows: []enginetest.Row{r(0, 1)}},
				{rows: []enginetest.Row{r(18000, 2)}},
				{rows: []enginetest.Row{r(40000, 8)}},
				{rows: []enginetest.Row{r(9000, 4)}},
			},
			want: "[0,28000,\"a\",3,7,1,4,1,2]\n[40000,50000,\"a\",1,8,8,8,8,8]\n",
		},
		{
			name: "chain",
			batches: []batchIn{
				{rows: []enginetest.Row{r(0, 1), r(18000, 2), r(36000, 3), r(9000, 4), r(27000, 5)}},
			},
			want: "[0,46000,\"a\",5,15,1,5,1,3]\n",
		},
		{
			name:    "exactly-gap-apart",
			batches: []batchIn{{rows: []enginetest.Row{r(0, 1), r(10000, 2)}}},
			want:    "[0,10000,\"a\",1,1,1,1,1,1]\n[10000,20000,\"a\",1,2,2,2,2,2]\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			col, _ := run(t, cfg, testSchema, tc.batches)
			if got := string(encodeRows(col.Port(0))); got != tc.want {
				t.Errorf("got\n%swant\n%s", got, tc.want)
			}
		})
	}
}

// TestEmissionOrder checks that windows closed together come out sorted by
// (window_start, key) and that a null key sorts first.
func TestEmissionOrder(t *testing.T) {
	var rows []enginetest.Row
	for _, k := range []any{"c", "a", nil, "b"} {
		for _, ts := range []int64{25000, 5000, 15000} {
			rows = append(rows, enginetest.Row{ts, k, 1.0, nil, nil, nil})
		}
	}
	rows = append(rows, enginetest.Row{int64(100000), "z", 1.0, nil, nil, nil})
	col, _ := run(t, "size: 10s", testSchema, []batchIn{{rows: rows[:12]}, {rows: rows[12:]}})
	var got []string
	for _, r := range col.Port(0) {
		got = append(got, fmt.Sprint(r[0], "/", r[2]))
	}
	want := "0/<nil> 0/a 0/b 0/c 10000/<nil> 10000/a 10000/b 10000/c 20000/<nil> 20000/a 20000/b 20000/c 100000/z"
	if strings.Join(got, " ") != want {
		t.Errorf("order\n got  %s\n want %s", strings.Join(got, " "), want)
	}
}

// TestSpecialValues checks NaN, infinities and signed zeros.
func TestSpecialValues(t *testing.T) {
	r := func(ts int64, p float64) enginetest.Row { return enginetest.Row{ts, "a", p, nil, nil, nil} }
	cfg := "size: 10s\naggregates: {power: [sum, avg, min, max, stddev, p50]}"
	tests := []struct {
		name string
		vals []float64
		want string
	}{
		{"nan", []float64{1, math.NaN(), 2}, "3,NaN,NaN,NaN,NaN,NaN,NaN"},
		{"inf", []float64{1, math.Inf(1), 2}, "3,+Inf,+Inf,1,+Inf,NaN,2.0078125"},
		{"both-inf", []float64{math.Inf(-1), math.Inf(1)}, "2,NaN,NaN,-Inf,+Inf,NaN,-Inf"},
		{"zeros", []float64{0, math.Copysign(0, -1)}, "2,0,0,0,0,0,0"},
		{"cancel", []float64{1e100, 1, -1e100}, "3,1,0.3333333333333333,-1e+100,1e+100,1e+100,1.00390625"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var rows []enginetest.Row
			for i, v := range tc.vals {
				rows = append(rows, r(int64(i), v))
			}
			for _, order := range [][]enginetest.Row{rows, reversed(rows)} {
				col, _ := run(t, cfg, testSchema, []batchIn{{rows: order}})
				out := col.Port(0)
				if len(out) != 1 {
					t.Fatalf("%d windows", len(out))
				}
				got := strings.TrimSuffix(string(encodeRows([]enginetest.Row{out[0][3:]})), "\n")
				got = strings.Trim(got, "[]")
				if got != tc.want {
					t.Errorf("got  %s\nwant %s", got, tc.want)
				}
			}
		})
	}
}

func reversed(rows []enginetest.Row) []enginetest.Row {
	out := slices.Clone(rows)
	slices.Reverse(out)
	return out
}

// TestMultipleSources checks that the watermark is the minimum over
// sources: a slow source holds windows open.
func TestMultipleSources(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	op := newOp(t, "size: 10s", testSchema, mem, nil)
	defer op.Close()
	col := enginetest.NewCollector()
	feed := func(src int, ts int64) {
		rec := enginetest.Record(mem, testSchema, enginetest.Row{ts, "a", 1.0, nil, nil, nil})
		if err := op.Process(engine.Batch{Rec: rec, Source: src}, col.Emit); err != nil {
			t.Fatal(err)
		}
	}
	feed(0, 1000)
	feed(1, 2000)
	feed(0, 50000)
	if n := len(col.Port(0)); n != 0 {
		t.Fatalf("source 1 is at 2000, yet %d windows closed", n)
	}
	if wm, ok := op.Watermark(); !ok || wm != 2000 {
		t.Fatalf("watermark %d %v, want 2000", wm, ok)
	}
	feed(1, 20000)
	if n := len(col.Port(0)); n != 1 {
		t.Fatalf("%d windows after source 1 reached 20000, want 1", n)
	}
	if err := op.Flush(col.Emit); err != nil {
		t.Fatal(err)
	}
	if n := len(col.Port(0)); n != 3 {
		t.Fatalf("%d windows after Flush, want 3", n)
	}
}

// TestValidation checks configuration errors and their positions.
func TestValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  string
		in   *engine.Schema
		want []string // "line:col: substring"
	}{
		{
			name: "unknown-field-and-function",
			cfg: `size: 1m
aggregates:
  power: [avg, p95, bogus]
  nope: [avg]
  label: [avg, count]
  wind: p0`,
			want: []string{
				`3:21: unknown function "bogus"`,
				`4:3: field "nope" is not in the input`,
				`5:11: avg needs a numeric field`,
				`6:9: unknown function "p0"`,
			},
		},
		{
			name: "step-larger-than-size",
			cfg:  "kind: hopping\nsize: 1m\nstep: 2m",
			want: []string{`3:7: step must be > 0 and <= size`},
		},
		{
			name: "step-too-fine",
			cfg:  "kind: hopping\nsize: 60001ms\nstep: 1m",
			want: []string{`3:7: step 1m0s does not divide size`},
		},
		{
			name: "missing-size",
			cfg:  "kind: tumbling\naggregates: {power: [avg]}",
			want: []string{`1:1: kind tumbling needs size`},
		},
		{
			name: "missing-step",
			cfg:  "kind: hopping\nsize: 1m",
			want: []string{`1:1: kind hopping needs step`},
		},
		{
			name: "missing-gap",
			cfg:  "kind: session\nsize: 1m",
			want: []string{`1:1: kind session needs gap`, `2:7: size does not apply to kind session`},
		},
		{
			name: "gap-on-tumbling",
			cfg:  "size: 1m\ngap: 5s",
			want: []string{`2:6: gap does not apply to kind tumbling`},
		},
		{
			name: "key-not-string",
			cfg:  "size: 1m\nkey: status",
			want: []string{`2:6: key field "status" must be a string`},
		},
		{
			name: "key-unknown",
			cfg:  "size: 1m\nkey: turbine",
			want: []string{`2:6: key field "turbine" is not in the input`},
		},
		{
			name: "sub-millisecond",
			cfg:  "size: 1500us",
			want: []string{`1:7: size: 1.5ms is not a whole number of milliseconds`},
		},
		{
			name: "negative-lateness",
			cfg:  "size: 1s\nlateness: -1s",
			want: []string{`2:11: lateness must not be negative`},
		},
		{
			name: "duplicate-output",
			cfg:  "size: 1s\naggregates: {power: [avg, avg]}",
			want: []string{`output column "power_avg" appears twice`},
		},
		{
			name: "no-time-field",
			cfg:  "size: 1s",
			in:   engine.MustSchema([]engine.Field{{Name: "v", Type: engine.Float64}}, "", ""),
			want: []string{`1:1: the input stream has no time field`},
		},
		{
			name: "bad-kind",
			cfg:  "kind: sliding\nsize: 1s",
			want: []string{`1:7: field "kind": "sliding" is not one of tumbling, hopping, session`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			if in == nil {
				in = testSchema
			}
			cfg, err := parseCfg(t, tc.cfg)
			if err == nil {
				_, err = window.New(cfg, in, engine.BuildContext{})
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			var es spec.Errors
			es = spec.Collect(spec.Pos{}, err)
			if len(es) != len(tc.want) {
				t.Fatalf("%d errors, want %d:\n%v", len(es), len(tc.want), err)
			}
			for i, w := range tc.want {
				pos, msg, ok := strings.Cut(w, ": ")
				if !ok || !strings.Contains(pos, ":") {
					pos, msg = "", w
				}
				got := es[i].Error()
				if !strings.HasPrefix(got, "test.yaml:") {
					t.Errorf("error %q has no file position", got)
				}
				if pos != "" && !strings.HasPrefix(got, "test.yaml:"+pos+": ") {
					t.Errorf("error %q, want position %s", got, pos)
				}
				if !strings.Contains(got, msg) {
					t.Errorf("error %q, want %q", got, msg)
				}
			}
		})
	}
}

// TestValidConfigs checks configurations that must be accepted and the
// output schema they give.
func TestValidConfigs(t *testing.T) {
	tests := []struct {
		cfg  string
		want string
	}{
		{"size: 1m", "window_start:timestamp(time), window_end:timestamp, asset:string(key), count:int64"},
		{"size: 1m\nkey: none\naggregates: {power: avg, label: [count]}",
			"window_start:timestamp(time), window_end:timestamp, count:int64, power_avg:float64, label_count:int64"},
		{"kind: hopping\nsize: 1m\nstep: 25s\naggregates: {status: [min, p50]}",
			"window_start:timestamp(time), window_end:timestamp, asset:string(key), count:int64, status_min:float64, status_p50:float64"},
		{"kind: session\ngap: 30s\nkey: label", "window_start:timestamp(time), window_end:timestamp, label:string(key), count:int64"},
	}
	for _, tc := range tests {
		cfg, err := parseCfg(t, tc.cfg)
		if err != nil {
			t.Fatalf("%s: %v", tc.cfg, err)
		}
		op, err := window.New(cfg, testSchema, engine.BuildContext{})
		if err != nil {
			t.Fatalf("%s: %v", tc.cfg, err)
		}
		if got := op.Outputs()[0].Schema.String(); got != tc.want {
			t.Errorf("%s:\n got  %s\n want %s", tc.cfg, got, tc.want)
		}
		if p := op.Outputs()[1]; p.Name != "late" || !p.Schema.Equal(testSchema) {
			t.Errorf("late port %q %s", p.Name, p.Schema)
		}
		op.Close()
	}
}

func TestRegistered(t *testing.T) {
	c, ok := engine.Lookup(spec.KindStep, "window")
	if !ok || c.Operator == nil {
		t.Fatal("step type window is not registered")
	}
	for _, f := range c.Spec.Fields {
		if f.Description == "" || f.Example == nil {
			t.Errorf("field %s lacks a description or an example", f.Name)
		}
	}
}

// TestOperatorSuite runs the shared operator conformance suite.
func TestOperatorSuite(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, kc := range kindCases {
		t.Run(kc.name, func(t *testing.T) {
			rows := genRows(rng, 2000, 5, 1_700_000_000_000, 60_000)
			var input [][]enginetest.Row
			for _, b := range chunk(rng, shuffleWithin(rng, rows, 20_000), 300, 1) {
				input = append(input, b.rows)
			}
			input = append(input, []enginetest.Row{{nil, "x", 1.0, nil, nil, nil}}) // a late row
			enginetest.RunOperatorSuite(t, enginetest.OperatorCase{
				New: func(t testing.TB, mem memory.Allocator) engine.Operator {
					return newOp(t, kc.cfg+fullAggs, testSchema, mem, nil)
				},
				In:    testSchema,
				Input: input,
			})
		})
	}
}
