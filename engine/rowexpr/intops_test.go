package rowexpr

import (
	"math"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine/enginetest"
)

// TestIntegerOverflow checks that integer + - * never wrap around, on the
// native evaluator and on the expr VM alike: the row fails with the reason.
func TestIntegerOverflow(t *testing.T) {
	env, err := NewEnv(diffSchema)
	if err != nil {
		t.Fatal(err)
	}
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	rec := enginetest.Record(mem, diffSchema, enginetest.Row{int64(0), "a", 1.0, int64(math.MaxInt64), int64(math.MinInt64), true, int64(0)})
	defer rec.Release()
	fr := env.NewFrame()
	if err := fr.Bind(rec); err != nil {
		t.Fatal(err)
	}
	fr.Row(0)
	tests := []struct {
		src  string
		want any    // result when no error
		err  string // error text
	}{
		{src: "9223372036854775807 + 1", err: "integer overflow: 9223372036854775807 + 1"},
		{src: "n + 1", err: "integer overflow: 9223372036854775807 + 1"},
		{src: "m - 1", err: "integer overflow: -9223372036854775808 - 1"},
		{src: "n * 2", err: "integer overflow: 9223372036854775807 * 2"},
		{src: "m * -1", err: "integer overflow: -9223372036854775808 * -1"},
		{src: "-1 * m", err: "integer overflow: -1 * -9223372036854775808"},
		{src: "n - m", err: "integer overflow"},
		{src: "n + m", want: int64(-1)},
		{src: "n * 1", want: int64(math.MaxInt64)},
		{src: "m * 1", want: int64(math.MinInt64)},
		{src: "n - 1 + 1", want: int64(math.MaxInt64)},
		{src: "3 * 4 - 2", want: int64(10)},
		{src: "n + 1.0", want: float64(math.MaxInt64) + 1},
	}
	for _, tc := range tests {
		e, err := env.Compile(tc.src)
		if err != nil {
			t.Errorf("%s: %v", tc.src, err)
			continue
		}
		slow := *e
		slow.fast = nil
		for _, ev := range []struct {
			name string
			e    *Expr
		}{{"native", e}, {"vm", &slow}} {
			got, err := fr.Eval(ev.e)
			switch {
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("%s (%s): %v, %v; want error %q", tc.src, ev.name, got, err, tc.err)
			case tc.err == "" && err != nil:
				t.Errorf("%s (%s): %v", tc.src, ev.name, err)
			case tc.err == "" && !same(got, tc.want):
				t.Errorf("%s (%s) = %#v, want %#v", tc.src, ev.name, got, tc.want)
			}
		}
		if !e.Native() {
			t.Errorf("%s: not native", tc.src)
		}
	}
}
