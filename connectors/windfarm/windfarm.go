// Package windfarm is the one model of a simulated wind farm, shared by the
// "sim" source (connectors/sim) and the device simulator
// (connectors/devsim), so that a reading, a fault episode and a power
// set-point mean the same in both.
//
// Every turbine reports ten measure points per reading (Points). Wind
// follows a slow mean-reverting random walk per turbine; power follows a
// realistic curve (cut-in 3 m/s, rated 2,000 kW from 12 m/s, cut-out
// 25 m/s); temperatures lag the load and a daily ambient cycle; fault
// episodes (gearbox overheating, high vibration, curtailment) start at
// random and last minutes. The same configuration and seed give the same
// readings, whatever the order in which turbines are stepped.
//
// A power limit (SetPowerLimit) caps a turbine's output from its next
// reading on, as a curtailment does: the blades pitch out and power,
// load, temperatures and vibration follow. Readings then depend on the
// limits set, not only on the configuration.
package windfarm

import (
	"math"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"
)

// Points names the measure points of a reading, in the order of
// Reading.Values.
var Points = [NumPoints]string{
	"wind_speed", "power", "rotor_rpm", "pitch_angle", "nacelle_temp",
	"gearbox_temp", "generator_temp", "ambient_temp", "yaw_error", "vibration",
}

// NumPoints is the number of measure points per reading.
const NumPoints = 10

// Indexes of the points in Reading.Values.
const (
	WindSpeed = iota
	Power
	RotorRPM
	PitchAngle
	NacelleTemp
	GearboxTemp
	GeneratorTemp
	AmbientTemp
	YawError
	Vibration
)

// Turbine characteristics.
const (
	CutIn     = 3.0    // m/s
	RatedWind = 12.0   // m/s
	CutOut    = 25.0   // m/s
	RatedKW   = 2000.0 // kW
)

// PowerLimitPoint is the name of the set-point that caps a turbine's
// output (kW), as the simulators accept it in commands.
const PowerLimitPoint = "power_limit"

// DefaultStart is the event time of the first reading unless configured.
var DefaultStart = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Config configures a Farm. Zero fields take their defaults.
type Config struct {
	// Turbines is the number of turbines (default 100).
	Turbines int
	// Interval is the event-time step between two readings of a turbine
	// (default 1s; at least 1ms).
	Interval time.Duration
	// Start is the event time of the first reading (default DefaultStart).
	Start time.Time
	// Seed selects the farm; the same seed gives the same readings.
	Seed uint64
	// Faults is the expected number of fault episodes per turbine per
	// hour of event time (0 for none).
	Faults float64
}

// Fault is a fault episode in progress.
type Fault uint8

// Fault kinds.
const (
	NoFault Fault = iota
	GearboxOverheat
	HighVibration
	Curtailment
)

var faultNames = [...]string{"none", "gearbox_overheat", "high_vibration", "curtailment"}

// String returns the fault's name.
func (f Fault) String() string {
	if int(f) < len(faultNames) {
		return faultNames[f]
	}
	return "fault(" + strconv.Itoa(int(f)) + ")"
}

// Reading is one reading of one turbine.
type Reading struct {
	// Time is the event time in milliseconds since the epoch.
	Time int64
	// Turbine is the turbine's index, from 0.
	Turbine int
	// Seq counts the readings of this turbine, from 0.
	Seq int64
	// Values holds the measure points in the order of Points.
	Values [NumPoints]float64
	// Fault is the fault episode in progress, if any.
	Fault Fault
}

// Farm generates readings. Next is not safe for concurrent use, except
// through distinct parts (see Part) stepping distinct turbines;
// SetPowerLimit and PowerLimit are safe for concurrent use with anything.
type Farm struct {
	p        *params
	turbines []turbine
	// The daily ambient cycle, cached for the time of the last reading.
	dailyMS      int64
	dailyAmbient float64
}

// params are a farm's fixed settings, shared by its parts.
type params struct {
	cfg             Config
	assets          []string
	startMS, stepMS int64
	windA, windB    float64 // wind: mean reversion and innovation scale
	yawA, yawB      float64
	tempB           float64 // temperature lag
	faultP          float64 // probability that a fault starts at a reading
	faultMin        int64   // fault length bounds, in readings
	faultSpan       int64
	rampReadings    float64
}

type turbine struct {
	rng       *rand.Rand
	seq       int64
	wind      float64
	meanWind  float64
	yaw       float64
	nacelle   float64
	gearbox   float64
	generator float64
	ambOff    float64
	fault     Fault
	faultLeft int64
	faultAge  int64
	faultSev  float64
	// limit holds ^math.Float64bits of the power limit (kW); 0 is none.
	limit atomic.Uint64
}

