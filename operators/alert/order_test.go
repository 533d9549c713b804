package alert_test

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/spec"
	"github.com/sluice-edge/sluice/operators/alert"
)

// orderTurbines are the assets of the event-time order tests.
var orderTurbines = []string{"WT-1", "WT-2", "WT-3", "WT-4", "WT-5"}

// orderRules: hot needs 30 minutes, idle 10.
const orderRules = `rules:
  - {name: hot, expr: temp_max > 90, for: 30m}
  - {name: idle, expr: power_avg < 10, clear: power_avg > 50, for: 10m}
`

// orderData is 240 minutes of rows of orderTurbines, in event-time order,
// with a known alert sequence (orderWant): turbine i is hot from minute
// 10+7i to 60+7i (raised at 40+7i, cleared at 61+7i) and for 20 minutes
// from minute 120 (too short to raise); it is idle from minute 150+3i to
// 169+3i (raised at 160+3i, cleared at 170+3i).
func orderData() []enginetest.Row {
	var rows []enginetest.Row
	for m := range 240 {
		for i, tb := range orderTurbines {
			temp, power := 70.0, 1000.0
			if m >= 10+7*i && m <= 60+7*i || m >= 120 && m < 140 {
				temp = 95
			}
			if m >= 150+3*i && m < 170+3*i {
				power = 1
			}
			rows = append(rows, row(m, tb, temp, power))
		}
	}
	return rows
}

// orderWant is the alert sequence of orderData, as orderKey renders it,
// sorted.
func orderWant() []string {
	var out []string
	clk := func(m int) string { return clock(minute(m)) }
	for i, tb := range orderTurbines {
		out = append(out,
			fmt.Sprintf("%s %s hot raised occur=%s", clk(40+7*i), tb, clk(10+7*i)),
			fmt.Sprintf("%s %s hot cleared occur=%s", clk(61+7*i), tb, clk(10+7*i)),
			fmt.Sprintf("%s %s idle raised occur=%s", clk(160+3*i), tb, clk(150+3*i)),
			fmt.Sprintf("%s %s idle cleared occur=%s", clk(170+3*i), tb, clk(150+3*i)))
	}
	slices.Sort(out)
	return out
}

// orderKey renders an alert without its id, sorted with others by time,
// asset and rule.
func orderKey(a alertRow) string {
	return fmt.Sprintf("%s %s %s %s occur=%s", a.time, a.asset, a.rule, a.state, a.occur)
}

// sortedAlerts returns the alerts rendered with their ids, in the order of
// orderKey (the order of alerts of one asset is checked by the step's
// evaluation order, not by how the rows arrived).
func sortedAlerts(rows []enginetest.Row) (keys, withIDs []string) {
	as := alerts(rows)
	slices.SortStableFunc(as, func(a, b alertRow) int { return cmp.Compare(orderKey(a), orderKey(b)) })
	for _, a := range as {
		keys = append(keys, orderKey(a))
		withIDs = append(withIDs, orderKey(a)+" "+a.id)
	}
	return keys, withIDs
}

// shuffleWithin returns rows in an arrival order where every row comes at
// most lateness (ms) of event time after a row of larger event time: each
// row arrives at its event time plus a random delay of up to lateness.
func shuffleWithin(rng *rand.Rand, rows []enginetest.Row, lateness int64) []enginetest.Row {
	type arrival struct {
		at  int64
		row enginetest.Row
	}
	as := make([]arrival, len(rows))
	for i, r := range rows {
		as[i] = arrival{at: r[0].(int64) + rng.Int64N(lateness+1), row: r}
	}
	slices.SortStableFunc(as, func(a, b arrival) int { return cmp.Compare(a.at, b.at) })
	out := make([]enginetest.Row, len(as))
	for i, a := range as {
		out[i] = a.row
	}
	return out
}

