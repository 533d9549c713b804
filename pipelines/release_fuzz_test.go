package pipelines

import (
	"testing"

	"github.com/sluice-edge/sluice/operators/alert"
)

// FuzzReleaseFiles feeds hostile bytes to the readers of a release's
// settings and rule sets: they return located errors, never panic.
func FuzzReleaseFiles(f *testing.F) {
	for _, s := range []string{
		"log_level: info\nvars:\n  A: b\n  T_TOKEN: {env: X}\n",
		"vars: {K: {file: /nonexistent}, P_PASSWORD: x, U: 'nats://u:p@h'}\n",
		"model: turbine\nrules:\n  - {name: a, expr: x > 1}\n",
		"rules: [{name: a, expr: x, for: -1s}, {name: a}]\n",
		"a: &a [*a]\n", "---\n---\n", "",
	} {
		f.Add([]byte(s))
	}
	env := func(name string) (string, bool) { return "v", name == "X" }
	f.Fuzz(func(t *testing.T, data []byte) {
		s, errs := parseSettings([]releaseData{{rel: "config/x.yaml", data: data}}, env)
		for _, e := range errs {
			if e.Pos.File != "config/x.yaml" {
				t.Fatalf("error not located in the file: %v", e)
			}
		}
		if s == nil {
			t.Fatal("no settings")
		}
		if n, errs := decodeOne("rules/x.yaml", data); len(errs) == 0 {
			rs, _ := alert.ParseRuleSet("rules/x.yaml", n)
			if rs == nil || rs.Name != "x" {
				t.Fatalf("rule set %+v", rs)
			}
		}
	})
}
