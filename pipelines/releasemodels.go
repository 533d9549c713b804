package pipelines

import (
	"path/filepath"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine/spec"
)

// CheckReleaseModels checks the models of the release in dir as sluice
// bundle build does before it signs a bundle: every model an infer step
// references is read from the release, checked against its runtime (an
// unsupported operator is named), run once on a batch of zeros, and —
// when the pipeline can be built here — its inputs and outputs are checked
// against the step's stream schema (features, outputs, sequence).
//
// It returns the errors located in infer steps only, by file:line:col
// relative to dir: the rest of the release (sources, sinks, variables
// only the edge sets) is the edge's to check when it applies the bundle,
// as sluice validate on the release directory does now.
func CheckReleaseModels(dir string, env LookupEnv) spec.Errors {
	rel, errs := LoadRelease(dir, env)
	type span struct {
		file     string
		from, to int
	}
	var spans []span
	var steps []*ComponentDef
	for _, d := range rel.Defs {
		for _, c := range d.Steps {
			if c.Type != inferType || c.Node == nil {
				continue
			}
			spans = append(spans, span{c.Pos.File, c.Pos.Line, lastLine(c.Node)})
			steps = append(steps, c)
		}
	}
	var out spec.Errors
	located := map[spec.Pos]bool{}
	for _, e := range errs {
		for _, s := range spans {
			if e.Pos.File == s.file && e.Pos.Line >= s.from && e.Pos.Line <= s.to {
				out = append(out, e)
				located[e.Pos] = true
				break
			}
		}
	}
	// A pipeline that could not be built (an error elsewhere in the
	// release) did not load its models: load them one by one.
	for i, c := range steps {
		cfg := c.Config
		if cfg == nil || !cfg.Has("model") || located[cfg.Pos("model")] {
			continue
		}
		inStep := false
		for _, e := range out {
			if e.Pos.File == spans[i].file && e.Pos.Line >= spans[i].from && e.Pos.Line <= spans[i].to {
				inStep = true
				break
			}
		}
		if inStep {
			continue
		}
		name := cfg.String("model")
		pdir := filepath.Join(dir, filepath.Dir(c.Pos.File))
		if err := loadReleaseModel(dir, pdir, name, cfg.String("runtime")); err != nil {
			out = append(out, cfg.Errorf("model", "model %s: %v", name, err))
		}
	}
	out.Sort()
	return out
}

// inferType is the type name of the infer step.
const inferType = "infer"

// lastLine is the last line of n and its descendants.
func lastLine(n *yaml.Node) int {
	l := n.Line
	for _, c := range n.Content {
		l = max(l, lastLine(c))
	}
	return l
}