// TestEventTimeShuffledWithinLateness: rows shuffled within the allowed
// lateness raise exactly the alerts of the ordered input — the same ids,
// times, occur times and states — with several seeds and batch sizes, and
// no row goes to the errors port; in arrival order the same shuffled rows
// raise other alerts, so the order is what makes the difference.
func TestEventTimeShuffledWithinLateness(t *testing.T) {
	data := orderData()
	ordered, _, _ := handoverRun(t, "", orderRules+"lateness: 10m\n", in, [][]enginetest.Row{data}, nil)
	keys, want := sortedAlerts(ordered)
	if !slices.Equal(keys, orderWant()) {
		t.Fatalf("ordered input:\n%s\nwant\n%s", strings.Join(keys, "\n"), strings.Join(orderWant(), "\n"))
	}
	arrivalDiffers := false
	for _, c := range []struct {
		name     string
		lateness string
		ms       int64
	}{
		{"lateness 10m", "10m", 10 * 60_000},
		{"lateness 3m", "3m", 3 * 60_000},
		{"lateness 1h", "1h", 60 * 60_000},
	} {
		for seed := range uint64(5) {
			t.Run(fmt.Sprintf("%s seed %d", c.name, seed), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(seed, 11))
				shuffled := shuffleWithin(rng, data, c.ms)
				if slices.EqualFunc(shuffled, data, func(a, b enginetest.Row) bool { return a[0] == b[0] && a[2] == b[2] }) {
					t.Fatal("the shuffle left the rows in order")
				}
				batches := batchRows(rng, shuffled, 50)
				got, errs, counters := handoverRun(t, "", orderRules+"lateness: "+c.lateness+"\n", in, batches, nil)
				if len(errs) > 0 || counters["late_rows"] != 0 {
					t.Fatalf("%d rows on the errors port (%v), late_rows %d", len(errs), errs[0], counters["late_rows"])
				}
				if _, g := sortedAlerts(got); !slices.Equal(g, want) {
					t.Errorf("shuffled:\n%s\nwant\n%s", strings.Join(g, "\n"), strings.Join(want, "\n"))
				}
				arr, _, _ := handoverRun(t, "", orderRules+"order: arrival\n", in, batches, nil)
				if _, a := sortedAlerts(arr); !slices.Equal(a, want) {
					arrivalDiffers = true
				}
			})
		}
	}
	if !arrivalDiffers {
		t.Error("in arrival order the shuffled rows raise the same alerts: the data does not test the order")
	}
}

// TestEventTimeLateRows: a row older than the watermark (the newest event
// time less the lateness, here the second most advanced asset's) goes to
// the errors port with the reason and is counted as late_rows; it changes
// no state. Rows within the lateness are evaluated in order.
func TestEventTimeLateRows(t *testing.T) {
	rows := []enginetest.Row{
		row(0, "WT-1", 95.0, 1000.0), row(0, "WT-2", 70.0, 1000.0),
		row(20, "WT-1", 95.0, 1000.0), row(20, "WT-2", 70.0, 1000.0), // watermark 00:15
		row(16, "WT-1", 70.0, 1000.0),                                // within the lateness: before 00:20, the hold restarts
		row(14, "WT-1", 70.0, 1000.0),                                // behind the watermark, after WT-1's evaluated 00:00: evaluated now
		row(40, "WT-1", 95.0, 1000.0), row(40, "WT-2", 70.0, 1000.0), // watermark 00:35: WT-1 evaluated to 00:20
		row(18, "WT-1", 70.0, 1000.0), // late: WT-1's row of 00:20 was evaluated
	}
	// The watermark moves at the end of each batch.
	for _, batch := range []int{1, 2} {
		got, errs, counters := run(t, "", "lateness: 5m\nrules: [{name: hot, expr: temp_max > 90, for: 30m}]", batch, rows...)
		if len(got) != 0 {
			t.Errorf("batch %d: alerts %v: the rows of 00:14 and 00:16 end the hold of 00:00", batch, got)
		}
		if len(errs) != 1 || counters["late_rows"] != 1 || counters["error_rows"] != 1 {
			t.Fatalf("batch %d: errors %v, counters %v", batch, errs, counters)
		}
		reason := errs[0][len(errs[0])-1].(string)
		want := "late: event time 2024-05-01T00:18:00.000Z is before the asset's latest evaluated row at 2024-05-01T00:20:00.000Z"
		if errs[0][2] != "WT-1" || reason != want {
			t.Errorf("batch %d: error row %v, want WT-1 with %q", batch, errs[0], want)
		}
	}
	// Without the rows of 00:14 and 00:16 the alert is raised: the late
	// row of 00:18 changed no state.
	noEnd := slices.Delete(slices.Clone(rows), 4, 6)
	got, errs, _ := run(t, "", "lateness: 5m\nrules: [{name: hot, expr: temp_max > 90, for: 30m}]", 1, noEnd...)
	if s := states(got); len(errs) != 1 || s != "raised WT-1 hot 00:40 occur=00:00 recover=- value=95 \"hot on WT-1\"\n" {
		t.Errorf("alerts %s, errors %v: the late row of 00:18 changed a state", s, errs)
	}
}

