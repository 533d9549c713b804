package mqtt_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/connectors/mqtt"
	"github.com/sluice-edge/sluice/pipelines"
)

// TestDocExamplesValidate loads every YAML example of docs/mqtt.md and the
// examples of the mqtt specs as pipelines, the way `sluice validate` does:
// each mqtt source is wired to a discard sink, each mqtt sink to an mqtt
// source of the columns the examples name, and a fragment of source fields
// is completed into a source.
func TestDocExamplesValidate(t *testing.T) {
	md, err := os.ReadFile("../../docs/mqtt.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[string]string{"SourceSpec.Example": mqtt.SourceSpec.Example, "SinkSpec.Example": mqtt.SinkSpec.Example}
	for i, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(md), -1) {
		blocks["docs/mqtt.md block "+string(rune('A'+i))] = m[1]
	}
	if len(blocks) < 7 {
		t.Fatalf("only %d examples found", len(blocks))
	}
	dir := t.TempDir()
	assets, err := os.ReadFile("../../pipelines/examples/data/assets.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "assets.yaml"), assets, 0o600); err != nil {
		t.Fatal(err)
	}
	control := map[string]any{"type": "mqtt", "format": "json", "topics": []any{"control"},
		"schema": map[string]any{"time": "time", "key": "asset", "fields": map[string]any{"limit_kw": "float64"}}}
	for name, text := range blocks {
		t.Run(name, func(t *testing.T) {
			var doc map[string]any
			if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
				t.Fatalf("%v\n%s", err, text)
			}
			sources, _ := doc["sources"].(map[string]any)
			sinks, _ := doc["sinks"].(map[string]any)
			if sources == nil && sinks == nil {
				// Fields of a source, shown alone.
				doc["type"] = "mqtt"
				doc["schema"] = map[string]any{"key": "asset", "fields": map[string]any{"power": "float64"}}
				sources = map[string]any{"fragment": doc}
			}
			n := 0
			for src, c := range sources {
				n++
				check(t, dir, text, map[string]any{"name": "docs", "sources": map[string]any{src: c},
					"sinks": map[string]any{"out": map[string]any{"type": "discard", "input": src}}})
			}
			for snk, c := range sinks {
				n++
				cm, _ := c.(map[string]any)
				if cm != nil && cm["input"] == nil && cm["inputs"] == nil {
					cm["input"] = "control"
				}
				check(t, dir, text, map[string]any{"name": "docs", "sources": map[string]any{"control": control},
					"sinks": map[string]any{snk: c}})
			}
			if n == 0 {
				t.Fatalf("no component in\n%s", text)
			}
		})
	}
}

func check(t *testing.T, dir, text string, def map[string]any) {
	t.Helper()
	data, err := yaml.Marshal(def)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "docs.yaml")
	defs, errs := pipelines.Parse(file, data, func(string) (string, bool) { return "", false })
	if len(errs) == 0 {
		var ps []*pipelines.Pipeline
		ps, errs = pipelines.BuildAll(defs, pipelines.Options{DryRun: true, DataDir: dir})
		for _, p := range ps {
			p.Close()
		}
	}
	if len(errs) > 0 {
		t.Errorf("%v\nin the example:\n%s", errs, strings.TrimSpace(text))
	}
}
