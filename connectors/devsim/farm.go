package devsim

import (
	"math"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sluice-edge/sluice/connectors/codec"
)

// Points names the first ten measure points of a simulated turbine;
// further points are named p10, p11, ...
var Points = [...]string{
	"wind_speed", "power", "rotor_rpm", "pitch_angle", "nacelle_temp",
	"gearbox_temp", "generator_temp", "ambient_temp", "yaw_error", "vibration",
}

// Turbine characteristics.
const (
	cutIn     = 3.0
	ratedWind = 12.0
	cutOut    = 25.0
	ratedKW   = 2000.0
)

// Fault kinds of a fault episode.
const (
	noFault = iota
	gearboxOverheat
	highVibration
	curtailment
)

// turbine is one simulated device.
type turbine struct {
	key       string
	topic     string // post topic
	resume    string // resume topic
	rng       *rand.Rand
	seq       int64
	wind      float64
	meanWind  float64
	yaw       float64
	gearbox   float64
	fault     int
	faultLeft int64
	// ctl holds what commands set; generators read it without locking.
	ctl atomic.Pointer[control]
}

// control is what commands have set on a device.
type control struct {
	limit float64 // power limit (kW); 0 is none
	set   map[string]float64
}

// powerCurve returns the power (kW) at a wind speed.
func powerCurve(w float64) float64 {
	switch {
	case w < cutIn || w >= cutOut:
		return 0
	case w >= ratedWind:
		return ratedKW
	}
	x := (w - cutIn) / (ratedWind - cutIn)
	return ratedKW * x * x * x
}

// farm generates turbine readings. Each generator goroutine owns a farm of
// its own turbines, so farms need no locking, except the set points that
// commands change (see Sim.apply).
type farm struct {
	turbines []*turbine
	points   int
	startMS  int64
	stepMS   int64
	faultP   float64
	faultLen int64
	windA    float64
	windB    float64
}

func newTurbine(key, productKey string, seed uint64, idx int) *turbine {
	r := rand.New(rand.NewPCG(seed, uint64(idx)+0x9e3779b97f4a7c15))
	t := &turbine{key: key, rng: r,
		topic:  codec.PostTopicFor(productKey, key),
		resume: codec.ResumeTopicFor(productKey, key),
	}
	t.meanWind = min(11, max(4, 7.5+1.5*r.NormFloat64()))
	t.wind = max(0, t.meanWind+2*r.NormFloat64())
	t.yaw = 3 * r.NormFloat64()
	t.gearbox = 34 + 38*powerCurve(t.wind)/ratedKW
	return t
}

func newFarm(ts []*turbine, points int, start time.Time, interval time.Duration, faults float64) *farm {
	dt := interval.Seconds()
	f := &farm{turbines: ts, points: points, startMS: start.UnixMilli(), stepMS: interval.Milliseconds()}
	f.windA = math.Exp(-dt / 900)
	f.windB = 2.2 * math.Sqrt(1-f.windA*f.windA)
	f.faultP = min(1, max(0, faults)*dt/3600)
	f.faultLen = max(3, int64(5*time.Minute/interval))
	return f
}

// step advances turbine t by one reading and appends its measure points as
// the members of a JSON object (without braces) to dst, with the time of
// the reading.
func (f *farm) step(dst []byte, t *turbine) ([]byte, int64) {
	var limit float64
	var set map[string]float64
	if c := t.ctl.Load(); c != nil {
		limit, set = c.limit, c.set
	}
	ms := f.startMS + t.seq*f.stepMS
	t.seq++
	r := t.rng
	t.wind = max(0, t.meanWind+f.windA*(t.wind-t.meanWind)+f.windB*r.NormFloat64())
	if t.faultLeft > 0 {
		t.faultLeft--
		if t.faultLeft == 0 {
			t.fault = noFault
		}
	} else if f.faultP > 0 && r.Float64() < f.faultP {
		t.fault = 1 + r.IntN(3)
		t.faultLeft = f.faultLen + r.Int64N(5*f.faultLen)
	}
	power := powerCurve(t.wind)
	if t.fault == curtailment {
		power = min(power, ratedKW/2)
	}
	if limit > 0 {
		power = min(power, limit)
	}
	load := power / ratedKW
	t.gearbox += (34 + 38*load - t.gearbox) * 0.05
	gearbox := t.gearbox
	if t.fault == gearboxOverheat {
		gearbox += 25
	}
	vib := 1.5 + 2*load + 0.3*r.NormFloat64()
	if t.fault == highVibration {
		vib += 6
	}
	t.yaw = 0.98*t.yaw + 0.6*r.NormFloat64()
	pitch := 0.0
	if t.wind > ratedWind {
		pitch = min(30, (t.wind-ratedWind)*2.2)
	}
	day := float64(ms%86_400_000) / 86_400_000
	ambient := 12 + 7*math.Sin(2*math.Pi*(day-0.25))
	values := [len(Points)]float64{
		t.wind, power, min(16, t.wind*1.4), pitch, 20 + 12*load + 0.2*ambient,
		gearbox, 38 + 46*load, ambient, t.yaw, max(0, vib),
	}
	for i := range f.points {
		if i > 0 {
			dst = append(dst, ',')
		}
		var name string
		var v float64
		if i < len(Points) {
			name, v = Points[i], values[i]
		} else {
			name, v = "p"+strconv.Itoa(i), r.Float64()*100
		}
		if sv, ok := set[name]; ok {
			v = sv
		}
		dst = append(dst, '"')
		dst = append(dst, name...)
		dst = append(dst, `":`...)
		if i == 1 {
			// Power carries its quality, as EnOS devices often do.
			dst = append(dst, `{"value":`...)
			dst = strconv.AppendFloat(dst, round2(v), 'f', -1, 64)
			dst = append(dst, `,"quality":0}`...)
			continue
		}
		dst = strconv.AppendFloat(dst, round2(v), 'f', -1, 64)
	}
	return dst, ms
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
