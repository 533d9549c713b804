package ops_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/engine/buffer/ops"
)

// TestRepairWithoutRowsDoesWhatItSays: a buffer directory with no rows
// and no schema holds only a temporary file and a damaged cursor. Repair
// used to report both as repaired and change nothing; now it removes the
// temporary file and says the cursor was left.
func TestRepairWithoutRowsDoesWhatItSays(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "buf")
	for _, d := range []string{"wal", "seg"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(dir, "seg", "x.parquet.tmp")
	if err := os.WriteFile(tmp, []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cursor"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := ops.Repair(dir, ops.RepairOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Fatalf("the temporary file is still there (%v); report: %v", err, rep.Actions)
	}
	var removed, leftCursor bool
	for _, a := range rep.Actions {
		removed = removed || (a.Action == "remove" && a.File == "seg/x.parquet.tmp" && !strings.Contains(a.Reason, "not done"))
		leftCursor = leftCursor || (a.File == "cursor" && strings.Contains(a.Reason, "not done"))
	}
	if !removed || !leftCursor {
		t.Fatalf("report %v: want the temporary file removed and the cursor reported as not done", rep.Actions)
	}
}
