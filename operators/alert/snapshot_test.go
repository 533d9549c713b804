package alert_test

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
	"github.com/sluice-edge/sluice/operators/alert"
)

// keyless is in without a key field: every row is of the asset "".
var keyless = engine.MustSchema(in.Fields, "window_start", "")

const handoverRules = `assets: farm.yaml
rules:
  - {name: hot, model: turbine, expr: temp_max > attr.max_temp, clear: temp_max < attr.max_temp - 5, for: 5m, severity: major, content: "{{.asset}} at {{.temp_max}}"}
  - {name: idle, expr: power_avg < 10 && count > 30, for: 10m, value: power_avg}
  - {name: stale, expr: count < 10}
`

// handoverCases are configurations and inputs for the hand-over tests.
var alertHandoverCases = []struct {
	name     string
	cfg      string
	schema   *engine.Schema
	turbines []string
}{
	{"farm", handoverRules, in, []string{"WT-1", "WT-2", "TR-1", "X-1"}},
	{"bounded", handoverRules + "max_keys: 5\nkey_idle: 5m\n", in, []string{"WT-1", "WT-2", "TR-1", "X-1", "gone-1", "gone-2"}},
	{"no key", "rules:\n  - {name: hot, expr: temp_max > 90, for: 2m}\n  - {name: idle, expr: power_avg < 10, for: 3m}\n  - {name: stale, expr: count < 10, clear: count > 50}\n", keyless, []string{"WT-1"}},
}

// handoverInput is rows of window results, minute by minute, whose
// conditions come and go: temperatures wander around the thresholds, power
// drops, counts fall; some turbines fall silent for a while; some values
// are null or NaN (rows for the errors port); turbines named gone-* stop
// after the first fifth.
func handoverInput(rng *rand.Rand, minutes int, turbines []string) []enginetest.Row {
	temp := make([]float64, len(turbines))
	for i := range temp {
		temp[i] = 80
	}
	var rows []enginetest.Row
	for m := range minutes {
		for i, tb := range turbines {
			if i > 0 && (m/15)%len(turbines) == i && m%15 < 10 {
				continue // silent for a while
			}
			if strings.HasPrefix(tb, "gone-") && m >= minutes/5 {
				continue
			}
			temp[i] += 4 * rng.NormFloat64()
			temp[i] = math.Max(60, math.Min(110, temp[i]))
			var tv any = math.Round(temp[i])
			switch rng.IntN(60) {
			case 0:
				tv = nil
			case 1:
				tv = math.NaN()
			}
			power := 1000.0
			if (m/7+i)%3 == 0 {
				power = 5
			}
			count := int64(60)
			if rng.IntN(6) == 0 {
				count = int64(rng.IntN(10))
			}
			rows = append(rows, enginetest.Row{minute(m), minute(m + 1), tb, count, tv, power})
		}
	}
	return rows
}

// handoverRun feeds batches of rows to an alert step. Before each batch
// whose index is in cuts it snapshots the step, closes it, builds a new one
// from the same configuration and restores the snapshot into it. It checks
// that snapshots are deterministic and that a restored step snapshots to
// the same bytes. It returns the alert rows and the errors-port rows.
func handoverRun(t *testing.T, dir, cfgSrc string, schema *engine.Schema, batches [][]enginetest.Row, cuts []int) (alertRows, errRows []enginetest.Row, counters map[string]int64) {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	cfg := parse(t, cfgSrc)
	cs := engine.NewCounters()
	build := func() *alert.Operator {
		op, err := alert.New(cfg, schema, engine.BuildContext{Pipeline: "site", Name: "alerts", Dir: dir, Mem: mem, Counters: cs})
		if err != nil {
			t.Fatal(err)
		}
		return op
	}
	col := enginetest.NewCollector()
	op := build()
	for i, b := range batches {
		if slices.Contains(cuts, i) {
			op = enginetest.Restart(t, op, build, i)
		}
		if err := op.Process(engine.Batch{Rec: enginetest.Record(mem, schema, b...)}, col.Emit); err != nil {
			t.Fatal(err)
		}
	}
	if err := op.Flush(col.Emit); err != nil {
		t.Fatal(err)
	}
	if err := op.Close(); err != nil {
		t.Fatal(err)
	}
	return col.Port(0), col.Port(alert.ErrorsPort), cs.Snapshot()
}