// TestEventTimeLaggingAsset: an asset whose rows arrive behind the
// watermark the others set (a device with a slow link, with the default
// lateness of 0) is evaluated, in its own order, not sent to errors.
func TestEventTimeLaggingAsset(t *testing.T) {
	var rows []enginetest.Row
	for m := 0; m <= 60; m += 5 {
		rows = append(rows, row(m, "WT-1", 70.0, 1000.0), row(m, "WT-2", 70.0, 1000.0))
	}
	for m := 0; m <= 40; m += 5 { // WT-3 reports late, hot from 00:10
		temp := 70.0
		if m >= 10 {
			temp = 95
		}
		rows = append(rows, row(m, "WT-3", temp, 1000.0))
	}
	for _, batch := range []int{1, 3} {
		got, errs, counters := run(t, "", "rules: [{name: hot, expr: temp_max > 90, for: 20m}]", batch, rows...)
		if len(errs) != 0 || counters["late_rows"] != 0 {
			t.Fatalf("batch %d: the lagging asset's rows went to errors: %v", batch, errs)
		}
		if s := states(got); s != "raised WT-3 hot 00:30 occur=00:10 recover=- value=95 \"hot on WT-3\"\n" {
			t.Errorf("batch %d: alerts %s", batch, s)
		}
	}
}

// TestEventTimeSnapshotMidStream: a step in event-time order handed over
// (Snapshot, Restore into a new step) at any batch, with rows held back
// for the watermark, emits exactly what an uninterrupted step emits.
func TestEventTimeSnapshotMidStream(t *testing.T) {
	data := orderData()
	cfg := orderRules + "lateness: 10m\n"
	for seed := range uint64(3) {
		rng := rand.New(rand.NewPCG(seed, 12))
		batches := batchRows(rng, shuffleWithin(rng, data, 10*60_000), 40)
		wantRows, wantErrs, _ := handoverRun(t, "", cfg, in, batches, nil)
		for _, cuts := range [][]int{{1}, {len(batches) / 3}, {len(batches) / 2, len(batches) - 1}, {5, 9, 17, 33, 65}} {
			gotRows, gotErrs, _ := handoverRun(t, "", cfg, in, batches, cuts)
			if render(gotRows) != render(wantRows) || render(gotErrs) != render(wantErrs) {
				t.Errorf("seed %d cuts %v:\n%s\nwant\n%s", seed, cuts, render(gotRows), render(wantRows))
			}
		}
	}
}

// TestEventTimeReleaseSwitch: the rows held back for the watermark move
// with RestoreChanged to the step that continues the state (a rule added),
// which evaluates them as the old step would have; a step that goes away
// evaluates them before Retire ends its alerts.
func TestEventTimeReleaseSwitch(t *testing.T) {
	rows := []enginetest.Row{
		row(0, "WT-1", 95.0, 1000.0), row(0, "WT-2", 70.0, 1000.0),
		row(1, "WT-1", 95.0, 1000.0), row(2, "WT-1", 70.0, 1000.0), // held back: WT-2 is at 00:00
	}
	const cfg = "rules:\n  - {name: hot, expr: temp_max > 90}\n"
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	col := enginetest.NewCollector()
	old := newAlertMem(t, cfg, in, mem)
	if err := old.Process(engine.Batch{Rec: enginetest.Record(mem, in, rows...)}, col.Emit); err != nil {
		t.Fatal(err)
	}
	if got := states(alerts(col.Port(0))); got != "raised WT-1 hot 00:00 occur=00:00 recover=- value=95 \"hot on WT-1\"\n" {
		t.Fatalf("before the switch:\n%s", got)
	}
	next := newAlertMem(t, cfg+"  - {name: idle, expr: power_avg < 10}\n", in, mem)
	defer next.Close()
	if ended, err := old.Retire(next, col.Emit); err != nil || ended != 0 {
		t.Fatalf("Retire: %d, %v", ended, err)
	}
	st, err := old.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	old.Close()
	if kept, err := next.RestoreChanged(st); err != nil || kept != "1 of 2 rules" {
		t.Fatalf("RestoreChanged: %q, %v", kept, err)
	}
	if err := next.Flush(col.Emit); err != nil {
		t.Fatal(err)
	}
	as := alerts(col.Port(0))
	if len(as) != 2 || as[1].state != "cleared" || as[1].time != "00:02" || as[1].id != as[0].id {
		t.Errorf("after the switch: %v, want the alert raised before it cleared at 00:02 with its id", as)
	}

	// A step that goes away: its rows held back are evaluated, then its
	// raised alerts end.
	col = enginetest.NewCollector()
	gone := newAlertMem(t, cfg, in, mem)
	defer gone.Close()
	if err := gone.Process(engine.Batch{Rec: enginetest.Record(mem, in, rows[:3]...)}, col.Emit); err != nil {
		t.Fatal(err)
	}
	if ended, err := gone.Retire(nil, col.Emit); err != nil || ended != 1 {
		t.Fatalf("Retire: %d, %v", ended, err)
	}
	as = alerts(col.Port(0))
	if len(as) != 2 || as[1].time != "00:01" || !strings.HasPrefix(as[1].content, alert.RetiredPrefix) {
		t.Errorf("a step going away: %v, want its alert ended at 00:01, the newest row it held back", as)
	}
}

