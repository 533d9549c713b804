package bench

import (
	"bytes"
	"strings"
	"testing"
)

// A run of scenarios without a pipeline result (buffer, forward, infer
// alone) prints no scenario table and no pipeline agreement line: there
// was nothing to agree on.
func TestTableWithoutPipelineScenarios(t *testing.T) {
	r := newReport(Options{Turbines: 2}, 60)
	r.finish()
	var out bytes.Buffer
	if err := r.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	for _, no := range []string{"agreement", "rows/s/core"} {
		if strings.Contains(out.String(), no) {
			t.Errorf("table holds %q:\n%s", no, out.String())
		}
	}
}
