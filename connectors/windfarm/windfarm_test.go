package windfarm_test

import (
	"math"
	"sync"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/connectors/windfarm"
)

func TestPowerLimit(t *testing.T) {
	cases := []struct {
		name   string
		limit  float64
		set    bool
		capAt  float64 // power never exceeds it; NaN: readings equal the uncapped farm's
		wantOK bool
	}{
		{"none", 0, false, math.NaN(), false},
		{"zero stops production", 0, true, 0, true},
		{"500 kW", 500, true, 500, true},
		{"at rated power", windfarm.RatedKW, true, math.NaN(), true},
		{"above rated power", 5000, true, math.NaN(), true},
		{"negative clears", -1, true, math.NaN(), false},
		{"NaN clears", math.NaN(), true, math.NaN(), false},
	}
	cfg := windfarm.Config{Turbines: 4, Seed: 5, Interval: 10 * time.Second}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, free := windfarm.New(cfg), windfarm.New(cfg)
			if tc.set {
				f.SetPowerLimit(1, 123) // replaced below
				f.SetPowerLimit(1, tc.limit)
			}
			kW, ok := f.PowerLimit(1)
			if ok != tc.wantOK || ok && kW != tc.limit {
				t.Fatalf("PowerLimit = %v, %v", kW, ok)
			}
			var r, u windfarm.Reading
			above, pitched := 0, 0
			for range 2000 {
				for i := range f.Turbines() {
					f.Next(i, &r)
					free.Next(i, &u)
					if i != 1 || math.IsNaN(tc.capAt) {
						if r != u {
							t.Fatalf("turbine %d: capped %v, free %v", i, r.Values, u.Values)
						}
						continue
					}
					if r.Values[windfarm.Power] > tc.capAt {
						t.Fatalf("power %v above the cap %v", r.Values[windfarm.Power], tc.capAt)
					}
					if u.Values[windfarm.Power] > tc.capAt+50 {
						above++
						if r.Values[windfarm.PitchAngle] > u.Values[windfarm.PitchAngle] {
							pitched++
						}
					}
					if r.Values[windfarm.WindSpeed] != u.Values[windfarm.WindSpeed] {
						t.Fatal("a power limit changed the wind")
					}
				}
			}
			if !math.IsNaN(tc.capAt) && (above == 0 || pitched != above) {
				t.Errorf("%d uncapped readings well above the cap, %d of them pitched out", above, pitched)
			}
		})
	}
}

// TestParts: parts stepping distinct turbines concurrently give the
// readings of one farm stepping them in turn, while limits change.
func TestParts(t *testing.T) {
	cfg := windfarm.Config{Turbines: 6, Seed: 8, Faults: 20}
	whole := windfarm.New(cfg)
	want := make([][]windfarm.Reading, cfg.Turbines)
	for range 500 {
		for i := range cfg.Turbines {
			var r windfarm.Reading
			whole.Next(i, &r)
			want[i] = append(want[i], r)
		}
	}
	f := windfarm.New(cfg)
	var wg sync.WaitGroup
	for w := range 3 {
		part := f.Part()
		wg.Go(func() {
			var r windfarm.Reading
			for k := range 500 {
				for i := w; i < cfg.Turbines; i += 3 {
					part.Next(i, &r)
					if r != want[i][k] {
						t.Errorf("turbine %d reading %d differs", i, k)
						return
					}
				}
			}
		})
	}
	wg.Go(func() { // limits above rated power change nothing, but race if unsafe
		for k := range 1000 {
			f.SetPowerLimit(k%cfg.Turbines, windfarm.RatedKW+float64(k))
			_, _ = f.PowerLimit(k % cfg.Turbines)
		}
	})
	wg.Wait()
}

func BenchmarkNext(b *testing.B) {
	f := windfarm.New(windfarm.Config{Turbines: 1000, Faults: 0.1})
	for i := 0; i < 1000; i += 2 {
		f.SetPowerLimit(i, 800)
	}
	var r windfarm.Reading
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		f.Next(i, &r)
		if i++; i == 1000 {
			i = 0
		}
	}
}