// TestEventTimeMaxBufferedRows: beyond max_buffered_rows the oldest rows
// are evaluated early (evaluated_early); a later row of the same asset
// older than one evaluated goes to the errors port with the reason.
func TestEventTimeMaxBufferedRows(t *testing.T) {
	var rows []enginetest.Row
	rows = append(rows, row(0, "WT-2", 70.0, 1000.0)) // WT-2 holds the watermark at 00:00
	for m := range 10 {
		rows = append(rows, row(m+1, "WT-1", 95.0, 1000.0))
	}
	rows = append(rows, row(3, "WT-1", 70.0, 1000.0)) // older than rows evaluated early
	got, errs, counters := run(t, "", "max_buffered_rows: 4\nrules: [{name: hot, expr: temp_max > 90, for: 5m}]", 1, rows...)
	if counters["evaluated_early"] != 6 {
		t.Errorf("evaluated_early %d, want 6 (10 rows of WT-1, 4 held back)", counters["evaluated_early"])
	}
	if len(errs) != 1 || !strings.Contains(errs[0][len(errs[0])-1].(string), "before the asset's latest evaluated row at 2024-05-01T00:06:00.000Z") {
		t.Errorf("errors %v", errs)
	}
	if s := states(got); s != "raised WT-1 hot 00:06 occur=00:01 recover=- value=95 \"hot on WT-1\"\n" {
		t.Errorf("alerts:\n%s", s)
	}
}

// TestEventTimeReadsVersion3: a state of the format before the event-time
// order (version 3) is still read by Restore and RestoreChanged.
func TestEventTimeReadsVersion3(t *testing.T) {
	v3, err := v3State(t, orderRules)
	if err != nil {
		t.Fatal(err)
	}
	for _, changed := range []bool{false, true} {
		op := newAlert(t, orderRules, in)
		if changed {
			_, err = op.RestoreChanged(v3)
		} else {
			err = op.Restore(v3)
		}
		if err != nil {
			t.Errorf("changed %v: %v", changed, err)
		}
		op.Close()
	}
}

// v3State is the state of a step of configuration cfg in arrival order
// after a few rows, in format version 3: version 4 without the order of a
// step that holds nothing back (12 bytes).
func v3State(t *testing.T, cfg string) (*engine.State, error) {
	t.Helper()
	op := newAlert(t, cfg+"order: arrival\n", in)
	defer op.Close()
	col := enginetest.NewCollector()
	if err := op.Process(engine.Batch{Rec: enginetest.Record(memory.NewGoAllocator(), in, row(0, "WT-1", 95.0, 1.0), row(1, "WT-1", 95.0, 1.0))}, col.Emit); err != nil {
		return nil, err
	}
	st, err := op.Snapshot()
	if err != nil {
		return nil, err
	}
	return &engine.State{Kind: st.Kind, Version: 3, Data: st.Data[:len(st.Data)-12]}, nil
}

