package mqtt

import (
	"bytes"
	"encoding/json"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/spec"
)

// TestSpecs checks the declarations and that their examples build.
func TestSpecs(t *testing.T) {
	in := engine.MustSchema([]engine.Field{
		{Name: "time", Type: engine.Timestamp}, {Name: "asset", Type: engine.String}, {Name: "limit_kw", Type: engine.Float64},
	}, "time", "asset")
	for _, s := range []spec.Spec{SourceSpec, SinkSpec} {
		t.Run(s.Name+"/"+string(s.Kind), func(t *testing.T) {
			if err := s.Check(); err != nil {
				t.Fatal(err)
			}
			if _, err := json.Marshal(s.JSONSchema()); err != nil {
				t.Fatalf("JSON Schema: %v", err)
			}
			var md bytes.Buffer
			if err := spec.Markdown(&md, "mqtt", []*spec.Spec{&s}); err != nil || md.Len() == 0 {
				t.Fatalf("Markdown: %v", err)
			}
			var doc map[string]map[string]yaml.Node
			if err := yaml.Unmarshal([]byte(s.Example), &doc); err != nil {
				t.Fatal(err)
			}
			for _, comps := range doc {
				for name, node := range comps {
					cfg, errs := s.Parse("example.yaml", &node, "type", "input")
					if len(errs) > 0 {
						t.Fatalf("%s: %v", name, errs)
					}
					bc := engine.BuildContext{Pipeline: "example", Name: name}
					var err error
					if s.Kind == spec.KindSource {
						_, err = newSource(cfg, bc)
					} else {
						_, err = newSink(cfg, in, bc)
					}
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
				}
			}
		})
	}
}
