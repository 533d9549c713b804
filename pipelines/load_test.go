package pipelines_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/pipelines"
)

func noEnv(string) (string, bool) { return "", false }

// TestHostileYAMLIsLocated: every structure a decoder would silently
// resolve one way (duplicate keys, merge keys standing for components) is
// an error at its line and column.
func TestHostileYAMLIsLocated(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string // "line:col: substring"; nil means valid
	}{
		{"duplicate input", `
sources: {src: {type: testsrc}, other: {type: testsrc}}
sinks:
  out:
    type: testcount
    input: src
    input: other
`, []string{`6:5: key "input" is already defined in this mapping at line 5, column 5`}},
		{"duplicate type", `
sources:
  src:
    type: testsrc
    rows: 3
    type: nosuch
sinks: {out: {type: testcount, input: src}}
`, []string{`5:5: key "type" is already defined in this mapping at line 3, column 5`}},
		{"duplicate component", `
sources:
  src: {type: testsrc}
  src: {type: testsrc, rows: 4}
sinks: {out: {type: testcount, input: src}}
`, []string{`3:3: key "src" is already defined in this mapping at line 2, column 3`}},
		{"duplicate section", `
sources: {src: {type: testsrc}}
sinks: {out: {type: testcount, input: src}}
sinks: {out2: {type: testcount, input: src}}
`, []string{`3:1: key "sinks" is already defined`}},
		{"duplicate after interpolation", `
sources: {src: {type: testsrc}}
sinks: {out: {type: testcount, "${NOPE:-input}": src, input: src}}
`, []string{`2:55: key "input" is already defined`}},
		{"merge key for components", `
base: &base {src: {type: testsrc}}
sources:
  <<: *base
sinks: {out: {type: testcount, input: src}}
`, []string{`1:1: unknown field "base"`, `3:3: a merge key (<<) cannot stand for sources`}},
		{"merge key twice", `
sources:
  src:
    <<: {type: testsrc}
    <<: {rows: 3}
sinks: {out: {type: testcount, input: src}}
`, []string{`4:5: merge key << is already defined`}},
		{"merge key inside a component", `
sources:
  src: {type: testsrc}
sinks:
  out:
    <<: {type: testcount, input: src}
`, nil},
		{"unterminated nested default", `
description: "${A:-${B:-x}"
sources: {src: {type: testsrc}}
sinks: {out: {type: testcount, input: src}}
`, []string{`1:14: unterminated ${`}},
		{"nested default unset", `
description: "${A:-${B}}"
sources: {src: {type: testsrc}}
sinks: {out: {type: testcount, input: src}}
`, []string{`1:14: environment variable B is not set`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := pipelines.Parse("f.yaml", []byte(strings.TrimLeft(tt.yaml, "\n")), noEnv)
			if tt.want == nil {
				if len(errs) > 0 {
					t.Fatalf("unexpected errors: %v", errs)
				}
				return
			}
			got := errs.Error()
			for _, w := range tt.want {
				if !strings.Contains(got, "f.yaml:"+w) {
					t.Errorf("errors lack %q:\n%s", w, got)
				}
			}
		})
	}
}

