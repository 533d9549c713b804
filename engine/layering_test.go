package engine_test

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/sluice-edge/sluice"

// layer returns the layer of a package of this module: cmd, bench,
// pipelines, operators, connectors or engine.
func layer(pkg string) string {
	rel := strings.TrimPrefix(strings.TrimPrefix(pkg, module), "/")
	top, _, _ := strings.Cut(rel, "/")
	return top
}

// allowed says which layers a layer may import. Imports point downward:
// cmd -> bench -> pipelines -> operators/connectors -> engine.
var allowed = map[string][]string{
	"cmd":        {"cmd", "bench", "pipelines", "operators", "connectors", "engine"},
	"bench":      {"bench", "pipelines", "operators", "connectors", "engine"},
	"pipelines":  {"pipelines", "operators", "connectors", "engine"},
	"operators":  {"operators", "engine"},
	"connectors": {"connectors", "engine"},
	"engine":     {"engine"},
}

func TestImportsPointDownward(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		from := layer(p.ImportPath)
		ok, known := allowed[from]
		if !known {
			t.Errorf("package %s is outside the known layers %v", p.ImportPath, allowed)
			continue
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module+"/") {
				continue
			}
			to := layer(imp)
			if !slices.Contains(ok, to) {
				t.Errorf("%s imports %s: %s may import only %v", p.ImportPath, imp, from, ok)
			}
			// No operator imports another operator package.
			if from == "operators" && to == "operators" && opFamily(p.ImportPath) != opFamily(imp) {
				t.Errorf("%s imports %s: operator packages are independent", p.ImportPath, imp)
			}
			// The edge agent's state machine talks to the engine through
			// its Runner interface and to clients through localapi: it
			// imports neither the pipelines nor the local API.
			if p.ImportPath == module+"/engine/agent" && strings.HasPrefix(imp, module+"/engine/agent/") {
				t.Errorf("%s imports %s: the agent's protocol packages depend on it, not the reverse", p.ImportPath, imp)
			}
			// The hub's contract (engine/hub/protocol) depends on no other
			// hub package; the edge's side of the hub (hubsync, uplink)
			// and the hub's own (server, store, ingest) know each other
			// only through it.
			if hubSide(p.ImportPath) != "" && hubSide(imp) != "" && hubSide(p.ImportPath) != hubSide(imp) &&
				hubSide(imp) != "protocol" || hubSide(p.ImportPath) == "protocol" && hubSide(imp) != "" {
				t.Errorf("%s imports %s: the edge and the hub meet only in engine/hub/protocol", p.ImportPath, imp)
			}
			if hubSide(p.ImportPath) == "hub" && strings.HasPrefix(imp, module+"/engine/agent") {
				t.Errorf("%s imports %s: the hub does not run edge agents", p.ImportPath, imp)
			}
			// Connectors share only the codec package and the wind-farm
			// model of the simulators (windfarm), which imports no other
			// connector.
			if from == "connectors" && to == "connectors" && connFamily(p.ImportPath) != connFamily(imp) &&
				connFamily(imp) != "codec" && (connFamily(imp) != "windfarm" || connFamily(p.ImportPath) == "codec") {
				t.Errorf("%s imports %s: connectors share only connectors/codec and connectors/windfarm", p.ImportPath, imp)
			}
			if connFamily(p.ImportPath) == "windfarm" && from == "connectors" && to == "connectors" && connFamily(imp) != "windfarm" {
				t.Errorf("%s imports %s: the wind-farm model imports no connector", p.ImportPath, imp)
			}
		}
	}
}

func family(pkg, top string) string {
	rel := strings.TrimPrefix(pkg, module+"/"+top+"/")
	f, _, _ := strings.Cut(rel, "/")
	return f
}

// hubSide says which side of edge-cloud coordination a package of
// engine/hub is on: "edge" (hubsync, uplink), "hub" (server, store,
// ingest), "protocol", or "" for any other package.
func hubSide(pkg string) string {
	rel, ok := strings.CutPrefix(pkg, module+"/engine/hub/")
	if !ok {
		return ""
	}
	switch f, _, _ := strings.Cut(rel, "/"); f {
	case "hubsync", "uplink":
		return "edge"
	case "protocol":
		return "protocol"
	default:
		return "hub"
	}
}

func opFamily(pkg string) string   { return family(pkg, "operators") }
func connFamily(pkg string) string { return family(pkg, "connectors") }
