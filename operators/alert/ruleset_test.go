package alert_test

import (
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/assets"
	"github.com/sluice-edge/sluice/engine/spec"
	"github.com/sluice-edge/sluice/operators/alert"
)

// ruleSet parses a rule set file's contents.
func ruleSet(t *testing.T, file, src string) *engine.RuleSet {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	rs, errs := alert.ParseRuleSet(file, &n)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return rs
}

func TestRuleSets(t *testing.T) {
	cat, err := assets.Parse("models/farm.yaml", []byte(farm))
	if err != nil {
		t.Fatal(err)
	}
	sets := map[string]*engine.RuleSet{
		"turbine": ruleSet(t, "rules/turbine.yaml", "model: turbine\nrules:\n  - {name: hot, expr: temp_max > attr.max_temp}\n  - {name: low, expr: power_avg < 10, model: transformer}\n"),
		"bad":     ruleSet(t, "rules/bad.yaml", "rules:\n  - name: typo\n    expr: temp_max > 1 && powr < 3\n"),
		"oil":     ruleSet(t, "rules/oil.yaml", "model: transformr\nrules:\n  - {name: oil, expr: temp_max > 1}\n"),
		"attrs":   ruleSet(t, "rules/attrs.yaml", "model: transformer\nrules:\n  - {name: hot2, expr: temp_max > attr.max_temp}\n"),
	}
	release := engine.BuildContext{Catalog: cat, RuleSets: sets}
	cases := []struct {
		name, config string
		bc           engine.BuildContext
		want         []string // errors; none: builds
		rules        int
	}{
		{"set with model and the release catalog", "include: [turbine]\n", release, nil, 2},
		{"own rules then a set", "rules: [{name: own, expr: temp_max > 1}]\ninclude: [turbine]\n", release, nil, 3},
		{"bad expression located in the set", "include: [bad]\n", release,
			[]string{`rules/bad.yaml:3:27: field "expr": unknown name powr`}, 0},
		{"set model unknown", "include: [oil]\n", release,
			[]string{`rules/oil.yaml:1:8: rule set "oil": rule "oil": unknown model "transformr" (did you mean transformer?)`}, 0},
		{"set model lacks the attribute", "include: [attrs]\n", release,
			[]string{`rules/attrs.yaml:3:24: expr: model "transformer" has no attribute "max_temp"`}, 0},
		{"name in the step and in a set", "rules: [{name: hot, expr: temp_max > 1}]\ninclude: [turbine]\n", release,
			[]string{`rules/turbine.yaml:3:12: rule "hot" declared twice (also at p.yaml:1:16)`}, 0},
		{"unknown set", "include: [turbin]\n", release,
			[]string{`p.yaml:1:10: include: no rule set "turbin" in the release (did you mean turbine?) (rule sets: attrs, bad, oil, turbine)`}, 0},
		{"set included twice", "include: [turbine, turbine]\n", release,
			[]string{`p.yaml:1:10: include: rule set "turbine" is included twice`}, 0},
		{"include outside a release", "include: [turbine]\n", engine.BuildContext{},
			[]string{`p.yaml:1:10: include: rule sets come with a release (its rules/*.yaml files); this pipeline is not part of one: write the rules in ` + "`rules`"}, 0},
		{"neither rules nor include", "max_keys: 5\n", release,
			[]string{`p.yaml:1:1: rules: declare at least one rule`}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			op, err := alert.New(parse(t, c.config), in, c.bc)
			if len(c.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				defer op.Close()
				if got := len(op.RuleNames()); got != c.rules {
					t.Errorf("%d rules, want %d", got, c.rules)
				}
				return
			}
			if err == nil {
				op.Close()
				t.Fatal("no error")
			}
			es := spec.Collect(spec.Pos{}, err)
			if len(es) != len(c.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(es), len(c.want), err)
			}
			for i, e := range es {
				if e.Error() != c.want[i] {
					t.Errorf("got  %s\nwant %s", e, c.want[i])
				}
			}
		})
	}
}

func TestParseRuleSetErrors(t *testing.T) {
	cases := []struct {
		name, src string
		want      []string
	}{
		{"unknown field", "rules:\n  - {name: a, expr: x > 1, sevrity: major}\n", []string{`rules/x.yaml:2:28: unknown field "sevrity" (did you mean "severity"?)`}},
		{"duplicate name", "rules:\n  - {name: a, expr: x > 1}\n  - {name: a, expr: x > 2}\n", []string{`rules/x.yaml:3:12: rule "a" declared twice (also at rules/x.yaml:2:12)`}},
		{"no rules", "model: turbine\n", []string{`rules/x.yaml:1:1: missing required field "rules"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(c.src), &n); err != nil {
				t.Fatal(err)
			}
			rs, errs := alert.ParseRuleSet("rules/x.yaml", &n)
			if rs.Name != "x" {
				t.Errorf("name %q, want x", rs.Name)
			}
			if len(errs) != len(c.want) {
				t.Fatalf("got %v, want %v", errs, c.want)
			}
			for i, e := range errs {
				if e.Error() != c.want[i] {
					t.Errorf("got  %s\nwant %s", e, c.want[i])
				}
			}
		})
	}
}