func TestNestedDefaults(t *testing.T) {
	env := map[string]string{"B": "bee", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, tt := range []struct{ in, want string }{
		{"${A_UNSET:-${B_UNSET:-out}}.jsonl", "out.jsonl"},
		{"${A_UNSET:-${B:-out}}", "bee"},
		{"${EMPTY:-${B}-x}", "bee-x"},
		{"${A_UNSET:-x$${B}y}", "x${B}y"},
		{"${A_UNSET:-{}}", "{}"},
	} {
		defs, errs := pipelines.Parse("f.yaml", []byte(fmt.Sprintf("description: %q\nsources: {s: {type: testsrc}}\nsinks: {o: {type: testcount, input: s}}\n", tt.in)), lookup)
		if len(errs) > 0 {
			t.Fatalf("%s: %v", tt.in, errs)
		}
		if got := defs[0].Description; got != tt.want {
			t.Errorf("%s -> %q, want %q", tt.in, got, tt.want)
		}
	}
	deep := strings.Repeat("${U:-", 20) + "x" + strings.Repeat("}", 20)
	_, errs := pipelines.Parse("f.yaml", []byte(fmt.Sprintf("description: %q\nsources: {s: {type: testsrc}}\nsinks: {o: {type: testcount, input: s}}\n", deep)), lookup)
	if !strings.Contains(errs.Error(), "f.yaml:1:14: defaults nested more than 8 deep") {
		t.Errorf("deep defaults: %v", errs)
	}
}

// laughs is a billion-laughs document: 9 levels of 10 aliases each stand
// for 10^9 strings.
func laughs(where string) string {
	var b strings.Builder
	b.WriteString("l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, "l%d: &l%d [", i, i)
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*l%d", i-1)
		}
		b.WriteString("]\n")
	}
	return b.String() + strings.Replace(where, "LAUGHS", "*l9", 1)
}

// TestBillionLaughs: aliases are never expanded into copies, so a document
// whose aliases stand for a billion values is refused in bounded memory.
func TestBillionLaughs(t *testing.T) {
	for _, doc := range []string{
		laughs("description: LAUGHS\nsources: {s: {type: testsrc}}\nsinks: {o: {type: testcount, input: s}}\n"),
		laughs("sources: {s: {type: testsrc, rows: LAUGHS}}\nsinks: {o: {type: testcount, input: s}}\n"),
		laughs("sources: LAUGHS\nsinks: {o: {type: testcount, input: s}}\n"),
		laughs("sources: {s: {type: testsrc}}\nsinks: {o: {type: testcount, inputs: LAUGHS}}\n"),
	} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, errs := pipelines.Parse("f.yaml", []byte(doc), noEnv)
		runtime.ReadMemStats(&after)
		if len(errs) == 0 {
			t.Errorf("no error for:\n%s", doc)
		}
		t.Logf("%v; %d KiB", errs, (after.TotalAlloc-before.TotalAlloc)>>10)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
			t.Errorf("parsing allocated %d MiB", alloc>>20)
		}
	}
}

// TestMergeKeyBomb: each level of this document merges the level below ten
// times, so expanding merges naively costs 10^12 steps (a 1 KB file took
// 14 s at depth 8). Merged mappings are expanded once: parsing it does a
// few thousand steps and allocates little.
func TestMergeKeyBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("name: mb\nx0: &a0 {rows: 1}\n")
	for i := 1; i <= 12; i++ {
		fmt.Fprintf(&b, "x%d: &a%d {<<: [%s]}\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d,", i-1), 10), ","))
	}
	b.WriteString("sources:\n  s:\n    type: testsrc\n    <<: *a12\n  t: {<<: *a12, type: testsrc}\nsinks: {o: {type: testcount, inputs: [s, t]}}\n")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	defs, errs := pipelines.Parse("f.yaml", []byte(b.String()), noEnv)
	runtime.ReadMemStats(&after)
	if len(defs) != 1 || !strings.Contains(errs.Error(), `unknown field "x1"`) {
		t.Fatalf("defs %d, errors %v", len(defs), errs)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("parsing allocated %d MiB", alloc>>20)
	}
}

// TestTooManyComponents: 50,000 one-line sources in a 1 MiB file took
// 1.26 GB to validate; a pipeline holds at most MaxComponents of each kind.
func TestTooManyComponents(t *testing.T) {
	var b strings.Builder
	b.WriteString("name: many\nsources:\n")
	for i := range pipelines.MaxComponents + 1 {
		fmt.Fprintf(&b, "  s%d: {type: testsrc}\n", i)
	}
	b.WriteString("sinks: {o: {type: testcount, input: s0}}\n")
	_, errs := pipelines.Parse("f.yaml", []byte(b.String()), noEnv)
	if !strings.Contains(errs.Error(), "f.yaml:3:3: pipeline \"many\" has 257 sources, more than 256") {
		t.Fatalf("errors %v", errs)
	}
}
