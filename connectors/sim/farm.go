// Package sim is a synthetic wind farm: a deterministic generator of
// turbine readings (Farm) and the "sim" source that streams them.
//
// Every turbine reports ten measure points per reading (Points). Wind
// follows a slow mean-reverting random walk per turbine; power follows a
// realistic curve (cut-in 3 m/s, rated 2,000 kW from 12 m/s, cut-out
// 25 m/s); temperatures lag the load and a daily ambient cycle; fault
// episodes (gearbox overheating, high vibration, curtailment) start at
// random and last minutes. The same configuration and seed give the same
// readings, whatever the batch sizes used to draw them.
package sim

import (
	"context"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/engine"
)

// Points names the measure points of a reading, in column order.
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

// Farm generates readings. It is not safe for concurrent use.
type Farm struct {
	cfg      Config
	schema   *engine.Schema
	assets   []string
	turbines []turbine
	next     int // turbine of the next row Fill appends

	startMS, stepMS int64
	// Per-step constants.
	windA, windB float64 // wind: mean reversion and innovation scale
	yawA, yawB   float64
	tempB        float64 // temperature lag
	faultP       float64 // probability that a fault starts at a reading
	faultMin     int64   // fault length bounds, in readings
	faultSpan    int64
	rampReadings float64
	dailyMS      int64 // time of the cached daily cycle
	dailyAmbient float64
	times        []arrow.Timestamp
	names        []string
	cols         [NumPoints][]float64
	reading      Reading
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
}

// NewFarm returns a farm at its first reading.
func NewFarm(cfg Config) *Farm {
	if cfg.Turbines <= 0 {
		cfg.Turbines = 100
	}
	if cfg.Interval < time.Millisecond {
		cfg.Interval = time.Second
	}
	if cfg.Start.IsZero() {
		cfg.Start = DefaultStart
	}
	f := &Farm{cfg: cfg, startMS: cfg.Start.UnixMilli(), stepMS: cfg.Interval.Milliseconds(), dailyMS: math.MinInt64}
	f.schema = farmSchema()

	dt := cfg.Interval.Seconds()
	f.windA = math.Exp(-dt / 900)                // wind decorrelates over ~15 min
	f.windB = 2.2 * math.Sqrt(1-f.windA*f.windA) // stationary spread 2.2 m/s
	f.yawA = math.Exp(-dt / 120)
	f.yawB = 3 * math.Sqrt(1-f.yawA*f.yawA)
	f.tempB = 1 - math.Exp(-dt/900)
	f.faultP = min(1, max(0, cfg.Faults)*dt/3600)
	f.faultMin = max(3, int64(5*time.Minute/cfg.Interval))
	f.faultSpan = max(1, int64(25*time.Minute/cfg.Interval))
	f.rampReadings = max(1, float64(10*time.Minute/cfg.Interval))

	width := max(4, len(strconv.Itoa(cfg.Turbines)))
	f.assets = make([]string, cfg.Turbines)
	f.turbines = make([]turbine, cfg.Turbines)
	for i := range f.turbines {
		n := strconv.Itoa(i + 1)
		for len(n) < width {
			n = "0" + n
		}
		f.assets[i] = "T" + n
		r := rand.New(rand.NewPCG(cfg.Seed, uint64(i)+0x9e3779b97f4a7c15))
		t := &f.turbines[i]
		t.rng = r
		t.meanWind = min(11, max(4, 7.5+1.5*r.NormFloat64()))
		t.wind = max(0, t.meanWind+2.2*r.NormFloat64())
		t.ambOff = r.NormFloat64()
		t.yaw = 3 * r.NormFloat64()
		load := powerCurve(t.wind) / RatedKW
		t.nacelle = 20 + 10*load
		t.gearbox = 34 + 38*load
		t.generator = 38 + 46*load
	}
	return f
}

