package alert_test

import (
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/operators/alert"
)

// FuzzAlertConfig compiles a rule from arbitrary expression and content
// text and, when it compiles, raises it on a row: no panic, the content
// within max_content, and the rendering quick.
func FuzzAlertConfig(f *testing.F) {
	for _, s := range [][2]string{
		{"temp_max > 90", "{{.asset}} at {{.temp_max}}"},
		{"temp_max > 90", `{{range 1000}}{{printf "%999999d" 1}}{{end}}`},
		{"temp_max > 90", `{{range 100000000}}x{{end}}`},
		{"temp_max > 90", `{{range .count}}{{range $}}{{printf "%1000s" .}}{{end}}{{end}}`},
		{"9223372036854775807 + 1 > 0", `{{printf "%*d" 99999999 1}}`},
		{"count * 9223372036854775807 < 0", `{{define "x"}}{{template "x"}}{{end}}{{template "x"}}`},
		{"temp_max != temp_max", `{{printf .turbine 1}}{{printf "%[3]*.[2]*[1]f" 12.0 2 6}}`},
		{"temp_max > 90", `{{$x := "AAAAAAAAAAAAAAAA"}}{{range 27}}{{$x = print $x $x}}{{end}}{{len $x}}`},
		{"temp_max > 90", `{{$x := .turbine}}{{range .count}}{{$x = js $x $x | html | urlquery}}{{end}}{{call $x}}`},
	} {
		f.Add(s[0], s[1])
	}
	const limit = 1024
	f.Fuzz(func(t *testing.T, expr, content string) {
		rule := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
			str("name"), str("r"), str("expr"), str(expr), str("content"), str(content),
		}}
		doc := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
			str("max_content"), {Kind: yaml.ScalarNode, Tag: "!!int", Value: "1024"},
			str("rules"), {Kind: yaml.SequenceNode, Content: []*yaml.Node{rule}},
		}}
		cfg, errs := alert.Spec.Parse("p.yaml", doc, "type", "input")
		if len(errs) > 0 {
			return
		}
		mem := memory.NewGoAllocator()
		op, err := alert.New(cfg, in, engine.BuildContext{Mem: mem})
		if err != nil {
			return
		}
		defer op.Close()
		col := enginetest.NewCollector()
		start := time.Now()
		rows := []enginetest.Row{
			{minute(0), minute(1), "%9999d", int64(1 << 40), 95.0, 1.0},
			{minute(1), minute(2), "WT-1", int64(-1), -1.0, 1e300},
		}
		if err := op.Process(engine.Batch{Rec: enginetest.Record(mem, in, rows...)}, col.Emit); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("rendering took %v", d)
		}
		for _, r := range col.Port(0) {
			if c := r[6].(string); len(c) > limit {
				t.Errorf("content of %d bytes, more than max_content %d", len(c), limit)
			}
		}
	})
}

func str(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }
