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
	write := func(s *file.Sink, assets ...string) {
		t.Helper()
		for _, a := range assets {
			rec := enginetest.Record(mem, sinkSchema, enginetest.Row{int64(0), a, 1.0})
			if err := s.Write(ctx, engine.Batch{Rec: rec}); err != nil {
				t.Fatal(err)
			}
		}
	}

	first := file.NewSink(path, false)
	if _, err := first.Prepare(ctx); err != nil { // epoch 0: the file starts empty
		t.Fatal(err)
	}
	write(first, "T1", "T2")
	mark, err := first.Prepare(ctx)
	if err != nil {
		t.Fatal(err)
	}
	write(first, "T3-lost")
	// The process dies: no Close.

	second := file.NewSink(path, true)
	if err := second.Rollback(mark); err != nil {
		t.Fatal(err)
	}
	write(second, "T3")
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
