package window_test

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/statecodec"
	"github.com/sluice-edge/sluice/operators/window"
)

// handoverRows makes about n rows of keys k0..k5, gap apart on average, in
// rough time order, with everything a step carries from batch to batch:
// rows out of order and late ones, a stretch where a quarter of the rows
// are late (the late-rows alert raises, then clears), a key that falls
// silent and comes back, a key whose clock runs ahead, new keys late in the
// input, null times and keys, times outside years 0001-9999, and values of
// every magnitude, zeros of both signs, NaN and infinities.
func handoverRows(rng *rand.Rand, n int, gap int64) []enginetest.Row {
	t := int64(1_700_000_000_000)
	rows := make([]enginetest.Row, 0, n)
	for i := range n {
		t += rng.Int64N(2 * gap)
		phase := 10 * i / n
		var key any = fmt.Sprintf("k%d", rng.IntN(6))
		switch {
		case phase >= 2 && phase <= 4 && key == "k5":
			key = "k0" // k5 is silent for a while
		case phase >= 7 && rng.IntN(8) == 0:
			key = fmt.Sprintf("n%d", i%40) // keys that come late
		case rng.IntN(150) == 0:
			key = nil
		}
		var ts any = t
		switch x := rng.IntN(100); {
		case (phase == 5 || phase == 6) && x < 25:
			ts = t - 60_000 - rng.Int64N(60_000) // late
		case x < 4:
			ts = t - rng.Int64N(20*gap) // out of order, late or not
		case x == 4 && phase < 8:
			ts, key = t+300*gap, "runaway" // a clock ahead
		case x == 5 && rng.IntN(3) == 0:
			ts = nil
		case x == 6 && rng.IntN(4) == 0:
			ts = int64(300_000_000_000_000) // beyond year 9999
		}
		var power any = 1500 + 300*rng.NormFloat64()
		switch rng.IntN(100) {
		case 0:
			power = nil
		case 1:
			power = math.NaN()
		case 2:
			if rng.IntN(8) == 0 {
				power = math.Inf(1 - 2*rng.IntN(2))
			}
		case 3:
			power = -rng.Float64() * 1e5
		case 4:
			power = math.Copysign(0, float64(1-2*rng.IntN(2)))
		case 5:
			if rng.IntN(5) == 0 {
				power = rng.Float64() * 1e-6 // beyond the fast sums
			}
		}
		var wind any = 8 + 2*rng.NormFloat64()
		switch rng.IntN(20) {
		case 0:
			wind = nil
		case 1:
			wind = math.Ldexp(rng.Float64()-0.5, rng.IntN(2000)-1000) // sums beyond the fast and the window sums
		}
		status := int64(rng.IntN(1000) - 100)
		if rng.IntN(100) == 0 {
			status = 1 << 60
		}
		var label any = "ok"
		if rng.IntN(5) == 0 {
			label = nil
		}
		rows = append(rows, enginetest.Row{ts, key, power, wind, status, label})
	}
	return rows
}

// handoverCase is a configuration and an input for the hand-over tests.
type handoverCase struct {
	name    string
	cfg     string
	gap     int64 // mean distance of rows, ms
	sources int
	dense   bool // sketches turn dense after 4 rows, fast sums flush after 3 values
}

var handoverCases = []handoverCase{
	{name: "tumbling", cfg: "size: 10s\nlateness: 2s", gap: 100, sources: 1},
	{name: "tumbling-dense", cfg: "size: 10s\nlateness: 2s", gap: 100, sources: 1, dense: true},
	{name: "tumbling-global", cfg: "size: 10s\nkey: none\nwatermark_keys: 1\nlateness: 30s", gap: 100, sources: 1},
	{name: "tumbling-bounded", cfg: "size: 5s\nmax_keys: 5\nmax_key_bytes: 2\nwatermark_idle_rows: 40", gap: 100, sources: 1},
	{name: "tumbling-sources", cfg: "size: 10s\nwatermark_keys: 3\noffset: 4s", gap: 100, sources: 3},
	{name: "hopping", cfg: "kind: hopping\nsize: 30s\nstep: 10s\nlateness: 1s", gap: 100, sources: 1},
	{name: "hopping-nondividing", cfg: "kind: hopping\nsize: 25s\nstep: 10s\noffset: 3s", gap: 100, sources: 2, dense: true},
	{name: "session", cfg: "kind: session\ngap: 3s\nlateness: 1s", gap: 800, sources: 1},
	{name: "session-dense", cfg: "kind: session\ngap: 3s", gap: 800, sources: 2, dense: true},
	{name: "session-global", cfg: "kind: session\ngap: 300ms\nkey: none", gap: 200, sources: 1},
}

