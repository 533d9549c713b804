package pipelines

import (
	"io"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/spec"
)

func specsOf(kind spec.Kind) []*spec.Spec {
	var out []*spec.Spec
	for _, c := range engine.Components(kind) {
		s := c.Spec
		out = append(out, &s)
	}
	return out
}

// JSONSchema returns the JSON Schema of a pipeline file: either one pipeline
// or `pipelines:` with a list of them, each source, step and sink checked
// against the declaration of its type.
func JSONSchema() map[string]any {
	stream := map[string]any{"type": "string", "description": "A stream: a source or step name, or step.port for a side output.", "pattern": `^[^.\s]+(\.[^.\s]+)?$`}
	wiring := map[string]any{
		"input":  stream,
		"inputs": map[string]any{"type": "array", "items": stream, "minItems": 1, "description": "Streams read (merged); they must share one schema."},
	}
	oneInput := []any{map[string]any{"required": []string{"input"}}, map[string]any{"required": []string{"inputs"}}}
	steps := spec.Union(specsOf(spec.KindStep), wiring)
	stepsWired := map[string]any{"allOf": []any{steps, map[string]any{"oneOf": oneInput}}}
	sinks := spec.Union(specsOf(spec.KindSink), wiring)
	sinksWired := map[string]any{"allOf": []any{sinks, map[string]any{"oneOf": oneInput}}}
	pipeline := PipelineSpec.JSONSchema()
	delete(pipeline, "$schema")
	props := pipeline["properties"].(map[string]any)
	named := func(item map[string]any, desc string) map[string]any {
		return map[string]any{
			"type":                 "object",
			"description":          desc,
			"propertyNames":        map[string]any{"pattern": `^[^.\s]+$`},
			"additionalProperties": item,
		}
	}
	props["sources"] = named(spec.Union(specsOf(spec.KindSource), nil), "Sources by name.")
	props["steps"] = named(stepsWired, "Steps by name; each reads `input` or `inputs`.")
	props["sinks"] = named(sinksWired, "Sinks by name; each reads `input` or `inputs`.")
	pipeline["required"] = []string{"sources", "sinks"}
	return map[string]any{
		"$schema":     spec.SchemaDialect,
		"$id":         "https://sluice.dev/schema/pipeline.json",
		"title":       "Sluice pipeline file",
		"description": "One pipeline, or several under `pipelines:`.",
		"$defs":       map[string]any{"pipeline": pipeline},
		"oneOf": []any{
			map[string]any{"$ref": "#/$defs/pipeline"},
			map[string]any{
				"type":                 "object",
				"required":             []string{"pipelines"},
				"additionalProperties": false,
				"properties": map[string]any{
					"pipelines": map[string]any{"type": "array", "items": map[string]any{"$ref": "#/$defs/pipeline"}},
				},
			},
		},
	}
}

// Reference writes the Markdown pipeline reference: the pipeline fields,
// every registered source, step and sink, and the edge configuration
// (sluice.yaml) that names the pipelines an edge runs.
func Reference(w io.Writer) error {
	all := []*spec.Spec{}
	for _, k := range []spec.Kind{spec.KindSource, spec.KindStep, spec.KindSink} {
		all = append(all, specsOf(k)...)
	}
	ps := PipelineSpec
	all = append(all, &agent.ConfigSpec)
	if err := spec.Markdown(w, "Pipeline reference", append([]*spec.Spec{&ps}, all...)); err != nil {
		return err
	}
	return nil
}
