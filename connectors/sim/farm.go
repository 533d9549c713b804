// Package sim is a synthetic wind farm: a deterministic generator of
// turbine rows (Farm) and the "sim" source that streams them.
//
// The turbines are those of connectors/windfarm, the model the device
// simulator (connectors/devsim) uses too: ten measure points per reading
// (Points), wind, power curve, temperatures, fault episodes and power
// limits behave the same in both. The same configuration and seed give the
// same rows, whatever the batch sizes used to draw them.
package sim

import (
	"context"
	"math"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/connectors/windfarm"
	"github.com/sluice-edge/sluice/engine"
)

// The model's names, so that callers of this package need not import
// connectors/windfarm.
var (
	// Points names the measure points of a reading, in column order.
	Points = windfarm.Points
	// DefaultStart is the event time of the first reading unless configured.
	DefaultStart = windfarm.DefaultStart
)

// NumPoints is the number of measure points per reading.
const NumPoints = windfarm.NumPoints

// Indexes of the points in Reading.Values.
const (
	WindSpeed     = windfarm.WindSpeed
	Power         = windfarm.Power
	RotorRPM      = windfarm.RotorRPM
	PitchAngle    = windfarm.PitchAngle
	NacelleTemp   = windfarm.NacelleTemp
	GearboxTemp   = windfarm.GearboxTemp
	GeneratorTemp = windfarm.GeneratorTemp
	AmbientTemp   = windfarm.AmbientTemp
	YawError      = windfarm.YawError
	Vibration     = windfarm.Vibration
)

// Turbine characteristics.
const (
	CutIn     = windfarm.CutIn     // m/s
	RatedWind = windfarm.RatedWind // m/s
	CutOut    = windfarm.CutOut    // m/s
	RatedKW   = windfarm.RatedKW   // kW
)

// Config configures a Farm (see windfarm.Config). Zero fields take their
// defaults.
type Config = windfarm.Config

// Fault is a fault episode in progress.
type Fault = windfarm.Fault

// Fault kinds.
const (
	NoFault         = windfarm.NoFault
	GearboxOverheat = windfarm.GearboxOverheat
	HighVibration   = windfarm.HighVibration
	Curtailment     = windfarm.Curtailment
)

// Reading is one reading of one turbine.
type Reading = windfarm.Reading

// Farm generates rows from the wind-farm model (connectors/windfarm): its
// Next, Turbines, Asset, SetPowerLimit and PowerLimit are the model's. It
// is not safe for concurrent use, except SetPowerLimit and PowerLimit.
type Farm struct {
	*windfarm.Farm
	schema  *engine.Schema
	next    int // turbine of the next row Fill appends
	times   []arrow.Timestamp
	names   []string
	cols    [NumPoints][]float64
	reading Reading
}

// NewFarm returns a farm at its first reading.
func NewFarm(cfg Config) *Farm {
	return &Farm{Farm: windfarm.New(cfg), schema: farmSchema()}
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
		if f.next++; f.next == f.Turbines() {
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
		f.names = append(f.names, f.Asset(f.next))
		for c, v := range r.Values {
			f.cols[c] = append(f.cols[c], v)
		}
		if f.next++; f.next == f.Turbines() {
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