// handoverAggs is every function; wind, whose values span the float64
// range, has no quantile (a sketch over the whole range is large).
const handoverAggs = `
aggregates:
  power: [count, sum, avg, min, max, stddev, first, last, p50, p95, p99]
  status: [sum, avg, min, max, first, last]
  wind: [sum, avg, stddev, min, max]
  label: [count]
`

// handoverOutput is what a run emitted: window rows, late rows, alerts.
type handoverOutput struct {
	out, late, alerts []byte
	nLate, nAlerts    int
}

// runHandover feeds batches to a window step. Before each batch whose
// index is in cuts it takes a snapshot, closes the step, builds a new one
// from the same configuration, restores the snapshot into it and goes on
// with the new one. It checks that snapshots are deterministic and that a
// restored step snapshots to the same bytes.
func runHandover(t *testing.T, cfgSrc string, batches []batchIn, cuts []int, checked bool) handoverOutput {
	t.Helper()
	var mem interface {
		memory.Allocator
		AssertSize(t memory.TestingT, sz int)
	} = memory.NewCheckedAllocator(memory.NewGoAllocator())
	if !checked {
		mem = uncheckedAlloc{memory.NewGoAllocator()}
	}
	sh := engine.NewShared()
	route := &alertRoute{}
	engine.AlertRouteOf(sh, func() engine.AlertRoute { return route })
	var ticks int64
	now := func() time.Time { ticks++; return time.UnixMilli(1_800_000_000_000 + ticks*1000) }
	cfg, err := parseCfg(t, cfgSrc)
	if err != nil {
		t.Fatal(err)
	}
	build := func() *window.Operator {
		op, err := window.New(cfg, testSchema, engine.BuildContext{Pipeline: "farm", Name: "stats", Mem: mem, Shared: sh, Batch: engine.BatchPolicy{Size: 100}})
		if err != nil {
			t.Fatal(err)
		}
		window.SetLateClock(op, now)
		return op
	}
	col := enginetest.NewCollector()
	op := build()
	for i, b := range batches {
		if slices.Contains(cuts, i) {
			op = enginetest.Restart(t, op, build, i)
		}
		if err := op.Process(engine.Batch{Rec: enginetest.Record(mem, testSchema, b.rows...), Source: b.source}, col.Emit); err != nil {
			t.Fatalf("Process: %v", err)
		}
	}
	if err := op.Flush(col.Emit); err != nil {
		t.Fatal(err)
	}
	if err := op.Close(); err != nil {
		t.Fatal(err)
	}
	mem.AssertSize(t, 0)
	return handoverOutput{
		out: encodeRows(col.Port(0)), late: encodeRows(col.Port(window.LatePort)), alerts: encodeRows(route.rows),
		nLate: len(col.Port(window.LatePort)), nAlerts: len(route.rows),
	}
}

// denseState lowers the thresholds of the compact forms of a window's state so
// that small inputs reach the dense sketches and the cold sums.
func denseState(t *testing.T) {
	t.Cleanup(window.SetLogRows(4))
	t.Cleanup(window.SetFastMaxAdds(3))
}

// TestHandoverEquivalence: a step that hands its state over to a new
// instance (Snapshot, New, Restore) before any batch emits exactly what
// one step fed the whole input emits: the same windows, late rows and
// late-rows alerts, row for row. Every kind, every aggregate, several
// sources, keys that fall idle and are forgotten, key limits.
func TestHandoverEquivalence(t *testing.T) {
	for _, c := range handoverCases {
		t.Run(c.name, func(t *testing.T) {
			if c.dense {
				denseState(t)
			}
			rng := rand.New(rand.NewPCG(7, uint64(len(c.name))))
			rows := handoverRows(rng, 6000, c.gap)
			batches := chunk(rng, rows, 400, c.sources)
			cfg := c.cfg + "\n" + handoverAggs
			want := runHandover(t, cfg, batches, nil, true)
			if len(want.out) == 0 || want.nLate == 0 {
				t.Fatalf("the input gives %d bytes of windows and %d late rows: it tests too little", len(want.out), want.nLate)
			}
			if c.name == "tumbling" && want.nAlerts < 2 {
				t.Fatalf("%d late-rows alerts, want a raise and a clear", want.nAlerts)
			}
			every := make([]int, 0, len(batches))
			for i := 1; i < len(batches); i++ {
				every = append(every, i)
			}
			check := func(name string, cuts []int, checked bool) {
				t.Helper()
				got := runHandover(t, cfg, batches, cuts, checked)
				for _, p := range []struct {
					port      string
					got, want []byte
				}{{"windows", got.out, want.out}, {"late", got.late, want.late}, {"alerts", got.alerts, want.alerts}} {
					if !bytes.Equal(p.got, p.want) {
						t.Fatalf("%s: %s differ from the uninterrupted run: %s", name, p.port, firstDiff(p.got, p.want))
					}
				}
			}
			check("a cut before every batch", every, true)
			// One cut: at every fourth boundary (which quarter depends on
			// the case), to keep the test quick.
			for _, k := range every {
				if (k+len(c.name))%4 == 0 {
					check(fmt.Sprintf("one cut before batch %d", k), []int{k}, false)
				}
			}
		})
	}
}

