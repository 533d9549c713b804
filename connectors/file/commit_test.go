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

// TestFileSinkRollsBackToTheCheckpoint writes lines, takes a checkpoint
// mark, writes more (a run that dies before its next checkpoint) and
// recovers: the file is cut back to the mark and the recovery's lines
// follow it, so each line is in the file once.
func TestFileSinkRollsBackToTheCheckpoint(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	path := filepath.Join(t.TempDir(), "out.jsonl")
	ctx := context.Background()

	first := file.NewSink(path, false)
	if _, err := first.Prepare(ctx); err != nil { // epoch 0: the file starts empty
		t.Fatal(err)
	}
	writeAssets(t, mem, first, "T1", "T2")
	mark, err := first.Prepare(ctx)
	if err != nil {
		t.Fatal(err)
	}
	writeAssets(t, mem, first, "T3-lost")
	// The process dies: no Close.

	second := file.NewSink(path, true)
	if err := second.Rollback(mark); err != nil {
		t.Fatal(err)
	}
	writeAssets(t, mem, second, "T3")
	if err := second.Close(ctx); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := string(data)
	if strings.Count(got, "\n") != 3 || strings.Contains(got, "T3-lost") || !strings.Contains(got, `"T3"`) {
		t.Fatalf("file after recovery:\n%s", got)
	}
	for _, bad := range [][]byte{nil, {1, 2, 3}} {
		s := file.NewSink(path, true)
		if err := s.Rollback(bad); err == nil {
			t.Fatalf("Rollback(%v) accepted a garbled mark", bad)
		}
		_ = s.Close(ctx)
	}
	// A file cut shorter by hand than the mark is continued as it is.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	third := file.NewSink(path, true)
	if err := third.Rollback(binary.BigEndian.AppendUint64(nil, 1<<62)); err != nil {
		t.Fatal(err)
	}
	_ = third.Close(ctx)
}

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
	writeAssets(t, mem, first, "T1")
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

// writeAssets writes one line for every asset, each in a batch of its own.
func writeAssets(t *testing.T, mem memory.Allocator, s *file.Sink, assets ...string) {
	t.Helper()
	for _, a := range assets {
		rec := enginetest.Record(mem, sinkSchema, enginetest.Row{int64(0), a, 1.0})
		if err := s.Write(context.Background(), engine.Batch{Rec: rec}); err != nil {
			t.Fatal(err)
		}
	}
}
