package control_test

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/sluice-edge/sluice/engine/control"
)

// BenchmarkArbiter measures a command's whole life in the arbiter
// (accepted, queued, sent, acked: four log entries) with a simulated
// device that answers at once, 8 assets in parallel: with the log synced
// at every entry and without, and without sync with every set-point
// checked against its asset's thing model.
func BenchmarkArbiter(b *testing.B) {
	for _, cfg := range []struct{ noSync, models bool }{{false, false}, {true, false}, {true, true}} {
		name := fmt.Sprintf("nosync=%v", cfg.noSync)
		var m control.Models
		if cfg.models {
			name += "/models"
			tm := &control.ThingModel{ID: "turbine", Points: map[string]control.PointSpec{
				"power_setpoint": {Type: control.PointFloat, Unit: "kW", Min: 0, Max: math.MaxFloat64}}}
			m = benchModels{tm}
		}
		b.Run(name, func(b *testing.B) {
			dev := newDevice(true)
			a, err := control.Open(control.Options{Dir: b.TempDir(), Transport: dev, NoSync: cfg.noSync, Models: m})
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			dev.a = a
			ctx := context.Background()
			next := make(chan int)
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			for w := range 8 {
				wg.Go(func() {
					asset := fmt.Sprint("T", w)
					for i := range next {
						rec, err := a.Submit(ctx, setPoint("cloud", asset, float64(i)))
						if err != nil {
							b.Error(err)
							return
						}
						if _, err := a.Wait(ctx, rec.ID); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			for i := range b.N {
				next <- i
			}
			close(next)
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cmds/s")
		})
	}
}

// benchModels gives every asset the same model.
type benchModels struct{ m *control.ThingModel }

func (b benchModels) ThingModel(string) (*control.ThingModel, bool) { return b.m, true }