// batchRows cuts rows into batches of 1 to max rows.
func batchRows(rng *rand.Rand, rows []enginetest.Row, most int) [][]enginetest.Row {
	var out [][]enginetest.Row
	for len(rows) > 0 {
		n := min(len(rows), 1+rng.IntN(most))
		out = append(out, rows[:n])
		rows = rows[n:]
	}
	return out
}

func render(rows []enginetest.Row) string {
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintln(&b, r...)
	}
	return b.String()
}

// TestHandoverEquivalence: a step that hands its state over to a new
// instance (Snapshot, New, Restore) before any batch emits exactly what
// one step fed the whole input emits: the same alerts with the same ids,
// occur and recover times, the same rows on the errors port, and the same
// evictions (counters). Pending
// conditions, raised alerts, model rules with per-asset thresholds,
// hysteresis, evictions for max_keys and idle assets, a step without key.
func TestHandoverEquivalence(t *testing.T) {
	dir := env(t)
	for _, c := range alertHandoverCases {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(11, uint64(len(c.name))))
			batches := batchRows(rng, handoverInput(rng, 150, c.turbines), 12)
			wantA, wantE, counters := handoverRun(t, dir, c.cfg, c.schema, batches, nil)
			raised, cleared := strings.Count(render(wantA), engine.AlertRaised), strings.Count(render(wantA), engine.AlertCleared)
			if raised < 3 || cleared < 3 || len(wantE) == 0 {
				t.Fatalf("%d raised, %d cleared, %d error rows: the input tests too little", raised, cleared, len(wantE))
			}
			if c.name == "bounded" && (counters["evicted_idle"] == 0 || counters["evicted_full"] == 0 || counters["evicted_pending"]+counters["evicted_raised"] == 0) {
				t.Fatalf("counters %v: the input evicts too little", counters)
			}
			every := make([]int, 0, len(batches))
			for i := 1; i < len(batches); i++ {
				every = append(every, i)
			}
			check := func(name string, cuts []int) {
				t.Helper()
				gotA, gotE, gotC := handoverRun(t, dir, c.cfg, c.schema, batches, cuts)
				if g, w := render(gotA), render(wantA); g != w {
					t.Fatalf("%s: alerts differ from the uninterrupted run:\n got %s\nwant %s", name, g, w)
				}
				if g, w := render(gotE), render(wantE); g != w {
					t.Fatalf("%s: error rows differ from the uninterrupted run:\n got %s\nwant %s", name, g, w)
				}
				if g, w := fmt.Sprint(gotC), fmt.Sprint(counters); g != w {
					t.Fatalf("%s: counters (evictions) differ from the uninterrupted run:\n got %s\nwant %s", name, g, w)
				}
			}
			check("a cut before every batch", every)
			// One cut: at every third boundary (which third depends on the
			// case), to keep the test quick.
			for _, k := range every {
				if (k+len(c.name))%3 == 0 {
					check(fmt.Sprintf("one cut before batch %d", k), []int{k})
				}
			}
		})
	}
}

// TestHandoverPendingAndRaised: a condition pending across a hand-over
// raises after its full hold with the occur time it started at, and an
// alert raised before a hand-over clears after it with the raise's id.
func TestHandoverPendingAndRaised(t *testing.T) {
	const cfg = `rules:
  - {name: hot, expr: temp_max > 90, clear: temp_max < 80, for: 5m}`
	var batches [][]enginetest.Row
	for m := range 12 {
		temp := 95.0
		if m >= 9 {
			temp = 70
		}
		batches = append(batches, []enginetest.Row{row(m, "WT-1", temp, 1000.0)})
	}
	// Cut at minute 3 (pending since 0:00) and at minute 7 (raised at 0:05).
	want, _, _ := handoverRun(t, "", cfg, in, batches, nil)
	got, _, _ := handoverRun(t, "", cfg, in, batches, []int{3, 7})
	as := alerts(got)
	if len(as) != 2 {
		t.Fatalf("alerts %v, want a raise and a clear", as)
	}
	if s := states(as); s != "raised WT-1 hot 00:05 occur=00:00 recover=- value=95 \"hot on WT-1\"\n"+
		"cleared WT-1 hot 00:09 occur=00:00 recover=00:09 value=70 \"hot on WT-1\"\n" {
		t.Errorf("alerts:\n%s", s)
	}
	if as[0].id != as[1].id {
		t.Errorf("the clear has id %s, the raise %s", as[1].id, as[0].id)
	}
	if g, w := render(got), render(want); g != w {
		t.Errorf("alerts differ from the uninterrupted run:\n got %s\nwant %s", g, w)
	}
}

