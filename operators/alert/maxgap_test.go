package alert_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/spec"
	"github.com/sluice-edge/sluice/operators/alert"
)

// gapRow is one row of the max_gap dataset.
type gapRow struct {
	t     int64
	asset string
	hot   bool
}

// gapData makes rows of assets, mostly one minute apart with random gaps
// of minutes to hours, and a condition that holds in random stretches.
func gapData(seed uint64, assets []string, n int) []gapRow {
	rng := rand.New(rand.NewPCG(seed, 7))
	var out []gapRow
	for _, a := range assets {
		t, hot := t0, false
		for range n {
			switch r := rng.IntN(100); {
			case r < 6:
				t += int64(time.Duration(2+rng.IntN(240)) * time.Minute / time.Millisecond) // 2 min to 4 h
			case r < 12:
				t += int64(time.Duration(5+rng.IntN(15)) * time.Minute / time.Millisecond) // 5 to 20 min
			default:
				t += 60_000
			}
			if rng.IntN(100) < 8 {
				hot = !hot
			}
			out = append(out, gapRow{t: t, asset: a, hot: hot})
		}
	}
	slices.SortStableFunc(out, func(a, b gapRow) int { return int(a.t - b.t) })
	return out
}

// gapExpect computes the alerts of a rule "hot" (expr: hot, for: hold,
// max_gap: maxGap; 0 for none) without the step: per asset, a row raises
// when the condition has held on every row since the start of its run —
// the longest stretch of rows before it, none more than maxGap after the
// previous one, all holding — for at least hold, and no alert is raised;
// a raised alert clears at the first row where the condition fails.
func gapExpect(rows []gapRow, hold, maxGap int64) []string {
	byAsset := map[string][]gapRow{}
	var order []string
	for _, r := range rows {
		if _, ok := byAsset[r.asset]; !ok {
			order = append(order, r.asset)
		}
		byAsset[r.asset] = append(byAsset[r.asset], r)
	}
	type ev struct {
		t     int64
		asset string
		s     string
	}
	var evs []ev
	for _, a := range order {
		rs := byAsset[a]
		active, occur := false, int64(0)
		for k, r := range rs {
			if active {
				if !r.hot {
					evs = append(evs, ev{r.t, a, fmt.Sprintf("cleared %s %d occur=%d", a, r.t, occur)})
					active = false
				}
				continue
			}
			if !r.hot {
				continue
			}
			start := k
			for start > 0 && rs[start-1].hot && (maxGap == 0 || rs[start].t-rs[start-1].t <= maxGap) {
				start--
			}
			if r.t-rs[start].t >= hold {
				active, occur = true, rs[start].t
				evs = append(evs, ev{r.t, a, fmt.Sprintf("raised %s %d occur=%d", a, r.t, occur)})
			}
		}
	}
	slices.SortStableFunc(evs, func(x, y ev) int {
		if x.t != y.t {
			return int(x.t - y.t)
		}
		return strings.Compare(x.asset, y.asset)
	})
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.s
	}
	return out
}

// gapRun feeds rows to a step with config in batches and returns its
// alerts in the form of gapExpect, sorted the same way.
func gapRun(t *testing.T, config string, rows []gapRow) []string {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	op, err := alert.New(parse(t, config), in, engine.BuildContext{Pipeline: "site", Name: "alerts", Mem: mem})
	if err != nil {
		t.Fatal(err)
	}
	col := enginetest.NewCollector()
	for len(rows) > 0 {
		n := min(37, len(rows))
		var batch []enginetest.Row
		for _, r := range rows[:n] {
			temp := 70.0
			if r.hot {
				temp = 95
			}
			batch = append(batch, enginetest.Row{r.t, r.t + 60_000, r.asset, int64(60), temp, 1000.0})
		}
		if err := op.Process(engine.Batch{Rec: enginetest.Record(mem, in, batch...)}, col.Emit); err != nil {
			t.Fatal(err)
		}
		rows = rows[n:]
	}
	if err := op.Flush(col.Emit); err != nil {
		t.Fatal(err)
	}
	if err := op.Close(); err != nil {
		t.Fatal(err)
	}
	if e := col.Port(alert.ErrorsPort); len(e) > 0 {
		t.Fatalf("error rows: %v", e)
	}
	var out []string
	type ev struct {
		t     int64
		asset string
		s     string
	}
	var evs []ev
	for _, r := range col.Port(0) {
		tm, asset := r[0].(int64), r[2].(string)
		evs = append(evs, ev{tm, asset, fmt.Sprintf("%s %s %d occur=%d", r[10], asset, tm, r[8].(int64))})
	}
	slices.SortStableFunc(evs, func(x, y ev) int {
		if x.t != y.t {
			return int(x.t - y.t)
		}
		return strings.Compare(x.asset, y.asset)
	})
	for _, e := range evs {
		out = append(out, e.s)
	}
	return out
}

