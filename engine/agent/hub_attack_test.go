package agent

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestHubLabelsTheHubCanHold: an edge that talks to a hub refuses, when
// its configuration loads, a label the hub could not store (its
// heartbeats would be set aside as poison and the edge never seen
// online); without a hub the same labels are accepted.
func TestHubLabelsTheHubCanHold(t *testing.T) {
	name := filepath.Join(t.TempDir(), "sluice.yaml")
	long := strings.Repeat("v", 5000)
	for _, labels := range []string{
		fmt.Sprintf("{site: %s}", long),
		`{"k\0": x}`,
		`{site: "a\0b"}`,
	} {
		if _, errs := ParseConfig(name, []byte("edge: e\ntrust: k\nlabels: "+labels+"\n")); len(errs) > 0 {
			t.Errorf("without a hub, labels %.40s: %v", labels, errs)
		}
		_, errs := ParseConfig(name, []byte("edge: e\ntrust: k\nlabels: "+labels+"\nhub: {url: h:4222}\n"))
		if len(errs) == 0 || !strings.Contains(errs.Error(), "label") {
			t.Errorf("with a hub, labels %.40s: %v", labels, errs)
		}
	}
	many := make([]string, 256)
	for i := range many {
		many[i] = fmt.Sprintf("k%d: v", i)
	}
	many[0] = "k0: " + strings.Repeat("v", 4096)
	if _, errs := ParseConfig(name, []byte("edge: e\ntrust: k\nlabels: {"+strings.Join(many, ", ")+"}\nhub: {url: h:4222}\n")); len(errs) > 0 {
		t.Errorf("256 labels, one of 4 KiB: %v", errs)
	}
}
