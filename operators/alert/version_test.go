package alert_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/hub/ingest"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/spec"
	"github.com/sluice-edge/sluice/engine/statecodec"
	"github.com/sluice-edge/sluice/operators/alert"
)

// versionSets are rule sets of a release: one declaring its version, one
// not.
func versionSets(t *testing.T) map[string]*engine.RuleSet {
	return map[string]*engine.RuleSet{
		"declared": ruleSet(t, "rules/declared.yaml", "version: turbine 3.1\nrules:\n  - {name: set_hot, expr: temp_max > 90}\n"),
		"plain":    ruleSet(t, "rules/plain.yaml", "rules:\n  - {name: set_hot, expr: temp_max > 90}\n"),
	}
}

// runVersions runs an alert step over rows and returns its output schema
// and, per alert row, "rule state version" (version "-" when null).
func runVersions(t *testing.T, op *alert.Operator, mem memory.Allocator, rows ...enginetest.Row) (*engine.Schema, []string) {
	t.Helper()
	col := enginetest.NewCollector()
	if err := op.Process(engine.Batch{Rec: enginetest.Record(mem, in, rows...)}, col.Emit); err != nil {
		t.Fatal(err)
	}
	if err := op.Flush(col.Emit); err != nil { // the rows held back for the watermark
		t.Fatal(err)
	}
	out := op.Outputs()[0].Schema
	vi := out.Index(engine.RuleSetVersionColumn)
	var got []string
	for _, r := range col.Port(0) {
		v := "-"
		if vi >= 0 && r[vi] != nil {
			v = r[vi].(string)
		}
		got = append(got, fmt.Sprintf("%s %s %s", r[3], r[10], v))
	}
	return out, got
}

