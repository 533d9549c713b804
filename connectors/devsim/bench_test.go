package devsim

import (
	"testing"
	"time"

	"github.com/sluice-edge/sluice/connectors/windfarm"
)

// BenchmarkPayload measures generating one EnOS post of ten points.
func BenchmarkPayload(b *testing.B) {
	ts := []*turbine{newTurbine("T0001", "turbine", 1, 0), newTurbine("T0002", "turbine", 1, 1)}
	model := windfarm.New(windfarm.Config{Turbines: 2, Start: time.Unix(1_700_000_000, 0), Interval: time.Second, Seed: 1, Faults: 1})
	f := &farm{model: model.Part(), turbines: ts, points: 10}
	var members, payload []byte
	var id int64
	b.ReportAllocs()
	for b.Loop() {
		t := ts[id&1]
		var ms int64
		members, ms = f.step(members[:0], t)
		id++
		payload = appendPost(payload[:0], id, "thing.measurepoint.post", members, ms)
	}
	b.SetBytes(int64(len(payload)))
}
