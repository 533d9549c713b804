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

// TestMarkManyKeysAtOneTime: a source whose keys all report the same event
// times, more keys per time than idle rows, keeps a mark: the keys seen
// among the last idle rows are at the newest time.
func TestMarkManyKeysAtOneTime(t *testing.T) {
	const keys, idle, k = 100, 10, 2
	m := NewSourceMark(0)
	for step := int64(1); step <= 3; step++ {
		for kid := range int32(keys) {
			m.Observe(kid, step*60_000, 2*k)
		}
		got, ok := m.Mark(k, idle)
		if !ok || got != step*60_000 {
			t.Fatalf("step %d: mark = %d, %v; want %d, true", step, got, ok, step*60_000)
		}
	}
}