// checkCuts runs batches without a hand-over and with one before each
// batch, and compares what they emit.
func checkCuts(t *testing.T, cfg string, batches []batchIn) handoverOutput {
	t.Helper()
	want := runHandover(t, cfg, batches, nil, true)
	for k := 1; k < len(batches); k++ {
		got := runHandover(t, cfg, batches, []int{k}, false)
		if !bytes.Equal(got.out, want.out) || !bytes.Equal(got.late, want.late) || !bytes.Equal(got.alerts, want.alerts) {
			t.Fatalf("a hand-over before batch %d changes the output:\nwindows %s\nlate %s", k, firstDiff(got.out, want.out), firstDiff(got.late, want.late))
		}
	}
	return want
}

// TestHandoverKeyEviction: an idle key is forgotten at the same watermark
// whether or not its state moved to a new instance while it was idle, so
// a new key finds room in max_keys at the same row.
func TestHandoverKeyEviction(t *testing.T) {
	const t0 = int64(1_700_000_000_000)
	var batches []batchIn
	for s := range int64(60) {
		rows := []enginetest.Row{{t0 + s*1000, "a", 1.0, nil, nil, nil}}
		if s < 10 {
			rows = append(rows, enginetest.Row{t0 + s*1000, "b", 2.0, nil, nil, nil})
		}
		if s >= 15 {
			rows = append(rows, enginetest.Row{t0 + s*1000, "c", 3.0, nil, nil, nil})
		}
		batches = append(batches, batchIn{rows: rows})
	}
	want := checkCuts(t, "size: 10s\nmax_keys: 2\nwatermark_keys: 1\naggregates: {power: [sum]}", batches)
	if want.nLate == 0 || want.nLate > 40 {
		t.Fatalf("%d rows of c refused: want some until b is forgotten, then none", want.nLate)
	}
}

// TestHandoverSessionEnd: a row of a key that falls before the end of its
// last emitted session is late, also after a hand-over.
func TestHandoverSessionEnd(t *testing.T) {
	const t0 = int64(1_700_000_000_000)
	row := func(ts int64, key string) batchIn {
		return batchIn{rows: []enginetest.Row{{t0 + ts, key, 1.0, nil, nil, nil}}}
	}
	batches := []batchIn{row(0, "a"), row(1000, "a"), row(2000, "a"), row(6000, "b"), row(4500, "a"), row(7000, "b")}
	want := checkCuts(t, "kind: session\ngap: 3s\nwatermark_keys: 1\naggregates: {power: [sum]}", batches)
	if want.nLate != 1 {
		t.Fatalf("%d late rows, want the row of a at 4.5s", want.nLate)
	}
}