// TestHandoverIdleSweep: the step forgets an idle asset at the same row
// whether or not its state moved to a new instance in between: the time of
// the last sweep and the rows since move with the states.
func TestHandoverIdleSweep(t *testing.T) {
	// watermark_keys 1: WT-1, silent after minute 0, holds no row of WT-2
	// back, so rows are evaluated as they come.
	const cfg = "rules:\n  - {name: hot, expr: temp_max > 90}\nkey_idle: 10m\nwatermark_keys: 1\n"
	var batches [][]enginetest.Row
	for m := range 13 {
		b := []enginetest.Row{row(m, "WT-2", 70.0, 1000.0)}
		if m == 0 {
			b = append(b, row(m, "WT-1", 70.0, 1000.0))
		}
		batches = append(batches, b)
	}
	_, _, want := handoverRun(t, "", cfg, in, batches, nil)
	if want["evicted_idle"] != 1 {
		t.Fatalf("counters %v, want WT-1 forgotten", want)
	}
	for k := 1; k < len(batches); k++ {
		if _, _, got := handoverRun(t, "", cfg, in, batches, []int{k}); got["evicted_idle"] != 1 {
			t.Errorf("cut before minute %d: counters %v, want WT-1 forgotten", k, got)
		}
	}
}

const hostileRules = `rules:
  - {name: hot, expr: temp_max > 90, for: 5m}
  - {name: idle, expr: power_avg < 10}
max_keys: 1000
max_key_bytes: 16
`

func newAlert(t testing.TB, cfg string, schema *engine.Schema) *alert.Operator {
	t.Helper()
	op, err := alert.New(parse(t, cfg), schema, engine.BuildContext{Mem: memory.NewGoAllocator()})
	if err != nil {
		t.Fatal(err)
	}
	return op
}

// alertSnapshot is the snapshot of a step after rows minutes of rows of
// turbines (none: a fresh step).
func alertSnapshot(t testing.TB, cfg string, minutes int, turbines ...string) *engine.State {
	t.Helper()
	op := newAlert(t, cfg, in)
	defer op.Close()
	mem := memory.NewGoAllocator()
	col := enginetest.NewCollector()
	rng := rand.New(rand.NewPCG(1, 1))
	for m := range minutes {
		var rows []enginetest.Row
		for _, tb := range turbines {
			rows = append(rows, row(m, tb, 85+10*rng.Float64(), 1000*rng.Float64()))
		}
		if err := op.Process(engine.Batch{Rec: enginetest.Record(mem, in, rows...)}, col.Emit); err != nil {
			t.Fatal(err)
		}
	}
	st, err := op.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// checkRefused restores st into a new step and checks that it is refused
// with an error saying want, without a large allocation, and that the step
// stays fresh.
func checkRefused(t *testing.T, cfg string, st *engine.State, want string) {
	t.Helper()
	op := newAlert(t, cfg, in)
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
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Errorf("Restore allocated %d bytes before refusing", d)
	}
	got, err2 := op.Snapshot()
	if err2 != nil {
		t.Fatal(err2)
	}
	if fresh := alertSnapshot(t, cfg, 0); !bytes.Equal(got.Data, fresh.Data) {
		t.Errorf("after a refused state (%v) the step is not fresh", err)
	}
}

// TestRestoreRefusesForeignState: a state of another kind, version, key or
// rule list is refused and the step stays as built.
func TestRestoreRefusesForeignState(t *testing.T) {
	good := alertSnapshot(t, hostileRules, 10, "WT-1", "WT-2")
	noKey := newAlert(t, hostileRules, keyless)
	defer noKey.Close()
	noKeyState, err := noKey.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		st   *engine.State
		want string
	}{
		{"nil", nil, "no state"},
		{"kind", &engine.State{Kind: "window", Version: 1, Data: good.Data}, `state of a "window" step`},
		{"version", &engine.State{Kind: alert.StateKind, Version: 9, Data: good.Data}, "version 9"},
		{"rules", alertSnapshot(t, "rules:\n  - {name: hot, expr: temp_max > 90, for: 5m}\n", 10, "WT-1"), "other rules"},
		{"rule order", alertSnapshot(t, "rules:\n  - {name: idle, expr: power_avg < 10}\n  - {name: hot, expr: temp_max > 90, for: 5m}\n", 10, "WT-1"), "other rules"},
		{"key", noKeyState, "another key"},
	} {
		t.Run(c.name, func(t *testing.T) { checkRefused(t, hostileRules, c.st, c.want) })
	}
}

