package sim_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/connectors/sim"
	"github.com/sluice-edge/sluice/engine"
)

// TestSourceRateRange: rate is 0 (as fast as possible) or between 0.001 and
// 1e9 rows per second; anything else, NaN and infinities included, is a
// configuration error.
func TestSourceRateRange(t *testing.T) {
	for _, tt := range []struct {
		rate string
		ok   bool
	}{
		{"0", true},
		{"0.001", true},
		{"1e9", true},
		{"1e-10", false},
		{"0.0009", false},
		{"1.5e9", false},
		{"1e300", false},
		{"-1", false},
		{".nan", false},
		{".inf", false},
	} {
		_, err := build(t, "turbines: 2\nrows: 5\nrate: "+tt.rate, engine.BuildContext{DryRun: true})
		if tt.ok && err != nil {
			t.Errorf("rate %s: %v", tt.rate, err)
		}
		if !tt.ok && (err == nil || !strings.Contains(err.Error(), "rate")) {
			t.Errorf("rate %s: got %v, want a rate error", tt.rate, err)
		}
	}
}

// TestSourcePacedExtremes: whatever the rate, the paced loop neither
// overflows its time arithmetic nor stops watching ctx: at one row per
// ~300 years the first row still leaves and Run returns once ctx ends; at
// an absurdly high rate every row is produced.
func TestSourcePacedExtremes(t *testing.T) {
	for _, tt := range []struct {
		name string
		rate float64
		// cancelAt cancels ctx once this many rows were emitted; 0 waits
		// for the source to end.
		cancelAt int64
		want     int64
	}{
		{"one row per 300 years", 1e-10, 1, 1},
		{"smallest positive rate", 5e-324, 1, 1},
		{"huge rate", 1e300, 0, 40},
		{"largest rate", 1.7e308, 0, 40},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			farm := sim.NewFarm(sim.Config{Turbines: 2})
			src := sim.NewSource(farm, 40, tt.rate, engine.BuildContext{Mem: mem, Batch: engine.BatchPolicy{Size: 8, Linger: time.Millisecond}})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var emitted int64
			done := make(chan error, 1)
			go func() {
				done <- src.Run(ctx, func(rec arrow.RecordBatch, _ *engine.Ack) error {
					defer rec.Release()
					if emitted += rec.NumRows(); tt.cancelAt > 0 && emitted >= tt.cancelAt {
						cancel()
					}
					return nil
				})
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run does not return") // the goroutine leaks: the test fails anyway
			}
			if emitted != tt.want {
				t.Errorf("%d rows, want %d", emitted, tt.want)
			}
		})
	}
}

// TestSourceDryRunBuildsNoFarm: validating a source of a million turbines
// allocates no per-turbine state.
func TestSourceDryRunBuildsNoFarm(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	src, err := build(t, "turbines: 1000000\nrows: 5", engine.BuildContext{DryRun: true})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if src.Schema() == nil || len(src.Schema().Names()) != 2+sim.NumPoints {
		t.Errorf("schema %v", src.Schema())
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 4<<20 {
		t.Errorf("a dry run allocated %d MiB", n>>20)
	}
}
