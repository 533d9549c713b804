package pipelines_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/pipelines"
)

// TestReservedPipelineNames: a pipeline's directory is <data_dir>/<name>,
// beside the engine's own state (agent, control, health, hub, logs); a
// name that would share one of those, or leave the data directory, is
// refused with an error naming the reserved set, whether it is given or
// comes from the file name. A component may not take the name of the
// pipeline's checkpoint directory. They used to be accepted.
func TestReservedPipelineNames(t *testing.T) {
	body := func(name, comp string) string {
		s := "sources:\n  " + comp + ": {type: sim, turbines: 1, rows: 1}\nsinks:\n  out: {type: discard, input: " + comp + "}\n"
		if name != "" {
			s = "name: " + name + "\n" + s
		}
		return s
	}
	tests := []struct {
		file, name, comp string
		want             string // "" for no error
	}{
		{file: "p.yaml", name: "windfarm", comp: "sim"},
		{file: "p.yaml", name: "health", comp: "sim", want: `pipeline name "health" is reserved: the engine keeps its own state in <data_dir>/health; the reserved names are agent, control, health, hub, logs`},
		{file: "p.yaml", name: "agent", comp: "sim", want: "reserved"},
		{file: "p.yaml", name: "control", comp: "sim", want: "reserved"},
		{file: "p.yaml", name: "hub", comp: "sim", want: "reserved"},
		{file: "p.yaml", name: "logs", comp: "sim", want: "reserved"},
		{file: "p.yaml", name: "Health", comp: "sim", want: "reserved"},
		{file: "health.yaml", comp: "sim", want: "the name comes from the file name"},
		{file: "p.yaml", name: `"../x"`, comp: "sim", want: "must not contain a slash"},
		{file: "p.yaml", name: "a/b", comp: "sim", want: "must not contain a slash"},
		{file: "p.yaml", name: `".."`, comp: "sim", want: "not a usable directory name"},
		{file: "p.yaml", name: "healthy", comp: "sim"},
		{file: "p.yaml", name: "windfarm", comp: "checkpoints", want: `component name "checkpoints" is reserved`},
		{file: "p.yaml", name: "windfarm", comp: "Checkpoints", want: `component name "Checkpoints" is reserved`},
	}
	for _, tt := range tests {
		t.Run(tt.file+"/"+tt.name+"/"+tt.comp, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), tt.file)
			if err := os.WriteFile(file, []byte(body(tt.name, tt.comp)), 0o644); err != nil {
				t.Fatal(err)
			}
			_, errs := pipelines.Load([]string{file}, os.LookupEnv)
			switch {
			case tt.want == "" && len(errs) > 0:
				t.Fatalf("refused: %v", errs)
			case tt.want != "" && (len(errs) == 0 || !strings.Contains(errs.Error(), tt.want)):
				t.Fatalf("errors %v, want one saying %q", errs, tt.want)
			}
		})
	}
}