// freshSnapshot is the snapshot of a step that saw no row.
func freshSnapshot(t testing.TB, cfg string) *engine.State {
	t.Helper()
	op := newOp(t, cfg, testSchema, memory.NewGoAllocator(), nil)
	defer op.Close()
	st, err := op.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// busySnapshot is the snapshot of a step in the middle of its input.
func busySnapshot(t testing.TB, cfg string, seed uint64, n int) *engine.State {
	t.Helper()
	mem := memory.NewGoAllocator()
	op := newOp(t, cfg, testSchema, mem, nil)
	defer op.Close()
	rng := rand.New(rand.NewPCG(seed, 1))
	rows := handoverRows(rng, n, 200)
	col := enginetest.NewCollector()
	for _, b := range chunk(rng, rows, 300, 2) {
		if err := op.Process(engine.Batch{Rec: enginetest.Record(mem, testSchema, b.rows...), Source: b.source}, col.Emit); err != nil {
			t.Fatal(err)
		}
	}
	st, err := op.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

const hostileCfg = "size: 10s\nlateness: 2s\n" + fullAggs

// checkRefused restores st into a new step and checks that it is refused
// with an error saying want, without panic, without allocating much, and
// that the step stays fresh.
func checkRefused(t *testing.T, cfg string, st *engine.State, want string) {
	t.Helper()
	op := newOp(t, cfg, testSchema, memory.NewGoAllocator(), nil)
	defer op.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := op.Restore(st)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("Restore accepted the state")
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q, want one saying %q", err, want)
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > 4<<20 {
		t.Errorf("Restore allocated %d bytes before refusing", d)
	}
	got, err2 := op.Snapshot()
	if err2 != nil {
		t.Fatal(err2)
	}
	if want := freshSnapshot(t, cfg); !bytes.Equal(got.Data, want.Data) {
		t.Errorf("after a refused state (%v) the step is not fresh", err)
	}
}

// TestRestoreRefusesForeignState: a state of another kind, version or
// configuration is refused and the step stays as built.
func TestRestoreRefusesForeignState(t *testing.T) {
	good := busySnapshot(t, hostileCfg, 1, 3000)
	for _, c := range []struct {
		name string
		st   *engine.State
		want string
	}{
		{"nil", nil, "no state"},
		{"kind", &engine.State{Kind: "alert", Version: 1, Data: good.Data}, `state of a "alert" step`},
		{"version", &engine.State{Kind: window.StateKind, Version: 2, Data: good.Data}, "version 2"},
		{"configuration", busySnapshot(t, "size: 20s\nlateness: 2s\n"+fullAggs, 1, 3000), "another configuration"},
		{"aggregates", busySnapshot(t, "size: 10s\nlateness: 2s\naggregates: {power: [avg]}", 1, 3000), "another configuration"},
		{"kind of window", busySnapshot(t, "kind: hopping\nsize: 10s\nstep: 10s\nlateness: 2s\n"+fullAggs, 1, 3000), "another configuration"},
	} {
		t.Run(c.name, func(t *testing.T) {
			op := newOp(t, hostileCfg, testSchema, memory.NewGoAllocator(), nil)
			defer op.Close()
			err := op.Restore(c.st)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
			checkRefused(t, hostileCfg, c.st, c.want)
		})
	}
}

// TestRestoreRefusesCorruptState: every truncation of a state and states
// that declare huge lengths are refused with an error wrapping
// statecodec.ErrCorrupt, without a panic or a large allocation, and the
// step stays fresh. Random changes of single bytes never panic.
func TestRestoreRefusesCorruptState(t *testing.T) {
	good := busySnapshot(t, hostileCfg, 2, 3000)
	step := max(1, len(good.Data)/300)
	for n := 0; n < len(good.Data); n += step {
		st := &engine.State{Kind: window.StateKind, Version: window.StateVersion, Data: good.Data[:n]}
		op := newOp(t, hostileCfg, testSchema, memory.NewGoAllocator(), nil)
		err := op.Restore(st)
		op.Close()
		if err == nil {
			t.Fatalf("a state cut at %d of %d bytes was accepted", n, len(good.Data))
		}
	}
	checkRefused(t, hostileCfg, &engine.State{Kind: window.StateKind, Version: window.StateVersion, Data: good.Data[:len(good.Data)/2]}, "truncated")
	checkRefused(t, hostileCfg, &engine.State{Kind: window.StateKind, Version: window.StateVersion, Data: append(slices.Clone(good.Data), 0)}, "after the end")

	// A fresh state ends with the key and source counts (0, 0).
	fresh := freshSnapshot(t, hostileCfg).Data
	head := fresh[:len(fresh)-2]
	w := func(f func(w *statecodec.Writer)) *engine.State {
		wr := statecodec.NewWriter(slices.Clone(head))
		f(wr)
		return &engine.State{Kind: window.StateKind, Version: window.StateVersion, Data: wr.Bytes()}
	}
	key := func(w *statecodec.Writer, name string) {
		w.Byte(0)
		w.String(name)
	}
	// The shape (8 bytes) is followed by the watermark, 10 bytes while unset.
	wm := statecodec.NewWriter(slices.Clone(fresh[:8]))
	wm.Varint(math.MaxInt64 - 1)
	badWatermark := &engine.State{Kind: window.StateKind, Version: window.StateVersion, Data: append(wm.Bytes(), fresh[18:]...)}
	onePane := func(w *statecodec.Writer) {
		key(w, "a")
		w.Uvarint(1)
		w.Varint(1_700_000_000_000)
		w.Uvarint(3) // rows
	}
	for _, c := range []struct {
		name string
		st   *engine.State
		want string
	}{
		{"2^40 keys", w(func(w *statecodec.Writer) { w.Uvarint(1 << 40) }), "more than 100001"},
		{"keys beyond the bytes", w(func(w *statecodec.Writer) { w.Uvarint(90_000); key(w, "a") }), "keys declared"},
		{"key of 2^50 bytes", w(func(w *statecodec.Writer) { w.Uvarint(1); w.Byte(0); w.Uvarint(1 << 50) }), "key bytes, more than 256"},
		{"2^40 panes", w(func(w *statecodec.Writer) { w.Uvarint(1); key(w, "a"); w.Uvarint(1 << 40) }), "panes, more than"},
		{"2^40 sources", w(func(w *statecodec.Writer) { w.Uvarint(0); w.Uvarint(1 << 40) }), "sources, more than"},
		{"2^40 key marks", w(func(w *statecodec.Writer) {
			w.Uvarint(0)
			w.Uvarint(1)
			w.Varint(0)
			w.Varint(0)
			w.Uvarint(0)
			w.Uvarint(0)
			w.Uvarint(1 << 40)
		}), "key marks, more than 4"},
		{"a sketch of every bucket", w(func(w *statecodec.Writer) {
			w.Uvarint(1)
			onePane(w)
			for range 4 { // power, status, wind, label: no values
				w.Byte(0)
				w.Uvarint(0)
			}
			for range 2 { // first/last of power and status
				w.Byte(0)
			}
			w.Byte(1)         // dense sketches
			w.Uvarint(0)      // power, positive side from bucket 0
			w.Uvarint(300000) // more buckets than there are
		}), "buckets, more than 262017"},
		{"a sketch side beyond the bytes", w(func(w *statecodec.Writer) {
			w.Uvarint(1)
			onePane(w)
			for range 4 {
				w.Byte(0)
				w.Uvarint(0)
			}
			for range 2 {
				w.Byte(0)
			}
			w.Byte(1)
			w.Uvarint(0)
			w.Uvarint(200000)
		}), "buckets declared"},
		{"a log beyond its rows", w(func(w *statecodec.Writer) {
			w.Uvarint(1)
			onePane(w)
			for range 4 {
				w.Byte(0)
				w.Uvarint(0)
			}
			for range 2 {
				w.Byte(0)
			}
			w.Byte(0)
			w.Uvarint(1 << 30)
		}), "logged rows, more than"},
		{"a fast sum base out of range", w(func(w *statecodec.Writer) {
			w.Uvarint(1)
			onePane(w)
			w.Byte(1 << 5) // fast tier
			w.Uvarint(1)
			w.Uvarint(5000)
		}), "fast base 5000"},
		{"a pane not aligned", w(func(w *statecodec.Writer) {
			w.Uvarint(1)
			key(w, "a")
			w.Uvarint(1)
			w.Varint(1_700_000_000_001)
		}), "not aligned"},
		{"keys out of order", w(func(w *statecodec.Writer) {
			w.Uvarint(2)
			key(w, "b")
			w.Uvarint(0)
			w.Uvarint(0)
			key(w, "a")
			w.Uvarint(0)
			w.Uvarint(0)
			w.Uvarint(0)
		}), "out of order"},
		{"a watermark beyond any time", badWatermark, "watermark 9223372036854775806 out of range"},
	} {
		t.Run(c.name, func(t *testing.T) { checkRefused(t, hostileCfg, c.st, c.want) })
	}

	// Single bytes changed at random: refused or accepted, never a panic;
	// an accepted state runs.
	rng := rand.New(rand.NewPCG(3, 3))
	mem := memory.NewGoAllocator()
	rows := handoverRows(rng, 200, 200)
	for range 300 {
		d := slices.Clone(good.Data)
		d[rng.IntN(len(d))] ^= byte(1 + rng.IntN(255))
		op := newOp(t, hostileCfg, testSchema, mem, nil)
		if op.Restore(&engine.State{Kind: window.StateKind, Version: window.StateVersion, Data: d}) == nil {
			col := enginetest.NewCollector()
			if err := op.Process(engine.Batch{Rec: enginetest.Record(mem, testSchema, rows...)}, col.Emit); err != nil {
				t.Fatal(err)
			}
			if err := op.Flush(col.Emit); err != nil {
				t.Fatal(err)
			}
		}
		op.Close()
	}
}

// FuzzRestore restores arbitrary bytes into a tumbling, a hopping and a
// session step: no panic; a refused state leaves the step fresh; an
// accepted one runs and snapshots to a state that is accepted again.
func FuzzRestore(f *testing.F) {
	cfgs := []string{
		hostileCfg,
		"kind: hopping\nsize: 25s\nstep: 10s\nlateness: 1s\n" + fullAggs,
		"kind: session\ngap: 3s\n" + fullAggs,
	}
	fresh := make([][]byte, len(cfgs))
	for i, c := range cfgs {
		fresh[i] = freshSnapshot(f, c).Data
		f.Add(uint8(i), fresh[i])
		f.Add(uint8(i), busySnapshot(f, c, 4, 300).Data) // small: the fuzzer minimizes what it finds
	}
	mem := memory.NewGoAllocator()
	rows := handoverRows(rand.New(rand.NewPCG(5, 5)), 100, 500)
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		which %= uint8(len(cfgs))
		cfg := cfgs[which]
		op := newOp(t, cfg, testSchema, mem, nil)
		defer op.Close()
		err := op.Restore(&engine.State{Kind: window.StateKind, Version: window.StateVersion, Data: data})
		if err != nil {
			got, _ := op.Snapshot()
			if !bytes.Equal(got.Data, fresh[which]) {
				t.Fatalf("refused (%v) but not fresh", err)
			}
			return
		}
		again, err := op.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		col := enginetest.NewCollector()
		if err := op.Process(engine.Batch{Rec: enginetest.Record(mem, testSchema, rows...)}, col.Emit); err != nil {
			t.Fatal(err)
		}
		if err := op.Flush(col.Emit); err != nil {
			t.Fatal(err)
		}
		op2 := newOp(t, cfg, testSchema, mem, nil)
		defer op2.Close()
		if err := op2.Restore(again); err != nil {
			t.Fatalf("the snapshot of an accepted state is refused: %v", err)
		}
	})
}