// TestRuleSetVersions: the alerts of a rule from a rule set name the set's
// version — the declared one, else the set's file in its release — on the
// raise and on the clear row; the step's own rules name rule_set_version
// when the step declares it, and null otherwise. The output has the
// rule_set_version column only when the step includes rule sets or
// declares rule_set_version, so steps without versions keep
// engine.AlertSchema.
func TestRuleSetVersions(t *testing.T) {
	sets := versionSets(t)
	own := "rules: [{name: own_hot, expr: temp_max > 90}]\n"
	cases := []struct {
		name, config, release string
		sets                  map[string]*engine.RuleSet
		schema                *engine.Schema
		want                  []string
	}{
		{"own rules, no version", own, "", nil, engine.AlertSchema,
			[]string{"own_hot raised -", "own_hot cleared -"}},
		{"own rules in a release, no version", own, "windfarm v7", sets, engine.AlertSchema,
			[]string{"own_hot raised -", "own_hot cleared -"}},
		{"own rules with rule_set_version", own + "rule_set_version: farm 2024.06\n", "", nil, engine.VersionedAlertSchema,
			[]string{"own_hot raised farm 2024.06", "own_hot cleared farm 2024.06"}},
		{"declared version", "include: [declared]\n", "windfarm v7", sets, engine.VersionedAlertSchema,
			[]string{"set_hot raised turbine 3.1", "set_hot cleared turbine 3.1"}},
		{"version of the release", "include: [plain]\n", "windfarm v7", sets, engine.VersionedAlertSchema,
			[]string{"set_hot raised windfarm v7 rules/plain.yaml", "set_hot cleared windfarm v7 rules/plain.yaml"}},
		{"release without a name yet", "include: [plain]\n", "", sets, engine.VersionedAlertSchema,
			[]string{"set_hot raised rules/plain.yaml", "set_hot cleared rules/plain.yaml"}},
		{"own rules without version and a set", own + "include: [declared]\n", "windfarm v7", sets, engine.VersionedAlertSchema,
			[]string{"own_hot raised -", "set_hot raised turbine 3.1", "own_hot cleared -", "set_hot cleared turbine 3.1"}},
		{"own rules with version and a set", own + "rule_set_version: \"9\"\ninclude: [plain]\n", "windfarm v8", sets, engine.VersionedAlertSchema,
			[]string{"own_hot raised 9", "set_hot raised windfarm v8 rules/plain.yaml", "own_hot cleared 9", "set_hot cleared windfarm v8 rules/plain.yaml"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			op, err := alert.New(parse(t, c.config), in, engine.BuildContext{Pipeline: "site", Name: "alerts", Mem: mem, RuleSets: c.sets, Release: c.release})
			if err != nil {
				t.Fatal(err)
			}
			defer op.Close()
			out, got := runVersions(t, op, mem, row(0, "WT-1", 95.0, 1.0), row(1, "WT-1", 50.0, 1.0))
			if !out.Equal(c.schema) {
				t.Errorf("output schema %s, want %s", out, c.schema)
			}
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("alerts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

// TestRuleSetVersionErrors: a declared version is 1 to 256 bytes of text
// without control characters, in a rule set and in a step.
func TestRuleSetVersionErrors(t *testing.T) {
	long := strings.Repeat("v", alert.MaxVersionBytes+1)
	for _, c := range []struct {
		name, set, step, want string
	}{
		{"empty in a set", "version: \"\"\n", "", `rules/x.yaml:1:10: version: name a version or leave the field out`},
		{"too long in a set", "version: " + long + "\n", "", `rules/x.yaml:1:10: version: 257 bytes, longer than 256`},
		{"control character in a set", "version: \"v1\\tb\"\n", "", `rules/x.yaml:1:10: version: "v1\tb" holds a control character`},
		{"empty in a step", "", "rule_set_version: \"\"\n", `p.yaml:2:19: rule_set_version: name a version or leave the field out`},
		{"newline in a step", "", "rule_set_version: \"a\\nb\"\n", `p.yaml:2:19: rule_set_version: "a\nb" holds a control character`},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.set != "" {
				var errs spec.Errors
				n := yamlNode(t, c.set+"rules:\n  - {name: a, expr: temp_max > 1}\n")
				_, errs = alert.ParseRuleSet("rules/x.yaml", n)
				if len(errs) != 1 || errs[0].Error() != c.want {
					t.Fatalf("got %v, want %s", errs, c.want)
				}
				return
			}
			op, err := alert.New(parse(t, "rules: [{name: a, expr: temp_max > 1}]\n"+c.step), in, engine.BuildContext{})
			if err == nil {
				op.Close()
				t.Fatal("no error")
			}
			if err.Error() != c.want {
				t.Fatalf("got %v, want %s", err, c.want)
			}
		})
	}
}

// TestRestoreKeepsRuleSetVersion: an alert raised under one version of a
// rule set and handed over to a step built from the next version (a
// release switch) clears naming the version that raised it; alerts raised
// after the switch name the new version. A state in the format without
// versions (1) is still read: its raised alerts clear naming none.
func TestRestoreKeepsRuleSetVersion(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	build := func(version string) *alert.Operator {
		t.Helper()
		sets := map[string]*engine.RuleSet{"turbine": ruleSet(t, "rules/turbine.yaml",
			"version: \""+version+"\"\nrules:\n  - {name: hot, expr: temp_max > 90, clear: temp_max < 80}\n")}
		op, err := alert.New(parse(t, "include: [turbine]\n"), in, engine.BuildContext{Pipeline: "site", Name: "alerts", Mem: mem, RuleSets: sets})
		if err != nil {
			t.Fatal(err)
		}
		return op
	}
	v1 := build("1")
	_, got := runVersions(t, v1, mem, row(0, "WT-1", 95.0, 1.0))
	st, err := v1.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	v1.Close()
	if st.Version != alert.StateVersion {
		t.Fatalf("state version %d", st.Version)
	}
	v2 := build("2")
	defer v2.Close()
	if err := v2.Restore(st); err != nil {
		t.Fatal(err)
	}
	// Snapshots of restored states keep the old versions too.
	again, err := v2.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if string(again.Data) != string(st.Data) {
		t.Error("the snapshot of a restored state differs from the state")
	}
	_, after := runVersions(t, v2, mem,
		row(1, "WT-1", 85.0, 1.0), // still raised (clear below 80)
		row(2, "WT-1", 70.0, 1.0), // clears the alert raised by version 1
		row(3, "WT-1", 99.0, 1.0), // raises under version 2
		row(3, "WT-2", 99.0, 1.0),
		row(4, "WT-2", 50.0, 1.0))
	got = append(got, after...)
	want := []string{"hot raised 1", "hot cleared 1", "hot raised 2", "hot raised 2", "hot cleared 2"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("alerts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Version 1 of the format: a raised alert without a version.
	w := statecodec.NewWriter(nil)
	fresh, err := v2.Snapshot() // same shape: key and rule names
	if err != nil {
		t.Fatal(err)
	}
	r := statecodec.NewReader(fresh.Data)
	w.Uint64(r.Uint64())
	w.Varint(0)
	w.Varint(0)
	w.Uvarint(0)
	w.Uvarint(0)
	w.Uvarint(1)
	w.String("WT-9")
	w.Varint(minute(0))
	w.Byte(2)
	w.Varint(minute(0))
	w.Raw(make([]byte, 16))
	old := build("3")
	defer old.Close()
	if err := old.Restore(&engine.State{Kind: alert.StateKind, Version: 1, Data: w.Bytes()}); err != nil {
		t.Fatalf("state of version 1: %v", err)
	}
	_, got = runVersions(t, old, mem, row(1, "WT-9", 50.0, 1.0), row(2, "WT-9", 95.0, 1.0))
	want = []string{"hot cleared -", "hot raised 3"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("after a version 1 state:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// A version holding a control character is refused.
	bad := statecodec.NewWriter(nil)
	bad.Raw(w.Bytes())
	bad.String("v\x00")
	if err := old.Restore(&engine.State{Kind: alert.StateKind, Version: 2, Data: bad.Bytes()}); err == nil || !strings.Contains(err.Error(), "control character") {
		t.Errorf("a version with a NUL: %v", err)
	}
}

// TestRuleSetVersionReachesTheHub: alert rows of a versioned rule set,
// encoded by each outbound encoding, decode at the hub with their rule set
// version; rows of a rule without a version decode with none.
func TestRuleSetVersionReachesTheHub(t *testing.T) {
	sets := versionSets(t)
	for _, enc := range []outbound.Encoding{outbound.JSON, outbound.JSONBatch, outbound.Arrow} {
		t.Run(string(enc), func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			op, err := alert.New(parse(t, "rules: [{name: own_hot, expr: temp_max > 90}]\ninclude: [plain]\n"), in,
				engine.BuildContext{Pipeline: "site", Name: "alerts", Mem: mem, RuleSets: sets, Release: "windfarm v7"})
			if err != nil {
				t.Fatal(err)
			}
			defer op.Close()
			var recs []engine.Batch
			emit := func(port int, b engine.Batch) error {
				if port != 0 {
					b.Release()
					return nil
				}
				recs = append(recs, b)
				return nil
			}
			rows := enginetest.Record(mem, in, row(0, "WT-1", 95.0, 1.0), row(1, "WT-1", 50.0, 1.0))
			if err := op.Process(engine.Batch{Rec: rows}, emit); err != nil {
				t.Fatal(err)
			}
			if len(recs) != 1 {
				t.Fatalf("%d alert records", len(recs))
			}
			defer recs[0].Release()
			e := outbound.Encoder{Encoding: enc, Edge: "e1", Stream: "alerts", BatchRows: 100}
			msgs, err := e.Encode(outbound.Entry{Rec: recs[0].Rec, First: 1, Schema: op.Outputs()[0].Schema})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range msgs {
				h := ingest.Headers{}
				for k, v := range m.Metadata {
					h[k] = []string{v}
				}
				d, err := ingest.Decode(h, m.Payload, ingest.Limits{})
				if err != nil {
					t.Fatal(err)
				}
				if len(d.Rows) != 0 {
					t.Fatalf("%d telemetry rows: the hub did not take the rows for alerts", len(d.Rows))
				}
				for _, a := range d.Alerts {
					got = append(got, fmt.Sprintf("%s %s %q", a.Record.Rule, a.Record.State, a.Record.RuleSetVersion))
				}
			}
			want := []string{`own_hot raised ""`, `set_hot raised "windfarm v7 rules/plain.yaml"`,
				`own_hot cleared ""`, `set_hot cleared "windfarm v7 rules/plain.yaml"`}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("hub alerts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func yamlNode(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	return &n
}