// New returns a farm at its first reading.
func New(cfg Config) *Farm {
	if cfg.Turbines <= 0 {
		cfg.Turbines = 100
	}
	if cfg.Interval < time.Millisecond {
		cfg.Interval = time.Second
	}
	if cfg.Start.IsZero() {
		cfg.Start = DefaultStart
	}
	p := &params{cfg: cfg, startMS: cfg.Start.UnixMilli(), stepMS: cfg.Interval.Milliseconds()}
	dt := cfg.Interval.Seconds()
	p.windA = math.Exp(-dt / 900)                // wind decorrelates over ~15 min
	p.windB = 2.2 * math.Sqrt(1-p.windA*p.windA) // stationary spread 2.2 m/s
	p.yawA = math.Exp(-dt / 120)
	p.yawB = 3 * math.Sqrt(1-p.yawA*p.yawA)
	p.tempB = 1 - math.Exp(-dt/900)
	p.faultP = min(1, max(0, cfg.Faults)*dt/3600)
	p.faultMin = max(3, int64(5*time.Minute/cfg.Interval))
	p.faultSpan = max(1, int64(25*time.Minute/cfg.Interval))
	p.rampReadings = max(1, float64(10*time.Minute/cfg.Interval))

	f := &Farm{p: p, dailyMS: math.MinInt64}
	width := max(4, len(strconv.Itoa(cfg.Turbines)))
	p.assets = make([]string, cfg.Turbines)
	f.turbines = make([]turbine, cfg.Turbines)
	for i := range f.turbines {
		n := strconv.Itoa(i + 1)
		for len(n) < width {
			n = "0" + n
		}
		p.assets[i] = "T" + n
		r := rand.New(rand.NewPCG(cfg.Seed, uint64(i)+0x9e3779b97f4a7c15))
		t := &f.turbines[i]
		t.rng = r
		t.meanWind = min(11, max(4, 7.5+1.5*r.NormFloat64()))
		t.wind = max(0, t.meanWind+2.2*r.NormFloat64())
		t.ambOff = r.NormFloat64()
		t.yaw = 3 * r.NormFloat64()
		load := PowerCurve(t.wind) / RatedKW
		t.nacelle = 20 + 10*load
		t.gearbox = 34 + 38*load
		t.generator = 38 + 46*load
	}
	return f
}

// Part returns a view of the farm that shares its turbines and limits but
// has its own scratch state: distinct parts may step distinct turbines
// concurrently (each turbine must be stepped by one part only, so that its
// readings stay in order).
func (f *Farm) Part() *Farm {
	return &Farm{p: f.p, turbines: f.turbines, dailyMS: math.MinInt64}
}

// Config returns the farm's configuration, defaults filled in.
func (f *Farm) Config() Config { return f.p.cfg }

// Turbines returns the number of turbines.
func (f *Farm) Turbines() int { return len(f.turbines) }

// Asset returns the asset name of turbine i ("T0001" for 0; more digits
// when the farm has more than 9,999 turbines).
func (f *Farm) Asset(i int) string { return f.p.assets[i] }

// SetPowerLimit caps turbine i's output at kW from its next reading on; a
// negative or NaN kW removes the cap. A cap at or above RatedKW has no
// effect on power. It is safe for concurrent use with Next.
func (f *Farm) SetPowerLimit(i int, kW float64) {
	if kW < 0 || math.IsNaN(kW) {
		f.turbines[i].limit.Store(0)
		return
	}
	f.turbines[i].limit.Store(^math.Float64bits(kW))
}

// PowerLimit returns turbine i's power cap and whether one is set.
func (f *Farm) PowerLimit(i int) (kW float64, ok bool) {
	b := f.turbines[i].limit.Load()
	if b == 0 {
		return 0, false
	}
	return math.Float64frombits(^b), true
}

// PowerCurve is the turbine's power (kW) at wind speed v (m/s).
func PowerCurve(v float64) float64 {
	switch {
	case v < CutIn || v >= CutOut:
		return 0
	case v < RatedWind:
		return RatedKW * (v*v*v - CutIn*CutIn*CutIn) / (RatedWind*RatedWind*RatedWind - CutIn*CutIn*CutIn)
	}
	return RatedKW
}

