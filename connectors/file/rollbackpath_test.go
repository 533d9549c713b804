package file_test

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/connectors/file"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

// TestFileSinkRollbackKeepsAnotherFile recovers a file sink whose path
// was changed between the checkpoint and the restart (same sink name, the
// path now names another, larger file — a careless edit, or one pointing
// at a file that matters): the checkpoint's mark is of the old file, so
// the new one is left whole instead of being cut to the old file's size.
// The old file's own rollback still works, and a mark of the earlier
// format (the size alone) still cuts.
func TestFileSinkRollbackKeepsAnotherFile(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	dir := t.TempDir()
	ctx := context.Background()
	oldPath, other := filepath.Join(dir, "stats.jsonl"), filepath.Join(dir, "precious.txt")
	precious := strings.Repeat("a line that must stay\n", 1000)
	if err := os.WriteFile(other, []byte(precious), 0o644); err != nil {
		t.Fatal(err)
	}

	first := file.NewSink(oldPath, false)
	rec := enginetest.Record(mem, sinkSchema, enginetest.Row{int64(0), "T1", 1.0})
	if err := first.Write(ctx, engine.Batch{Rec: rec}); err != nil {
		t.Fatal(err)
	}
	mark, err := first.Prepare(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = first.Close(ctx)

	moved := file.NewSink(other, true)
	if err := moved.Rollback(mark); err != nil {
		t.Fatal(err)
	}
	_ = moved.Close(ctx)
	if got, _ := os.ReadFile(other); string(got) != precious {
		t.Fatalf("the file the path now names was cut to %d bytes of %d", len(got), len(precious))
	}

	// The same file through another spelling of its path is the same file.
	rel, err := filepath.Rel(mustWd(t), oldPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(oldPath, append(mustRead(t, oldPath), "{\"lost\":1}\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	same := file.NewSink(rel, true)
	if err := same.Rollback(mark); err != nil {
		t.Fatal(err)
	}
	_ = same.Close(ctx)
	if got := string(mustRead(t, oldPath)); strings.Contains(got, "lost") || strings.Count(got, "\n") != 1 {
		t.Fatalf("the checkpointed file was not rolled back:\n%s", got)
	}

	// A mark holding the size alone (checkpoints taken before the mark
	// named its file) cuts as before.
	legacy := file.NewSink(other, true)
	if err := legacy.Rollback(binary.BigEndian.AppendUint64(nil, 22)); err != nil {
		t.Fatal(err)
	}
	_ = legacy.Close(ctx)
	if got := mustRead(t, other); len(got) != 22 {
		t.Fatalf("a size-only mark left %d bytes, want 22", len(got))
	}
}

func mustWd(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
