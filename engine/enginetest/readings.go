package enginetest

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// CountReadings returns the lines of the JSON-lines file name (a file
// sink's output) and how many distinct readings (asset, time) they hold.
func CountReadings(t testing.TB, name string) (lines, distinct int) {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for l := range strings.SplitSeq(strings.TrimSuffix(string(data), "\n"), "\n") {
		var r struct {
			Time  string `json:"time"`
			Asset string `json:"asset"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		seen[r.Asset+"@"+r.Time] = true
		lines++
	}
	return lines, len(seen)
}
