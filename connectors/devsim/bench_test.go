package devsim

import (
	"testing"
	"time"
)

// BenchmarkPayload measures generating one EnOS post of ten points.
func BenchmarkPayload(b *testing.B) {
	ts := []*turbine{newTurbine("T0001", "turbine", 1, 0), newTurbine("T0002", "turbine", 1, 1)}
	f := newFarm(ts, 10, time.Unix(1_700_000_000, 0), time.Second, 1)
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
