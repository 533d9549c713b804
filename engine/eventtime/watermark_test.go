package eventtime

import (
	"math"
	"testing"
)

// TestSourceOf checks that SourceOf adds a source once and returns the
// same progress for it afterwards.
func TestSourceOf(t *testing.T) {
	var srcs []*SourceMark
	a := SourceOf(&srcs, 3)
	b := SourceOf(&srcs, 5)
	if a == b || len(srcs) != 2 {
		t.Fatalf("two sources: %d marks, same=%v", len(srcs), a == b)
	}
	if a.Src != 3 || a.Max != math.MinInt64 {
		t.Fatalf("new source = %+v, want src 3 without a mark", *a)
	}
	a.Max = 42
	if got := SourceOf(&srcs, 3); got != a || got.Max != 42 || len(srcs) != 2 {
		t.Fatalf("source 3 again: %+v of %d marks", *got, len(srcs))
	}
}
