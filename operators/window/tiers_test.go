package window_test

import (
	"math/rand/v2"
	"testing"

	"github.com/sluice-edge/sluice/operators/window"
)

// TestStateTiers runs every kind of window with the sketch logs turning
// dense after a few rows and the fast sum tiers flushed after a few
// values, in shuffled arrival orders and batch sizes, and requires output
// identical to the default settings.
func TestStateTiers(t *testing.T) {
	for _, kc := range kindCases {
		t.Run(kc.name, func(t *testing.T) {
			cfg := kc.cfg + "\nlateness: 5s" + fullAggs
			rng := rand.New(rand.NewPCG(11, uint64(len(kc.name))))
			span := int64(150_000)
			if kc.kind == window.Session {
				span = 700_000
			}
			rows := genRows(rng, 4000, 20, 1_700_000_000_000, span)
			wantCol, _ := runMem(t, false, cfg, testSchema, []batchIn{{rows: rows}})
			want := encodeRows(wantCol.Port(0))
			for trial, tc := range []struct {
				logRows int
				maxAdds uint32
			}{{1, 1}, {3, 7}, {2, 1 << 22}, {1 << 20, 2}, {5, 1}} {
				restoreLog := window.SetLogRows(tc.logRows)
				restoreAdds := window.SetFastMaxAdds(tc.maxAdds)
				batches := chunk(rng, shuffleWithin(rng, rows, 5000), 1+rng.IntN(800), 1+trial%3)
				col, _ := runMem(t, false, cfg, testSchema, batches)
				restoreAdds()
				restoreLog()
				if got := encodeRows(col.Port(0)); string(got) != string(want) {
					t.Fatalf("log rows %d, fast tier %d: output differs from the default settings\n%s",
						tc.logRows, tc.maxAdds, firstDiff(got, want))
				}
			}
		})
	}
}
