package pipelines_test

import (
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/pipelines"
)

// FuzzLoad feeds hostile YAML through the loader (decoding, interpolation,
// duplicate-key and merge-key checks, component parsing): it must never
// panic, every error must name the file and a line, and a document whose
// aliases stand for a billion values must not be expanded.
func FuzzLoad(f *testing.F) {
	valid := "sources: {s: {type: testsrc}}\nsinks: {o: {type: testcount, input: s}}\n"
	for _, seed := range []string{
		valid,
		"sources: {s: {type: testsrc}}\nsinks: {o: {type: testcount, input: s, input: t}}\n",
		"sources: {s: {type: testsrc, type: nosuch}}\nsinks: {o: {type: testcount, input: s}}\n",
		"base: &b {type: testsrc}\nsources: {s: {<<: *b}}\nsinks: {o: {<<: [*b, {input: s}], type: testcount}}\n",
		"base: &b {s: {type: testsrc}}\nsources: {<<: *b}\nsinks: {o: {type: testcount, input: s}}\n",
		"a: &a {<<: *a}\n" + valid,
		"description: ${A:-${B:-${C:-x}}}\n" + valid,
		"description: ${A:-${B:-x}\n" + valid,
		"description: $${A:-${B}}}}\n" + valid,
		"${K:-sources}: {s: {type: testsrc}}\nsinks: {o: {type: testcount, input: s}}\n",
		"sources: {s: {type: testsrc, rows: ${ROWS}}}\nsinks: {o: {type: testcount, input: s}}\n",
		laughs("description: LAUGHS\n" + valid),
		laughs("sources: {s: {type: testsrc}}\nsinks: {o: {type: testcount, inputs: LAUGHS}}\n"),
		"pipelines:\n- " + strings.ReplaceAll(valid, "\n", "\n  ") + "- *x\n",
		"--- !!map\n? [a]\n: b\n---\n" + valid,
		"sources: !!binary aGVsbG8=\n",
		"\t\x00\xff",
	} {
		f.Add([]byte(seed))
	}
	env := map[string]string{"A": "", "B": "b", "ROWS": "NaN", "K": "sinks", "DB_PASSWORD": "fuzz-secret"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		_, errs := pipelines.Parse("fuzz.yaml", data, lookup)
		for _, e := range errs {
			if e.Pos.File != "fuzz.yaml" || e.Pos.Line < 1 {
				t.Fatalf("error without a location: %q", e.Error())
			}
		}
	})
}