// TestMaxGapRestartsHold: a rule with for and max_gap raises exactly
// where an independent computation over data with random gaps says (a
// gap longer than max_gap restarts the hold, and the alert's occur time is
// the first row after the last such gap); without max_gap the same data
// raises where holds span gaps, so the field makes a difference.
func TestMaxGapRestartsHold(t *testing.T) {
	const minute = int64(60_000)
	for _, c := range []struct {
		name         string
		hold, maxGap int64
	}{
		{"for 30m max_gap 10m", 30 * minute, 10 * minute},
		{"for 30m max_gap 1m", 30 * minute, minute},
		{"for 2h max_gap 30m", 120 * minute, 30 * minute},
		{"for 30m no max_gap", 30 * minute, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := fmt.Sprintf("rules: [{name: hot, expr: temp_max > 90, clear: temp_max <= 90, for: %dms", c.hold)
			if c.maxGap > 0 {
				cfg += fmt.Sprintf(", max_gap: %dms", c.maxGap)
			}
			cfg += "}]"
			raisedWithout, raisedWith := 0, 0
			for seed := range uint64(4) {
				rows := gapData(seed, []string{"WT-1", "WT-2", "WT-3"}, 3000)
				want := gapExpect(rows, c.hold, c.maxGap)
				got := gapRun(t, cfg, rows)
				if !slices.Equal(got, want) {
					t.Fatalf("seed %d: got %d alert rows, want %d\n got %v\nwant %v", seed, len(got), len(want), got, want)
				}
				raisedWith += len(want)
				raisedWithout += len(gapExpect(rows, c.hold, 0))
			}
			if raisedWith == 0 {
				t.Fatal("the dataset raises no alert")
			}
			if c.maxGap > 0 && raisedWith >= raisedWithout {
				t.Errorf("max_gap raised %d alert rows, as many as without it (%d): the dataset's gaps decide nothing", raisedWith, raisedWithout)
			}
		})
	}
}

// TestMaxGapConfigErrors: max_gap must be positive and needs a positive
// for.
func TestMaxGapConfigErrors(t *testing.T) {
	for _, c := range []struct{ name, config, want string }{
		{"zero", "rules: [{name: hot, expr: temp_max > 1, for: 5m, max_gap: 0s}]", "p.yaml:1:59: max_gap must be positive, got 0s"},
		{"negative", "rules: [{name: hot, expr: temp_max > 1, for: 5m, max_gap: -1m}]", "p.yaml:1:59: max_gap must be positive, got -1m0s"},
		{"without for", "rules: [{name: hot, expr: temp_max > 1, max_gap: 1m}]", "p.yaml:1:50: max_gap bounds the gaps within a hold: it needs a positive `for`"},
		{"for 0s", "rules: [{name: hot, expr: temp_max > 1, for: 0s, max_gap: 1m}]", "p.yaml:1:59: max_gap bounds the gaps within a hold: it needs a positive `for`"},
		{"below a millisecond", "rules: [{name: hot, expr: temp_max > 1, for: 5m, max_gap: 10us}]", "p.yaml:1:59: max_gap must be at least 1ms, got 10µs"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := alert.New(parse(t, c.config), in, engine.BuildContext{})
			es := spec.Collect(spec.Pos{}, err)
			if len(es) != 1 || es[0].Error() != c.want {
				t.Errorf("got %v\nwant %s", err, c.want)
			}
		})
	}
}

// TestMaxGapIsPartOfRuleIdentity: a release switch that changes a rule's
// max_gap does not continue its state (it decides when the rule raises);
// one that keeps it does.
func TestMaxGapIsPartOfRuleIdentity(t *testing.T) {
	const old = "rules: [{name: idle, expr: power_avg < 10, for: 30m, max_gap: 10m}]"
	for _, c := range []struct{ next, kept string }{
		{old, "1 of 1 rules"},
		{strings.Replace(old, "10m", "20m", 1), "0 of 1 rules"},
		{strings.Replace(old, ", max_gap: 10m", "", 1), "0 of 1 rules"},
	} {
		prev := newAlert(t, old, in)
		mem := memory.NewGoAllocator()
		col := enginetest.NewCollector()
		if err := prev.Process(engine.Batch{Rec: enginetest.Record(mem, in, row(0, "WT-1", 70.0, 5.0), row(1, "WT-1", 70.0, 5.0))}, col.Emit); err != nil {
			t.Fatal(err)
		}
		st, err := prev.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		next := newAlert(t, c.next, in)
		kept, err := next.RestoreChanged(st)
		if err != nil || kept != c.kept {
			t.Errorf("%s: RestoreChanged says %q, %v; want %q", c.next, kept, err, c.kept)
		}
		prev.Close()
		next.Close()
	}
}
