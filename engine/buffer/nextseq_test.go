package buffer_test

import (
	"testing"

	"github.com/sluice-edge/sluice/engine/buffer"
)

func TestNextSeqMatchesStatus(t *testing.T) {
	mem := checkedMem(t)
	nb := mustOpen(t, t.TempDir(), opts(buffer.OS, mem))
	if _, err := nb.Append(nil); err != nil {
		t.Fatalf("Append(nil): %v", err)
	}
	nb.Close()
	b := mustOpen(t, t.TempDir(), opts(buffer.OS, mem))
	defer b.Close()
	for i, n := range []int{1, 3, 7} {
		appendN(t, b, mem, int64(i*100), 1, n)
		if got, want := b.NextSeq(), b.Status().NextSeq; got != want || got != uint64(1+[]int{1, 4, 11}[i]) {
			t.Fatalf("after %d rows: NextSeq %d, Status().NextSeq %d", n, got, want)
		}
	}
}
