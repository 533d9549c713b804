package file_test

import (
	"os"
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/connectors/file"
	"github.com/sluice-edge/sluice/connectors/sim"
	"github.com/sluice-edge/sluice/connectors/stdout"
	"github.com/sluice-edge/sluice/engine/spec"
)

// TestDocs checks that docs/connectors.md documents every field of the
// connectors declared here, in the section of its component.
func TestDocs(t *testing.T) {
	b, err := os.ReadFile("../../docs/connectors.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, c := range []struct {
		heading string
		spec    spec.Spec
	}{
		{"## Source `file`", file.SourceSpec},
		{"## Source `sim`", sim.Spec},
		{"## Sink `stdout`", stdout.Spec},
		{"## Sink `file`", file.SinkSpec},
	} {
		i := strings.Index(doc, c.heading+"\n")
		if i < 0 {
			t.Errorf("no section %q", c.heading)
			continue
		}
		section := doc[i+len(c.heading):]
		if j := strings.Index(section, "\n## "); j >= 0 {
			section = section[:j]
		}
		for _, f := range c.spec.Fields {
			if !strings.Contains(section, "| `"+f.Name+"` |") {
				t.Errorf("%s: field %q is not documented", c.heading, f.Name)
			}
		}
	}
}