// TestOrderConfig: the order fields' defaults and errors.
func TestOrderConfig(t *testing.T) {
	const rules = "rules: [{name: hot, expr: temp_max > 1}]\n"
	for _, c := range []struct {
		name, config string
		ordered      bool // the input is a window step's windows
		want         []string
	}{
		{"negative lateness", "lateness: -1m\n" + rules, false, []string{"p.yaml:1:11: lateness must not be negative, got -1m0s"}},
		{"watermark_keys", "watermark_keys: 17\n" + rules, false, []string{"p.yaml:1:17: watermark_keys must be between 1 and 16, got 17"}},
		{"watermark_idle_rows", "watermark_idle_rows: 0\n" + rules, false, []string{"p.yaml:1:22: watermark_idle_rows must be at least 1, got 0"}},
		{"max_buffered_rows", "max_buffered_rows: 0\n" + rules, false, []string{"p.yaml:1:20: max_buffered_rows must be between 1 and 10000000, got 0"}},
		{"unknown order", "order: event\n" + rules, false, []string{`p.yaml:1:8: field "order": "event" is not one of event_time, arrival`}},
		{"lateness in arrival order", "order: arrival\nlateness: 5m\n" + rules, false,
			[]string{"p.yaml:2:11: lateness orders rows by event time, but the step evaluates them in arrival order: order: arrival"}},
		{"lateness after a window", "lateness: 5m\n" + rules, true,
			[]string{"p.yaml:1:11: lateness orders rows by event time, but the step evaluates them in arrival order: the input is a window step's windows, already in event-time order per asset (set order: event_time to order them again)"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(c.config), &n); err != nil {
				t.Fatal(err)
			}
			cfg, errs := alert.Spec.Parse("p.yaml", &n, "type", "input")
			if len(errs) > 0 {
				got := []string{}
				for _, e := range errs {
					got = append(got, e.Error())
				}
				if !slices.Equal(got, c.want) {
					t.Errorf("parse errors %v, want %v", got, c.want)
				}
				return
			}
			_, err := alert.New(cfg, in, engine.BuildContext{InputKeyOrdered: c.ordered})
			es := spec.Collect(spec.Pos{}, err)
			var got []string
			for _, e := range es {
				got = append(got, e.Error())
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("got %v\nwant %v", got, c.want)
			}
		})
	}
	// After a window step the default is arrival order: a row out of order
	// is evaluated, not late; order: event_time orders it again.
	rows := []enginetest.Row{row(5, "WT-1", 95.0, 1.0), row(2, "WT-1", 70.0, 1.0)}
	for _, c := range []struct {
		config string
		late   int
	}{{rules, 0}, {"order: event_time\n" + rules, 1}} {
		mem := memory.NewGoAllocator()
		op, err := alert.New(parse(t, c.config), in, engine.BuildContext{InputKeyOrdered: true, Mem: mem})
		if err != nil {
			t.Fatal(err)
		}
		col := enginetest.NewCollector()
		for _, r := range rows {
			if err := op.Process(engine.Batch{Rec: enginetest.Record(mem, in, r)}, col.Emit); err != nil {
				t.Fatal(err)
			}
		}
		if err := op.Flush(col.Emit); err != nil {
			t.Fatal(err)
		}
		op.Close()
		if n := len(col.Port(alert.ErrorsPort)); n != c.late {
			t.Errorf("%q after a window: %d late rows, want %d", c.config, n, c.late)
		}
	}
}

// TestEventTimeNoAllocationPerRow: in event-time order, holding rows back
// and evaluating them allocates per batch, not per row.
func TestEventTimeNoAllocationPerRow(t *testing.T) {
	op := newAlert(t, orderRules+"lateness: 2m\n", in)
	defer op.Close()
	mem := memory.NewGoAllocator()
	m := 0
	mk := func(n int) arrow.RecordBatch {
		var rows []enginetest.Row
		for i := range n {
			rows = append(rows, row(m, fmt.Sprintf("WT-%d", i%50), 50.0, 1000.0))
			if i%50 == 49 {
				m++
			}
		}
		m++
		return enginetest.Record(mem, in, rows...)
	}
	discard := func(_ int, b engine.Batch) error { b.Release(); return nil }
	measure := func(n int) float64 {
		var bs []arrow.RecordBatch
		for range 21 {
			bs = append(bs, mk(n))
		}
		i := 0
		return testing.AllocsPerRun(20, func() {
			if err := op.Process(engine.Batch{Rec: bs[i]}, discard); err != nil {
				t.Fatal(err)
			}
			i++
		})
	}
	measure(1000) // creates the asset states, grows the buffer
	a, b := measure(50), measure(1000)
	t.Logf("allocations per batch: %v for 50 rows, %v for 1,000 rows", a, b)
	if b > a+1 {
		t.Errorf("%v allocations for 50 rows, %v for 1,000 rows", a, b)
	}
}