// TestRestoreRefusesCorruptState: every truncation of a state, bytes after
// its end and states that declare huge counts or hold invalid values are
// refused with an error, without a panic or a large allocation, and the
// step stays fresh. Random changes of single bytes never panic.
func TestRestoreRefusesCorruptState(t *testing.T) {
	good := alertSnapshot(t, hostileRules, 20, "WT-1", "WT-2", "WT-3", "TR-1")
	for n := range len(good.Data) {
		op := newAlert(t, hostileRules, in)
		err := op.Restore(&engine.State{Kind: alert.StateKind, Version: alert.StateVersion, Data: good.Data[:n]})
		op.Close()
		if err == nil {
			t.Fatalf("a state cut at %d of %d bytes was accepted", n, len(good.Data))
		}
	}
	// A fresh state: shape, now, lastSweep, rows, logged, the asset count
	// (0), then the order of a fresh step: no watermark (10 bytes), no
	// source, no row held back.
	fresh := alertSnapshot(t, hostileRules, 0).Data
	order := fresh[len(fresh)-12:]
	fresh = fresh[:len(fresh)-12]
	head := fresh[:len(fresh)-1]
	st := func(f func(w *statecodec.Writer)) *engine.State {
		w := statecodec.NewWriter(slices.Clone(head))
		f(w)
		w.Raw(order)
		return &engine.State{Kind: alert.StateKind, Version: alert.StateVersion, Data: w.Bytes()}
	}
	asset := func(w *statecodec.Writer, key string, states ...byte) {
		w.String(key)
		w.Varint(0)
		for _, s := range states {
			w.Byte(s)
			if s != 0 {
				w.Varint(1)
			}
			if s == 2 {
				w.Raw(make([]byte, 16))
				w.String("") // no rule set version
			}
		}
	}
	for _, c := range []struct {
		name string
		st   *engine.State
		want string
	}{
		{"trailing bytes", &engine.State{Kind: alert.StateKind, Version: alert.StateVersion, Data: append(slices.Clone(good.Data), 0)}, "after the end"},
		{"2^40 assets", st(func(w *statecodec.Writer) { w.Uvarint(1 << 40) }), "more than 1000"},
		{"assets beyond the bytes", st(func(w *statecodec.Writer) { w.Uvarint(999); asset(w, "a", 0, 0) }), "assets declared"},
		{"key of 2^50 bytes", st(func(w *statecodec.Writer) { w.Uvarint(1); w.Uvarint(1 << 50); w.Raw(make([]byte, 8)) }), "more than 16"},
		{"key longer than max_key_bytes", st(func(w *statecodec.Writer) { w.Uvarint(1); asset(w, strings.Repeat("x", 17), 0, 0) }), "more than 16"},
		{"rule state 3", st(func(w *statecodec.Writer) { w.Uvarint(1); asset(w, "a", 0, 3) }), "rule state 3"},
		{"assets out of order", st(func(w *statecodec.Writer) { w.Uvarint(2); asset(w, "b", 0, 0); asset(w, "a", 0, 0) }), "out of order"},
		{"asset repeated", st(func(w *statecodec.Writer) { w.Uvarint(2); asset(w, "a", 1, 0); asset(w, "a", 0, 2) }), "out of order"},
		{"raised without id", &engine.State{Kind: alert.StateKind, Version: alert.StateVersion, Data: func() []byte {
			w := statecodec.NewWriter(slices.Clone(head))
			w.Uvarint(1)
			w.String("a")
			w.Varint(0)
			w.Byte(2)
			w.Varint(1)
			w.Raw(make([]byte, 8))
			return w.Bytes()
		}()}, "truncated"},
		{"too many logged evictions", &engine.State{Kind: alert.StateKind, Version: alert.StateVersion, Data: append(append(slices.Clone(fresh[:len(fresh)-2]), 200, 1, 0), order...)}, "logged evictions"},
	} {
		t.Run(c.name, func(t *testing.T) { checkRefused(t, hostileRules, c.st, c.want) })
	}

	// A valid state written by hand is accepted: the format is what the
	// package documents.
	op := newAlert(t, hostileRules, in)
	defer op.Close()
	if err := op.Restore(st(func(w *statecodec.Writer) { w.Uvarint(2); asset(w, "a", 1, 0); asset(w, "b", 2, 1) })); err != nil {
		t.Fatalf("hand-written state: %v", err)
	}

	rng := rand.New(rand.NewPCG(4, 4))
	mem := memory.NewGoAllocator()
	for range 500 {
		d := slices.Clone(good.Data)
		d[rng.IntN(len(d))] ^= byte(1 + rng.IntN(255))
		op := newAlert(t, hostileRules, in)
		if op.Restore(&engine.State{Kind: alert.StateKind, Version: alert.StateVersion, Data: d}) == nil {
			col := enginetest.NewCollector()
			rows := []enginetest.Row{row(30, "WT-1", 99.0, 1.0), row(30, "WT-2", 50.0, 1000.0), row(40, "WT-1", 99.0, 1.0)}
			if err := op.Process(engine.Batch{Rec: enginetest.Record(mem, in, rows...)}, col.Emit); err != nil {
				t.Fatal(err)
			}
		}
		op.Close()
	}
}