// farmSchema is the schema of a farm's rows, whatever its configuration.
func farmSchema() *engine.Schema {
	fields := []engine.Field{{Name: "time", Type: engine.Timestamp}, {Name: "asset", Type: engine.String}}
	for _, p := range Points {
		fields = append(fields, engine.Field{Name: p, Type: engine.Float64})
	}
	return engine.MustSchema(fields, "time", "asset")
}

// Schema is the schema of the rows Fill appends: time, asset (the key,
// "T0001".."TNNNN") and one float64 column per point.
func (f *Farm) Schema() *engine.Schema { return f.schema }

// Turbines returns the number of turbines.
func (f *Farm) Turbines() int { return len(f.turbines) }

// Asset returns the asset name of turbine i ("T0001" for 0).
func (f *Farm) Asset(i int) string { return f.assets[i] }

// powerCurve is the turbine's power (kW) at wind speed v (m/s).
func powerCurve(v float64) float64 {
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

// round2 rounds to hundredths, so that readings print short and read back
// exactly. It never returns -0.
func round2(v float64) float64 { return math.RoundToEven(v*100)/100 + 0 }

// Next draws the next reading of turbine i into r.
func (f *Farm) Next(i int, r *Reading) {
	t := &f.turbines[i]
	rng := t.rng
	r.Turbine = i
	r.Seq = t.seq
	r.Time = f.startMS + t.seq*f.stepMS
	t.seq++

	// Fault episodes.
	if t.fault == NoFault {
		if f.faultP > 0 && rng.Float64() < f.faultP {
			t.fault = Fault(1 + rng.IntN(3))
			t.faultLeft = f.faultMin + rng.Int64N(f.faultSpan)
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

	t.wind = max(0, t.meanWind+(t.wind-t.meanWind)*f.windA+f.windB*rng.NormFloat64())
	gust := 0.4 * n0
	v := max(0, t.wind+gust)

	p := powerCurve(v) * (1 + 0.015*n1)
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
	cap := RatedKW
	if t.fault == Curtailment {
		cap = RatedKW * (0.35 + 0.25*t.faultSev)
		if p > cap {
			pitch += 4 + 6*(p-cap)/RatedKW
		}
	}
	p = min(cap, max(0, p))
	load := p / RatedKW

	amb := f.ambient(r.Time) + t.ambOff
	heat := 0.0
	if t.fault == GearboxOverheat {
		heat = (20 + 25*t.faultSev) * min(1, float64(t.faultAge)/f.rampReadings)
	}
	t.nacelle += (amb + 8 + 10*load - t.nacelle) * f.tempB
	t.gearbox += (amb + 22 + 38*load + heat - t.gearbox) * f.tempB
	t.generator += (amb + 26 + 46*load - t.generator) * f.tempB
	t.yaw = t.yaw*f.yawA + f.yawB*rng.NormFloat64()
	vib := 0.6 + 1.8*load + 0.25*math.Abs(gust) + 0.08*n2
	if t.fault == HighVibration {
		vib *= 2.5 + 2*t.faultSev
	}

	r.Values[WindSpeed] = round2(v)
	r.Values[Power] = round2(p)
	r.Values[RotorRPM] = round2(rpm)
	r.Values[PitchAngle] = round2(pitch)
	r.Values[NacelleTemp] = round2(t.nacelle + 0.1*n1)
	r.Values[GearboxTemp] = round2(t.gearbox + 0.1*n2)
	r.Values[GeneratorTemp] = round2(t.generator + 0.1*n0)
	r.Values[AmbientTemp] = round2(amb + 0.05*n1)
	r.Values[YawError] = round2(t.yaw)
	r.Values[Vibration] = round2(max(0, vib))
}

// Skip draws the next n readings and drops them: the farm continues as if
// Fill had appended them (a source resuming after n rows). It returns
// ctx's error, having skipped only part, when ctx ends first.
func (f *Farm) Skip(ctx context.Context, n int64) error {
	r := &f.reading
	for i := int64(0); n > 0; n, i = n-1, i+1 {
		if i&0xffff == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		f.Next(f.next, r)
		if f.next++; f.next == len(f.turbines) {
			f.next = 0
		}
	}
	return nil
}

// fillChunk bounds the scratch memory of Fill.
const fillChunk = 1024

// Fill appends the next n readings to rb, whose schema must be Schema.
// Readings go round the turbines: T0001, T0002, ..., TNNNN, then the
// next step of T0001.
func (f *Farm) Fill(rb *engine.RecordBuilder, n int) {
	for n > 0 {
		k := min(n, fillChunk)
		f.fill(rb, k)
		n -= k
	}
}

func (f *Farm) fill(rb *engine.RecordBuilder, n int) {
	f.times = f.times[:0]
	f.names = f.names[:0]
	for c := range f.cols {
		f.cols[c] = f.cols[c][:0]
	}
	r := &f.reading
	for range n {
		f.Next(f.next, r)
		f.times = append(f.times, arrow.Timestamp(r.Time))
		f.names = append(f.names, f.assets[f.next])
		for c, v := range r.Values {
			f.cols[c] = append(f.cols[c], v)
		}
		if f.next++; f.next == len(f.turbines) {
			f.next = 0
		}
	}
	rb.Timestamp(0).AppendValues(f.times, nil)
	rb.String(1).AppendValues(f.names, nil)
	for c := range f.cols {
		rb.Float64(2+c).AppendValues(f.cols[c], nil)
	}
	for range n {
		rb.RowDone()
	}
}

// appendHundredths appends a value rounded to hundredths in its shortest
// form, as strconv.AppendFloat(dst, v, 'f', -1, 64) would.
func appendHundredths(dst []byte, v float64) []byte {
	c := math.Round(v * 100)
	if math.Abs(c) >= 1e15 || c/100 != v {
		return strconv.AppendFloat(dst, v, 'f', -1, 64)
	}
	n := int64(c)
	if n < 0 {
		dst = append(dst, '-')
		n = -n
	}
	dst = strconv.AppendInt(dst, n/100, 10)
	switch f := n % 100; {
	case f == 0:
	case f%10 == 0:
		dst = append(dst, '.', byte('0'+f/10))
	default:
		dst = append(dst, '.', byte('0'+f/10), byte('0'+f%10))
	}
	return dst
}

// AppendEnOS draws the next reading of turbine i and appends it as an
// EnOS measure-point post payload.
func (f *Farm) AppendEnOS(dst []byte, i int) []byte {
	f.Next(i, &f.reading)
	return AppendEnOS(dst, &f.reading, "")
}

// AppendEnOS appends r as an EnOS measure-point post payload:
//
//	{"id":"42","version":"1.0","method":"thing.measurepoint.post",
//	 "params":{"measurepoints":{"wind_speed":7.43,...},"time":1704067200000}}
//
// When deviceKey is not empty, params also carries "deviceKey", as in
// posts on behalf of sub-devices.
func AppendEnOS(dst []byte, r *Reading, deviceKey string) []byte {
	dst = append(dst, `{"id":"`...)
	dst = strconv.AppendInt(dst, r.Seq, 10)
	dst = append(dst, `","version":"1.0","method":"thing.measurepoint.post","params":{`...)
	if deviceKey != "" {
		dst = append(dst, `"deviceKey":`...)
		dst = codec.AppendJSONString(dst, deviceKey)
		dst = append(dst, ',')
	}
	dst = append(dst, `"measurepoints":{`...)
	for i, v := range r.Values {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		dst = append(dst, Points[i]...)
		dst = append(dst, '"', ':')
		dst = appendHundredths(dst, v)
	}
	dst = append(dst, `},"time":`...)
	dst = strconv.AppendInt(dst, r.Time, 10)
	return append(dst, '}', '}')
}
