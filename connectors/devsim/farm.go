package devsim

import (
	"math"
	"math/rand/v2"
	"strconv"
	"sync/atomic"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/connectors/windfarm"
)

// Points names the first ten measure points of a simulated turbine;
// further points are named p10, p11, ...
var Points = windfarm.Points

// PowerLimitService is the service that caps a turbine's output: its input
// power_limit (kW) acts as the measure point power_limit set through
// measurepoint.set does. A negative power_limit removes the cap.
const PowerLimitService = "setPowerLimit"

// turbine is one simulated device: turbine idx of the farm model.
type turbine struct {
	key    string
	idx    int
	topic  string // post topic
	resume string // resume topic
	extra  *rand.Rand
	// ctl holds the measure points commands set (other than the power
	// limit, which the model holds); generators read it without locking.
	ctl atomic.Pointer[control]
}

// control is what commands have set on a device.
type control struct {
	set map[string]float64
}

func newTurbine(key, productKey string, seed uint64, idx int) *turbine {
	return &turbine{key: key, idx: idx,
		topic:  codec.PostTopicFor(productKey, key),
		resume: codec.ResumeTopicFor(productKey, key),
		// Points beyond the model's draw from a generator of their own, so
		// that they do not change the model's readings.
		extra: rand.New(rand.NewPCG(seed, uint64(idx)+0x7f4a7c159e3779b9)),
	}
}

// farm generates the readings of one generator goroutine's turbines: a
// part of the farm model (windfarm.Farm.Part), so that generators need no
// locking.
type farm struct {
	model    *windfarm.Farm
	turbines []*turbine
	points   int
	r        windfarm.Reading
}

// step advances turbine t by one reading and appends its measure points as
// the members of a JSON object (without braces) to dst, with the time of
// the reading.
func (f *farm) step(dst []byte, t *turbine) ([]byte, int64) {
	var set map[string]float64
	if c := t.ctl.Load(); c != nil {
		set = c.set
	}
	f.model.Next(t.idx, &f.r)
	for i := range f.points {
		if i > 0 {
			dst = append(dst, ',')
		}
		var name string
		var v float64
		if i < len(Points) {
			name, v = Points[i], f.r.Values[i]
		} else {
			name, v = "p"+strconv.Itoa(i), t.extra.Float64()*100
		}
		if sv, ok := set[name]; ok {
			v = sv
		}
		dst = append(dst, '"')
		dst = append(dst, name...)
		dst = append(dst, `":`...)
		if i == windfarm.Power {
			// Power carries its quality, as EnOS devices often do.
			dst = append(dst, `{"value":`...)
			dst = strconv.AppendFloat(dst, round2(v), 'f', -1, 64)
			dst = append(dst, `,"quality":0}`...)
			continue
		}
		dst = strconv.AppendFloat(dst, round2(v), 'f', -1, 64)
	}
	return dst, f.r.Time
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

// appendPost appends a measure-point post: members are the points of
// one reading as written by step.
func appendPost(dst []byte, id int64, method string, members []byte, ms int64) []byte {
	dst = append(dst, `{"id":"`...)
	dst = strconv.AppendInt(dst, id, 10)
	dst = append(dst, `","version":"1.0","method":"`...)
	dst = append(dst, method...)
	dst = append(dst, `","params":{"measurepoints":{`...)
	dst = append(dst, members...)
	dst = append(dst, `},"time":`...)
	dst = strconv.AppendInt(dst, ms, 10)
	return append(dst, `}}`...)
}
