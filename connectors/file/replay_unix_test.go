//go:build unix

package file_test

import (
	"strings"
	"testing"
)

// TestCheckpointRefusesPipe: a pipeline that takes checkpoints cannot
// read a named pipe, which cannot be read again, with the file source:
// Run says so at once instead of waiting for a writer.
func TestCheckpointRefusesPipe(t *testing.T) {
	e := newEnv(t, nil)
	mkfifo(t, e.dir)
	s := e.buildCk(t, "path: pipe.csv\nformat: csv\nschema: {fields: {v: float64}}\n", "")
	_, _, err := runCk(t, s, 0)
	if err == nil || !strings.Contains(err.Error(), "pipe.csv: a named pipe cannot be read again") {
		t.Fatalf("got %v", err)
	}
}
