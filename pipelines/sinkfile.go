package pipelines

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine/spec"
)

// SinkConfig is one sink configuration read from a file.
type SinkConfig struct {
	// Name is the sink's name (empty for a file holding one sink mapping).
	Name string
	// Type is the sink type; Config its validated configuration.
	Type   string
	Config *spec.Config
	// Dir is the directory of the file (relative paths resolve against
	// it).
	Dir string
}

// LoadSink reads a sink configuration, as `sluice replay --sink-config`
// does, with the same loader as pipelines: ${VAR} and ${VAR:-default} are
// expanded, and errors carry file:line:col. The file holds either one sink
// mapping (type and fields) or pipelines with a sinks section; name picks
// the sink when there are several.
func LoadSink(file, name string, env LookupEnv) (*SinkConfig, spec.Errors) {
	if env == nil {
		env = os.LookupEnv
	}
	at := spec.Pos{File: file, Line: 1, Col: 1}
	data, err := spec.ReadConfigFile(file, spec.MaxPipelineBytes)
	if err != nil {
		return nil, spec.Errors{spec.Errorf(at, "%v", unwrapPathErr(err))}
	}
	var root yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, spec.Errors{spec.Errorf(at, "file is empty")}
		}
		return nil, spec.Errors{yamlError(file, err)}
	}
	n := spec.Resolve(&root)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, spec.Errors{spec.Errorf(nodePos(file, n), "expected a sink mapping or a pipeline, got %s", describe(n))}
	}
	dir := filepath.Dir(file)
	if mapValue(n, "type") == nil {
		// Pipelines: the one sink, or the named one.
		defs, errs := Parse(file, data, env)
		if len(errs) > 0 {
			return nil, errs
		}
		var all []string
		var found []*ComponentDef
		for _, d := range defs {
			for _, c := range d.Sinks {
				all = append(all, c.Name)
				if c.Name == name || name == "" {
					found = append(found, c)
				}
			}
		}
		switch {
		case len(all) == 0:
			return nil, spec.Errors{spec.Errorf(at, "no sinks in %s", file)}
		case len(found) == 0:
			return nil, spec.Errors{spec.Errorf(at, "no sink %q (have %s)", name, strings.Join(all, ", "))}
		case len(found) > 1:
			return nil, spec.Errors{spec.Errorf(at, "several sinks (%s): pick one with --sink", strings.Join(all, ", "))}
		}
		c := found[0]
		return &SinkConfig{Name: c.Name, Type: c.Type, Config: c.Config, Dir: dir}, nil
	}
	if errs := Interpolate(file, &root, env); len(errs) > 0 {
		return nil, errs
	}
	c, errs := parseComponent(file, spec.KindSink, &yaml.Node{Kind: yaml.ScalarNode, Value: name, Line: n.Line, Column: n.Column}, n, true)
	if len(errs) > 0 || c == nil {
		return nil, errs
	}
	return &SinkConfig{Type: c.Type, Config: c.Config, Dir: dir}, nil
}