// ambient returns the farm's ambient temperature at time ms: a daily cycle
// peaking at 15:00 UTC.
func (f *Farm) ambient(ms int64) float64 {
	if ms != f.dailyMS {
		tod := float64(((ms%86_400_000)+86_400_000)%86_400_000) / 3_600_000
		f.dailyMS = ms
		f.dailyAmbient = 12 + 6*math.Sin(2*math.Pi*(tod-9)/24)
	}
	return f.dailyAmbient
}

// Round2 rounds to hundredths, so that readings print short and read back
// exactly. It never returns -0.
func Round2(v float64) float64 { return math.RoundToEven(v*100)/100 + 0 }

// Next draws the next reading of turbine i into r.
func (f *Farm) Next(i int, r *Reading) {
	p := f.p
	t := &f.turbines[i]
	rng := t.rng
	r.Turbine = i
	r.Seq = t.seq
	r.Time = p.startMS + t.seq*p.stepMS
	t.seq++

	// Fault episodes.
	if t.fault == NoFault {
		if p.faultP > 0 && rng.Float64() < p.faultP {
			t.fault = Fault(1 + rng.IntN(3))
			t.faultLeft = p.faultMin + rng.Int64N(p.faultSpan)
			t.faultAge = 0
			t.faultSev = rng.Float64()
		}
	} else {
		t.faultAge++
		if t.faultAge >= t.faultLeft {
			t.fault = NoFault
		}
	}
	r.Fault = t.fault

	// Four small uniform noises in [-1, 1) from one draw.
	u := rng.Uint64()
	n0 := float64(int16(u))/32768 + float64(int16(u>>16))/32768 // triangular in [-2, 2)
	n1 := float64(int16(u>>32)) / 32768
	n2 := float64(int16(u>>48)) / 32768

	t.wind = max(0, t.meanWind+(t.wind-t.meanWind)*p.windA+p.windB*rng.NormFloat64())
	gust := 0.4 * n0
	v := max(0, t.wind+gust)

	pw := PowerCurve(v) * (1 + 0.015*n1)
	pitch := 0.5 + 0.3*n2
	rpm := 0.0
	switch {
	case v >= CutOut:
		pitch = 88 + 0.5*n2
	case v >= RatedWind:
		pitch = 1.8*(v-RatedWind) + 0.4*n2
		rpm = 16
	case v >= CutIn:
		rpm = 6 + 10*(v-CutIn)/(RatedWind-CutIn)
	default:
		pitch = 12 + n2
		rpm = 0.3 * v
	}
	rpm = max(0, rpm+0.15*n1)
	// Curtailment and a power limit cap the output the same way: the
	// blades pitch out to shed what the wind offers beyond the cap.
	capKW, capped := RatedKW, false
	if t.fault == Curtailment {
		capKW, capped = RatedKW*(0.35+0.25*t.faultSev), true
	}
	if b := t.limit.Load(); b != 0 {
		if lim := math.Float64frombits(^b); lim < capKW {
			capKW, capped = lim, true
		}
	}
	if capped && pw > capKW {
		pitch += 4 + 6*(pw-capKW)/RatedKW
	}
	pw = min(capKW, max(0, pw))
	load := pw / RatedKW

	amb := f.ambient(r.Time) + t.ambOff
	heat := 0.0
	if t.fault == GearboxOverheat {
		heat = (20 + 25*t.faultSev) * min(1, float64(t.faultAge)/p.rampReadings)
	}
	t.nacelle += (amb + 8 + 10*load - t.nacelle) * p.tempB
	t.gearbox += (amb + 22 + 38*load + heat - t.gearbox) * p.tempB
	t.generator += (amb + 26 + 46*load - t.generator) * p.tempB
	t.yaw = t.yaw*p.yawA + p.yawB*rng.NormFloat64()
	vib := 0.6 + 1.8*load + 0.25*math.Abs(gust) + 0.08*n2
	if t.fault == HighVibration {
		vib *= 2.5 + 2*t.faultSev
	}

	r.Values[WindSpeed] = Round2(v)
	r.Values[Power] = Round2(pw)
	r.Values[RotorRPM] = Round2(rpm)
	r.Values[PitchAngle] = Round2(pitch)
	r.Values[NacelleTemp] = Round2(t.nacelle + 0.1*n1)
	r.Values[GearboxTemp] = Round2(t.gearbox + 0.1*n2)
	r.Values[GeneratorTemp] = Round2(t.generator + 0.1*n0)
	r.Values[AmbientTemp] = Round2(amb + 0.05*n1)
	r.Values[YawError] = Round2(t.yaw)
	r.Values[Vibration] = Round2(max(0, vib))
}
