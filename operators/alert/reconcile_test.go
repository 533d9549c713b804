package alert_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/operators/alert"
)

// reconcileRules: after minutes 0-2 of WT-1 at 95 °C and 5 kW, hot is
// raised (occur 00:00) and idle pending since 00:00 (for 10m).
const reconcileRules = `rule_set_version: "1"
rules:
  - {name: hot, expr: temp_max > 90, clear: temp_max < 80}
  - {name: idle, expr: power_avg < 10, for: 10m}
`

// reconcileRow renders an alert row with "id" for the id of the raise
// before the switch and "new" for another one.
func reconcileRow(a alertRow, raised string) string {
	id := "new"
	if a.id == raised {
		id = "id"
	}
	content := ""
	if strings.HasPrefix(a.content, alert.RetiredPrefix) {
		content = " " + strings.TrimPrefix(a.content, alert.RetiredPrefix)
	}
	return fmt.Sprintf("%s %s %s occur=%s recover=%s %s%s", a.state, a.rule, a.time, a.occur, a.recover, id, content)
}

// TestReleaseSwitchReconcile: a step rebuilt from another configuration
// takes the state of the old one (Retire on the old step, RestoreChanged
// on the new): a rule whose identity is unchanged keeps its raised alert
// (same id, clears later) and its pending condition (raises after the
// hold that started before the switch); a raised alert of a rule that
// changed (expr, for) or went away is cleared at once with its id, and a
// pending condition of such a rule starts again; an added rule starts
// fresh. A step that goes away clears its raised alerts.
func TestReleaseSwitchReconcile(t *testing.T) {
	// After the switch: WT-1 stays hot and idle until minute 12, then
	// cools (hot clears) and produces again (idle clears).
	var after []enginetest.Row
	for m := 3; m <= 14; m++ {
		temp, power := 95.0, 5.0
		if m >= 13 {
			temp, power = 70, 1000
		}
		after = append(after, row(m, "WT-1", temp, power))
	}
	const (
		retireHot     = "cleared hot 00:02 occur=00:00 recover=00:02 id "
		idleKept      = "raised idle 00:10 occur=00:00 recover=- new"
		idleKeptClear = "cleared idle 00:13 occur=00:00 recover=00:13 new"
		hotKeptClear  = "cleared hot 00:13 occur=00:00 recover=00:13 id"
	)
	for _, c := range []struct {
		name string
		next string // "" : the step goes away
		// retired: the rows Retire emits; kept: what RestoreChanged says;
		// after: the rows of the new step.
		retired []string
		kept    string
		after   []string
	}{
		{
			name: "rules unchanged", next: strings.Replace(reconcileRules, `"1"`, `"2"`, 1),
			kept:  "2 of 2 rules",
			after: []string{idleKept, hotKeptClear, idleKeptClear},
		},
		{
			name: "severity and content changed", next: strings.Replace(reconcileRules, "clear: temp_max < 80}", `clear: temp_max < 80, severity: major, content: "hot!"}`, 1),
			kept:  "2 of 2 rules",
			after: []string{idleKept, hotKeptClear, idleKeptClear},
		},
		{
			name: "expr changed", next: strings.Replace(reconcileRules, "temp_max > 90", "temp_max > 92", 1),
			retired: []string{retireHot + "the rule changed (hot on WT-1)"},
			kept:    "1 of 2 rules",
			after: []string{
				"raised hot 00:03 occur=00:03 recover=- new", idleKept,
				"cleared hot 00:13 occur=00:03 recover=00:13 new", idleKeptClear,
			},
		},
		{
			name: "clear changed", next: strings.Replace(reconcileRules, "temp_max < 80", "temp_max < 75", 1),
			retired: []string{retireHot + "the rule changed (hot on WT-1)"},
			kept:    "1 of 2 rules",
			after: []string{
				"raised hot 00:03 occur=00:03 recover=- new", idleKept,
				"cleared hot 00:13 occur=00:03 recover=00:13 new", idleKeptClear,
			},
		},
		{
			name: "raised rule removed", next: "rule_set_version: \"2\"\nrules:\n  - {name: idle, expr: power_avg < 10, for: 10m}\n",
			retired: []string{retireHot + "the rule was removed (hot on WT-1)"},
			kept:    "1 of 1 rules",
			after:   []string{idleKept, idleKeptClear},
		},
		{
			name: "rule added", next: reconcileRules + "  - {name: warm, expr: temp_max > 85}\n",
			kept: "2 of 3 rules",
			after: []string{
				"raised warm 00:03 occur=00:03 recover=- new", idleKept,
				hotKeptClear, idleKeptClear, "cleared warm 00:13 occur=00:03 recover=00:13 new",
			},
		},
		{
			name: "for of a pending rule changed", next: strings.Replace(reconcileRules, "for: 10m", "for: 5m", 1),
			kept: "1 of 2 rules",
			// Pending again from 00:03, not from 00:00.
			after: []string{
				"raised idle 00:08 occur=00:03 recover=- new", hotKeptClear,
				"cleared idle 00:13 occur=00:03 recover=00:13 new",
			},
		},
		{
			name: "for of a raised rule changed", next: strings.Replace(reconcileRules, "clear: temp_max < 80}", "clear: temp_max < 80, for: 2m}", 1),
			retired: []string{retireHot + "the rule changed (hot on WT-1)"},
			kept:    "1 of 2 rules",
			after: []string{
				"raised hot 00:05 occur=00:03 recover=- new", idleKept,
				"cleared hot 00:13 occur=00:03 recover=00:13 new", idleKeptClear,
			},
		},
		{
			name: "rules renamed and reordered", next: "rules:\n  - {name: idle, expr: power_avg < 10, for: 10m}\n  - {name: overheat, expr: temp_max > 90, clear: temp_max < 80}\n",
			retired: []string{retireHot + "the rule was removed (hot on WT-1)"},
			kept:    "1 of 2 rules",
			after: []string{
				"raised overheat 00:03 occur=00:03 recover=- new", idleKept,
				idleKeptClear, "cleared overheat 00:13 occur=00:03 recover=00:13 new",
			},
		},
		{
			name:    "step removed",
			retired: []string{retireHot + "the step was removed or replaced (hot on WT-1)"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			old := newAlertMem(t, reconcileRules, in, mem)
			col := enginetest.NewCollector()
			for m := range 3 {
				if err := old.Process(engine.Batch{Rec: enginetest.Record(mem, in, row(m, "WT-1", 95.0, 5.0))}, col.Emit); err != nil {
					t.Fatal(err)
				}
			}
			before := alerts(col.Port(0))
			if len(before) != 1 || before[0].state != engine.AlertRaised {
				t.Fatalf("before the switch: %v, want hot raised", before)
			}
			raised := before[0].id
			var next *alert.Operator
			var checked engine.Operator // as the switch gives it: built to check
			if c.next != "" {
				next = newAlertMem(t, c.next, in, mem)
				defer next.Close()
				check := newAlertMem(t, c.next, in, mem)
				defer check.Close()
				if !check.Continues(old) {
					t.Fatal("Continues refused a step of the same input and key")
				}
				checked = check
			}
			col = enginetest.NewCollector()
			n, err := old.Retire(checked, col.Emit)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, a := range alerts(col.Port(0)) {
				got = append(got, reconcileRow(a, raised))
			}
			if strings.Join(got, "\n") != strings.Join(c.retired, "\n") || n != len(c.retired) {
				t.Errorf("Retire emitted (%d):\n%s\nwant:\n%s", n, strings.Join(got, "\n"), strings.Join(c.retired, "\n"))
			}
			st, err := old.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			if err := old.Close(); err != nil {
				t.Fatal(err)
			}
			if next == nil {
				return
			}
			kept, err := next.RestoreChanged(st)
			if err != nil {
				t.Fatal(err)
			}
			if kept != c.kept {
				t.Errorf("RestoreChanged kept %q, want %q", kept, c.kept)
			}
			col = enginetest.NewCollector()
			for _, r := range after {
				if err := next.Process(engine.Batch{Rec: enginetest.Record(mem, in, r)}, col.Emit); err != nil {
					t.Fatal(err)
				}
			}
			got = got[:0]
			for _, a := range alerts(col.Port(0)) {
				got = append(got, reconcileRow(a, raised))
			}
			if strings.Join(got, "\n") != strings.Join(c.after, "\n") {
				t.Errorf("after the switch:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.after, "\n"))
			}
		})
	}
}

// TestReleaseSwitchKeepsVersion: a raised alert of an unchanged rule keeps
// the rule set version that raised it across a switch to a new version of
// its set, on its clear row; one of a changed rule is cleared naming it.
func TestReleaseSwitchKeepsVersion(t *testing.T) {
	mem := memory.NewGoAllocator()
	old := newAlertMem(t, reconcileRules+"  - {name: warm, expr: temp_max > 85}\n", in, mem)
	if err := old.Process(engine.Batch{Rec: enginetest.Record(mem, in, row(0, "WT-1", 95.0, 1000.0))}, enginetest.NewCollector().Emit); err != nil {
		t.Fatal(err)
	}
	nextCfg := strings.Replace(reconcileRules, `"1"`, `"2"`, 1) + "  - {name: warm, expr: temp_max > 88}\n"
	check, next := newAlertMem(t, nextCfg, in, mem), newAlertMem(t, nextCfg, in, mem)
	defer check.Close()
	defer next.Close()
	col := enginetest.NewCollector()
	if _, err := old.Retire(check, col.Emit); err != nil {
		t.Fatal(err)
	}
	st, err := old.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	old.Close()
	if _, err := next.RestoreChanged(st); err != nil {
		t.Fatal(err)
	}
	_, got := runVersions(t, next, mem, row(1, "WT-1", 89.0, 1000.0), row(2, "WT-1", 70.0, 1000.0))
	var ret []string
	for _, r := range col.Port(0) {
		ret = append(ret, fmt.Sprintf("%s %s %v", r[3], r[10], r[11]))
	}
	if g, w := strings.Join(ret, "\n"), "warm cleared 1"; g != w {
		t.Errorf("retired:\n%s\nwant:\n%s", g, w)
	}
	if g, w := strings.Join(got, "\n"), "warm raised 2\nhot cleared 1\nwarm cleared 2"; g != w {
		t.Errorf("after the switch:\n%s\nwant:\n%s", g, w)
	}
}

// TestReleaseSwitchIncompatible: a step of another input schema or key
// cannot continue the state (Continues), and the old step then clears
// everything; a successor that keeps fewer assets, or shorter keys, makes
// the old step clear the alerts of the assets it could not keep.
// RestoreChanged refuses a state of another key and states of the
// formats that name no rule identities.
func TestReleaseSwitchIncompatible(t *testing.T) {
	mem := memory.NewGoAllocator()
	build := func() *alert.Operator {
		op := newAlertMem(t, reconcileRules, in, mem)
		rows := []enginetest.Row{row(0, "WT-1", 95.0, 1000.0), row(0, "WT-22222", 95.0, 1000.0), row(0, "WT-3", 70.0, 1000.0)}
		if err := op.Process(engine.Batch{Rec: enginetest.Record(mem, in, rows...)}, enginetest.NewCollector().Emit); err != nil {
			t.Fatal(err)
		}
		return op
	}
	otherKey := engine.MustSchema(in.Fields, "window_start", "")
	if k := newAlertMem(t, reconcileRules, otherKey, mem); k.Continues(build()) {
		t.Error("a step without key continues a keyed step's state")
	}
	if k := newAlertMem(t, reconcileRules+"key: turbine\n", in, mem); !k.Continues(build()) {
		t.Error("key: turbine (the input's key) does not continue the state")
	}
	for _, c := range []struct {
		name, next string
		want       []string
	}{
		{"max_keys", reconcileRules + "max_keys: 2\n", []string{"WT-1 its successor keeps fewer assets", "WT-22222 its successor keeps fewer assets"}},
		{"max_key_bytes", reconcileRules + "max_key_bytes: 4\n", []string{"WT-22222 the asset key is longer than its successor's max_key_bytes"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			old := build()
			col := enginetest.NewCollector()
			check, next := newAlertMem(t, c.next, in, mem), newAlertMem(t, c.next, in, mem)
			defer check.Close()
			defer next.Close()
			if _, err := old.Retire(check, col.Emit); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, a := range alerts(col.Port(0)) {
				got = append(got, a.asset+" "+strings.TrimSuffix(strings.TrimPrefix(a.content, alert.RetiredPrefix), " (hot on "+a.asset+")"))
			}
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("retired:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
			st, err := old.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			old.Close()
			if _, err := next.RestoreChanged(st); err != nil {
				t.Fatalf("RestoreChanged: %v", err)
			}
		})
	}
	noKey := newAlertMem(t, reconcileRules, otherKey, mem)
	st, err := noKey.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newAlertMem(t, reconcileRules, in, mem).RestoreChanged(st); err == nil || !strings.Contains(err.Error(), "another key") {
		t.Errorf("RestoreChanged of another key: %v", err)
	}
	v2 := &engine.State{Kind: alert.StateKind, Version: 2, Data: st.Data}
	if _, err := newAlertMem(t, reconcileRules, in, mem).RestoreChanged(v2); err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("RestoreChanged of a version 2 state: %v", err)
	}
}

func newAlertMem(t testing.TB, cfg string, schema *engine.Schema, mem memory.Allocator) *alert.Operator {
	t.Helper()
	op, err := alert.New(parse(t, cfg), schema, engine.BuildContext{Pipeline: "site", Name: "alerts", Mem: mem})
	if err != nil {
		t.Fatal(err)
	}
	return op
}