// BenchmarkSnapshotRestore measures the hand-over of 10,000 keys, each with
// one open window (four numeric fields, every aggregate): rows per key in
// a window decide whether the quantile sketches are logged bucket keys
// (10 rows) or dense counts (300 rows). B/key is the size of the state per
// key, ns/key the time per key.
func BenchmarkSnapshotRestore(b *testing.B) {
	const keys = 10_000
	for _, perKey := range []int{10, 300} {
		mem := memory.NewGoAllocator()
		cfg := "size: 1h\n" + fullAggs
		op := newOp(b, cfg, testSchema, mem, nil)
		rng := rand.New(rand.NewPCG(9, 9))
		col := enginetest.NewCollector()
		t0 := int64(1_700_000_000_000)
		rows := make([]enginetest.Row, 0, keys)
		for i := range perKey {
			rows = rows[:0]
			for k := range keys {
				rows = append(rows, enginetest.Row{t0 + int64(i)*1000, fmt.Sprintf("wtg-%05d", k), 1500 + 300*rng.NormFloat64(), 8 + rng.Float64(), int64(rng.IntN(1000)), "ok"})
			}
			if err := op.Process(engine.Batch{Rec: enginetest.Record(mem, testSchema, rows...)}, col.Emit); err != nil {
				b.Fatal(err)
			}
		}
		st, err := op.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		op.Close()
		b.Run(fmt.Sprintf("rows=%d/snapshot", perKey), func(b *testing.B) {
			op := newOp(b, cfg, testSchema, mem, nil)
			defer op.Close()
			if err := op.Restore(st); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := op.Snapshot(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(st.Data))/keys, "B/key")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/keys, "ns/key")
		})
		b.Run(fmt.Sprintf("rows=%d/restore", perKey), func(b *testing.B) {
			b.ReportAllocs()
			var restore time.Duration
			for b.Loop() {
				op := newOp(b, cfg, testSchema, mem, nil)
				start := time.Now()
				if err := op.Restore(st); err != nil {
					b.Fatal(err)
				}
				restore += time.Since(start)
				op.Close()
			}
			b.ReportMetric(float64(len(st.Data))/keys, "B/key")
			b.ReportMetric(float64(restore.Nanoseconds())/float64(b.N)/keys, "ns/key")
		})
	}
}