// FuzzRestore restores arbitrary bytes into an alert step: no panic; a
// refused state leaves the step fresh; an accepted one runs and snapshots
// to a state that is accepted again.
func FuzzRestore(f *testing.F) {
	fresh := alertSnapshot(f, hostileRules, 0).Data
	f.Add(fresh)
	f.Add(alertSnapshot(f, hostileRules, 12, "WT-1", "WT-2", "TR-1").Data)
	mem := memory.NewGoAllocator()
	rows := []enginetest.Row{row(30, "WT-1", 99.0, 1.0), row(30, "WT-2", 50.0, 1000.0), row(40, "WT-1", 99.0, 1.0), row(41, "WT-1", 50.0, 1000.0)}
	f.Fuzz(func(t *testing.T, data []byte) {
		op := newAlert(t, hostileRules, in)
		defer op.Close()
		if err := op.Restore(&engine.State{Kind: alert.StateKind, Version: alert.StateVersion, Data: data}); err != nil {
			if got, _ := op.Snapshot(); !bytes.Equal(got.Data, fresh) {
				t.Fatalf("refused (%v) but not fresh", err)
			}
			return
		}
		again, err := op.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again.Data, data) {
			t.Fatalf("an accepted state snapshots to other bytes")
		}
		col := enginetest.NewCollector()
		if err := op.Process(engine.Batch{Rec: enginetest.Record(mem, in, rows...)}, col.Emit); err != nil {
			t.Fatal(err)
		}
	})
}

// BenchmarkSnapshotRestore measures the hand-over of 10,000 assets with
// three rules each, a quarter of them with a pending condition and a
// quarter with a raised alert. B/key is the size of the state per asset,
// ns/key the time per asset.
func BenchmarkSnapshotRestore(b *testing.B) {
	const keys = 10_000
	cfg := `rules:
  - {name: hot, expr: temp_max > 90, for: 5m}
  - {name: idle, expr: power_avg < 10, for: 10m}
  - {name: stale, expr: count < 10}
`
	mem := memory.NewGoAllocator()
	op := newAlert(b, cfg, in)
	col := enginetest.NewCollector()
	for m := range 6 {
		rows := make([]enginetest.Row, 0, keys)
		for k := range keys {
			temp := 70.0
			switch {
			case k%4 == 1 && m >= 3: // pending since minute 3
				temp = 95
			case k%4 == 2: // raised at minute 5
				temp = 95
			}
			rows = append(rows, row(m, fmt.Sprintf("WT-%05d", k), temp, 1000.0))
		}
		if err := op.Process(engine.Batch{Rec: enginetest.Record(mem, in, rows...)}, col.Emit); err != nil {
			b.Fatal(err)
		}
	}
	st, err := op.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	op.Close()
	b.Run("snapshot", func(b *testing.B) {
		op := newAlert(b, cfg, in)
		defer op.Close()
		if err := op.Restore(st); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := op.Snapshot(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(st.Data))/keys, "B/key")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/keys, "ns/key")
	})
	b.Run("restore", func(b *testing.B) {
		b.ReportAllocs()
		var restore time.Duration
		for b.Loop() {
			op := newAlert(b, cfg, in)
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
